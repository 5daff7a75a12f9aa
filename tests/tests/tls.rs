//! The deployed connection paths on this machine: a `--tls` stack (Redis TLS-only with
//! a password, PostgreSQL TLS-only, the broker with SASL/SCRAM behind a TLS
//! terminator, all signed by a throwaway CA) carries a whole drop with every function
//! as a process, and refuses every client that would connect in the clear, trust
//! another CA or bring the wrong password.
//!
//! Needs the function binaries: `cargo build -p dropgate-functions --bins`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dropgate_functions::config::{DatabaseArgs, KafkaArgs, RedisArgs, Secret, TlsVerify};
use dropgate_tests::faults::{self, DropPlan, Fault};
use dropgate_tests::{TestStack, workspace_binary};
use dropgate_tools::stack::certs;
use dropgate_tools::stack::{Component, StopMode};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

/// A drop of a few thousand users through the real HTTP API, every function a
/// process, on the TLS stack: the usual invariants hold (winners <= stock, one draw
/// per user, every user final in the API and the database alike, FIFO admission,
/// verify), with a goods-worker killed mid-drop so a fresh process must connect
/// through every TLS and SASL check again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drop_on_the_tls_stack_keeps_every_invariant() {
    faults::run(
        Fault::Kill("goods-worker-1"),
        DropPlan {
            tls: true,
            ..DropPlan::default()
        },
    )
    .await;
}

/// The broker crashes mid-drop behind its TLS terminator and comes back with
/// authentication on: every client reconnects through TLS and SASL again, and the
/// invariants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drop_on_the_tls_stack_survives_a_broker_crash() {
    faults::run(
        Fault::Restart(Component::Broker, StopMode::Crash),
        DropPlan {
            tls: true,
            ..DropPlan::default()
        },
    )
    .await;
}

/// Another CA (with its own server certificate) that the stack's servers never used.
fn foreign_ca(dir: &Path) -> PathBuf {
    let (ca, _, _) = certs::generate("somebody else's CA").expect("a CA");
    let path = dir.join("foreign-ca.pem");
    std::fs::write(&path, ca).expect("write the CA");
    path
}

fn port_of(url: &str) -> u16 {
    let after_host = url.rsplit_once(':').expect("a port").1;
    after_host
        .split(['/', '?'])
        .next()
        .and_then(|port| port.parse().ok())
        .expect("a numeric port")
}

/// What a plaintext client (`redis-cli -p <port> ping`) gets from the TLS port.
fn plaintext_ping(port: u16) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return "refused".to_owned();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.write_all(b"PING\r\n");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

async fn redis_ping(args: &RedisArgs) -> anyhow::Result<String> {
    let client = args.client()?;
    let mut connection = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await??;
    Ok(redis::cmd("PING").query_async(&mut connection).await?)
}

async fn postgres_select(args: &DatabaseArgs) -> anyhow::Result<i32> {
    let pool = args.pool(1).await?;
    let one = sqlx::query_scalar("select 1").fetch_one(&pool).await?;
    pool.close().await;
    Ok(one)
}

fn kafka_metadata(args: &KafkaArgs) -> anyhow::Result<usize> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("log_level", "2");
    args.security.apply(&mut config)?;
    let client: BaseConsumer = config.create()?;
    let metadata = client.fetch_metadata(None, Duration::from_secs(5))?;
    Ok(metadata.topics().len())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tls_stack_refuses_plaintext_foreign_cas_and_wrong_passwords() {
    let stack = TestStack::dedicated_tls().await.expect("a --tls stack");
    let env = &stack.env;
    let dir = tempfile::tempdir().expect("temp dir");
    let foreign = foreign_ca(dir.path());
    dropgate_functions::tls::install_crypto_provider();

    // Redis: the stack's own settings work; plaintext, a foreign CA and a wrong
    // password do not.
    assert_eq!(
        redis_ping(&env.redis()).await.expect("TLS + CA + AUTH"),
        "PONG"
    );
    let redis_port = port_of(&env.redis_url);
    let plain = plaintext_ping(redis_port);
    assert!(
        !plain.contains("PONG"),
        "a plaintext PING was answered: {plain:?}"
    );
    let error = redis_ping(&RedisArgs::url(format!("redis://127.0.0.1:{redis_port}/0")))
        .await
        .expect_err("plaintext refused");
    assert!(!format!("{error:#}").contains("PONG"));
    let error = redis_ping(&RedisArgs {
        ca_file: Some(foreign.clone()),
        ..env.redis()
    })
    .await
    .expect_err("a server signed by another CA is not trusted");
    assert!(
        format!("{error:#}").to_lowercase().contains("certificate"),
        "{error:#}"
    );
    // Not checking the name still checks the chain: the stack's CA passes, a foreign
    // one does not.
    let chain_only = RedisArgs {
        verify: TlsVerify::Ca,
        ..env.redis()
    };
    assert_eq!(redis_ping(&chain_only).await.expect("chain only"), "PONG");
    redis_ping(&RedisArgs {
        ca_file: Some(foreign.clone()),
        ..chain_only
    })
    .await
    .expect_err("a foreign CA is refused even without the name check");
    let error = redis_ping(&RedisArgs {
        url: Secret::new(format!("rediss://:wrong@127.0.0.1:{redis_port}/0")),
        ..env.redis()
    })
    .await
    .expect_err("a wrong password is refused");
    let error = format!("{error:#}");
    assert!(
        error.contains("AuthenticationFailed") || error.contains("WRONGPASS"),
        "{error}"
    );

    // PostgreSQL: verify-full with the stack's CA works; plaintext and a foreign CA
    // do not.
    assert_eq!(postgres_select(&env.database()).await.expect("TLS + CA"), 1);
    let pg_port = port_of(&env.database_url);
    let password = env
        .database_url
        .split_once("dropgate:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(password, _)| password.to_owned())
        .expect("a password in the URL");
    let plain_url =
        format!("postgres://dropgate:{password}@127.0.0.1:{pg_port}/dropgate?sslmode=disable");
    let error = postgres_select(&DatabaseArgs::url(plain_url))
        .await
        .expect_err("plaintext refused");
    assert!(format!("{error:#}").contains("no encryption"), "{error:#}");
    let foreign_url =
        format!("postgres://dropgate:{password}@127.0.0.1:{pg_port}/dropgate?sslmode=verify-full");
    let error = postgres_select(&DatabaseArgs {
        ca_file: Some(foreign.clone()),
        ..DatabaseArgs::url(foreign_url)
    })
    .await
    .expect_err("a server signed by another CA is not trusted");
    assert!(
        format!("{error:#}").to_lowercase().contains("certificate"),
        "{error:#}"
    );

    // The broker: SCRAM over TLS with the stack's CA works; a wrong password, a
    // foreign CA and plaintext through the terminator do not.
    assert!(kafka_metadata(&env.kafka()).expect("SASL_SSL + SCRAM") >= 2);
    let mut wrong_password = env.kafka();
    wrong_password.security.password = Some(Secret::new("wrong".to_owned()));
    let error = kafka_metadata(&wrong_password).expect_err("a wrong password is refused");
    let mut foreign_trust = env.kafka();
    foreign_trust.security.ca_file = Some(foreign.clone());
    kafka_metadata(&foreign_trust).expect_err("a foreign CA is refused");
    let plaintext = KafkaArgs {
        security: Default::default(),
        ..env.kafka()
    };
    kafka_metadata(&plaintext).expect_err("plaintext refused");
    eprintln!("wrong SASL password: {error:#}");
}

/// A function told to require TLS, or given a CA it cannot use, does not start: it
/// exits at once with one sentence naming the setting, and never falls back to
/// plaintext.
#[tokio::test(flavor = "multi_thread")]
async fn functions_refuse_to_start_on_an_unverified_connection() {
    let stack = TestStack::shared().await;
    let env = &stack.env;
    let dir = tempfile::tempdir().expect("temp dir");
    let foreign = foreign_ca(dir.path());
    let run = |binary: &str, extra: &[(&str, &str)]| {
        let mut command = Command::new(workspace_binary(binary).expect("built"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (name, value) in env.vars() {
            command.env(name, value);
        }
        command.env("DROPGATE_HEALTH_ADDR", "127.0.0.1:0");
        command.env("DROPGATE_API_ADDR", "127.0.0.1:0");
        for (name, value) in extra {
            command.env(name, value);
        }
        let output = command.output().expect("runs");
        assert!(!output.status.success(), "{binary} started: {output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let foreign = foreign.to_string_lossy().into_owned();
    for (binary, extra, named) in [
        (
            "queue-api",
            vec![("DROPGATE_REQUIRE_TLS", "true")],
            "DROPGATE_REDIS_URL is not rediss://",
        ),
        (
            "admitter",
            vec![("DROPGATE_REDIS_CA_FILE", foreign.as_str())],
            "DROPGATE_REDIS_CA_FILE is set but DROPGATE_REDIS_URL is not rediss://",
        ),
        (
            "goods-worker",
            vec![("DROPGATE_REQUIRE_TLS", "true")],
            "DATABASE_URL has sslmode=prefer",
        ),
        (
            "goods-worker",
            vec![("DROPGATE_DATABASE_CA_FILE", "/nonexistent/ca.pem")],
            "DROPGATE_DATABASE_CA_FILE: cannot read",
        ),
        (
            "result-relay",
            vec![("DROPGATE_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
            "DROPGATE_KAFKA_SASL_MECHANISM is not set",
        ),
    ] {
        let stderr = run(binary, &extra);
        assert!(stderr.contains(named), "{binary} {extra:?}: {stderr}");
        assert_eq!(
            stderr.matches("panicked").count(),
            0,
            "{binary} panicked: {stderr}"
        );
    }
}
