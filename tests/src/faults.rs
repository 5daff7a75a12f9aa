//! The fault-injection harness: a drop of a few thousand simulated users against the
//! four functions running as real processes on a stack of the test's own, one fault
//! struck mid-drop, and every invariant of docs/architecture.md checked once the drop is over.
//!
//! A fault is struck from a task that watches the event's row in PostgreSQL until a
//! (randomly chosen) number of users has been drawn, and the stock is not gone yet,
//! so it really lands mid-drop. The seed of those choices is printed with the summary;
//! `DROPGATE_FAULT_SEED=<n>` replays them.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dropgate_core::{EventId, EventState};
use dropgate_functions::queue::QueueStore;
use dropgate_tools::demo::{self, DemoArgs, Report, Verdict};
use dropgate_tools::events;
use dropgate_tools::stack::functions::{self, FunctionsOptions};
use dropgate_tools::stack::{self, Component, StopMode};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;

use crate::{TestStack, workspace_binary};

/// The one fault of a run.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `kill -9` one function instance (`queue-api`, `admitter`, `goods-worker-1`,
    /// `result-relay`), leave it dead for a random moment, then start it again on the
    /// same port.
    Kill(&'static str),
    /// Stop one server of the stack (`Crash` = SIGKILL) and start it again on the same
    /// port with the same data.
    Restart(Component, StopMode),
    /// The operator closes the event (`dropgate event close`: PostgreSQL, then the
    /// Redis mirror).
    Close,
    /// The operator closes the event but the Redis mirror write never happens (no
    /// `DROPGATE_REDIS_URL`, or Redis refused it): PostgreSQL alone knows.
    CloseWithoutMirror,
    /// The event's `closes_at` comes due: nobody acts, the admitter closes it.
    ClosesAtDue,
    /// Redis comes back from a crash with the data of a copy of its AOF taken this
    /// long before: the acknowledged writes since are lost, as in a failover to an
    /// asynchronous replica or a restore from periodic persistence.
    RedisRolledBack(Duration),
    /// Redis comes back empty (`FLUSHALL`): every queue, record and counter gone.
    RedisEmptied,
    /// Redis fails over to an asynchronous replica: a real `redis-server --replicaof`
    /// follows the primary under load, the primary is killed, the replica promoted
    /// with whatever it had received, and its data served at the primary's address
    /// (as Memorystore's failover keeps the endpoint).
    RedisFailover,
    /// On a Redis Cluster: `kill -9` the primary that holds the (first) event's slot
    /// and start it again with its AOF; the other primaries, and the events on them,
    /// carry on.
    RedisPrimaryCrashed,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill(name) => write!(f, "kill -9 {name}"),
            Fault::Restart(component, StopMode::Crash) => {
                write!(f, "crash-restart {}", component.name())
            }
            Fault::Restart(component, StopMode::Graceful) => {
                write!(f, "restart {}", component.name())
            }
            Fault::Close => f.write_str("event close"),
            Fault::CloseWithoutMirror => f.write_str("event close without the Redis mirror"),
            Fault::ClosesAtDue => f.write_str("closes_at due"),
            Fault::RedisRolledBack(behind) => {
                write!(f, "Redis rolled back {:.1} s", behind.as_secs_f64())
            }
            Fault::RedisEmptied => f.write_str("Redis emptied"),
            Fault::RedisFailover => f.write_str("Redis failed over to its replica"),
            Fault::RedisPrimaryCrashed => f.write_str("crash-restart the event's Redis primary"),
        }
    }
}

/// The shape of the drop.
#[derive(Debug, Clone)]
pub struct DropPlan {
    /// Simulated users.
    pub users: u32,
    /// Units for sale.
    pub stock: u32,
    /// Win probability.
    pub win_probability: f64,
    /// Admissions per second: sets how long the draw phase lasts (about
    /// `stock / win_probability / rate` seconds).
    pub rate: u32,
    /// goods-worker instances.
    pub goods_workers: u32,
    /// The fault strikes once this share (drawn from the range) of the users expected to
    /// be drawn before the stock runs out (`stock / win_probability`) is decided.
    pub strike_at: (f64, f64),
    /// How long a killed function stays dead before it is started again: drawn from
    /// this range (ms).
    pub down_ms: (u64, u64),
    /// How long the crowd may take in all.
    pub timeout: Duration,
    /// Run on a `--tls` stack: every connection encrypted, verified and
    /// authenticated, as deployed.
    pub tls: bool,
    /// Run on a Redis Cluster of this many primaries (0: one Redis).
    pub redis_cluster: u8,
    /// Events on sale at once, each with its own crowd of `users`; on a cluster each
    /// on another primary (as far as there are primaries). The fault strikes when the
    /// first has drawn enough.
    pub events: usize,
}

impl Default for DropPlan {
    fn default() -> Self {
        Self {
            users: 2_500,
            stock: 60,
            win_probability: 0.1,
            rate: 100,
            goods_workers: 2,
            strike_at: (0.15, 0.6),
            down_ms: (200, 1_500),
            timeout: Duration::from_secs(90),
            tls: false,
            redis_cluster: 0,
            events: 1,
        }
    }
}

/// When and how the fault struck.
#[derive(Debug, Clone)]
struct Strike {
    /// Seconds after the crowd started.
    at_s: f64,
    /// Users drawn when it struck.
    decided: u64,
    /// Stock left when it struck (> 0: mid-drop).
    stock_left: u32,
    /// Time the struck part was away (killed to ready again).
    outage: Duration,
}

/// Copies the stack's logs out before the stack (and its state dir) is purged, when a
/// test fails, and says where they went.
struct LogsOnFailure {
    state_dir: PathBuf,
    label: String,
}

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        // DROPGATE_FAULT_KEEP_LOGS keeps them after a passing run too, to read how a
        // part got through the fault.
        if !std::thread::panicking() && std::env::var_os("DROPGATE_FAULT_KEEP_LOGS").is_none() {
            return;
        }
        let target = std::env::temp_dir().join(format!("dropgate-fault-logs-{}", self.label));
        let copied = copy_dir(&self.state_dir.join("logs"), &target);
        let mut stderr = std::io::stderr();
        let _ = match copied {
            Ok(()) => writeln!(
                stderr,
                "faults: logs of the run kept in {}",
                target.display()
            ),
            Err(e) => writeln!(stderr, "faults: could not keep the logs: {e:#}"),
        };
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Runs a whole drop with `fault` struck mid-drop, checks every invariant (panicking
/// with the evidence if one fails) and prints a one-line summary.
pub async fn run(fault: Fault, plan: DropPlan) {
    let started = Instant::now();
    let seed = std::env::var("DROPGATE_FAULT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let stack = if plan.tls {
        TestStack::dedicated_tls().await
    } else if plan.redis_cluster > 0 {
        TestStack::dedicated_cluster(plan.redis_cluster).await
    } else {
        TestStack::dedicated().await
    }
    .expect("a stack of the test's own");
    let store = QueueStore::connect(&stack.env.redis())
        .await
        .expect("Redis");
    let events = event_names(&store, plan.events).await.expect("event names");
    let event = events[0].clone();
    let _logs = LogsOnFailure {
        state_dir: stack.state_dir().to_path_buf(),
        label: event.clone(),
    };
    let options = FunctionsOptions {
        state_dir: stack.state_dir().to_path_buf(),
        bin_dir: workspace_binary("queue-api")
            .expect("build the function binaries first: cargo build -p dropgate-functions --bins")
            .parent()
            .expect("the binary has a directory")
            .to_path_buf(),
        goods_workers: plan.goods_workers,
    };
    let mut quiet = |_: &str| {};
    functions::up(&options, &stack.env, &mut quiet)
        .await
        .expect("the four functions start as processes");
    let api_url = functions::api_url(stack.state_dir()).expect("queue-api runs");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.env.database_url)
        .await
        .expect("PostgreSQL");
    let event_id = EventId::parse(event.as_str()).expect("a valid event id");

    let expected_draws = f64::from(plan.stock) / plan.win_probability;
    let strike_after = (expected_draws * rng.random_range(plan.strike_at.0..plan.strike_at.1))
        .round()
        .max(1.0) as u64;
    let down = Duration::from_millis(rng.random_range(plan.down_ms.0..=plan.down_ms.1));

    let args = DemoArgs {
        api_url: Some(api_url.clone()),
        database: stack.env.database(),
        redis: stack.env.redis(),
        seed_key: stack.env.seed_key_args(),
        state_dir: stack.state_dir().to_path_buf(),
        users: plan.users,
        stock: plan.stock,
        win_probability: plan.win_probability,
        rate: plan.rate,
        sse_share: 0.5,
        concurrency: 512 / plan.events.max(1) as u32,
        event: Some(event.clone()),
        report_dir: None,
        timeout: plan.timeout,
    };

    // A small drop through the whole pipeline first, so the goods-workers have joined
    // their group before the crowds start. Otherwise the admissions of the first
    // seconds wait for the join and are drawn in one batch: the count the fault waits
    // for can then jump from nothing past the stock, and the fault strikes after the
    // sale instead of during it.
    demo::run(&DemoArgs {
        users: 20,
        stock: 2,
        win_probability: 0.5,
        event: Some(TestStack::unique("warmup")),
        ..args.clone()
    })
    .await
    .expect("a warm-up drop through the whole pipeline");

    let (crowd_done, crowd_done_rx) = watch::channel(false);
    // On a thread of its own: restarts wait synchronously, and their progress callbacks
    // are not `Send`.
    let runtime = tokio::runtime::Handle::current();
    let striker = {
        let (stack_options, options, env) =
            (stack.options.clone(), options.clone(), stack.env.clone());
        let (pool, event_id) = (pool.clone(), event_id.clone());
        tokio::task::spawn_blocking(move || {
            runtime.block_on(strike(
                fault,
                stack_options,
                options,
                env,
                pool,
                event_id,
                strike_after,
                down,
                crowd_done_rx,
            ))
        })
    };
    let crowd_started = Instant::now();
    // Every event's crowd at once, each through the same functions.
    let crowds = events.iter().map(|name| {
        let args = DemoArgs {
            event: Some(name.clone()),
            ..args.clone()
        };
        async move { demo::run(&args).await }
    });
    let mut reports = futures_util::future::join_all(crowds).await;
    let report = reports.remove(0);
    let _ = crowd_done.send(true);
    let strike = striker
        .await
        .expect("the fault task ran")
        .unwrap_or_else(|e| panic!("{fault}: the fault could not be struck: {e:#}"));
    let report = report.unwrap_or_else(|e| panic!("{fault}: the crowd failed: {e:#}"));
    let crowd_s = crowd_started.elapsed().as_secs_f64();
    let Some(strike) = strike else {
        panic!(
            "{fault}: the drop ended before {strike_after} users were drawn, so the fault never struck\n{}",
            report.summary()
        );
    };
    assert!(
        strike.stock_left > 0,
        "{fault} struck after the stock was gone ({} drawn): not mid-drop",
        strike.decided
    );

    // Everything still runs: restarted parts came back and nothing else died.
    for instance in functions::load(stack.state_dir()).expect("functions.json") {
        assert!(
            functions::is_running(&instance),
            "{fault}: {} is not running at the end",
            instance.name
        );
    }

    let checked = check(&report, &pool, &store, &event_id)
        .await
        .unwrap_or_else(|e| panic!("{fault}: {e:#}\n{}", report.summary()));
    // The events on sale next to it (on other primaries of a cluster) hold every
    // invariant too.
    for (name, other) in events.iter().skip(1).zip(reports) {
        let other = other.unwrap_or_else(|e| panic!("{fault}: the crowd of {name} failed: {e:#}"));
        let other_id = EventId::parse(name.as_str()).expect("a valid event id");
        check(&other, &pool, &store, &other_id)
            .await
            .unwrap_or_else(|e| panic!("{fault}, event {name}: {e:#}\n{}", other.summary()));
    }

    let line = format!(
        "faults: {fault} at {:.1} s ({} drawn, stock {} left, away {:.1} s): {} users, \
         {} entered (+{} refused at the door), won {}/{}, lost {}, sold_out {}, expired {}, closed {}; \
         {} draws; {} API states checked; {} retries, {} stream reconnects; verify pass; \
         crowd {crowd_s:.1} s, test {:.1} s (seed {seed})",
        strike.at_s,
        strike.decided,
        strike.stock_left,
        strike.outage.as_secs_f64(),
        report.users,
        report.entered,
        report.sold_out_at_entry + report.closed_at_entry,
        report.won,
        report.stock_total,
        report.lost,
        report.sold_out,
        report.expired,
        report.closed,
        checked.draws,
        checked.api_states,
        report.retries,
        report.reconnects,
        started.elapsed().as_secs_f64(),
    );
    // Straight to stderr, past the test harness's capture: one line per test.
    let _ = writeln!(std::io::stderr(), "{line}");
    pool.close().await;
}

/// Waits until `strike_after` users are drawn (or the crowd is done: then `None`),
/// then strikes `fault` and brings the struck part back.
#[allow(clippy::too_many_arguments)]
async fn strike(
    fault: Fault,
    stack_options: stack::StackOptions,
    options: FunctionsOptions,
    env: stack::StackEnv,
    pool: PgPool,
    event: EventId,
    strike_after: u64,
    down: Duration,
    mut crowd_done: watch::Receiver<bool>,
) -> Result<Option<Strike>> {
    let started = Instant::now();
    let (decided, stock_left) = loop {
        if *crowd_done.borrow() {
            return Ok(None);
        }
        let row: Option<(i64, i32)> =
            sqlx::query_as("select decisions_made, stock_left from events where event_id = $1")
                .bind(event.as_str())
                .fetch_optional(&pool)
                .await
                .context("reading the event's progress")?;
        if let Some((decided, stock_left)) = row
            && decided as u64 >= strike_after
        {
            break (decided as u64, stock_left as u32);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(25)) => {}
            _ = crowd_done.changed() => {}
        }
    };
    let at_s = started.elapsed().as_secs_f64();
    let struck = Instant::now();
    let mut quiet = |_: &str| {};
    match fault {
        Fault::Kill(name) => {
            let dir = options.state_dir.clone();
            let name = name.to_owned();
            let killed =
                tokio::task::spawn_blocking(move || functions::stop(&dir, &name, true)).await??;
            if !killed {
                bail!("{fault}: it was not running");
            }
            tokio::time::sleep(down).await;
            functions::up(&options, &env, &mut quiet)
                .await
                .with_context(|| format!("{fault}: restarting it"))?;
        }
        Fault::Restart(component, mode) => {
            stack::restart_component(&stack_options, component, mode, &mut quiet)
                .await
                .with_context(|| format!("{fault}: restarting it"))?;
        }
        Fault::Close | Fault::CloseWithoutMirror => {
            let record = events::transition(&pool, &event, EventState::Closing).await?;
            if matches!(fault, Fault::Close) {
                let store = QueueStore::connect(&env.redis()).await?;
                events::mirror(&store, &record).await?;
            }
        }
        Fault::ClosesAtDue => {
            sqlx::query("update events set closes_at = now() where event_id = $1")
                .bind(event.as_str())
                .execute(&pool)
                .await?;
        }
        Fault::RedisRolledBack(behind) => {
            let redis_dir = options.state_dir.join("redis");
            let aof = redis_dir.join("appendonlydir");
            let older = redis_dir.join("appendonlydir-older");
            // The worst copy to lose writes to holds users admitted whose results land
            // only after it: the relay commits those results, so nothing in Kafka
            // brings them back. The draw is held while the copy is taken so there are
            // many such users, not the few milliseconds' worth a fast draw leaves.
            {
                let _held = HeldDraw::hold(&options.state_dir)?;
                tokio::time::sleep(DRAW_HELD).await;
                copy_dir(&aof, &older).context("copying the AOF")?;
            }
            tokio::time::sleep(behind).await;
            stack::restart_component_with(
                &stack_options,
                Component::Redis,
                StopMode::Crash,
                |_| {
                    std::fs::remove_dir_all(&aof)?;
                    std::fs::rename(&older, &aof)?;
                    Ok(())
                },
                &mut quiet,
            )
            .await
            .with_context(|| format!("{fault}: restarting it"))?;
        }
        Fault::RedisFailover => {
            let mut replica = Replica::start(&options.state_dir, &env.redis_url).await?;
            tokio::time::sleep(down).await;
            let redis_dir = options.state_dir.join("redis");
            stack::restart_component_with(
                &stack_options,
                Component::Redis,
                StopMode::Crash,
                |_| replica.promote_into(&redis_dir),
                &mut quiet,
            )
            .await
            .with_context(|| format!("{fault}: serving the replica"))?;
        }
        Fault::RedisPrimaryCrashed => {
            let store = QueueStore::connect(&env.redis()).await?;
            let holder = primary_of(&store, &event).await?;
            let state = stack::StackState::load(&options.state_dir)?;
            let index = (0..state.redis_node_count())
                .find(|&index| state.redis_node(index).map(|node| node.port) == Some(holder))
                .with_context(|| format!("no stack node listens on {holder}"))?;
            stack::restart_redis_node(
                &stack_options,
                index,
                StopMode::Crash,
                |_| {
                    std::thread::sleep(down);
                    Ok(())
                },
                &mut quiet,
            )
            .await
            .with_context(|| format!("{fault}: restarting node {index}"))?;
        }
        Fault::RedisEmptied => {
            let mut redis = redis::Client::open(env.redis_url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            let _: () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;
        }
    }
    Ok(Some(Strike {
        at_s,
        decided,
        stock_left,
        outage: struck.elapsed(),
    }))
}

/// `count` new event names; on a cluster, each held by another primary as far as
/// there are primaries, so the events of one run really spread over the cluster.
async fn event_names(store: &QueueStore, count: usize) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut primaries = Vec::new();
    let mut tries = 0;
    while names.len() < count {
        let name = TestStack::unique("fault");
        let event = EventId::parse(name.as_str())?;
        let primary = primary_of(store, &event).await?;
        tries += 1;
        // A single Redis is every event's primary; a cluster gets spread first.
        if !primaries.contains(&primary) || tries > 200 {
            primaries.push(primary);
            names.push(name);
        }
    }
    Ok(names)
}

/// The port of the Redis process holding `event`'s keys: the only one, or the
/// primary of the event's slot in a cluster.
async fn primary_of(store: &QueueStore, event: &EventId) -> Result<u16> {
    let mut redis = store.connection();
    let key = dropgate_functions::queue::EventKeys::new(event).meta();
    // Routed by the key, so a cluster answers from the event's primary.
    let port: u16 = redis::cmd("EVAL")
        .arg("return string.match(redis.call('INFO', 'server'), 'tcp_port:(%d+)')")
        .arg(1)
        .arg(&key)
        .query_async(&mut redis)
        .await
        .context("asking the event's primary its port")?;
    Ok(port)
}

/// How long the draw is held before the AOF copy of a rollback.
const DRAW_HELD: Duration = Duration::from_millis(600);

/// The goods-workers stopped with SIGSTOP (admissions pile up in flight), continued
/// when dropped.
struct HeldDraw {
    pids: Vec<nix::unistd::Pid>,
}

impl HeldDraw {
    fn hold(state_dir: &Path) -> Result<Self> {
        let pids: Vec<nix::unistd::Pid> = functions::load(state_dir)?
            .iter()
            .filter(|instance| instance.name.starts_with("goods-worker"))
            .map(|instance| nix::unistd::Pid::from_raw(instance.pid as i32))
            .collect();
        if pids.is_empty() {
            bail!("no goods-worker runs");
        }
        let held = Self { pids };
        for pid in &held.pids {
            nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGSTOP)
                .with_context(|| format!("stopping goods-worker {pid}"))?;
        }
        Ok(held)
    }
}

impl Drop for HeldDraw {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// A Redis replica of the stack's Redis, killed when dropped.
struct Replica {
    process: crate::KillOnDrop,
    url: String,
    dir: PathBuf,
}

impl Replica {
    /// Starts `redis-server --replicaof` the stack's Redis and waits until it is in
    /// sync (and done rewriting its own AOF), so what it lacks at the failover is only
    /// the asynchronous tail.
    async fn start(state_dir: &Path, primary_url: &str) -> Result<Self> {
        let primary = primary_url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .context("the stack's Redis port")?
            .to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
            .to_string();
        let dir = state_dir.join("redis-replica");
        std::fs::create_dir_all(&dir)?;
        let process = std::process::Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--dir"])
            .arg(&dir)
            .args(["--appendonly", "yes", "--save", ""])
            .args(["--replicaof", "127.0.0.1", &primary])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting the replica")?;
        let replica = Self {
            process: crate::KillOnDrop(process),
            url: format!("redis://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(info) = replica.info() {
                let has = |field: &str| info.lines().any(|line| line.trim() == field);
                if has("master_link_status:up")
                    && has("master_sync_in_progress:0")
                    && has("aof_rewrite_in_progress:0")
                    && has("aof_rewrite_scheduled:0")
                {
                    return Ok(replica);
                }
            }
            if Instant::now() >= deadline {
                bail!("the replica did not get in sync within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn info(&self) -> Result<String> {
        let mut connection = redis::Client::open(self.url.as_str())?.get_connection()?;
        Ok(redis::cmd("INFO")
            .arg("everything")
            .query(&mut connection)?)
    }

    /// Promotes the replica with what it has, stops it (its AOF synced), and puts its
    /// AOF where the primary's was.
    fn promote_into(&mut self, primary_dir: &Path) -> Result<()> {
        let mut connection = redis::Client::open(self.url.as_str())?.get_connection()?;
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query(&mut connection)?;
        // The connection closes under the reply: not an error.
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut connection);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.process.0.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                bail!("the replica did not stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let primary_aof = primary_dir.join("appendonlydir");
        std::fs::remove_dir_all(&primary_aof)?;
        std::fs::rename(self.dir.join("appendonlydir"), &primary_aof)?;
        Ok(())
    }
}

/// What [`check`] looked at.
struct Checked {
    draws: usize,
    api_states: usize,
}

/// Every invariant, from the crowd's report (which includes its fresh look through the
/// API at every user after the close) and the database.
async fn check(
    report: &Report,
    pool: &PgPool,
    store: &QueueStore,
    event: &EventId,
) -> Result<Checked> {
    // The crowd: everyone reached a final state, nobody gave up, verify passed.
    if report.timed_out || report.unfinished > 0 || report.errors > 0 {
        bail!(
            "not every user reached a final state: {} errors, {} unfinished{}; e.g. {:?}",
            report.errors,
            report.unfinished,
            if report.timed_out { " (timed out)" } else { "" },
            report.error_samples
        );
    }
    if report.finals() != report.users || report.user_finals.len() as u64 != report.users {
        bail!(
            "{} final states counted, {} users listed, for {} users",
            report.finals(),
            report.user_finals.len(),
            report.users
        );
    }
    if report.verify != Verdict::Pass {
        bail!("verify failed: {}", report.verify_detail);
    }
    let verified = events::verify_event(pool, event).await?;
    if !verified.passed() {
        bail!("verify_event found {} problems", verified.findings.len());
    }

    // One draw per user; no oversell; the stock taken is the winners.
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct (platform_id, user_id)) from draws where event_id = $1",
    )
    .bind(event.as_str())
    .fetch_one(pool)
    .await?;
    if rows != distinct {
        bail!("{rows} draws rows for {distinct} users: someone was drawn twice");
    }
    let draws: HashMap<(String, String), (String, i64)> =
        sqlx::query_as::<_, (String, String, String, i64)>(
            "select platform_id, user_id, outcome, ticket from draws where event_id = $1",
        )
        .bind(event.as_str())
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(platform, user, outcome, ticket)| ((platform, user), (outcome, ticket)))
        .collect();
    let record = events::load(pool, event).await?;
    let winners = draws
        .values()
        .filter(|(outcome, _)| outcome == "won")
        .count() as u64;
    if winners > u64::from(record.stock_total) {
        bail!(
            "oversold: {winners} winners for a stock of {}",
            record.stock_total
        );
    }
    if winners != u64::from(record.stock_total - record.stock_left) {
        bail!(
            "{winners} winners but the stock went from {} to {}",
            record.stock_total,
            record.stock_left
        );
    }
    // Nothing drawn once the seed was public.
    let late: i64 = sqlx::query_scalar(
        "select count(*) from draws d join events e using (event_id)
          where d.event_id = $1 and e.seed_revealed_at is not null and d.decided_at > e.seed_revealed_at",
    )
    .bind(event.as_str())
    .fetch_one(pool)
    .await?;
    if late > 0 {
        bail!("{late} users were drawn after the seed was revealed");
    }
    if record.decisions_made != draws.len() as u64 {
        bail!(
            "decisions_made is {} but {} draws are recorded",
            record.decisions_made,
            draws.len()
        );
    }
    if report.won != winners {
        bail!(
            "{} users were told they won, {winners} won in the database",
            report.won
        );
    }

    // The relay counted each result once, redeliveries and all.
    // (A restarted Redis fails the first request on each broken connection.)
    let mut stats = store.stats(event).await;
    for _ in 0..5 {
        if stats.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        stats = store.stats(event).await;
    }
    let stats = stats?;
    for outcome in ["won", "lost"] {
        let counted = stats.get(outcome).copied().unwrap_or(0);
        let recorded = draws.values().filter(|(o, _)| o == outcome).count() as u64;
        if counted != recorded {
            bail!("Redis counted {counted} {outcome} results, PostgreSQL holds {recorded}");
        }
    }

    // Each user's state now: the demo asked everyone again through the API after the
    // close and compared the answers with PostgreSQL, their clients and the ticket order.
    if !report.recheck.passed() {
        bail!(
            "asked again after the close: {}, e.g. {:#?}",
            report.recheck.describe(),
            report.recheck.samples
        );
    }
    Ok(Checked {
        draws: draws.len(),
        api_states: report.recheck.final_states as usize,
    })
}
