//! result-relay (step ⑧): consumes `result-notification` and writes each user's
//! outcome into their Redis record, where queue-api answers polls and wakes streams.
//!
//! Delivery is at least once: a batch's offsets are committed only after Redis has
//! taken every result in it, and applying a result a second time changes nothing, so
//! a crash anywhere costs a redelivery, never a lost or doubled outcome.
//!
//! On the Pub/Sub transport the results arrive as push requests instead
//! ([`RelayPush`]) and go through the same script.

mod push;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::RedisConn;
use anyhow::{Context, Result};
use dropgate_core::{DrawResult, Message as _, UserRecord};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::{BorrowedMessage, Message as _};
use tokio::sync::watch;

use crate::bus::Publisher;
use crate::config::{KafkaArgs, RedisArgs, TopicArgs};
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::kafka::{self, Positions};
use crate::ops_server::{OpsArgs, Readiness};
use crate::queue::QueueStore;
use crate::queue::scripts::apply_result::{Applied, ApplyResultScript};
use crate::service::Runner;
pub use push::RelayPush;

/// How long start-up waits for the broker to describe the results topic.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause after Redis refused a batch; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two attempts at a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// result-relay settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Where Redis is.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Where Kafka is.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The relay reads the result-notification topic.
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Health and metrics port.
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Consumer group on the result-notification topic. Replicas share it, so each
    /// partition is relayed by one of them.
    #[arg(long, env = "DROPGATE_RELAY_GROUP", default_value = "result-relay")]
    pub group: String,
    /// Most results applied in one Redis pipeline (and committed together).
    #[arg(long, env = "DROPGATE_RELAY_BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    pub batch_size: u32,
    /// How long a batch waits to fill after its first message (ms).
    #[arg(long, env = "DROPGATE_RELAY_BATCH_WAIT_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub batch_wait_ms: u64,
}

/// The relay's connections.
pub struct Relay {
    /// Reconnects by itself after a Redis restart; the batch is retried meanwhile.
    redis: RedisConn,
    /// Shared with the blocking tasks that commit offsets.
    consumer: Arc<kafka::Consumer>,
    script: ApplyResultScript,
    dead_letters: DeadLetters,
    batch_size: usize,
    batch_wait: Duration,
    /// Off while Redis refuses batches, so the orchestrator sees the relay stalled.
    readiness: Readiness,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// One batch of consumed messages.
#[derive(Default)]
struct Batch {
    /// Decoded results.
    results: Vec<DrawResult>,
    /// Each result's (partition, offset), for logs.
    origins: Vec<(i32, i64)>,
    /// What to commit.
    positions: Positions,
    /// Messages no decoder of this build reads: dead-lettered before the commit.
    unreadable: Vec<DeadLetter>,
}

impl Relay {
    /// Connects to Redis and joins the consumer group; fails with a clear message when
    /// Redis cannot be reached, the Kafka settings are invalid or the results topic
    /// does not exist.
    pub async fn connect(args: &RelayArgs, readiness: Readiness) -> Result<Self> {
        let store = QueueStore::connect(&args.redis)
            .await
            .context("Redis (DROPGATE_REDIS_URL) is not usable")?;
        let topic = &args.topics.result_notification;
        let consumer = Arc::new(kafka::consumer(&args.kafka, &args.group, topic).await?);
        check_topic(&consumer, topic, &args.kafka.brokers).await?;
        let dead_letters =
            DeadLetters::new(Publisher::kafka(&args.kafka, &args.topics.dead_letter).await?);
        Ok(Self {
            redis: store.connection(),
            consumer,
            script: ApplyResultScript::default(),
            dead_letters,
            batch_size: args.batch_size as usize,
            batch_wait: Duration::from_millis(args.batch_wait_ms),
            readiness,
        })
    }

    /// Relays until `shutdown` turns true; the batch in hand is applied and committed
    /// first. Fails only when told to stop while Redis refuses the batch in hand (it
    /// stays uncommitted and is redelivered to the next owner of its partitions).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        self.readiness.set(true);
        loop {
            let mut batch = Batch::default();
            let collected = kafka::collect_batch(
                &self.consumer,
                self.batch_size,
                self.batch_wait,
                &mut shutdown,
                |message| batch.add(message),
            )
            .await;
            match collected {
                None => break,
                Some(0) => continue,
                Some(_) => {}
            }
            self.settle(batch, &shutdown).await?;
        }
        self.readiness.set(false);
        tracing::info!("result-relay stopped");
        Ok(())
    }

    /// Applies one batch, retrying Redis until it takes every result, then commits.
    async fn settle(&mut self, batch: Batch, shutdown: &watch::Receiver<bool>) -> Result<()> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let answers = loop {
            match self.script.apply_all(&mut self.redis, &batch.results).await {
                Ok(answers) => break answers,
                Err(error) => {
                    self.readiness.set(false);
                    metrics::counter!("dropgate_relay_redis_failures_total").increment(1);
                    if *shutdown.borrow() {
                        return Err(error.context(
                            "stopping with a batch Redis did not take; it was not committed \
                             and will be redelivered",
                        ));
                    }
                    tracing::warn!(error = %format!("{error:#}"), ?backoff, "batch failed; retrying");
                    let mut wake = shutdown.clone();
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = wake.wait_for(|stopping| *stopping) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        self.readiness.set(true);
        for ((result, (partition, offset)), answer) in
            batch.results.iter().zip(&batch.origins).zip(answers)
        {
            report(
                result,
                Origin::Kafka {
                    partition: *partition,
                    offset: *offset,
                },
                answer,
            );
        }
        self.dead_letters
            .send(&batch.unreadable, shutdown)
            .await
            .context("the batch's unreadable messages were not dead-lettered")?;
        crate::failpoint::hit("relay_after_redis_before_commit");
        self.commit(batch.positions).await;
        metrics::histogram!("dropgate_relay_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Commits where each partition's batch ended. A failed commit is logged, not
    /// retried: the next batch's commit covers it, and if none comes the results are
    /// redelivered and found applied.
    async fn commit(&self, positions: Positions) {
        let offsets = match positions.to_commit() {
            Ok(Some(offsets)) => offsets,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "offsets not committed");
                return;
            }
        };
        let consumer = Arc::clone(&self.consumer);
        // A synchronous commit waits for the broker: off the async workers.
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync)).await;
        let failure = match committed {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        metrics::counter!("dropgate_relay_commit_failures_total").increment(1);
        // Usually a rebalance: the partitions belong to another replica now, which
        // re-applies the batch and finds it applied.
        tracing::warn!(error = %failure, "offset commit failed; the batch will be redelivered");
    }
}

impl Batch {
    fn add(&mut self, message: &BorrowedMessage<'_>) {
        self.positions.pass(message);
        match DrawResult::decode(message.payload().unwrap_or_default()) {
            Ok(result) => {
                self.results.push(result);
                self.origins.push((message.partition(), message.offset()));
            }
            // Set aside, not skipped: dead-lettered before the offset is committed, so
            // it neither holds up the results behind it nor is lost.
            Err(error) => self.unreadable.push(DeadLetter::of(message, &error)),
        }
    }
}

/// Where a result came from, for logs.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    /// A Kafka record.
    Kafka { partition: i32, offset: i64 },
    /// A Pub/Sub push request.
    Push { message_id: &'a str },
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Kafka { partition, offset } => {
                write!(f, "partition {partition} offset {offset}")
            }
            Origin::Push { message_id } => write!(f, "message {message_id}"),
        }
    }
}

/// Logs and counts what Redis did with one result.
fn report(result: &DrawResult, origin: Origin<'_>, answer: Applied) {
    let member = result.user.member();
    let event = &result.event_id;
    let stock_emptied = match answer {
        Applied::New {
            previous,
            stock_emptied,
        } => {
            metrics::counter!("dropgate_relay_applied_total", "outcome" => result.outcome.as_str())
                .increment(1);
            let to = result.outcome.user_state();
            match previous.as_deref().map(UserRecord::decode) {
                Some(Ok(record)) if record.state.step(to).is_ok() => {}
                Some(Ok(record)) => tracing::warn!(
                    %event, %member, from = %record.state, %to,
                    "result for a user Redis did not know as admitted; applied, as the draw is recorded"
                ),
                Some(Err(error)) => tracing::warn!(
                    %event, %member, %error, "unreadable record replaced by the result"
                ),
                None => tracing::warn!(
                    %event, %member, "result for a user without a record; record created"
                ),
            }
            stock_emptied
        }
        Applied::Duplicate { stock_emptied } => {
            metrics::counter!("dropgate_relay_duplicates_total").increment(1);
            tracing::debug!(%event, %member, %origin, "result already applied");
            stock_emptied
        }
        Applied::Conflict {
            previous,
            stock_emptied,
        } => {
            metrics::counter!("dropgate_relay_conflicts_total").increment(1);
            let kept = UserRecord::decode(&previous)
                .map(|record| record.state.to_string())
                .unwrap_or(previous);
            tracing::error!(
                %event, %member, %kept, refused = %result.outcome, %origin,
                decision_order = result.decision_order,
                "conflicting result ignored; the first outcome stands"
            );
            stock_emptied
        }
    };
    if stock_emptied {
        tracing::info!(%event, "stock reached 0; the admitter stops admitting");
    }
}

/// Fails unless the broker answers and knows `topic`: consuming a missing topic would
/// wait silently forever.
async fn check_topic(consumer: &Arc<kafka::Consumer>, topic: &str, brokers: &str) -> Result<()> {
    let consumer = Arc::clone(consumer);
    let name = topic.to_owned();
    let metadata =
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(Some(&name), METADATA_TIMEOUT))
            .await
            .context("Failed to ask Kafka for metadata")?
            .with_context(|| {
                format!("Failed to reach the Kafka brokers at {brokers} (DROPGATE_KAFKA_BROKERS)")
            })?;
    let known = metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    anyhow::ensure!(
        known,
        "the topic {topic} does not exist on {brokers}; create it first \
         (DROPGATE_TOPIC_RESULT_NOTIFICATION names it)"
    );
    Ok(())
}

/// The result-relay binary's settings.
#[derive(Debug, clap::Parser)]
#[command(
    name = "result-relay",
    version,
    about = "dropgate result-relay: draw results from result-notification into users' Redis records"
)]
pub struct RelayConfig {
    /// The relay's own settings.
    #[command(flatten)]
    pub relay: RelayArgs,
    /// Kafka or Pub/Sub.
    #[command(flatten)]
    pub transport: crate::bus::TransportArgs,
    /// Logs.
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
}

/// result-relay as a [`crate::service::Service`]: a consumer-group member on Kafka, a
/// push endpoint on Pub/Sub.
pub struct RelayService(Runner);

impl crate::service::Service for RelayService {
    const NAME: &'static str = "result-relay";
    type Config = RelayConfig;

    fn telemetry(config: &RelayConfig) -> &crate::telemetry::TelemetryArgs {
        &config.telemetry
    }

    async fn build(config: RelayConfig) -> Result<Self> {
        match config.transport.transport {
            crate::bus::Transport::Kafka => {
                config.transport.require_brokers(&config.relay.kafka)?;
                let readiness = Readiness::default();
                let relay = Relay::connect(&config.relay, readiness.clone()).await?;
                let ops = crate::ops_server::spawn(&config.relay.ops, readiness).await?;
                Ok(Self(Runner::looping(ops, move |shutdown| {
                    relay.run(shutdown)
                })))
            }
            crate::bus::Transport::PubSub => {
                let auth = config.transport.push.auth().await?;
                let relay = RelayPush::connect(&config.relay, auth, Readiness::default()).await?;
                let server = crate::pubsub::push::PushServer::start(|stopped| {
                    relay.start(config.relay.ops.health_addr, stopped)
                })
                .await?;
                Ok(Self(Runner::Push(server)))
            }
        }
    }

    fn addresses(&self) -> Vec<(&'static str, std::net::SocketAddr)> {
        self.0.addresses()
    }

    async fn run(self, shutdown: watch::Receiver<bool>) -> Result<()> {
        self.0.run(shutdown).await
    }
}
