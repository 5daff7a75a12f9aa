//! tansu, the Kafka-protocol broker of the local stack. With `sqlite://` storage the
//! log and committed offsets live in a file in `<state>/broker` and survive a restart.
//! tansu creates no topic by itself (producing to a missing topic hangs), so `up`
//! creates the topics before anything produces.
//!
//! On a `--tls` stack tansu requires SASL/SCRAM authentication and listens on an
//! internal port behind a TLS terminator ([`super::broker_tls`]), advertising the
//! terminator's port. Its own tools cannot authenticate, so the topics and the SCRAM
//! user are made once, by a first run without authentication.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use nix::sys::signal::Signal;

use super::process::{self, is_running, spawn_detached};
use super::{BrokerStorage, StackOptions};

/// The topics every stack has: admissions, results, unreadable messages, and each
/// batch's winners.
pub const TOPICS: [&str; 4] = [
    "waiting-queue",
    "result-notification",
    "dead-letter",
    "winners",
];

/// The SCRAM user the functions authenticate as on a `--tls` stack.
pub const KAFKA_USER: &str = "dropgate";

/// Starts tansu on `port`. With `authenticated_behind`, it requires SASL and
/// advertises that port (the TLS terminator's) instead of its own.
pub(crate) fn start(
    options: &StackOptions,
    port: u16,
    authenticated_behind: Option<u16>,
) -> Result<u32> {
    let dir = options.state_dir.join("broker");
    std::fs::create_dir_all(&dir)?;
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{}", authenticated_behind.unwrap_or(port));
    let storage = match options.broker_storage {
        // Relative to the working directory, which is the broker's own dir.
        BrokerStorage::Sqlite => "sqlite://tansu.db".to_owned(),
        BrokerStorage::Memory => "memory://tansu/".to_owned(),
    };
    let mut command = Command::new(&options.tansu);
    command
        .current_dir(&dir)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &advertised])
        .args(["--storage-engine", &storage])
        // DROPGATE_BROKER_LOG (a RUST_LOG filter) turns the broker's own logs up when
        // a consumer group misbehaves, e.g. `tansu_broker::coordinator=debug`.
        .env(
            "RUST_LOG",
            std::env::var("DROPGATE_BROKER_LOG").unwrap_or_else(|_| "warn".to_owned()),
        );
    if authenticated_behind.is_some() {
        command.arg("--authentication");
    }
    spawn_detached(command, &options.log_file("broker"))
}

/// Makes the topics and the SCRAM user of a `--tls` stack: tansu runs once without
/// authentication on `port`, is told both, and is stopped again.
pub(crate) fn bootstrap(
    options: &StackOptions,
    port: u16,
    partitions: u32,
    password: &str,
) -> Result<()> {
    let pid = start(options, port, None)?;
    let made = (|| {
        for topic in TOPICS {
            create_topic(options, pid, port, topic, partitions)?;
        }
        create_user(options, port, password)
    })();
    process::stop(pid, "tansu", Signal::SIGTERM, Duration::from_secs(20));
    made
}

fn create_user(options: &StackOptions, port: u16, password: &str) -> Result<()> {
    let output = Command::new(&options.tansu)
        .args(["user", "create", KAFKA_USER, password])
        .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
        .args(["--mechanism", "scram512"])
        .env("RUST_LOG", "error")
        .output()
        .with_context(|| format!("Failed to run {}", options.tansu.display()))?;
    if !output.status.success() {
        bail!(
            "could not create the broker's SCRAM user: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Creates `topic` with `partitions` partitions, retrying until the broker answers
/// (this doubles as the readiness check). An existing topic is fine.
pub(crate) fn create_topic(
    options: &StackOptions,
    pid: u32,
    port: u16,
    topic: &str,
    partitions: u32,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let broker = format!("tcp://127.0.0.1:{port}");
    loop {
        let output = Command::new(&options.tansu)
            .args(["topic", "create", topic, "--broker", &broker])
            .args(["--partitions", &partitions.to_string()])
            .env("RUST_LOG", "error")
            .output()
            .with_context(|| format!("Failed to run {}", options.tansu.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success()
            || text.contains("already exists")
            || text.contains("TopicAlreadyExists")
        {
            return Ok(());
        }
        if !is_running(pid, "tansu") {
            bail!(
                "the broker exited during start-up; see {}",
                options.log_file("broker").display()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "could not create topic {topic} on {broker}: {}",
                text.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
