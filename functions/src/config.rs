//! Configuration shared by the function binaries: connection settings read from
//! flags or `DROPGATE_*` environment variables (the local stack writes the same names
//! into its env file), and a [`Secret`] wrapper so credentials never reach a log.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use redis::{ConnectionAddr, IntoConnectionInfo};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

pub use crate::kafka::security::KafkaSecurityArgs;
use crate::tls::{REQUIRE_TLS_ENV, read_ca_file};

/// A value that must not be printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a sensitive value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value, for the one place that needs it (a connection call).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret<String> {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Where Redis is, and how to trust it.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL, e.g. `redis://127.0.0.1:6379/0`, or `rediss://` for TLS. A password
    /// in the URL is sent as AUTH, so the URL is kept secret. With
    /// `DROPGATE_REDIS_MODE=cluster`, one or more of the cluster's nodes separated by
    /// commas (Memorystore for Redis Cluster: its discovery endpoint).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "DROPGATE_REDIS_URL",
        hide_env_values = true
    )]
    pub url: Secret<String>,
    /// `single`: one Redis (with or without replicas behind one address). `cluster`:
    /// a Redis Cluster; each event's keys share one hash slot, so every script and
    /// transaction stays on one primary, and events spread over the primaries.
    #[arg(
        id = "redis_mode",
        long = "redis-mode",
        env = "DROPGATE_REDIS_MODE",
        value_enum,
        default_value_t = RedisMode::Single
    )]
    pub mode: RedisMode,
    /// PEM file of the CA that signed Redis' server certificate (Memorystore's server
    /// CA). Requires a `rediss://` URL; without it a TLS server is checked against the
    /// system's trusted roots.
    #[arg(
        id = "redis_ca_file",
        long = "redis-ca-file",
        env = "DROPGATE_REDIS_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// What of the server's certificate is checked: `full` (signed by the CA and
    /// naming the host) or `ca` (signed by the CA in DROPGATE_REDIS_CA_FILE, whatever
    /// name it carries: for a per-instance CA like Memorystore's, whose certificate
    /// names its IP only in the common name).
    #[arg(
        id = "redis_tls_verify",
        long = "redis-tls-verify",
        env = "DROPGATE_REDIS_TLS_VERIFY",
        value_enum,
        default_value_t = TlsVerify::Full
    )]
    pub verify: TlsVerify,
    /// Refuse to start unless Redis is reached over TLS with a verified certificate
    /// (`DROPGATE_REQUIRE_TLS` covers Redis, PostgreSQL and Kafka at once).
    #[arg(id = "redis_require_tls", long = "redis-require-tls", env = REQUIRE_TLS_ENV)]
    pub require_tls: bool,
}

/// Whether Redis is one server or a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RedisMode {
    /// One address: a standalone Redis, or a primary with replicas behind one endpoint.
    #[default]
    Single,
    /// A Redis Cluster, reached through any of its nodes.
    Cluster,
}

/// How much of a TLS server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TlsVerify {
    /// Signed by a trusted CA and naming the host connected to.
    #[default]
    Full,
    /// Signed by the configured CA file; the name is not checked.
    Ca,
}

impl RedisArgs {
    /// Settings for `url` alone: plaintext or TLS as the scheme says, system roots.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url.into()),
            mode: RedisMode::Single,
            ca_file: None,
            verify: TlsVerify::Full,
            require_tls: false,
        }
    }

    /// Settings for a Redis Cluster reached through `nodes` (one is enough).
    pub fn cluster(nodes: &[String]) -> Self {
        Self {
            mode: RedisMode::Cluster,
            ..Self::url(nodes.join(","))
        }
    }

    /// The URLs in `DROPGATE_REDIS_URL`: one in single mode, one per listed node in
    /// cluster mode.
    fn node_infos(&self) -> Result<Vec<redis::ConnectionInfo>> {
        let urls: Vec<&str> = match self.mode {
            RedisMode::Single => vec![self.url.expose().as_str()],
            RedisMode::Cluster => self
                .url
                .expose()
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .collect(),
        };
        if urls.is_empty() {
            bail!("DROPGATE_REDIS_URL names no Redis node");
        }
        urls.into_iter()
            .map(|url| {
                url.into_connection_info().map_err(|error| {
                    anyhow!("DROPGATE_REDIS_URL is not a valid Redis URL: {error}")
                })
            })
            .collect()
    }

    /// A client for these settings (in cluster mode, for the first listed node). Fails,
    /// naming the setting, when they contradict each other or ask for less than they
    /// must: a CA file with a plaintext URL, plaintext while TLS is required, or a URL
    /// that turns verification off.
    pub fn client(&self) -> Result<redis::Client> {
        let first = self.node_infos()?.swap_remove(0);
        self.checked_client(first)
    }

    /// A client for the node at `host:port` with the same credentials and TLS
    /// settings: queue-api subscribes to notices on one node of a cluster.
    pub fn client_at(&self, host: &str, port: u16) -> Result<redis::Client> {
        let mut info = self.node_infos()?.swap_remove(0);
        info.addr = match info.addr {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        self.checked_client(info)
    }

    /// A cluster client for these settings, with the same checks as
    /// [`RedisArgs::client`] for every listed node.
    pub fn cluster_client(&self) -> Result<redis::cluster::ClusterClient> {
        let nodes = self.node_infos()?;
        for node in &nodes {
            self.checked_client(node.clone())?;
        }
        let tls = matches!(nodes[0].addr, ConnectionAddr::TcpTls { .. });
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .retries(3)
            .max_retry_wait(1_000);
        if tls {
            if let Some(path) = &self.ca_file {
                builder = builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(read_ca_file(path, "DROPGATE_REDIS_CA_FILE")?),
                });
            }
            if self.verify == TlsVerify::Ca {
                builder = builder.danger_accept_invalid_hostnames(true);
            }
        }
        builder
            .build()
            .map_err(|error| anyhow!("DROPGATE_REDIS_URL: {error}"))
    }

    fn checked_client(&self, info: redis::ConnectionInfo) -> Result<redis::Client> {
        match &info.addr {
            ConnectionAddr::TcpTls { insecure: true, .. } => bail!(
                "DROPGATE_REDIS_URL ends in #insecure, which skips the server certificate \
                 check; remove it and name the server's CA in DROPGATE_REDIS_CA_FILE"
            ),
            ConnectionAddr::TcpTls { .. } => {}
            _ if self.ca_file.is_some() => bail!(
                "DROPGATE_REDIS_CA_FILE is set but DROPGATE_REDIS_URL is not rediss://; \
                 the connection would be plaintext"
            ),
            _ if self.require_tls => bail!(
                "{REQUIRE_TLS_ENV} is set but DROPGATE_REDIS_URL is not rediss://; use \
                 rediss:// and DROPGATE_REDIS_CA_FILE"
            ),
            _ => return Ok(redis::Client::open(info)?),
        }
        let Some(path) = &self.ca_file else {
            if self.verify == TlsVerify::Ca {
                bail!(
                    "DROPGATE_REDIS_TLS_VERIFY=ca needs DROPGATE_REDIS_CA_FILE: without a CA \
                     of its own, skipping the name would trust any public certificate"
                );
            }
            return Ok(redis::Client::open(info)?);
        };
        let root_cert = read_ca_file(path, "DROPGATE_REDIS_CA_FILE")?;
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        };
        let client = redis::Client::build_with_tls(info, certificates)
            .map_err(|error| anyhow!("DROPGATE_REDIS_CA_FILE: {error}"))?;
        if self.verify == TlsVerify::Full {
            return Ok(client);
        }
        let mut info = client.get_connection_info().clone();
        info.addr.set_danger_accept_invalid_hostnames(true);
        Ok(redis::Client::open(info)?)
    }
}

/// Where PostgreSQL is, and how to trust it.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. `postgres://dropgate:...@127.0.0.1:5432/dropgate`, with
    /// `?sslmode=verify-full` (or `verify-ca`) for TLS.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub url: Secret<String>,
    /// PEM file of the CA that signed PostgreSQL's server certificate (Cloud SQL's
    /// server CA). With it the URL's sslmode must verify: `verify-full`, or `verify-ca`
    /// where the certificate does not name the address (Cloud SQL by private IP);
    /// without an sslmode, `verify-full` is used.
    #[arg(
        id = "database_ca_file",
        long = "database-ca-file",
        env = "DROPGATE_DATABASE_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// Refuse to start unless PostgreSQL is reached over TLS with a verified
    /// certificate (`DROPGATE_REQUIRE_TLS` covers Redis, PostgreSQL and Kafka at once).
    #[arg(
        id = "database_require_tls",
        long = "database-require-tls",
        env = REQUIRE_TLS_ENV
    )]
    pub require_tls: bool,
}

impl DatabaseArgs {
    /// Settings for `url` alone.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url.into()),
            ca_file: None,
            require_tls: false,
        }
    }

    /// Connection options for these settings; fails, naming the setting, when the
    /// sslmode would not verify the server but the settings ask it to.
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        let url = self.url.expose();
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|error| anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {error}"))?;
        let explicit_mode = url_parameter(url, "sslmode");
        if let Some(path) = &self.ca_file {
            read_ca_file(path, "DROPGATE_DATABASE_CA_FILE")?;
            options = options.ssl_root_cert(path);
            match explicit_mode.as_deref() {
                None => options = options.ssl_mode(PgSslMode::VerifyFull),
                Some("verify-full" | "verify-ca") => {}
                Some(mode) => bail!(
                    "DROPGATE_DATABASE_CA_FILE is set but DATABASE_URL has sslmode={mode}, \
                     which does not check the server certificate; use sslmode=verify-full \
                     (or verify-ca)"
                ),
            }
        }
        let verifies = matches!(
            options.get_ssl_mode(),
            PgSslMode::VerifyFull | PgSslMode::VerifyCa
        );
        if self.require_tls && !verifies {
            bail!(
                "{REQUIRE_TLS_ENV} is set but DATABASE_URL has sslmode={}, which does not \
                 verify the server; use sslmode=verify-full (or verify-ca) and \
                 DROPGATE_DATABASE_CA_FILE",
                explicit_mode.as_deref().unwrap_or("prefer")
            );
        }
        Ok(options)
    }

    /// A pool of at most `max_connections`, connected once to prove the settings
    /// (address, password, certificate) work.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(self.connect_options()?)
            .await
            .context(
                "Failed to connect to PostgreSQL (DATABASE_URL; for TLS also \
                 DROPGATE_DATABASE_CA_FILE)",
            )
    }
}

/// The value of `name` in a URL's query string, if present.
fn url_parameter(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_ascii_lowercase())
    })
}

/// Where the Kafka-protocol broker is.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Comma-separated bootstrap brokers, e.g. `127.0.0.1:9092`.
    #[arg(long = "kafka-brokers", env = "DROPGATE_KAFKA_BROKERS")]
    pub brokers: String,
    /// How the connection is encrypted and authenticated.
    #[command(flatten)]
    pub security: KafkaSecurityArgs,
    /// This process's stable place in its consumer groups (`group.instance.id`): a
    /// restarted member rejoins as itself, without a rebalance. Kubernetes sets the
    /// pod name, the local stack the instance name; unset, membership is dynamic.
    #[arg(long = "kafka-instance-id", env = "DROPGATE_KAFKA_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// librdkafka's own debug contexts (e.g. `cgrp,topic,fetch`), logged through the
    /// service's log, for diagnosing group membership in the field.
    #[arg(long = "kafka-debug", env = "DROPGATE_KAFKA_DEBUG")]
    pub debug: Option<String>,
}

impl KafkaArgs {
    /// Plaintext brokers at `brokers` with nothing else set (tools and tests).
    pub fn brokers(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            security: KafkaSecurityArgs::default(),
            instance_id: None,
            debug: None,
        }
    }
}

/// The two topics between the services, on whichever transport carries them (Kafka
/// topics, or Pub/Sub topics of the same names).
#[derive(Debug, Clone, clap::Args)]
pub struct TopicArgs {
    /// Topic of admitted users (step ④).
    #[arg(
        long = "waiting-queue-topic",
        env = "DROPGATE_TOPIC_WAITING_QUEUE",
        default_value = "waiting-queue"
    )]
    pub waiting_queue: String,
    /// Topic of draw results (step ⑦).
    #[arg(
        long = "result-notification-topic",
        env = "DROPGATE_TOPIC_RESULT_NOTIFICATION",
        default_value = "result-notification"
    )]
    pub result_notification: String,
    /// Topic of messages a consumer could not read (unknown version, malformed), kept
    /// with the reason for `dropgate dead-letter replay`.
    #[arg(
        long = "dead-letter-topic",
        env = "DROPGATE_TOPIC_DEAD_LETTER",
        default_value = "dead-letter"
    )]
    pub dead_letter: String,
    /// Topic of each draw batch's winners, for a downstream checkout (goods-worker
    /// publishes it; nothing in dropgate reads it).
    #[arg(
        long = "winners-topic",
        env = "DROPGATE_TOPIC_WINNERS",
        default_value = "winners"
    )]
    pub winners: String,
}

impl TopicArgs {
    /// The given topic names, with the default dead-letter and winners topics.
    pub fn new(waiting_queue: impl Into<String>, result_notification: impl Into<String>) -> Self {
        Self {
            waiting_queue: waiting_queue.into(),
            result_notification: result_notification.into(),
            dead_letter: "dead-letter".to_owned(),
            winners: "winners".to_owned(),
        }
    }
}

impl Default for TopicArgs {
    fn default() -> Self {
        Self::new("waiting-queue", "result-notification")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        redis: RedisArgs,
    }

    #[test]
    fn secrets_never_print() {
        let probe = Probe::parse_from(["probe", "--redis-url", "redis://:hunter2@h:1/0"]);
        let shown = format!("{probe:?} {}", probe.redis.url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(probe.redis.url.expose(), "redis://:hunter2@h:1/0");
    }
}
