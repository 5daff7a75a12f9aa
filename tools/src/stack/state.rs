//! What a running stack is made of, kept in `<state dir>/stack.json` so any later
//! process (`down`, `status`, a test's watchdog) finds the exact pids and ports.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One of the stack's three servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// redis-server: queues, user state, results for polling and streams.
    Redis,
    /// PostgreSQL: events, draws, outbox.
    Postgres,
    /// tansu: the Kafka-protocol broker.
    Broker,
    /// stunnel: the broker's TLS terminator on a `--tls` stack (tansu 0.6.0 speaks
    /// plaintext only); its port is the broker address clients use.
    BrokerTls,
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Component; 3] = [Component::Redis, Component::Postgres, Component::Broker];

    /// Every component a stack may have, in start order (`down` stops what of these
    /// is recorded).
    pub const EVERY: [Component; 4] = [
        Component::Redis,
        Component::Postgres,
        Component::Broker,
        Component::BrokerTls,
    ];

    /// The components of a stack with or without TLS, in start order.
    pub fn of_stack(tls: bool) -> &'static [Component] {
        if tls { &Self::EVERY } else { &Self::ALL }
    }

    /// The process name (`/proc/<pid>/comm`) that `down` checks before signalling.
    pub fn program(self) -> &'static str {
        match self {
            Component::Redis => "redis-server",
            Component::Postgres => "postgres",
            Component::Broker => "tansu",
            Component::BrokerTls => "stunnel4",
        }
    }

    /// Short name for messages and log files.
    pub fn name(self) -> &'static str {
        match self {
            Component::Redis => "redis",
            Component::Postgres => "postgres",
            Component::Broker => "broker",
            Component::BrokerTls => "broker-tls",
        }
    }
}

/// A server the stack started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// Recorded right after spawning, before readiness, so a launcher killed during
    /// start-up still leaves enough for `down`.
    pub pid: u32,
    /// Loopback port; kept across restarts so clients reconnect to the same address.
    pub port: u16,
}

/// The persisted description of one stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackState {
    /// redis-server, if started.
    pub redis: Option<Server>,
    /// PostgreSQL, if started.
    pub postgres: Option<Server>,
    /// tansu, if started.
    pub broker: Option<Server>,
    /// Password of the `dropgate` database role (generated at first `up`; loopback
    /// only, but still not a fixed string anyone could guess).
    pub postgres_password: String,
    /// Password of the functions' login, `dropgate_app` (rows only: the
    /// dropgate_runtime role), generated at the first `up` that needs it.
    #[serde(default)]
    pub postgres_app_password: String,
    /// Where PostgreSQL keeps its data: inside the state dir unless the server's
    /// unprivileged user cannot reach it there.
    pub postgres_dir: Option<PathBuf>,
    /// Partitions of each topic.
    pub partitions: u32,
    /// Whether the stack runs TLS-only with authentication (`stack up --tls`).
    #[serde(default)]
    pub tls: bool,
    /// The broker's TLS terminator, on a `--tls` stack.
    #[serde(default)]
    pub broker_tls: Option<Server>,
    /// The port clients reach the broker on through the terminator, chosen before
    /// tansu starts because tansu advertises it.
    #[serde(default)]
    pub broker_public_port: Option<u16>,
    /// Password of Redis' default user on a `--tls` stack.
    #[serde(default)]
    pub redis_password: String,
    /// Password of the broker's SCRAM user `dropgate` on a `--tls` stack.
    #[serde(default)]
    pub kafka_password: String,
    /// Whether the broker's SCRAM user and topics were made (before authentication
    /// was switched on: tansu's own tools cannot authenticate).
    #[serde(default)]
    pub broker_bootstrapped: bool,
    /// Primaries of the stack's Redis Cluster (`stack up --redis-cluster N`); 0: one
    /// plain Redis. Node 0 is [`StackState::redis`].
    #[serde(default)]
    pub redis_cluster: u8,
    /// Cluster nodes 1 to N-1.
    #[serde(default)]
    pub redis_nodes: Vec<Option<Server>>,
    /// Whether the nodes were joined into a cluster (done once; they remember it).
    #[serde(default)]
    pub redis_cluster_created: bool,
}

impl StackState {
    /// The recorded server of `component`.
    pub fn server(&self, component: Component) -> Option<&Server> {
        match component {
            Component::Redis => self.redis.as_ref(),
            Component::Postgres => self.postgres.as_ref(),
            Component::Broker => self.broker.as_ref(),
            Component::BrokerTls => self.broker_tls.as_ref(),
        }
    }

    /// Records (or clears) the server of `component`.
    pub fn set_server(&mut self, component: Component, server: Option<Server>) {
        match component {
            Component::Redis => self.redis = server,
            Component::Postgres => self.postgres = server,
            Component::Broker => self.broker = server,
            Component::BrokerTls => self.broker_tls = server,
        }
    }

    /// The recorded server of Redis node `index` (0 is [`StackState::redis`]).
    pub fn redis_node(&self, index: usize) -> Option<&Server> {
        match index {
            0 => self.redis.as_ref(),
            _ => self.redis_nodes.get(index - 1).and_then(Option::as_ref),
        }
    }

    /// Records (or clears) Redis node `index`.
    pub fn set_redis_node(&mut self, index: usize, server: Option<Server>) {
        if index == 0 {
            self.redis = server;
            return;
        }
        if self.redis_nodes.len() < index {
            self.redis_nodes.resize(index, None);
        }
        self.redis_nodes[index - 1] = server;
    }

    /// How many redis-servers the stack runs.
    pub fn redis_node_count(&self) -> usize {
        usize::from(self.redis_cluster).max(1)
    }

    /// Reads the state of the stack in `dir`; an absent file is an empty state.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = state_file(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("Failed to parse {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("Failed to read {}", path.display())),
        }
    }

    /// Writes atomically (temp file + rename), so a launcher killed mid-write never
    /// leaves a torn file that would hide running pids from `down`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = state_file(dir);
        let temp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)?;
        // It holds the stack's passwords: owner-only from the first byte.
        super::certs::write_private(&temp, &bytes)?;
        std::fs::rename(&temp, &path)
            .with_context(|| format!("Failed to replace {}", path.display()))
    }
}

/// `<dir>/stack.json`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("stack.json")
}
