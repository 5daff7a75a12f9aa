//! goods-worker (steps ⑤⑥⑦): consume admitted users in batches, decide each batch in
//! one PostgreSQL transaction, publish the results from the outbox, and only then
//! commit the consumed offsets.
//!
//! Every step is safe to repeat: a batch redelivered after a crash finds its users in
//! `draws` and re-announces their outcomes; results committed but not yet published
//! stay in the outbox until the re-send loop delivers them.
//!
//! On the Pub/Sub transport the admissions arrive as push requests instead
//! ([`GoodsPush`]); they are decided, recorded and published by the same code.

mod push;
pub mod store;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use dropgate_core::{Admitted, EventId, Message as _};
use futures_util::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;

use crate::bus::Publisher;
use crate::config::{DatabaseArgs, KafkaArgs};
use crate::failpoint;
use crate::kafka;
use crate::ops_server::{OpsArgs, Readiness};
pub use push::GoodsPush;
pub use store::{BatchOutcome, OutboxRow, record_batch};

/// goods-worker settings.
#[derive(Debug, Clone, clap::Args)]
pub struct GoodsArgs {
    /// Where PostgreSQL is.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Where Kafka is.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Health and metrics port.
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Consumer group on the waiting-queue topic.
    #[arg(long, env = "DROPGATE_GOODS_GROUP", default_value = "goods-worker")]
    pub group: String,
    /// Most users decided per transaction.
    #[arg(long, env = "DROPGATE_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// How long a batch waits to fill after its first message (ms).
    #[arg(long, env = "DROPGATE_BATCH_WAIT_MS", default_value_t = 5)]
    pub batch_wait_ms: u64,
    /// Database connections.
    #[arg(long, env = "DROPGATE_DB_POOL", default_value_t = 4)]
    pub db_pool: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or_default()
}

/// What both transports do with admissions: decide them in PostgreSQL, publish the
/// results from the outbox, mark them sent. Only how admissions arrive and how their
/// receipt is acknowledged (offsets, push answers) differs.
#[derive(Clone)]
struct Settler {
    pool: PgPool,
    publisher: Publisher,
}

/// What became of one event's admissions.
enum Settled {
    /// Recorded (and, if the transport answered, published).
    Recorded,
    /// The event does not exist: nothing can be drawn for it.
    UnknownEvent,
}

impl Settler {
    /// Records one event's admissions in one transaction, then publishes their results
    /// and marks them sent. Fails only if nothing was recorded; once the transaction
    /// has committed, the results are durable in the outbox, and what fails to publish
    /// now is re-sent by [`resend_loop`].
    async fn settle_event(&self, event: &EventId, admissions: &[Admitted]) -> Result<Settled> {
        let recorded = record_batch(&self.pool, event, admissions, now_ms(), || {
            failpoint::hit("goods_before_commit");
        })
        .await?;
        let outcome = match recorded {
            Ok(outcome) => outcome,
            Err(refused) => {
                tracing::error!(%refused, users = admissions.len(), "batch skipped");
                metrics::counter!("dropgate_goods_skipped_total", "reason" => "unknown_event")
                    .increment(admissions.len() as u64);
                return Ok(Settled::UnknownEvent);
            }
        };
        failpoint::hit("goods_after_commit_before_publish");
        for (result, count) in &outcome.decided {
            metrics::counter!("dropgate_goods_draws_total", "outcome" => result.as_str())
                .increment(*count);
        }
        metrics::counter!("dropgate_goods_reannounced_total").increment(outcome.reannounced);
        metrics::gauge!("dropgate_goods_stock_left", "event" => event.to_string())
            .set(outcome.stock_left as f64);
        let sent = publish(&self.publisher, &outcome.outbox).await;
        if let Err(error) = store::mark_sent(&self.pool, &sent).await {
            // The rows stay unsent and are delivered again later: consumers dedupe.
            tracing::warn!(error = %format!("{error:#}"), "could not mark results sent");
        }
        Ok(Settled::Recorded)
    }
}

/// Admissions grouped by event, each group in arrival order.
fn by_event(admissions: Vec<Admitted>) -> HashMap<EventId, Vec<Admitted>> {
    let mut grouped: HashMap<EventId, Vec<Admitted>> = HashMap::new();
    for admitted in admissions {
        grouped
            .entry(admitted.event_id.clone())
            .or_default()
            .push(admitted);
    }
    grouped
}

async fn connect_database(args: &GoodsArgs) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(args.db_pool.max(2))
        .acquire_timeout(Duration::from_secs(5))
        .connect(args.database.url.expose())
        .await
        .context("Failed to connect to PostgreSQL (DATABASE_URL)")
}

/// The worker's connections.
pub struct GoodsWorker {
    settler: Settler,
    consumer: StreamConsumer,
    batch_size: usize,
    batch_wait: Duration,
    readiness: Readiness,
}

/// A batch's messages, decoded, and where each partition's consumption ends.
struct Batch {
    admissions: Vec<Admitted>,
    /// (topic, partition) → next offset to consume.
    positions: HashMap<(String, i32), i64>,
    malformed: u64,
}

impl GoodsWorker {
    /// Connects to PostgreSQL and Kafka; fails with a clear message when either is
    /// unusable.
    pub async fn connect(args: &GoodsArgs, readiness: Readiness) -> Result<Self> {
        let pool = connect_database(args).await?;
        let consumer = kafka::consumer(&args.kafka, &args.group, &args.kafka.waiting_queue_topic)?;
        let publisher = Publisher::kafka(&args.kafka, &args.kafka.result_notification_topic)?;
        Ok(Self {
            settler: Settler { pool, publisher },
            consumer,
            batch_size: args.batch_size as usize,
            batch_wait: Duration::from_millis(args.batch_wait_ms),
            readiness,
        })
    }

    /// Runs until `shutdown` turns true; the batch in hand is finished and committed
    /// first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let resend = tokio::spawn(resend_loop(self.settler.clone(), shutdown.clone()));
        self.readiness.set(true);
        loop {
            let mut batch = Batch {
                admissions: Vec::with_capacity(self.batch_size),
                positions: HashMap::new(),
                malformed: 0,
            };
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
        resend.abort();
        tracing::info!("goods-worker stopped");
        Ok(())
    }

    /// Decides, publishes and commits one batch, retrying the database until it
    /// succeeds: a message is never committed before its result is durable.
    async fn settle(&self, batch: Batch, shutdown: &watch::Receiver<bool>) -> Result<()> {
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        for (event, admissions) in by_event(batch.admissions) {
            loop {
                match self.settler.settle_event(&event, &admissions).await {
                    Ok(_) => break,
                    Err(error) => {
                        self.readiness.set(false);
                        if *shutdown.borrow() {
                            // Nothing was committed: the next owner of these partitions
                            // redoes the batch.
                            return Err(error.context("stopping with an unrecorded batch"));
                        }
                        tracing::warn!(error = %format!("{error:#}"), "batch failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            self.readiness.set(true);
        }
        if batch.malformed > 0 {
            metrics::counter!("dropgate_goods_malformed_total").increment(batch.malformed);
        }
        self.commit(&batch.positions)?;
        metrics::histogram!("dropgate_goods_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn commit(&self, positions: &HashMap<(String, i32), i64>) -> Result<()> {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in positions {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .context("Failed to build the offsets to commit")?;
        }
        if offsets.count() == 0 {
            return Ok(());
        }
        if let Err(error) = self.consumer.commit(&offsets, CommitMode::Sync) {
            // After a rebalance the partitions belong to another worker, which redoes
            // the batch; the draws are already recorded, so it only re-announces.
            tracing::warn!(%error, "offset commit failed; the batch will be re-announced");
        }
        Ok(())
    }
}

impl Batch {
    fn add(&mut self, message: &BorrowedMessage<'_>) {
        let position = (message.topic().to_owned(), message.partition());
        let next = message.offset() + 1;
        self.positions
            .entry(position)
            .and_modify(|kept| *kept = (*kept).max(next))
            .or_insert(next);
        match Admitted::decode(message.payload().unwrap_or_default()) {
            Ok(admitted) => self.admissions.push(admitted),
            Err(error) => {
                // Skipped (and committed): a message no build can read must not block
                // its partition forever.
                tracing::error!(
                    %error,
                    partition = message.partition(),
                    offset = message.offset(),
                    "malformed admission skipped"
                );
                self.malformed += 1;
            }
        }
    }
}

/// Publishes `rows` and returns the ids delivered.
async fn publish(publisher: &Publisher, rows: &[OutboxRow]) -> Vec<i64> {
    let deliveries = rows.iter().map(|row| async move {
        match publisher.publish(&row.key, &row.payload).await {
            Ok(()) => Some(row.id),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), key = %row.key, "result not delivered; the re-send loop retries");
                None
            }
        }
    });
    join_all(deliveries).await.into_iter().flatten().collect()
}

/// How old an unsent outbox row must be before the re-send loop takes it: younger
/// rows are still being published by the worker that wrote them.
const RESEND_AFTER: Duration = Duration::from_secs(5);

/// Delivers outbox rows a crashed or failing worker left unsent.
async fn resend_loop(settler: Settler, mut shutdown: watch::Receiver<bool>) {
    loop {
        match resend_once(&settler.pool, &settler.publisher).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "re-sent results left in the outbox"),
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "outbox re-send failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// One pass of the re-send loop; rows locked by another worker's pass are skipped.
pub async fn resend_once(pool: &PgPool, publisher: &Publisher) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
        "select outbox_id, message_key, payload from outbox
          where sent_at is null and created_at < now() - make_interval(secs => $1)
          order by outbox_id limit 1000
          for update skip locked",
    )
    .bind(RESEND_AFTER.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    let rows: Vec<OutboxRow> = rows
        .into_iter()
        .map(|(id, key, payload)| OutboxRow { id, key, payload })
        .collect();
    let sent = publish(publisher, &rows).await;
    sqlx::query("update outbox set sent_at = now() where outbox_id = any($1)")
        .bind(&sent)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("dropgate_goods_resent_total").increment(sent.len() as u64);
    Ok(sent.len())
}
