//! Kafka clients configured the one way dropgate uses them: idempotent producers that
//! wait for every in-sync replica, and consumer groups that commit by hand only after
//! the work a message caused is durable; encrypted and authenticated as
//! [`security`] says.

pub mod google_token;
pub mod security;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::consumer::{Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::config::KafkaArgs;
use google_token::GoogleTokens;

/// What every dropgate Kafka client carries: the OAUTHBEARER token source, when the
/// settings ask for Google tokens, and a consumer's group, for its lag gauge.
#[derive(Debug, Clone, Default)]
pub struct KafkaContext {
    tokens: Option<GoogleTokens>,
    group: Option<std::sync::Arc<str>>,
}

/// How often a consumer reports its lag (librdkafka's statistics).
const LAG_INTERVAL: Duration = Duration::from_secs(10);

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        match &self.tokens {
            Some(tokens) => tokens.current(),
            None => Err("OAUTHBEARER needs DROPGATE_KAFKA_SASL_MECHANISM=OAUTHBEARER".into()),
        }
    }

    /// A consumer's lag per assigned partition, as librdkafka computes it (the
    /// partition's high watermark minus the group's committed offset), as the gauge
    /// `dropgate_consumer_lag{group, topic, partition}`: how far the draw or the relay
    /// is behind.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(group) = &self.group else {
            return;
        };
        for (topic, partition, lag) in consumer_lags(&statistics) {
            metrics::gauge!(
                "dropgate_consumer_lag",
                "group" => group.to_string(),
                "topic" => topic.to_owned(),
                "partition" => partition.to_string()
            )
            .set(lag as f64);
        }
    }
}

/// (topic, partition, lag) of every partition the consumer has assigned and knows the
/// lag of (librdkafka reports -1 until it has fetched once and committed).
pub fn consumer_lags(statistics: &rdkafka::Statistics) -> Vec<(&str, i32, i64)> {
    statistics
        .topics
        .iter()
        .flat_map(|(topic, stats)| {
            stats
                .partitions
                .values()
                .filter(|partition| partition.partition >= 0 && partition.consumer_lag >= 0)
                .map(move |partition| (topic.as_str(), partition.partition, partition.consumer_lag))
        })
        .collect()
}

impl ConsumerContext for KafkaContext {}

/// A producer with dropgate's context.
pub type Producer = FutureProducer<KafkaContext>;
/// A consumer with dropgate's context.
pub type Consumer = StreamConsumer<KafkaContext>;

/// How long a produce may wait for delivery before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings every client shares, checked, and the context that goes with them
/// (fetching a first Google token when OAUTHBEARER is asked for).
async fn base(args: &KafkaArgs) -> Result<(ClientConfig, KafkaContext)> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        // Reconnect quickly after a broker restart instead of backing off for 10 s.
        .set("reconnect.backoff.max.ms", "1000");
    args.security.apply(&mut config)?;
    let tokens = if args.security.uses_google_tokens() {
        Some(GoogleTokens::shared(&args.security.metadata_url).await?)
    } else {
        None
    };
    if let Some(contexts) = args.debug.as_deref().filter(|c| !c.is_empty()) {
        config.set("debug", contexts);
    }
    Ok((
        config,
        KafkaContext {
            tokens,
            group: None,
        },
    ))
}

/// An idempotent producer: acks from all in-sync replicas, retries that can neither
/// duplicate nor reorder a partition's messages.
pub async fn producer(args: &KafkaArgs) -> Result<Producer> {
    let (mut config, context) = base(args).await?;
    config
        .set("client.id", unique_client_id("dropgate-producer"))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        // Batches form over a few milliseconds: throughput without visible latency.
        .set("linger.ms", "5")
        .create_with_context(context)
        .context("Failed to create the Kafka producer")
}

/// A consumer in `group` subscribed to `topic`, committing only by hand. A new group
/// starts from the earliest message, so nothing produced before it joined is skipped.
///
/// With [`KafkaArgs::instance_id`] set the member is static: a restarted process rejoins
/// under the identity it had, taking over its partitions (and the group leadership,
/// if it held it) without a rebalance. Without it, a member killed while it led the
/// group can leave the survivors of a tansu group agreeing on an empty assignment.
pub async fn consumer(args: &KafkaArgs, group: &str, topic: &str) -> Result<Consumer> {
    let (mut config, mut context) = base(args).await?;
    context.group = Some(group.into());
    if let Some(instance) = args.instance_id.as_deref().filter(|id| !id.is_empty()) {
        config.set("group.instance.id", instance);
    }
    let consumer: Consumer = config
        .set("client.id", unique_client_id(group))
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set(
            "statistics.interval.ms",
            LAG_INTERVAL.as_millis().to_string(),
        )
        .create_with_context(context)
        .context("Failed to create the Kafka consumer")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("Failed to subscribe to {topic}"))?;
    Ok(consumer)
}

/// A client id of this process and client alone, so broker logs and quotas tell the
/// replicas and their clients apart.
fn unique_client_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Collects one batch: waits for a first message (or `shutdown`), then takes up to
/// `max` messages in all, for at most `wait` after the first. Each message goes to
/// `add`. Returns `None` when told to stop before a message arrived, `Some(0)` when
/// the first receive failed (after a short pause, so a broken broker is not spun on),
/// else how many messages were added.
pub async fn collect_batch(
    consumer: &Consumer,
    max: usize,
    wait: Duration,
    shutdown: &mut watch::Receiver<bool>,
    mut add: impl FnMut(&BorrowedMessage<'_>),
) -> Option<usize> {
    let first = tokio::select! {
        message = consumer.recv() => message,
        _ = shutdown.wait_for(|stopping| *stopping) => return None,
    };
    match first {
        Ok(message) => add(&message),
        Err(error) => {
            tracing::warn!(%error, "consume failed");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Some(0);
        }
    }
    let mut taken = 1;
    let deadline = tokio::time::Instant::now() + wait;
    while taken < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => {
                add(&message);
                taken += 1;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "consume failed");
                break;
            }
            Err(_) => break,
        }
    }
    Some(taken)
}

/// Where consumption ends in each partition: (topic, partition) -> the next offset,
/// which is what a commit records.
#[derive(Debug, Default, Clone)]
pub struct Positions(HashMap<(String, i32), i64>);

impl Positions {
    /// Moves `message`'s partition past it (never back).
    pub fn pass(&mut self, message: &BorrowedMessage<'_>) {
        self.advance(message.topic(), message.partition(), message.offset() + 1);
    }

    /// Takes every partition of `other` at least as far as it went there.
    pub fn absorb(&mut self, other: &Positions) {
        for ((topic, partition), next) in &other.0 {
            self.advance(topic, *partition, *next);
        }
    }

    fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        self.0
            .entry((topic.to_owned(), partition))
            .and_modify(|kept| *kept = (*kept).max(next))
            .or_insert(next);
    }

    /// The offsets to commit; `None` when nothing was consumed.
    pub fn to_commit(&self) -> Result<Option<TopicPartitionList>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &self.0 {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .context("Failed to build the offsets to commit")?;
        }
        Ok(Some(offsets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_read_for_assigned_partitions_only() {
        let partition = |id: i32, lag: i64| rdkafka::statistics::Partition {
            partition: id,
            consumer_lag: lag,
            ..Default::default()
        };
        let mut statistics = rdkafka::Statistics::default();
        statistics.topics.insert(
            "waiting-queue".to_owned(),
            rdkafka::statistics::Topic {
                topic: "waiting-queue".to_owned(),
                partitions: [partition(0, 12), partition(1, -1), partition(-1, 0)]
                    .into_iter()
                    .map(|p| (p.partition, p))
                    .collect(),
                ..Default::default()
            },
        );
        assert_eq!(
            consumer_lags(&statistics),
            vec![("waiting-queue", 0, 12)],
            "not yet known (-1) and librdkafka's internal partition (-1) are left out"
        );
    }
}
