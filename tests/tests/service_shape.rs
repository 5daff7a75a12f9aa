//! Every service binary starts the same way: telemetry first, one "listening" line per
//! bound port, a span per HTTP request carrying method and route and closed by an event
//! with status and latency (at debug level), and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dropgate_functions::auth::dev::{LOCAL_AUDIENCE, LOCAL_ISSUER, jwks_for};
use dropgate_tests::api::signing_key;
use dropgate_tests::{KillOnDrop, TestStack, workspace_binary};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The JSON log lines of a child's stderr, as they arrive.
fn log_lines(child: &mut Child) -> mpsc::Receiver<Value> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                let _ = send.send(value);
            }
        }
    });
    receive
}

/// Waits for the first line `matches` accepts.
fn wait_for(lines: &mpsc::Receiver<Value>, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if matches(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line for {what} within 30 s"),
        }
    }
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_api_logs_its_port_each_request_in_a_span_serves_on_its_threads_and_stops() {
    let stack = TestStack::shared().await;
    let keys = tempfile::tempdir().expect("tempdir");
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, jwks_for(signing_key())).expect("jwks");
    let child = Command::new(workspace_binary("queue-api").expect("built"))
        .env_clear()
        .env("DROPGATE_API_ADDR", "127.0.0.1:0")
        .env("DROPGATE_API_HTTP_THREADS", "3")
        .env("DROPGATE_HEALTH_ADDR", "127.0.0.1:0")
        .env("DROPGATE_REDIS_URL", &stack.env.redis_url)
        .env("DROPGATE_JWKS_FILE", &jwks)
        .env("DROPGATE_JWT_ISSUER", LOCAL_ISSUER)
        .env("DROPGATE_JWT_AUDIENCE", LOCAL_AUDIENCE)
        .env("DROPGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug,hyper=info,h2=info,redis=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("queue-api starts");
    let mut child = KillOnDrop(child);
    let lines = log_lines(&mut child.0);

    let listening = wait_for(&lines, "the listening line", |line| {
        message(line) == "listening"
    });
    assert_eq!(listening["fields"]["service"], "queue-api");
    assert_eq!(listening["fields"]["purpose"], "http");
    let address = listening["fields"]["address"]
        .as_str()
        .expect("address logged")
        .to_owned();
    let ops = wait_for(&lines, "the ops port's line", |line| {
        message(line) == "listening" && line["fields"]["purpose"] == "ops"
    });
    let ops_address = ops["fields"]["address"].as_str().expect("address logged");
    assert_ne!(ops_address, address, "the ops port is a port of its own");

    let client = reqwest::Client::new();
    let status = client
        .get(format!("http://{address}/v1/events/drop-1/queue/me"))
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 401, "no token");

    let answered = wait_for(&lines, "the request's span", |line| {
        message(line) == "request answered"
    });
    let span = &answered["span"];
    assert_eq!(span["name"], "request");
    assert_eq!(span["method"], "GET");
    assert_eq!(span["route"], "/v1/events/{event_id}/queue/me");
    assert_eq!(answered["fields"]["status"], 401);
    assert!(
        answered["fields"]["latency_ms"].as_f64().is_some(),
        "latency logged: {answered}"
    );

    // Three serving threads, each on a socket of its own with a Redis connection of its
    // own: every new connection is answered from Redis (the fairness record of an event
    // nobody created), whichever socket the kernel gives it to.
    let serving_threads = |pid: u32| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the process's threads")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| name.starts_with("api-http-"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        serving_threads(child.0.id()),
        ["api-http-0", "api-http-1", "api-http-2"]
    );
    for _ in 0..24 {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let answer = fresh
            .get(format!("http://{address}/v1/events/no-such-drop/fairness"))
            .send()
            .await
            .expect("every new connection is answered");
        assert_eq!(answer.status(), 404);
        let body: Value = answer.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], "unknown_event");
    }

    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    wait_for(&lines, "the stop line", |line| message(line) == "stopped");
    let exit = child.0.wait().expect("wait");
    assert!(exit.success(), "queue-api exits cleanly on SIGTERM: {exit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_cannot_start_says_why_in_one_line_and_fails() {
    // Nothing listens on port 1: the admitter cannot reach Redis.
    let seed_key = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(seed_key.path(), "11".repeat(32)).expect("write the seed key");
    let output = Command::new(workspace_binary("admitter").expect("built"))
        .env_clear()
        .env("DROPGATE_SEED_KEY_FILE", seed_key.path())
        .env("DROPGATE_REDIS_URL", "redis://127.0.0.1:1")
        .env("DATABASE_URL", "postgres://dropgate@127.0.0.1:1/dropgate")
        .env("DROPGATE_KAFKA_BROKERS", "127.0.0.1:1")
        .env("DROPGATE_HEALTH_ADDR", "127.0.0.1:0")
        .output()
        .expect("admitter runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("admitter: ") && last.contains("Redis"),
        "the last line names the service and the cause: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn result_relay_on_pub_sub_serves_pushes_and_ops_on_one_port_and_stops_on_sigterm() {
    let stack = TestStack::shared().await;
    let keys = tempfile::tempdir().expect("tempdir");
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, jwks_for(signing_key())).expect("jwks");
    let child = Command::new(workspace_binary("result-relay").expect("built"))
        .env_clear()
        .env("DROPGATE_TRANSPORT", "pubsub")
        .env("DROPGATE_HEALTH_ADDR", "127.0.0.1:0")
        .env("DROPGATE_REDIS_URL", &stack.env.redis_url)
        .env("DROPGATE_PUSH_JWKS", &jwks)
        .env("DROPGATE_PUSH_AUDIENCE", "https://result-relay.example")
        .env(
            "DROPGATE_PUSH_SERVICE_ACCOUNT",
            "push@example.iam.gserviceaccount.com",
        )
        .env("DROPGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("result-relay starts");
    let mut child = KillOnDrop(child);
    let lines = log_lines(&mut child.0);

    let listening = wait_for(&lines, "the listening line", |line| {
        message(line) == "listening"
    });
    assert_eq!(listening["fields"]["service"], "result-relay");
    assert_eq!(listening["fields"]["purpose"], "push and ops");
    let address = listening["fields"]["address"]
        .as_str()
        .expect("address logged");
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("http://{address}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        ready.status(),
        200,
        "the push endpoint's port serves the ops routes"
    );
    let unsigned = client
        .post(format!("http://{address}/pubsub/result-notification"))
        .body("{}")
        .send()
        .await
        .expect("push");
    assert_eq!(unsigned.status(), 401, "a push without a token is refused");

    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    wait_for(&lines, "the stop line", |line| message(line) == "stopped");
    let exit = child.0.wait().expect("wait");
    assert!(
        exit.success(),
        "result-relay exits cleanly on SIGTERM: {exit}"
    );
}

/// A Redis that lets queue-api's first connection through and closes every later one
/// as it arrives: the process itself connects, its serving threads cannot. It must
/// never answer ready, and must fail saying why rather than serve on some threads.
#[tokio::test(flavor = "multi_thread")]
async fn queue_api_whose_serving_threads_cannot_reach_redis_is_never_ready_and_fails() {
    let stack = TestStack::shared().await;
    // `redis://127.0.0.1:<port>/0`: the gate stands in for the host and port.
    let url = &stack.env.redis_url;
    let authority = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("a Redis URL");
    let redis_address = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned();
    let gate = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the gate");
    let gate_address = gate.local_addr().expect("gate address");
    let gated_url = url.replacen(&redis_address, &gate_address.to_string(), 1);
    let gatekeeper = tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut client, _)) = gate.accept().await {
            if !std::mem::take(&mut first) {
                continue; // dropped: closed as it arrives
            }
            let address = redis_address.clone();
            tokio::spawn(async move {
                if let Ok(mut redis) = tokio::net::TcpStream::connect(&address).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut redis).await;
                }
            });
        }
    });
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _gatekeeper = AbortOnDrop(gatekeeper);

    let keys = tempfile::tempdir().expect("tempdir");
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, jwks_for(signing_key())).expect("jwks");
    let child = Command::new(workspace_binary("queue-api").expect("built"))
        .env_clear()
        .env("DROPGATE_API_ADDR", "127.0.0.1:0")
        .env("DROPGATE_API_HTTP_THREADS", "2")
        .env("DROPGATE_HEALTH_ADDR", "127.0.0.1:0")
        .env("DROPGATE_REDIS_URL", gated_url)
        .env("DROPGATE_JWKS_FILE", &jwks)
        .env("DROPGATE_JWT_ISSUER", LOCAL_ISSUER)
        .env("DROPGATE_JWT_AUDIENCE", LOCAL_AUDIENCE)
        .env("DROPGATE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("queue-api starts");
    let mut child = KillOnDrop(child);
    let lines = log_lines(&mut child.0);
    let ops = wait_for(&lines, "the ops port's line", |line| {
        message(line) == "listening" && line["fields"]["purpose"] == "ops"
    });
    let ops_address = ops["fields"]["address"]
        .as_str()
        .expect("address logged")
        .to_owned();
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue-api neither served nor failed within 60 s"
        );
        if let Ok(answer) = probe
            .get(format!("http://{ops_address}/readyz"))
            .send()
            .await
        {
            assert_ne!(
                answer.status(),
                200,
                "ready although its threads have no Redis"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!exit.success(), "it fails: {exit}");
    let failed = wait_for(&lines, "the failure line", |line| {
        line["fields"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("serving thread could not connect to Redis"))
    });
    assert_eq!(failed["level"], "ERROR", "{failed}");
}
