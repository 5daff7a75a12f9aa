//! The local stack: Redis, PostgreSQL and a Kafka-protocol broker started natively
//! (no Docker) on free loopback ports, in a state directory.
//!
//! One implementation serves `dropgate stack up|down|status|env|restart` and the test
//! harness. Every pid is recorded in `<state dir>/stack.json` right after spawning,
//! so `down` stops exactly what `up` started, even after the launcher was killed; `up`
//! on a running stack keeps what runs and starts only what is missing.
//!
//! `up --tls` starts the same servers the way a deployment reaches its stores: Redis
//! TLS-only with a password, PostgreSQL TLS-only, the broker with SASL/SCRAM behind a
//! TLS terminator, all with certificates of a throwaway local CA, and an env file that
//! sets `DROPGATE_REQUIRE_TLS`, so every client must verify them.

mod broker;
mod broker_tls;
pub mod certs;
pub mod functions;
mod postgres;
mod process;
mod redis;
mod state;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

pub use broker::{KAFKA_USER, TOPICS};
pub use certs::StackCerts;
use dropgate_functions::auth::dev::{DevKeys, LOCAL_AUDIENCE, LOCAL_ISSUER};
use dropgate_functions::config::{
    DatabaseArgs, KafkaArgs, RedisArgs, RedisMode, Secret, TopicArgs,
};
use dropgate_functions::kafka::security::{KafkaSecurityArgs, SaslMechanism, SecurityProtocol};
use dropgate_functions::seed_vault::{SeedKey, SeedKeyArgs};
pub use postgres::{APP_USER, DATABASE, connect_options, create_database_if_missing};
pub use state::{Component, Server, StackState, state_file};

/// Redis AOF fsync policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AppendFsync {
    /// fsync once a second (Redis' default for AOF): at most a second lost on a
    /// machine crash, nothing on a process crash.
    #[default]
    Everysec,
    /// fsync every write.
    Always,
}

/// Where the broker keeps its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BrokerStorage {
    /// A SQLite file: messages and committed offsets survive a broker restart.
    #[default]
    Sqlite,
    /// In memory: gone at restart; for throwaway runs.
    Memory,
}

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where data, logs, the state file and the env file go.
    pub state_dir: PathBuf,
    /// Partitions per topic.
    pub partitions: u32,
    /// Redis AOF fsync policy.
    pub redis_fsync: AppendFsync,
    /// Broker storage.
    pub broker_storage: BrokerStorage,
    /// The redis-server binary.
    pub redis_server: PathBuf,
    /// The tansu binary.
    pub tansu: PathBuf,
    /// TLS-only servers with authentication (`--tls`); a stack keeps what it was
    /// first started with.
    pub tls: bool,
    /// Primaries of a Redis Cluster instead of one Redis (`--redis-cluster N`, at
    /// least 3); 0 for one Redis. A stack keeps what it was first started with.
    pub redis_cluster: u8,
}

impl StackOptions {
    /// Defaults for `state_dir`: 6 partitions, AOF fsync every second, SQLite broker
    /// log, binaries found on PATH (tansu also in `~/.cargo/bin`).
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            partitions: 6,
            redis_fsync: AppendFsync::Everysec,
            broker_storage: BrokerStorage::Sqlite,
            redis_server: find_program("redis-server"),
            tansu: find_program("tansu"),
            tls: false,
            redis_cluster: 0,
        }
    }

    /// `<state dir>/logs/<name>.log`.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.state_dir.join("logs").join(format!("{name}.log"))
    }
}

/// `program` on PATH, else in `~/.cargo/bin` (where `cargo install` puts tansu), else
/// the bare name (the spawn error then names it).
fn find_program(program: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// Addresses of a running stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEnv {
    /// The state directory.
    pub state_dir: PathBuf,
    /// `redis://127.0.0.1:<port>/0`; for a cluster, every node's, comma-separated.
    pub redis_url: String,
    /// One Redis or a cluster.
    pub redis_mode: RedisMode,
    /// `postgres://dropgate:<password>@127.0.0.1:<port>/dropgate`: the schema's owner,
    /// for migrations, new databases and tests that arrange records.
    pub database_url: String,
    /// `postgres://dropgate_app:<password>@...`: the login the functions and the
    /// operator CLI get (`DATABASE_URL` in [`StackEnv::vars`]), rows only.
    pub app_database_url: String,
    /// `127.0.0.1:<port>`.
    pub kafka_brokers: String,
    /// queue-api's base URL, while `dropgate local up` runs it.
    pub api_url: Option<String>,
    /// How to reach a `--tls` stack: its CA and the broker's SASL credentials.
    pub tls: Option<StackTlsEnv>,
}

/// What a client needs beyond the URLs to reach a `--tls` stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTlsEnv {
    /// The CA that signed every server's certificate.
    pub ca_file: PathBuf,
    /// The broker's SCRAM user.
    pub kafka_username: String,
    /// Its password.
    pub kafka_password: String,
}

impl StackEnv {
    fn from_state(state_dir: &Path, state: &StackState) -> Result<Self> {
        let port = |component: Component| {
            state
                .server(component)
                .map(|server| server.port)
                .with_context(|| format!("the stack has no {}", component.name()))
        };
        let certs = state.tls.then(|| StackCerts::in_state_dir(state_dir));
        let ca = certs.as_ref().map(|certs| certs.ca.as_path());
        let broker_port = if state.tls {
            state
                .broker_public_port
                .context("the stack has no broker TLS port")?
        } else {
            port(Component::Broker)?
        };
        let redis_tls = redis_tls(state_dir, state);
        let mut redis_urls = vec![redis::url(port(Component::Redis)?, redis_tls.as_ref())];
        for index in 1..usize::from(state.redis_cluster) {
            let node = state
                .redis_node(index)
                .with_context(|| format!("the stack has no Redis node {index}"))?;
            redis_urls.push(redis::url(node.port, redis_tls.as_ref()));
        }
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            redis_url: redis_urls.join(","),
            redis_mode: if state.redis_cluster > 0 {
                RedisMode::Cluster
            } else {
                RedisMode::Single
            },
            database_url: postgres::url(port(Component::Postgres)?, &state.postgres_password, ca),
            app_database_url: postgres::url_as(
                postgres::APP_USER,
                port(Component::Postgres)?,
                &state.postgres_app_password,
                ca,
            ),
            kafka_brokers: format!("127.0.0.1:{broker_port}"),
            api_url: functions::api_url(state_dir),
            tls: certs.map(|certs| StackTlsEnv {
                ca_file: certs.ca,
                kafka_username: KAFKA_USER.to_owned(),
                kafka_password: state.kafka_password.clone(),
            }),
        })
    }

    /// The Redis settings of this stack.
    pub fn redis(&self) -> RedisArgs {
        RedisArgs {
            ca_file: self.tls.as_ref().map(|tls| tls.ca_file.clone()),
            require_tls: self.tls.is_some(),
            mode: self.redis_mode,
            ..RedisArgs::url(self.redis_url.clone())
        }
    }

    /// The PostgreSQL settings of this stack.
    pub fn database(&self) -> DatabaseArgs {
        DatabaseArgs {
            ca_file: self.tls.as_ref().map(|tls| tls.ca_file.clone()),
            require_tls: self.tls.is_some(),
            ..DatabaseArgs::url(self.database_url.clone())
        }
    }

    /// The Kafka settings of this stack.
    pub fn kafka(&self) -> KafkaArgs {
        KafkaArgs {
            security: kafka_security(self.tls.as_ref()),
            ..KafkaArgs::brokers(self.kafka_brokers.clone())
        }
    }

    /// The key that seals the stack's event seeds.
    pub fn seed_key(&self) -> Result<SeedKey> {
        self.seed_key_args().load()
    }

    /// Where the stack's seed key is, as the services take it.
    pub fn seed_key_args(&self) -> SeedKeyArgs {
        SeedKeyArgs {
            seed_key_file: seed_key_file(&self.state_dir),
        }
    }

    /// The stack's topics.
    pub fn topics(&self) -> TopicArgs {
        TopicArgs {
            dead_letter: TOPICS[2].to_owned(),
            winners: TOPICS[3].to_owned(),
            ..TopicArgs::new(TOPICS[0], TOPICS[1])
        }
    }

    /// The variables every function reads, as `(name, value)` pairs.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("DROPGATE_STATE_DIR", self.state_dir.display().to_string()),
            ("DROPGATE_REDIS_URL", self.redis_url.clone()),
            (
                "DROPGATE_REDIS_MODE",
                match self.redis_mode {
                    RedisMode::Single => "single",
                    RedisMode::Cluster => "cluster",
                }
                .to_owned(),
            ),
            // As deployed: the functions log in as a user that reads and writes rows
            // and cannot change the schema (the migrations ran as the owner).
            ("DATABASE_URL", self.app_database_url.clone()),
            ("DROPGATE_KAFKA_BROKERS", self.kafka_brokers.clone()),
            ("DROPGATE_TOPIC_WAITING_QUEUE", TOPICS[0].to_owned()),
            ("DROPGATE_TOPIC_RESULT_NOTIFICATION", TOPICS[1].to_owned()),
            ("DROPGATE_TOPIC_DEAD_LETTER", TOPICS[2].to_owned()),
            ("DROPGATE_TOPIC_WINNERS", TOPICS[3].to_owned()),
            (
                "DROPGATE_JWKS_FILE",
                DevKeys::in_state_dir(&self.state_dir)
                    .jwks
                    .display()
                    .to_string(),
            ),
            // Local mode only: lets the waiting-room page sign in a made-up user.
            (
                "DROPGATE_API_DEV_SIGNING_KEY",
                DevKeys::in_state_dir(&self.state_dir)
                    .private_key
                    .display()
                    .to_string(),
            ),
            ("DROPGATE_JWT_ISSUER", LOCAL_ISSUER.to_owned()),
            ("DROPGATE_JWT_AUDIENCE", LOCAL_AUDIENCE.to_owned()),
            (
                "DROPGATE_SEED_KEY_FILE",
                seed_key_file(&self.state_dir).display().to_string(),
            ),
        ];
        if let Some(tls) = &self.tls {
            let ca = tls.ca_file.display().to_string();
            vars.extend([
                (dropgate_functions::tls::REQUIRE_TLS_ENV, "true".to_owned()),
                ("DROPGATE_REDIS_CA_FILE", ca.clone()),
                ("DROPGATE_DATABASE_CA_FILE", ca.clone()),
                ("DROPGATE_KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_owned()),
                ("DROPGATE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
                ("DROPGATE_KAFKA_SASL_USERNAME", tls.kafka_username.clone()),
                ("DROPGATE_KAFKA_SASL_PASSWORD", tls.kafka_password.clone()),
                ("DROPGATE_KAFKA_CA_FILE", ca),
            ]);
        }
        if let Some(url) = &self.api_url {
            vars.push(("DROPGATE_API_URL", url.clone()));
        }
        vars
    }

    /// Whether the variable `name` carries a password (printed by no command; it is
    /// in the env file, readable by its owner alone).
    pub fn holds_secret(name: &str) -> bool {
        matches!(
            name,
            "DATABASE_URL" | "DROPGATE_REDIS_URL" | "DROPGATE_KAFKA_SASL_PASSWORD"
        )
    }

    /// Shell-sourceable `NAME='value'` lines (what `<state dir>/env` holds).
    pub fn to_env_file(&self) -> String {
        let mut text = String::from(
            "# written by `dropgate stack up`; source it or use `dropgate stack env`\n",
        );
        for (name, value) in self.vars() {
            let _ = writeln!(text, "{name}='{}'", value.replace('\'', r"'\''"));
        }
        text
    }
}

/// `<state dir>/seed.key`: the key that seals the stack's event seeds.
pub fn seed_key_file(state_dir: &Path) -> PathBuf {
    state_dir.join("seed.key")
}

/// Makes the stack's seed key unless it has one: a new key would leave every event
/// created under the old one unable to draw.
fn ensure_seed_key(state_dir: &Path) -> Result<()> {
    let path = seed_key_file(state_dir);
    if path.exists() {
        return Ok(());
    }
    certs::write_private(&path, format!("{}\n", SeedKey::generate_hex()).as_bytes())
}

/// `<state dir>/env`.
pub fn env_file(state_dir: &Path) -> PathBuf {
    state_dir.join("env")
}

/// Writes `env` into the stack's env file, readable by its owner alone.
pub fn write_env_file(env: &StackEnv) -> Result<()> {
    certs::write_private(&env_file(&env.state_dir), env.to_env_file().as_bytes())
}

/// The Redis TLS settings of a `--tls` stack.
fn redis_tls(state_dir: &Path, state: &StackState) -> Option<redis::RedisTls> {
    state.tls.then(|| redis::RedisTls {
        certs: StackCerts::in_state_dir(state_dir),
        password: state.redis_password.clone(),
    })
}

/// The Kafka security settings of a stack: plaintext, or SCRAM over TLS.
fn kafka_security(tls: Option<&StackTlsEnv>) -> KafkaSecurityArgs {
    match tls {
        None => KafkaSecurityArgs::default(),
        Some(tls) => KafkaSecurityArgs {
            protocol: SecurityProtocol::SaslSsl,
            mechanism: Some(SaslMechanism::ScramSha512),
            username: Some(tls.kafka_username.clone()),
            password: Some(Secret::new(tls.kafka_password.clone())),
            ca_file: Some(tls.ca_file.clone()),
            require_tls: true,
            ..KafkaSecurityArgs::default()
        },
    }
}

/// Starts whatever of the stack is not running, waits until all three answer, creates
/// the topics and the database, applies migrations and writes the env file.
/// `progress` hears one line per step.
pub async fn up(options: &StackOptions, progress: &mut dyn FnMut(&str)) -> Result<StackEnv> {
    let dir = &options.state_dir;
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("Failed to create {}", dir.display()))?;
    let dir = &std::fs::canonicalize(dir)?;
    let options = &StackOptions {
        state_dir: dir.clone(),
        ..options.clone()
    };
    dropgate_functions::tls::install_crypto_provider();
    let mut state = StackState::load(dir)?;
    if state.postgres_password.is_empty() {
        state.postgres_password = random_hex(16)?;
    }
    if state.postgres_app_password.is_empty() {
        state.postgres_app_password = random_hex(16)?;
    }
    if options.redis_cluster == 1 || options.redis_cluster == 2 {
        anyhow::bail!("a Redis Cluster needs at least 3 primaries (--redis-cluster 3)");
    }
    if state.server(Component::Postgres).is_none() && state.postgres_dir.is_none() {
        // A new stack takes the TLS and cluster choices of this `up`; an existing one
        // keeps its own.
        state.tls = options.tls;
        state.redis_cluster = options.redis_cluster;
    } else if options.tls && !state.tls {
        anyhow::bail!(
            "the stack at {} was made without --tls; remove it (`dropgate stack down --purge`) to start it with TLS",
            dir.display()
        );
    } else if options.redis_cluster != 0 && options.redis_cluster != state.redis_cluster {
        anyhow::bail!(
            "the stack at {} was made with {} Redis primaries; remove it (`dropgate stack down --purge`) to start it with --redis-cluster {}",
            dir.display(),
            state.redis_cluster.max(1),
            options.redis_cluster
        );
    }
    if state.tls && state.redis_cluster > 0 {
        anyhow::bail!(
            "--redis-cluster and --tls together are not supported by the local stack yet"
        );
    }
    if state.tls {
        StackCerts::in_state_dir(dir)
            .ensure()
            .context("Failed to make the stack's certificates")?;
        if state.redis_password.is_empty() {
            state.redis_password = random_hex(16)?;
        }
        if state.kafka_password.is_empty() {
            state.kafka_password = random_hex(16)?;
        }
    }
    state.partitions = options.partitions;
    state.save(dir)?;

    for &component in Component::of_stack(state.tls) {
        start_component(options, &mut state, component, progress).await?;
    }
    if state.redis_cluster > 0 {
        start_redis_cluster(options, &mut state, progress)?;
    }
    DevKeys::in_state_dir(dir)
        .ensure()
        .context("Failed to create the local token signing key")?;
    ensure_seed_key(dir).context("Failed to create the stack's seed key")?;
    let env = StackEnv::from_state(dir, &state)?;
    write_env_file(&env)?;
    progress(&format!("env file: {}", env_file(dir).display()));
    Ok(env)
}

/// Starts `component` unless it runs, on its recorded port if it has one.
async fn start_component(
    options: &StackOptions,
    state: &mut StackState,
    component: Component,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let dir = &options.state_dir;
    if let Some(server) = state.server(component)
        && process::is_running(server.pid, component.program())
    {
        progress(&format!(
            "{} already running (pid {}, port {})",
            component.name(),
            server.pid,
            server.port
        ));
        if component == Component::Broker && !state.tls {
            // A broker started by an older release may lack a topic added since.
            for topic in TOPICS {
                broker::create_topic(
                    options,
                    server.pid,
                    server.port,
                    topic,
                    state.partitions.max(1),
                )?;
            }
        }
        return Ok(());
    }
    let recorded_port = state.server(component).map(|server| server.port).or(
        // The terminator's port was chosen when tansu started, which advertises it.
        match component {
            Component::BrokerTls => state.broker_public_port,
            _ => None,
        },
    );
    // A recorded port is reused so clients reconnect to the same address; a fresh
    // stack picks free ports and retries if another process grabbed one meanwhile.
    let attempts = if recorded_port.is_some() { 1 } else { 3 };
    let mut last_error = None;
    for _ in 0..attempts {
        let port = match recorded_port {
            Some(port) => port,
            None => process::free_port()?,
        };
        match start_once(options, state, component, port).await {
            Ok(pid) => {
                progress(&format!(
                    "{} ready on 127.0.0.1:{port} (pid {pid})",
                    component.name()
                ));
                return Ok(());
            }
            Err(e) => {
                if let Some(server) = state.server(component) {
                    process::stop(
                        server.pid,
                        component.program(),
                        Signal::SIGKILL,
                        Duration::from_secs(5),
                    );
                }
                state.set_server(component, None);
                state.save(dir)?;
                last_error = Some(e);
            }
        }
    }
    let error = last_error.unwrap_or_else(|| anyhow::anyhow!("no attempt was made"));
    Err(error.context(format!(
        "{} did not start; its log is {}",
        component.name(),
        options.log_file(component.name()).display()
    )))
}

async fn start_once(
    options: &StackOptions,
    state: &mut StackState,
    component: Component,
    port: u16,
) -> Result<u32> {
    let dir = &options.state_dir;
    let record = |state: &mut StackState, pid| -> Result<()> {
        state.set_server(component, Some(Server { pid, port }));
        state.save(dir)
    };
    match component {
        Component::Redis => {
            let tls = redis_tls(dir, state);
            let node = if state.redis_cluster > 0 {
                redis::RedisNode::Cluster(0)
            } else {
                redis::RedisNode::Single
            };
            let pid = redis::start(options, node, port, tls.as_ref())?;
            record(state, pid)?;
            redis::wait_ready(pid, port, tls.as_ref())?;
            Ok(pid)
        }
        Component::Postgres => {
            let pg_dir = postgres::prepare_dir(options, state.postgres_dir.as_deref())?;
            state.postgres_dir = Some(pg_dir.clone());
            state.save(dir)?;
            postgres::init(options, &pg_dir, &state.postgres_password)?;
            let certs = state.tls.then(|| StackCerts::in_state_dir(dir));
            let pid = postgres::start(options, &pg_dir, port, certs.as_ref())?;
            record(state, pid)?;
            let ca = certs.as_ref().map(|certs| certs.ca.as_path());
            let pool = postgres::prepare_database(
                pid,
                port,
                &state.postgres_password,
                &state.postgres_app_password,
                ca,
            )
            .await?;
            pool.close().await;
            Ok(pid)
        }
        Component::Broker if state.tls => {
            let public_port = match state.broker_public_port {
                Some(public_port) => public_port,
                None => process::free_port()?,
            };
            state.broker_public_port = Some(public_port);
            state.save(dir)?;
            if !state.broker_bootstrapped {
                broker::bootstrap(
                    options,
                    port,
                    state.partitions.max(1),
                    &state.kafka_password,
                )?;
                state.broker_bootstrapped = true;
                state.save(dir)?;
            }
            let pid = broker::start(options, port, Some(public_port))?;
            record(state, pid)?;
            // A restarted broker is ready once clients get through the terminator; on
            // a first start the terminator is not up yet and checks when it is.
            if let Some(terminator) = state.server(Component::BrokerTls)
                && process::is_running(terminator.pid, Component::BrokerTls.program())
            {
                let env = StackEnv::from_state(dir, state)?;
                broker_tls::wait_ready(terminator.pid, &env.kafka_brokers, &env.kafka().security)?;
            }
            Ok(pid)
        }
        Component::Broker => {
            let pid = broker::start(options, port, None)?;
            record(state, pid)?;
            for topic in TOPICS {
                broker::create_topic(options, pid, port, topic, state.partitions.max(1))?;
            }
            Ok(pid)
        }
        Component::BrokerTls => {
            let broker_port = state
                .server(Component::Broker)
                .map(|server| server.port)
                .context("the broker must start before its TLS terminator")?;
            let certs = StackCerts::in_state_dir(dir);
            let pid = broker_tls::start(options, port, broker_port, &certs)?;
            record(state, pid)?;
            let env = StackEnv::from_state(dir, state)?;
            broker_tls::wait_ready(pid, &env.kafka_brokers, &env.kafka().security)?;
            Ok(pid)
        }
    }
}

/// Starts the cluster nodes after the first (which starts as [`Component::Redis`])
/// unless they run, joins them into a cluster the first time, and waits until the
/// cluster is ok.
fn start_redis_cluster(
    options: &StackOptions,
    state: &mut StackState,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    for index in 1..usize::from(state.redis_cluster) {
        start_redis_node(options, state, index, progress)?;
    }
    let ports = redis_node_ports(state)?;
    if !state.redis_cluster_created {
        redis::create_cluster(&ports)?;
        state.redis_cluster_created = true;
        state.save(&options.state_dir)?;
        progress(&format!(
            "redis cluster of {} primaries created",
            ports.len()
        ));
    } else {
        redis::wait_cluster_ok(&ports)?;
    }
    Ok(())
}

/// Starts cluster node `index` (1 or more) unless it runs, on its recorded port if it
/// has one.
fn start_redis_node(
    options: &StackOptions,
    state: &mut StackState,
    index: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let node = redis::RedisNode::Cluster(index);
    if let Some(server) = state.redis_node(index)
        && process::is_running(server.pid, Component::Redis.program())
    {
        progress(&format!(
            "{} already running (pid {}, port {})",
            node.log_name(),
            server.pid,
            server.port
        ));
        return Ok(());
    }
    let port = match state.redis_node(index) {
        Some(server) => server.port,
        None => process::free_port()?,
    };
    let pid = redis::start(options, node, port, None)?;
    state.set_redis_node(index, Some(Server { pid, port }));
    state.save(&options.state_dir)?;
    redis::wait_ready(pid, port, None).with_context(|| {
        format!(
            "{} did not start; its log is {}",
            node.log_name(),
            options.log_file(&node.log_name()).display()
        )
    })?;
    progress(&format!(
        "{} ready on 127.0.0.1:{port} (pid {pid})",
        node.log_name()
    ));
    Ok(())
}

fn redis_node_ports(state: &StackState) -> Result<Vec<u16>> {
    (0..state.redis_node_count())
        .map(|index| {
            state
                .redis_node(index)
                .map(|server| server.port)
                .with_context(|| format!("the stack has no Redis node {index}"))
        })
        .collect()
}

/// Stops Redis cluster node `index`, runs `while_stopped` (an outage's length, a change
/// to its files), starts it again on the same port, then waits until the cluster is
/// ok (a primary lost and back mid-drop, as the cluster test does it). Node 0 is
/// [`Component::Redis`].
pub async fn restart_redis_node(
    options: &StackOptions,
    index: usize,
    mode: StopMode,
    while_stopped: impl FnOnce(&Path) -> Result<()>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let dir = std::fs::canonicalize(&options.state_dir)?;
    let options = &StackOptions {
        state_dir: dir.clone(),
        ..options.clone()
    };
    if index == 0 {
        return restart_component_with(options, Component::Redis, mode, while_stopped, progress)
            .await;
    }
    stop_redis_node(&dir, index, mode)?;
    while_stopped(&dir)?;
    let mut state = StackState::load(&dir)?;
    start_redis_node(options, &mut state, index, progress)?;
    redis::wait_cluster_ok(&redis_node_ports(&state)?)
}

/// Stops Redis cluster node `index` (1 or more); returns whether it was running.
pub fn stop_redis_node(state_dir: &Path, index: usize, mode: StopMode) -> Result<bool> {
    let state = StackState::load(state_dir)?;
    let Some(server) = state.redis_node(index) else {
        return Ok(false);
    };
    let program = Component::Redis.program();
    Ok(match mode {
        StopMode::Crash => process::kill_hard(server.pid, program),
        StopMode::Graceful => process::stop(
            server.pid,
            program,
            Signal::SIGTERM,
            Duration::from_secs(20),
        ),
    })
}

/// How `stop` ends a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// The server's own clean shutdown (SIGTERM; SIGINT "fast" for PostgreSQL),
    /// SIGKILL after 20 s.
    Graceful,
    /// SIGKILL at once: a crash.
    Crash,
}

/// Stops one component by its recorded pid; returns whether it was running.
pub fn stop_component(state_dir: &Path, component: Component, mode: StopMode) -> Result<bool> {
    let state = StackState::load(state_dir)?;
    let Some(server) = state.server(component) else {
        return Ok(false);
    };
    let program = component.program();
    Ok(match mode {
        // SIGQUIT is the postmaster's immediate shutdown (`pg_ctl stop -m immediate`):
        // it exits at once without a checkpoint, so the next start runs crash
        // recovery. A SIGKILL would leave its backends holding the shared memory,
        // and the next start would refuse to run.
        StopMode::Crash if component == Component::Postgres => process::stop(
            server.pid,
            program,
            Signal::SIGQUIT,
            Duration::from_secs(20),
        ),
        StopMode::Crash => process::kill_hard(server.pid, program),
        StopMode::Graceful => {
            let signal = match component {
                Component::Postgres => Signal::SIGINT,
                Component::Redis | Component::Broker | Component::BrokerTls => Signal::SIGTERM,
            };
            process::stop(server.pid, program, signal, Duration::from_secs(20))
        }
    })
}

/// Stops then starts `component` on the same port (a broker or database restart
/// mid-drop, as the fault tests do it).
pub async fn restart_component(
    options: &StackOptions,
    component: Component,
    mode: StopMode,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    restart_component_with(options, component, mode, |_| Ok(()), progress).await
}

/// Like [`restart_component`], running `while_stopped` on the state directory between
/// the stop and the start: the fault tests replace a server's data there (a Redis
/// restored from an older copy of its AOF).
pub async fn restart_component_with(
    options: &StackOptions,
    component: Component,
    mode: StopMode,
    while_stopped: impl FnOnce(&Path) -> Result<()>,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let dir = std::fs::canonicalize(&options.state_dir)?;
    let options = &StackOptions {
        state_dir: dir.clone(),
        ..options.clone()
    };
    stop_component(&dir, component, mode)?;
    while_stopped(&dir)?;
    let mut state = StackState::load(&dir)?;
    start_component(options, &mut state, component, progress).await?;
    if component == Component::Redis && state.redis_cluster > 0 {
        redis::wait_cluster_ok(&redis_node_ports(&state)?)?;
    }
    Ok(())
}

/// Stops every recorded server (each by its own clean shutdown) and forgets their
/// pids; data stays unless `purge`. Returns the names of the servers it stopped.
pub fn down(state_dir: &Path, purge: bool) -> Result<Vec<&'static str>> {
    if !state_file(state_dir).exists() {
        return Ok(Vec::new());
    }
    // The functions first: they would only log errors about the servers going away.
    let mut stopped = Vec::new();
    if !functions::down(state_dir)?.is_empty() {
        stopped.push("functions");
    }
    // Reverse start order: the broker and database before Redis.
    for component in Component::EVERY.into_iter().rev() {
        if stop_component(state_dir, component, StopMode::Graceful)? {
            stopped.push(component.name());
        }
    }
    let mut state = StackState::load(state_dir)?;
    for index in 1..=state.redis_nodes.len() {
        if stop_redis_node(state_dir, index, StopMode::Graceful)? {
            stopped.push("redis-node");
        }
    }
    // A cluster's nodes find each other again by the addresses they remember, so
    // they keep their ports (the next `up` reuses recorded ports).
    let cluster_nodes = (state.redis_cluster > 0).then(|| state.redis.clone());
    for component in Component::EVERY {
        state.set_server(component, None);
    }
    match cluster_nodes {
        Some(first) => state.redis = first,
        None => state.redis_nodes.clear(),
    }
    state.save(state_dir)?;
    let _ = std::fs::remove_file(env_file(state_dir));
    if purge {
        if let Some(pg_dir) = &state.postgres_dir
            && !pg_dir.starts_with(state_dir)
        {
            std::fs::remove_dir_all(pg_dir).ok();
        }
        std::fs::remove_dir_all(state_dir)
            .with_context(|| format!("Failed to remove {}", state_dir.display()))?;
    }
    Ok(stopped)
}

/// One component's status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentStatus {
    /// Which.
    pub component: Component,
    /// Recorded server, if any.
    pub server: Option<Server>,
    /// Whether the recorded pid is alive and is that server.
    pub running: bool,
}

/// What runs in the stack at `state_dir`.
pub fn status(state_dir: &Path) -> Result<Vec<ComponentStatus>> {
    let state = StackState::load(state_dir)?;
    Ok(Component::of_stack(state.tls)
        .iter()
        .map(|&component| {
            let server = state.server(component).cloned();
            let running = server
                .as_ref()
                .is_some_and(|server| process::is_running(server.pid, component.program()));
            ComponentStatus {
                component,
                server,
                running,
            }
        })
        .collect())
}

/// The Redis Cluster nodes after the first (which [`status`] shows as `redis`): name,
/// recorded server, whether it runs.
pub fn redis_node_status(state_dir: &Path) -> Result<Vec<(String, Server, bool)>> {
    let state = StackState::load(state_dir)?;
    Ok((1..usize::from(state.redis_cluster))
        .filter_map(|index| {
            let server = state.redis_node(index)?.clone();
            let running = process::is_running(server.pid, Component::Redis.program());
            Some((redis::RedisNode::Cluster(index).log_name(), server, running))
        })
        .collect())
}

/// The env of a running stack (fails if a component was never started).
pub fn env(state_dir: &Path) -> Result<StackEnv> {
    let dir = std::fs::canonicalize(state_dir).with_context(|| {
        format!(
            "no stack at {}; run `dropgate stack up`",
            state_dir.display()
        )
    })?;
    StackEnv::from_state(&dir, &StackState::load(&dir)?)
}

/// Creates `topic` on the stack's broker (tests make their own topics so they can run
/// in parallel on one broker).
pub fn create_topic(state_dir: &Path, topic: &str, partitions: u32) -> Result<()> {
    let state = StackState::load(state_dir)?;
    if state.tls {
        anyhow::bail!(
            "a --tls stack's broker requires authentication, which tansu's topic tool \
             cannot give; its topics ({}) are made at `stack up`",
            TOPICS.join(", ")
        );
    }
    let broker = state
        .server(Component::Broker)
        .context("the stack has no broker")?;
    let options = StackOptions::new(state_dir);
    broker::create_topic(&options, broker.pid, broker.port, topic, partitions)
}

/// Whether Redis keeps an AOF in this stack (for `status`).
pub fn redis_has_aof(state_dir: &Path) -> bool {
    redis::has_aof(state_dir)
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut buffer))
        .context("Failed to read /dev/urandom")?;
    Ok(dropgate_core::hex::encode(&buffer))
}

/// The PostgreSQL binaries' directory the stack uses (benchmarks run its pgbench).
pub fn postgres_bin_dir() -> Result<PathBuf> {
    postgres::bin_dir()
}

/// `postgres --version` of the binaries the stack uses.
pub fn postgres_version() -> String {
    postgres_bin_dir()
        .ok()
        .and_then(|dir| {
            std::process::Command::new(dir.join("postgres"))
                .arg("--version")
                .output()
                .ok()
        })
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|| "postgres: unknown".to_owned())
}
