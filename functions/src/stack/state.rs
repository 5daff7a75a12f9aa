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
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Component; 3] = [Component::Redis, Component::Postgres, Component::Broker];

    /// The process name (`/proc/<pid>/comm`) that `down` checks before signalling.
    pub fn program(self) -> &'static str {
        match self {
            Component::Redis => "redis-server",
            Component::Postgres => "postgres",
            Component::Broker => "tansu",
        }
    }

    /// Short name for messages and log files.
    pub fn name(self) -> &'static str {
        match self {
            Component::Redis => "redis",
            Component::Postgres => "postgres",
            Component::Broker => "broker",
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
    /// Where PostgreSQL keeps its data: inside the state dir unless the server's
    /// unprivileged user cannot reach it there.
    pub postgres_dir: Option<PathBuf>,
    /// Partitions of each topic.
    pub partitions: u32,
}

impl StackState {
    /// The recorded server of `component`.
    pub fn server(&self, component: Component) -> Option<&Server> {
        match component {
            Component::Redis => self.redis.as_ref(),
            Component::Postgres => self.postgres.as_ref(),
            Component::Broker => self.broker.as_ref(),
        }
    }

    /// Records (or clears) the server of `component`.
    pub fn set_server(&mut self, component: Component, server: Option<Server>) {
        match component {
            Component::Redis => self.redis = server,
            Component::Postgres => self.postgres = server,
            Component::Broker => self.broker = server,
        }
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
        std::fs::write(&temp, bytes)
            .with_context(|| format!("Failed to write {}", temp.display()))?;
        std::fs::rename(&temp, &path)
            .with_context(|| format!("Failed to replace {}", path.display()))
    }
}

/// `<dir>/stack.json`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("stack.json")
}
