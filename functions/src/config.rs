//! Configuration shared by the function binaries: connection settings read from
//! flags or `DROPGATE_*` environment variables (the local stack writes the same names
//! into its env file), and a [`Secret`] wrapper so credentials never reach a log.

use std::fmt;
use std::str::FromStr;

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

/// Where Redis is.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL, e.g. `redis://127.0.0.1:6379/0` (`rediss://` for TLS). May carry a
    /// password, so it is kept secret.
    #[arg(long = "redis-url", env = "DROPGATE_REDIS_URL", hide_env_values = true)]
    pub url: Secret<String>,
}

/// Where PostgreSQL is.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. `postgres://dropgate:...@127.0.0.1:5432/dropgate`.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub url: Secret<String>,
}

/// Where the Kafka-protocol broker is.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Comma-separated bootstrap brokers, e.g. `127.0.0.1:9092`.
    #[arg(long = "kafka-brokers", env = "DROPGATE_KAFKA_BROKERS")]
    pub brokers: String,
    /// Topic of admitted users (step ④).
    #[arg(
        long,
        env = "DROPGATE_TOPIC_WAITING_QUEUE",
        default_value = "waiting-queue"
    )]
    pub waiting_queue_topic: String,
    /// Topic of draw results (step ⑦).
    #[arg(
        long,
        env = "DROPGATE_TOPIC_RESULT_NOTIFICATION",
        default_value = "result-notification"
    )]
    pub result_notification_topic: String,
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
