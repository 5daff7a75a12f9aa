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
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::{BorrowedMessage, Message as _};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::bus::Publisher;
use crate::config::{DatabaseArgs, KafkaArgs, TopicArgs};
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::failpoint;
use crate::kafka::{self, Positions};
use crate::ops_server::{OpsArgs, Readiness};
use crate::seed_vault::SeedKey;
use crate::service::Runner;
pub use push::GoodsPush;
pub use store::{BatchOutcome, OutboxRow, OutboxStream, record_batch};

/// goods-worker settings.
#[derive(Debug, Clone, clap::Args)]
pub struct GoodsArgs {
    /// Where PostgreSQL is.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Where Kafka is.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The topics admissions come from and results go to.
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Health and metrics port.
    #[command(flatten)]
    pub ops: OpsArgs,
    /// The key that opens each event's sealed seed.
    #[command(flatten)]
    pub seed_key: crate::seed_vault::SeedKeyArgs,
    /// Consumer group on the waiting-queue topic.
    #[arg(long, env = "DROPGATE_GOODS_GROUP", default_value = "goods-worker")]
    pub group: String,
    /// Most users decided per transaction.
    #[arg(long, env = "DROPGATE_GOODS_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// How long a batch waits to fill after its first message (ms).
    #[arg(long, env = "DROPGATE_GOODS_BATCH_WAIT_MS", default_value_t = 5)]
    pub batch_wait_ms: u64,
    /// Database connections.
    #[arg(long, env = "DROPGATE_GOODS_DB_POOL", default_value_t = 4)]
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
    seed_key: SeedKey,
    publishers: GoodsPublishers,
}

/// Where goods-worker's messages go: each user's result, and each batch's winners.
#[derive(Clone, Debug)]
pub struct GoodsPublishers {
    /// result-notification.
    pub results: Publisher,
    /// winners.
    pub winners: Publisher,
}

impl GoodsPublishers {
    /// Kafka publishers to the configured topics.
    pub async fn kafka(args: &GoodsArgs) -> Result<Self> {
        Ok(Self {
            results: Publisher::kafka(&args.kafka, &args.topics.result_notification).await?,
            winners: Publisher::kafka(&args.kafka, &args.topics.winners).await?,
        })
    }

    fn of(&self, stream: OutboxStream) -> &Publisher {
        match stream {
            OutboxStream::Results => &self.results,
            OutboxStream::Winners => &self.winners,
        }
    }
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
        match self.record_event(event, admissions).await? {
            Some(outbox) => {
                self.announce(&outbox).await;
                Ok(Settled::Recorded)
            }
            None => Ok(Settled::UnknownEvent),
        }
    }

    /// The first half of [`Self::settle_event`]: decides and commits, and returns the
    /// outbox rows to announce (`None`: the event does not exist).
    async fn record_event(
        &self,
        event: &EventId,
        admissions: &[Admitted],
    ) -> Result<Option<Vec<OutboxRow>>> {
        let recorded = record_batch(
            &self.pool,
            &self.seed_key,
            event,
            admissions,
            now_ms(),
            || {
                failpoint::hit("goods_before_commit");
            },
        )
        .await?;
        let outcome = match recorded {
            Ok(outcome) => outcome,
            Err(refused) => {
                tracing::error!(%refused, users = admissions.len(), "batch skipped");
                metrics::counter!("dropgate_goods_skipped_total", "reason" => "unknown_event")
                    .increment(admissions.len() as u64);
                return Ok(None);
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
        Ok(Some(outcome.outbox))
    }

    /// The second half: publishes committed results and marks the delivered ones sent.
    /// Never fails: what is not delivered stays in the outbox for [`resend_loop`].
    async fn announce(&self, outbox: &[OutboxRow]) {
        let sent = publish(&self.publishers, outbox).await;
        if let Err(error) = store::mark_sent(&self.pool, &sent).await {
            // The rows stay unsent and are delivered again later: consumers dedupe.
            tracing::warn!(error = %format!("{error:#}"), "could not mark results sent");
        }
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
    args.database.pool(args.db_pool.max(2)).await
}

/// The worker's connections.
pub struct GoodsWorker {
    settler: Settler,
    dead_letters: DeadLetters,
    consumer: kafka::Consumer,
    batch_size: usize,
    batch_wait: Duration,
    readiness: Readiness,
}

/// A batch's messages, decoded, and where each partition's consumption ends.
struct Batch {
    admissions: Vec<Admitted>,
    positions: Positions,
    /// Messages no decoder of this build reads: dead-lettered before the commit.
    unreadable: Vec<DeadLetter>,
}

impl GoodsWorker {
    /// Connects to PostgreSQL and Kafka; fails with a clear message when either is
    /// unusable.
    pub async fn connect(args: &GoodsArgs, readiness: Readiness) -> Result<Self> {
        // A missing key is a setting to fix, said before anything is dialled.
        let seed_key = args.seed_key.load()?;
        let pool = connect_database(args).await?;
        let consumer =
            kafka::consumer(&args.kafka, &args.group, &args.topics.waiting_queue).await?;
        let publishers = GoodsPublishers::kafka(args).await?;
        let dead_letters =
            DeadLetters::new(Publisher::kafka(&args.kafka, &args.topics.dead_letter).await?);
        Ok(Self {
            settler: Settler {
                pool,
                seed_key,
                publishers,
            },
            dead_letters,
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
        let mut announcing = tokio::task::JoinSet::new();
        let mut consumed = Positions::default();
        loop {
            let mut batch = Batch {
                admissions: Vec::with_capacity(self.batch_size),
                positions: Positions::default(),
                unreadable: Vec::new(),
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
            consumed.absorb(&batch.positions);
            let recorded = self.settle(batch, &shutdown).await;
            // Announcing the batch before overlaps the next one; at most
            // MAX_ANNOUNCING wait, so a slow broker holds consumption back.
            for outbox in recorded? {
                while announcing.len() >= MAX_ANNOUNCING {
                    announcing.join_next().await;
                }
                let settler = self.settler.clone();
                announcing.spawn(async move { settler.announce(&outbox).await });
            }
            while announcing.try_join_next().is_some() {}
        }
        // Results already recorded are announced before stopping, not left to another
        // worker's re-send pass.
        while announcing.join_next().await.is_some() {}
        // The asynchronous commits may still be in flight: one synchronous commit of
        // everything settled, so the next owner does not redo it.
        self.commit(&consumed, CommitMode::Sync)?;
        self.readiness.set(false);
        resend.abort();
        tracing::info!("goods-worker stopped");
        Ok(())
    }

    /// Decides one batch and commits its offsets, retrying the database until it
    /// succeeds, and returns the results to announce. A message is never committed
    /// before its result is durable: in the outbox, which [`resend_loop`] delivers
    /// from if this worker dies before announcing.
    async fn settle(
        &self,
        batch: Batch,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Vec<Vec<OutboxRow>>> {
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        let mut to_announce = Vec::new();
        for (event, admissions) in by_event(batch.admissions) {
            loop {
                match self.settler.record_event(&event, &admissions).await {
                    Ok(outbox) => {
                        to_announce.extend(outbox);
                        break;
                    }
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
        self.dead_letters
            .send(&batch.unreadable, shutdown)
            .await
            .context("the batch's unreadable messages were not dead-lettered")?;
        self.commit(&batch.positions, CommitMode::Async)?;
        metrics::histogram!("dropgate_goods_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(to_announce)
    }

    fn commit(&self, positions: &Positions, mode: CommitMode) -> Result<()> {
        let Some(offsets) = positions.to_commit()? else {
            return Ok(());
        };
        // Async while running: the outbox already holds the results, so a commit lost
        // in a crash or a rebalance costs only a re-announcement, and the next batch
        // need not wait for the broker.
        if let Err(error) = self.consumer.commit(&offsets, mode) {
            // After a rebalance the partitions belong to another worker, which redoes
            // the batch; the draws are already recorded, so it only re-announces.
            tracing::warn!(%error, "offset commit failed; the batch will be re-announced");
        }
        Ok(())
    }
}

impl Batch {
    fn add(&mut self, message: &BorrowedMessage<'_>) {
        self.positions.pass(message);
        match Admitted::decode(message.payload().unwrap_or_default()) {
            Ok(admitted) => self.admissions.push(admitted),
            // Set aside, not skipped: dead-lettered before the offset is committed, so
            // it neither blocks its partition nor is lost.
            Err(error) => self.unreadable.push(DeadLetter::of(message, &error)),
        }
    }
}

/// Publishes `rows` and returns the ids delivered.
async fn publish(publishers: &GoodsPublishers, rows: &[OutboxRow]) -> Vec<i64> {
    let deliveries = rows.iter().map(|row| async move {
        match publishers.of(row.stream).publish(&row.key, &row.payload).await {
            Ok(()) => Some(row.id),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), key = %row.key, "result not delivered; the re-send loop retries");
                None
            }
        }
    });
    join_all(deliveries).await.into_iter().flatten().collect()
}

/// Batches whose results may be on their way to the broker while the next batch is
/// decided.
const MAX_ANNOUNCING: usize = 4;

/// How old an unsent outbox row must be before the re-send loop takes it: younger
/// rows are still being published by the worker that wrote them.
const RESEND_AFTER: Duration = Duration::from_secs(5);

/// Delivers outbox rows a crashed or failing worker left unsent.
async fn resend_loop(settler: Settler, mut shutdown: watch::Receiver<bool>) {
    loop {
        match resend_once(&settler.pool, &settler.publishers).await {
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
pub async fn resend_once(pool: &PgPool, publishers: &GoodsPublishers) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
        "select outbox_id, stream, message_key, payload from outbox
          where sent_at is null and created_at < now() - make_interval(secs => $1)
          order by outbox_id limit 1000
          for update skip locked",
    )
    .bind(RESEND_AFTER.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    let rows = rows
        .into_iter()
        .map(|(id, stream, key, payload)| {
            Ok(OutboxRow {
                id,
                stream: OutboxStream::parse(&stream)?,
                key,
                payload,
            })
        })
        .collect::<Result<Vec<OutboxRow>>>()?;
    let sent = publish(publishers, &rows).await;
    sqlx::query("update outbox set sent_at = now() where outbox_id = any($1)")
        .bind(&sent)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("dropgate_goods_resent_total").increment(sent.len() as u64);
    Ok(sent.len())
}

/// The goods-worker binary's settings.
#[derive(Debug, clap::Parser)]
#[command(
    name = "goods-worker",
    version,
    about = "dropgate goods-worker: waiting-queue to draws in PostgreSQL to result-notification"
)]
pub struct GoodsConfig {
    /// The goods worker's own settings.
    #[command(flatten)]
    pub goods: GoodsArgs,
    /// Kafka or Pub/Sub.
    #[command(flatten)]
    pub transport: crate::bus::TransportArgs,
    /// Logs.
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
}

/// goods-worker as a [`crate::service::Service`]: a consumer-group member on Kafka,
/// a push endpoint on Pub/Sub.
pub struct GoodsService(Runner);

impl crate::service::Service for GoodsService {
    const NAME: &'static str = "goods-worker";
    type Config = GoodsConfig;

    fn telemetry(config: &GoodsConfig) -> &crate::telemetry::TelemetryArgs {
        &config.telemetry
    }

    async fn build(config: GoodsConfig) -> Result<Self> {
        let kafka = &config.goods.kafka;
        match config.transport.transport {
            crate::bus::Transport::Kafka => {
                config.transport.require_brokers(kafka)?;
                let readiness = Readiness::default();
                let ops = crate::ops_server::spawn(&config.goods.ops, readiness.clone()).await?;
                let worker = GoodsWorker::connect(&config.goods, readiness).await?;
                Ok(Self(Runner::looping(ops, move |shutdown| {
                    worker.run(shutdown)
                })))
            }
            crate::bus::Transport::PubSub => {
                let publishers = GoodsPublishers {
                    results: config
                        .transport
                        .publisher(kafka, &config.goods.topics.result_notification)
                        .await?,
                    winners: config
                        .transport
                        .publisher(kafka, &config.goods.topics.winners)
                        .await?,
                };
                let auth = config.transport.push.auth().await?;
                let worker =
                    GoodsPush::connect(&config.goods, publishers, auth, Readiness::default())
                        .await?;
                let server = crate::pubsub::push::PushServer::start(|stopped| {
                    worker.start(config.goods.ops.health_addr, stopped)
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
