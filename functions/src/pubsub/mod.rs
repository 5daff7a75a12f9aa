//! The Pub/Sub transport (Cloud Run): publishing with the Google client (feature
//! `pubsub`), and push endpoints that take Pub/Sub's HTTP deliveries.
//!
//! Pub/Sub pushes one message per request and redelivers anything not answered with
//! a 2xx, so an endpoint answers 2xx only once the message's effect is durable, and
//! every handler is idempotent (the same rules that make Kafka redeliveries harmless).

pub mod batcher;
pub mod dead_letters;
pub mod envelope;
pub mod oidc;
#[cfg(feature = "pubsub")]
pub mod publisher;
pub mod push;

/// Where Pub/Sub is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PubSubArgs {
    /// The Google Cloud project holding the topics.
    #[arg(long, env = "DROPGATE_PUBSUB_PROJECT")]
    pub pubsub_project: Option<String>,
    /// Another Pub/Sub endpoint (e.g. a regional one).
    #[arg(long, env = "DROPGATE_PUBSUB_ENDPOINT")]
    pub pubsub_endpoint: Option<String>,
    /// A Pub/Sub emulator (`host:port`), used without credentials instead of Google's
    /// service; the variable Google's own clients read.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pub pubsub_emulator_host: Option<String>,
}

/// The message attribute that carries the message's key (`platform:user`), as the
/// Kafka key does: push handlers do not need it, operators reading a dead-letter topic
/// do.
pub const KEY_ATTRIBUTE: &str = "key";

/// The full name of a topic given its short name, as the Pub/Sub API wants it.
pub fn topic_path(project: &str, topic: &str) -> String {
    if topic.starts_with("projects/") {
        topic.to_owned()
    } else {
        format!("projects/{project}/topics/{topic}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_topic_names_get_the_project() {
        assert_eq!(
            topic_path("drop-prod", "waiting-queue"),
            "projects/drop-prod/topics/waiting-queue"
        );
        assert_eq!(
            topic_path("ignored", "projects/other/topics/t-1"),
            "projects/other/topics/t-1"
        );
    }
}
