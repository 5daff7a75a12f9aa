//! queue-api as operated: rate and stream limits answer 429 and 503 with Retry-After,
//! a shutdown tells open streams to reconnect, health, readiness (failing without
//! Redis), metrics and CORS, and the queue-api binary trusting `dropgate token` and
//! stopping cleanly on SIGTERM.

use std::time::Duration;

use dropgate_core::{EventId, EventState};
use dropgate_tests::api::{ApiServer, error_code, metric_value, token};
use dropgate_tests::{KillOnDrop, TestStack, dropgate_binary, workspace_binary};
use dropgate_tools::stack::{Component, StopMode};
use reqwest::StatusCode;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn limits_answer_429_and_503_with_retry_after() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start_with(stack, |args| {
        args.user_rate_per_s = 1;
        args.user_burst = 3;
        args.max_streams = 1;
    })
    .await
    .expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = server.client();
    let first = token("shop", "s1");
    let second = token("shop", "s2");
    server.enter(&event, &first).await;
    server.enter(&event, &second).await;

    let mut open = server.open_stream(&event, &first, None).await;
    assert_eq!(
        open.next(PATIENCE)
            .await
            .expect("event")
            .expect("open")
            .name,
        "position"
    );
    let refused = client
        .get(server.queue_url(&event, "/me/stream"))
        .bearer_auth(&second)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(error_code(&body), "too_many_streams");
    // Polling still works for the one turned away.
    let (code, _) = server.status(&event, &second).await;
    assert_eq!(code, StatusCode::OK);

    // s2 has spent 3 of 3 (enter, stream, status): the next is limited.
    let (code, body) = server.status(&event, &second).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "rate_limited");
    drop(open);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_tells_open_streams_to_reconnect() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let token = token("shop", "patient");
    server.enter(&event, &token).await;
    let mut stream = server.open_stream(&event, &token, None).await;
    assert_eq!(
        stream
            .next(PATIENCE)
            .await
            .expect("event")
            .expect("open")
            .name,
        "position"
    );
    let stopping = tokio::spawn(server.stop());
    let told = stream
        .next(PATIENCE)
        .await
        .expect("event")
        .expect("reconnect");
    assert_eq!(told.name, "reconnect");
    assert_eq!(stream.next(PATIENCE).await.expect("end"), None);
    stopping.await.expect("join").expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_metrics_and_cors() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = server.client();
    server.enter(&event, &token("shop", "m1")).await;

    let health = client
        .get(format!("{}/healthz", server.ops))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client
        .get(format!("{}/readyz", server.ops))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("dropgate_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dropgate_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("dropgate_queue_length{{event=\"{event}\"}} 1")),
        "{metrics}"
    );
    assert!(metrics.contains("dropgate_sse_open_streams"), "{metrics}");

    // A client inventing methods adds no series: they are all counted as OTHER.
    for invented in ["BREW", "PROPFIND2"] {
        let answer = client
            .request(
                reqwest::Method::from_bytes(invented.as_bytes()).expect("a method"),
                format!("{}/v1/events/{event}/queue", server.base),
            )
            .send()
            .await
            .expect("an invented method");
        assert!(
            answer.status().is_client_error(),
            "{invented}: {}",
            answer.status()
        );
    }
    let metrics = server.metrics().await;
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
    assert!(
        !metrics.contains("BREW") && !metrics.contains("PROPFIND2"),
        "{metrics}"
    );

    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.queue_url(&event, ""))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let allowed = preflight("https://shop.example").await.expect("preflight");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let other = preflight("https://evil.example").await.expect("preflight");
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

/// The public port serves the API and the page only: queue lengths (unannounced
/// drops included), readiness and metrics are on the ops port, which no load balancer
/// forwards.
#[tokio::test(flavor = "multi_thread")]
async fn ops_routes_are_not_served_on_the_public_port() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    server.enter(&event, &token("shop", "ops-1")).await;
    let client = server.client();
    for path in ["/metrics", "/readyz", "/healthz"] {
        let public = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("public port answers");
        assert_eq!(public.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = public.json().await.expect("JSON error");
        assert_eq!(error_code(&body), "not_found", "{path}: {body}");
        let ops = client
            .get(format!("{}{path}", server.ops))
            .send()
            .await
            .expect("ops port answers");
        assert_eq!(ops.status(), StatusCode::OK, "{path} on the ops port");
    }
    assert!(
        server
            .metrics()
            .await
            .contains(&format!("dropgate_queue_length{{event=\"{event}\"}} 1")),
        "the ops port has the queue gauges"
    );
    let api_on_ops = client
        .post(format!("{}/v1/events/{event}/queue", server.ops))
        .bearer_auth(token("shop", "ops-2"))
        .send()
        .await
        .expect("ops port answers");
    assert_eq!(
        api_on_ops.status(),
        StatusCode::NOT_FOUND,
        "the ops port serves no API route"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_fails_when_redis_is_gone() {
    let stack = TestStack::dedicated().await.expect("stack");
    let server = ApiServer::start(&stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = server.client();
    dropgate_tools::stack::stop_component(stack.state_dir(), Component::Redis, StopMode::Crash)
        .expect("stop redis");
    let ready = client
        .get(format!("{}/readyz", server.ops))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (code, body) = server.enter(&event, &token("shop", "r1")).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_api_binary_trusts_tokens_from_dropgate_token_and_stops_on_sigterm() {
    let stack = TestStack::shared().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let mut command = std::process::Command::new(workspace_binary("queue-api").expect("built"));
    for (name, value) in stack.env.vars() {
        command.env(name, value);
    }
    let child = command
        .env("DROPGATE_API_ADDR", format!("127.0.0.1:{port}"))
        .env("DROPGATE_HEALTH_ADDR", "127.0.0.1:0")
        .env("DROPGATE_API_IP_RATE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("queue-api starts");
    let mut running = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "queue-api did not answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let output = std::process::Command::new(dropgate_binary().expect("built"))
        .args([
            "token",
            "--user",
            "cli-user",
            "--platform",
            "shop",
            "--ttl",
            "10m",
            "--state-dir",
        ])
        .arg(stack.state_dir())
        .output()
        .expect("dropgate token runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let store = dropgate_functions::queue::QueueStore::connect(&stack.env.redis())
        .await
        .expect("redis");
    let event = EventId::parse(TestStack::unique("bin")).expect("valid");
    let meta = dropgate_functions::queue::EventMeta {
        state: EventState::Open,
        rate_per_s: 10,
        abandon_timeout_ms: 120_000,
        opens_at_ms: 0,
        allowed_platforms: Vec::new(),
    };
    store.put_event_meta(&event, &meta).await.expect("meta");
    let response = client
        .post(format!("{base}/v1/events/{event}/queue"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("enter");
    assert_eq!(response.status(), StatusCode::CREATED);

    let bad_identity = std::process::Command::new(dropgate_binary().expect("built"))
        .args([
            "token",
            "--user",
            "has space",
            "--platform",
            "shop",
            "--state-dir",
        ])
        .arg(stack.state_dir())
        .output()
        .expect("dropgate token runs");
    assert_eq!(bad_identity.status.code(), Some(2));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = running.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue-api ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_to_events_that_do_not_exist_leave_nothing_behind() {
    // A Redis of its own: its command counts are this server's alone.
    let stack = TestStack::dedicated().await.expect("stack");
    let server = ApiServer::start(&stack).await.expect("queue-api starts");
    // A real event with a stream open, which the instance rightly watches.
    let event = server.open_event(1).await.expect("event");
    let (status, _) = server.enter(&event, &token("shop", "watcher")).await;
    assert_eq!(status, StatusCode::CREATED);
    let _open = server
        .open_stream(&event, &token("shop", "watcher"), None)
        .await;
    let before = server.metrics().await;
    let watched = |text: &str| metric_value(text, "dropgate_queue_watched_events");
    assert_eq!(watched(&before).as_deref(), Some("1"), "{before}");
    let ticker_reads_before = ticker_reads_per_2s(&stack).await;

    let token = token("shop", "prober");
    let mut refused = Vec::new();
    for n in 0..1_000 {
        let unknown = format!("no-such-event-{n}");
        let response = server
            .client()
            .get(format!(
                "{}/v1/events/{unknown}/queue/me/stream",
                server.base
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answers");
        refused.push(response.status());
    }
    assert!(
        refused
            .iter()
            .all(|status| *status == StatusCode::NOT_FOUND),
        "every stream to an unknown event is refused"
    );
    let after = server.metrics().await;
    assert_eq!(watched(&after), watched(&before), "{after}");
    assert!(
        !after.contains("no-such-event"),
        "no metric series for events that do not exist"
    );
    let ticker_reads_after = ticker_reads_per_2s(&stack).await;
    assert!(
        ticker_reads_after <= ticker_reads_before + 4,
        "the serving ticker reads as much of Redis as before: {ticker_reads_before} GET+HMGET per 2 s, then {ticker_reads_after}"
    );
    server.stop().await.expect("stop");
}

/// GET and HMGET calls Redis served in two seconds: the serving ticker's reads (two per
/// event it watches, every second).
async fn ticker_reads_per_2s(stack: &TestStack) -> u64 {
    let client = redis::Client::open(stack.env.redis_url.as_str()).expect("url");
    let redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let calls = || {
        let mut redis = redis.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut redis)
                .await
                .expect("INFO");
            info.lines()
                .filter(|line| {
                    line.starts_with("cmdstat_get:") || line.starts_with("cmdstat_hmget:")
                })
                .filter_map(|line| {
                    line.split("calls=")
                        .nth(1)?
                        .split(',')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum::<u64>()
        }
    };
    let start = calls().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    calls().await - start
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_newer_stream_replaces_the_older_one() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(1).await.expect("event");
    let user = token("shop", "reloader");
    let (status, _) = server.enter(&event, &user).await;
    assert_eq!(status, StatusCode::CREATED);
    let streams_open =
        || async { metric_value(&server.metrics().await, "dropgate_sse_open_streams") };

    let mut first = server.open_stream(&event, &user, None).await;
    let opening = first.next(PATIENCE).await.expect("event").expect("open");
    assert_eq!(opening.name, "position");
    // Ten more, as a script or a reloading page would open them: each replaces the
    // one before, so one stream stays open for this user.
    let mut later = Vec::new();
    for _ in 0..10 {
        let mut stream = server.open_stream(&event, &user, None).await;
        stream
            .next(PATIENCE)
            .await
            .expect("event")
            .expect("position");
        later.push(stream);
    }
    let replaced = loop {
        let event = first
            .next(PATIENCE)
            .await
            .expect("event")
            .expect("an event");
        if event.name != "position" {
            break event;
        }
    };
    assert_eq!(replaced.name, "replaced", "{replaced:?}");
    assert!(
        first.next(PATIENCE).await.expect("the end").is_none(),
        "the replaced stream ends"
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while streams_open().await.as_deref() != Some("1") {
        assert!(
            std::time::Instant::now() < deadline,
            "still {:?} streams open for one user",
            streams_open().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another user's stream is not touched.
    let other = token("shop", "neighbour");
    server.enter(&event, &other).await;
    let mut neighbour = server.open_stream(&event, &other, None).await;
    assert_eq!(
        neighbour
            .next(PATIENCE)
            .await
            .expect("event")
            .expect("open")
            .name,
        "position"
    );
    drop(later);
    server.stop().await.expect("stop");
}

/// Real events are remembered for their gauges and streams, but never without bound:
/// one instance keeps at most 1,000, forgetting the idlest first.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_remembers_a_bounded_number_of_events() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let visitor = token("shop", "tourist");
    let events: Vec<EventId> =
        futures_util::future::try_join_all((0..1_010).map(|_| server.open_event(10)))
            .await
            .expect("events");
    for chunk in events.chunks(100) {
        let entered =
            futures_util::future::join_all(chunk.iter().map(|event| server.enter(event, &visitor)))
                .await;
        for (code, body) in entered {
            assert_eq!(code, StatusCode::CREATED, "{body}");
        }
    }
    let text = server.metrics().await;
    let watched: usize = metric_value(&text, "dropgate_queue_watched_events")
        .expect("gauge")
        .parse()
        .expect("a number");
    assert_eq!(watched, 1_000, "remembered events are capped");
    let latest = events.last().expect("events");
    assert!(
        text.contains(&format!("dropgate_queue_length{{event=\"{latest}\"}} 1")),
        "the most recent event is among them"
    );
}
