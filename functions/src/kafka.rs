//! Kafka clients configured the one way dropgate uses them: idempotent producers that
//! wait for every in-sync replica, and consumer groups that commit by hand only after
//! the work a message caused is durable.

use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

use crate::config::KafkaArgs;

/// How long a produce may wait for delivery before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn base(args: &KafkaArgs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        // Reconnect quickly after a broker restart instead of backing off for 10 s.
        .set("reconnect.backoff.max.ms", "1000");
    config
}

/// An idempotent producer: acks from all in-sync replicas, retries that can neither
/// duplicate nor reorder a partition's messages.
pub fn producer(args: &KafkaArgs) -> Result<FutureProducer> {
    base(args)
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
        .create()
        .context("Failed to create the Kafka producer")
}

/// A consumer in `group` subscribed to `topic`, committing only by hand. A new group
/// starts from the earliest message, so nothing produced before it joined is skipped.
pub fn consumer(args: &KafkaArgs, group: &str, topic: &str) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = base(args)
        .set("client.id", unique_client_id(group))
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create()
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
