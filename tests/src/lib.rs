//! The test harness: a real local stack (Redis, PostgreSQL, tansu) per test binary, on
//! free loopback ports, with a fresh database and fresh topics per test so tests run
//! in parallel without seeing each other.
//!
//! [`TestStack::shared`] starts one stack per test binary; a watchdog process tears it
//! down when the binary exits, even if a test panicked or the binary was killed.
//! [`TestStack::dedicated`] gives a test its own stack, stopped when it is dropped.

pub mod admitter;
pub mod api;
pub mod faults;
pub mod goods;
pub mod push;
pub mod relay;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use dropgate_tools::stack::{self, StackEnv, StackOptions};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};
use tokio::sync::OnceCell;

/// The migrated database new test databases are copied from. Nothing stays connected
/// to it, which `CREATE DATABASE ... TEMPLATE` requires.
const TEMPLATE_DATABASE: &str = "dropgate_template";

/// A running local stack for tests.
#[derive(Debug)]
pub struct TestStack {
    /// Addresses of the servers.
    pub env: StackEnv,
    /// Options it was started with (for restarts).
    pub options: StackOptions,
    /// Tears the stack down when this process is gone.
    watchdog: Option<Child>,
    /// Dedicated stacks stop on drop; the shared one is left to its watchdog.
    stop_on_drop: bool,
}

static SHARED: OnceCell<TestStack> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestStack {
    /// The stack shared by every test in this binary, started on first use.
    pub async fn shared() -> &'static TestStack {
        SHARED
            .get_or_init(|| async {
                Self::start(false, false, 0)
                    .await
                    .unwrap_or_else(|e| panic!("starting the test stack: {e:#}"))
            })
            .await
    }

    /// A stack of this test's own, stopped (and deleted) when dropped.
    pub async fn dedicated() -> Result<TestStack> {
        Self::start(true, false, 0).await
    }

    /// A stack of this test's own whose Redis is a cluster of `primaries`, stopped
    /// (and deleted) when dropped.
    pub async fn dedicated_cluster(primaries: u8) -> Result<TestStack> {
        Self::start(true, false, primaries).await
    }

    /// A `--tls` stack of this test's own (TLS-only servers, passwords, SASL/SCRAM
    /// behind a TLS terminator), stopped (and deleted) when dropped.
    pub async fn dedicated_tls() -> Result<TestStack> {
        Self::start(true, true, 0).await
    }

    async fn start(stop_on_drop: bool, tls: bool, redis_cluster: u8) -> Result<TestStack> {
        // Kept rather than deleted on drop: `down --purge` removes it together with
        // any PostgreSQL data placed outside it.
        let dir = tempfile::Builder::new()
            .prefix("dropgate-test-")
            .tempdir()
            .context("Failed to create a state dir")?
            .keep();
        let options = StackOptions {
            partitions: 3,
            tls,
            redis_cluster,
            ..StackOptions::new(&dir)
        };
        // The watchdog starts first, so even a failed start-up is cleaned up.
        let watchdog = spawn_watchdog(&dir)?;
        let mut quiet = |_: &str| {};
        let env = stack::up(&options, &mut quiet).await?;
        let mut admin = sqlx::PgConnection::connect(&env.database_url).await?;
        stack::create_database_if_missing(&mut admin, TEMPLATE_DATABASE, Some(stack::DATABASE))
            .await?;
        admin.close().await?;
        Ok(TestStack {
            options: StackOptions {
                state_dir: env.state_dir.clone(),
                ..options
            },
            env,
            watchdog: Some(watchdog),
            stop_on_drop,
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.env.state_dir
    }

    /// A unique name for this test run: `<prefix>-<pid>-<n>`.
    pub fn unique(prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A fresh, migrated database of this test's own, and its URL.
    pub async fn fresh_database(&self) -> Result<(PgPool, String)> {
        let name = Self::unique("t").replace('-', "_");
        let mut admin = sqlx::PgConnection::connect(&self.env.database_url).await?;
        stack::create_database_if_missing(&mut admin, &name, Some(TEMPLATE_DATABASE)).await?;
        admin.close().await?;
        let url = replace_database(&self.env.database_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .with_context(|| format!("Failed to connect to {name}"))?;
        Ok((pool, url))
    }

    /// Fresh topics for this test: returns (waiting-queue, result-notification) names.
    pub fn fresh_topics(&self, partitions: u32) -> Result<(String, String)> {
        let prefix = Self::unique("t");
        let waiting = format!("{prefix}-waiting-queue");
        let results = format!("{prefix}-result-notification");
        for topic in [&waiting, &results] {
            stack::create_topic(self.state_dir(), topic, partitions)?;
        }
        Ok((waiting, results))
    }

    /// One fresh topic named after `purpose` (e.g. a test's own dead-letter topic).
    pub fn fresh_topic(&self, purpose: &str, partitions: u32) -> Result<String> {
        let topic = format!("{}-{purpose}", Self::unique("t"));
        stack::create_topic(self.state_dir(), &topic, partitions)?;
        Ok(topic)
    }

    /// Reads `topic` from the start until `expected` dead letters arrived (or
    /// `patience` ran out), then a moment longer to catch any more.
    pub async fn dead_letters(
        &self,
        topic: &str,
        expected: usize,
        patience: std::time::Duration,
    ) -> Vec<dropgate_functions::dead_letter::DeadLetter> {
        use rdkafka::consumer::{Consumer as _, StreamConsumer};
        use rdkafka::message::Message as _;
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.env.kafka_brokers)
            .set("group.id", Self::unique("dead-letter-reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let deadline = std::time::Instant::now() + patience;
        let mut quiet_until: Option<std::time::Instant> = None;
        let mut letters = Vec::new();
        while std::time::Instant::now() < deadline
            && quiet_until.is_none_or(|until| std::time::Instant::now() < until)
        {
            if let Ok(Ok(message)) =
                tokio::time::timeout(std::time::Duration::from_millis(300), consumer.recv()).await
            {
                letters.push(
                    serde_json::from_slice(message.payload().unwrap_or_default())
                        .expect("a dead letter"),
                );
                if letters.len() >= expected && quiet_until.is_none() {
                    quiet_until =
                        Some(std::time::Instant::now() + std::time::Duration::from_secs(1));
                }
            }
        }
        letters
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let _ = stack::down(&self.env.state_dir, true);
            if let Some(mut watchdog) = self.watchdog.take() {
                let _ = watchdog.kill();
                let _ = watchdog.wait();
            }
        }
    }
}

/// `url` naming `database` instead, its query (sslmode, sslrootcert) kept.
fn replace_database(url: &str, database: &str) -> String {
    let (address, query) = match url.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (url, None),
    };
    let address = match address.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}"),
        None => address.to_owned(),
    };
    match query {
        Some(query) => format!("{address}?{query}"),
        None => address,
    }
}

/// The `stack-watchdog` binary next to this test binary's directory
/// (`target/<profile>/deps/..`), built by cargo for this package's tests.
fn watchdog_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?;
    let binary = profile_dir.join("stack-watchdog");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: run the tests through cargo test -p dropgate-tests",
        binary.display()
    );
    Ok(binary)
}

fn spawn_watchdog(state_dir: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt as _;
    Command::new(watchdog_binary()?)
        .arg(state_dir)
        .arg(std::process::id().to_string())
        // A process group of its own: a signal to the tests' group (`timeout`, a CI
        // job cancelled, Ctrl-C) kills the tests but not the one that cleans up
        // after them.
        .process_group(0)
        .spawn()
        .context("Failed to start the stack watchdog")
}

/// The `dropgate` binary of this build (`target/<profile>/dropgate`).
pub fn dropgate_binary() -> Result<PathBuf> {
    workspace_binary("dropgate")
}

/// A binary of this workspace's build (`target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?
        .join(name);
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        binary.display()
    );
    Ok(binary)
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing
/// running.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The wall clock, as the services read it.
pub mod clock {
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Now, in Unix seconds.
    pub fn now_s() -> u64 {
        now_ms() / 1000
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is past 1970")
            .as_millis() as u64
    }
}

/// Whether `pid` is a live process (not a zombie awaiting its parent).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z") | Some("X")
        )
    })
}

/// `verifier/dropgate_verify.py drop` on `data`: its exit code (0 pass, 2 findings)
/// and finding kinds, through the same runner `dropgate demo` uses.
pub fn independent_verdict(data: &serde_json::Value) -> (Option<i32>, Vec<String>) {
    let verdict = dropgate_tools::independent::verify(data).expect("the independent verifier runs");
    (Some(if verdict.passed { 0 } else { 2 }), verdict.kinds)
}
