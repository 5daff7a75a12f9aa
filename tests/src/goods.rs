//! goods-worker fixtures: an event in a fresh database, admitted users on a fresh
//! topic, in-process workers stopped on drop, and a reader of the results topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dropgate_core::{
    Admitted, DrawResult, EventConfig, EventId, EventSeed, EventState, MESSAGE_VERSION,
    Message as _, UserKey,
};
use dropgate_functions::config::{DatabaseArgs, KafkaArgs, TopicArgs};
use dropgate_functions::goods_worker::{GoodsArgs, GoodsWorker};
use dropgate_functions::ops_server::{OpsArgs, Readiness};
use dropgate_tools::events;
use futures_util::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::TestStack;

/// One drop under test: its database, topics and event.
pub struct DropFixture {
    /// The test's own database.
    pub pool: PgPool,
    /// Its URL.
    pub database_url: String,
    /// Admitted users go here.
    pub waiting_topic: String,
    /// Results come out here.
    pub results_topic: String,
    /// Unreadable admissions go here.
    pub dead_letter_topic: String,
    /// The event.
    pub event: EventId,
    /// Brokers.
    pub brokers: String,
}

impl DropFixture {
    /// A fresh database and topics with an open event of `stock` units at win
    /// probability `probability`, seeded with `seed`.
    pub async fn open(
        stack: &TestStack,
        partitions: u32,
        stock: u32,
        probability: f64,
        seed: [u8; 32],
    ) -> Result<Self> {
        let event = EventId::parse(TestStack::unique("drop"))?;
        Self::open_as(stack, &event, partitions, stock, probability, seed).await
    }

    /// Like [`DropFixture::open`], for an event named `event` (in a database of its
    /// own, so two drops may share an event id).
    pub async fn open_as(
        stack: &TestStack,
        event: &EventId,
        partitions: u32,
        stock: u32,
        probability: f64,
        seed: [u8; 32],
    ) -> Result<Self> {
        let (pool, database_url) = stack.fresh_database().await?;
        let (waiting_topic, results_topic) = stack.fresh_topics(partitions)?;
        let mut config = EventConfig::new(stock, 0);
        config.win_probability = probability;
        events::create(&pool, event, &config, &EventSeed::from_bytes(seed)).await?;
        events::transition(&pool, event, EventState::Open).await?;
        Ok(Self {
            pool,
            database_url,
            waiting_topic,
            results_topic,
            dead_letter_topic: stack.fresh_topic("dead-letter", 1)?,
            event: event.clone(),
            brokers: stack.env.kafka_brokers.clone(),
        })
    }

    /// `count` users named `u<n>`, ticket n.
    pub fn users(&self, count: u64) -> Vec<Admitted> {
        (1..=count)
            .map(|n| Admitted {
                version: MESSAGE_VERSION,
                event_id: self.event.clone(),
                user: UserKey::parse("shop", &format!("u{n}")).expect("valid"),
                ticket: n,
                admitted_at_ms: 0,
            })
            .collect()
    }

    /// Produces `admissions`, each `times` times, as the admitter does on Kafka:
    /// keyed by the event, in the given order, so they reach the draw in that order.
    pub async fn admit(&self, admissions: &[Admitted], times: usize) -> Result<()> {
        self.produce(admissions, times, |admitted| admitted.event_id.to_string())
            .await
    }

    /// Produces `admissions`, each `times` times, keyed by user: one event spread over
    /// every partition, so several workers decide it at once (the draw must still
    /// never oversell nor draw anyone twice, though the order is then not the line's).
    pub async fn admit_keyed_by_user(&self, admissions: &[Admitted], times: usize) -> Result<()> {
        self.produce(admissions, times, Admitted::key).await
    }

    async fn produce(
        &self,
        admissions: &[Admitted],
        times: usize,
        key_of: impl Fn(&Admitted) -> String,
    ) -> Result<()> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", TestStack::unique("admit"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "20")
            .set("message.timeout.ms", "60000")
            .create()?;
        for round in 0..times {
            for chunk in admissions.chunks(2_000) {
                let sends = chunk.iter().map(|admitted| {
                    let key = key_of(admitted);
                    let payload = admitted.encode();
                    let producer = &producer;
                    let topic = &self.waiting_topic;
                    async move {
                        producer
                            .send(
                                FutureRecord::to(topic).key(&key).payload(&payload),
                                Duration::from_secs(60),
                            )
                            .await
                            .map_err(|(error, _)| anyhow::anyhow!("produce failed: {error}"))
                    }
                });
                for result in join_all(sends).await {
                    result.with_context(|| format!("round {round}"))?;
                }
            }
        }
        Ok(())
    }

    /// goods-worker settings for this drop.
    pub fn args(&self, group: &str) -> GoodsArgs {
        GoodsArgs {
            database: DatabaseArgs::url(self.database_url.clone()),
            kafka: KafkaArgs::brokers(self.brokers.clone()),
            topics: TopicArgs {
                dead_letter: self.dead_letter_topic.clone(),
                ..TopicArgs::new(self.waiting_topic.clone(), self.results_topic.clone())
            },
            ops: OpsArgs {
                health_addr: "127.0.0.1:0".parse().expect("address"),
            },
            group: group.to_owned(),
            batch_size: 500,
            batch_wait_ms: 5,
            db_pool: 4,
        }
    }

    /// Environment for a goods-worker process on this drop.
    pub fn env(&self, group: &str) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("DROPGATE_KAFKA_BROKERS", self.brokers.clone()),
            ("DROPGATE_TOPIC_WAITING_QUEUE", self.waiting_topic.clone()),
            (
                "DROPGATE_TOPIC_RESULT_NOTIFICATION",
                self.results_topic.clone(),
            ),
            ("DROPGATE_TOPIC_DEAD_LETTER", self.dead_letter_topic.clone()),
            ("DROPGATE_GOODS_GROUP", group.to_owned()),
            ("DROPGATE_HEALTH_ADDR", "127.0.0.1:0".to_owned()),
        ]
    }

    /// Reads the results topic until `users` distinct users have a result (or
    /// `patience` runs out); returns every result seen, grouped by user.
    pub async fn results(
        &self,
        users: usize,
        patience: Duration,
    ) -> Result<HashMap<String, Vec<DrawResult>>> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", TestStack::unique("reader"))
            .set("group.id", TestStack::unique("reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[&self.results_topic])?;
        let mut seen: HashMap<String, Vec<DrawResult>> = HashMap::new();
        let deadline = Instant::now() + patience;
        // After the last expected user, keep reading briefly to catch duplicates.
        let mut quiet_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now >= deadline || quiet_until.is_some_and(|until| now >= until) {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
                Ok(Ok(message)) => {
                    let result = DrawResult::decode(message.payload().unwrap_or_default())?;
                    let key = message
                        .key()
                        .map(|key| String::from_utf8_lossy(key).into_owned())
                        .unwrap_or_default();
                    anyhow::ensure!(
                        key == result.user.member(),
                        "message key {key} is not its user"
                    );
                    seen.entry(key).or_default().push(result);
                    if seen.len() >= users && quiet_until.is_none() {
                        quiet_until = Some(Instant::now() + Duration::from_secs(2));
                    }
                }
                Ok(Err(error)) => anyhow::bail!("reading results: {error}"),
                Err(_) => {}
            }
        }
        Ok(seen)
    }

    /// (outcome, count) of the recorded draws.
    pub async fn outcome_counts(&self) -> Result<HashMap<String, i64>> {
        Ok(events::outcome_counts(&self.pool, &self.event)
            .await?
            .into_iter()
            .collect())
    }
}

/// In-process workers, stopped when dropped.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<()>>>,
}

impl Workers {
    /// Starts `count` workers in one consumer group.
    pub async fn start(drop: &DropFixture, count: usize, group: &str) -> Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let worker = GoodsWorker::connect(&drop.args(group), Readiness::default()).await?;
            tasks.push(tokio::spawn(worker.run(stopped.clone())));
        }
        Ok(Self { stop, tasks })
    }

    /// Asks every worker to finish its batch and waits for them.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("a worker did not stop")???;
        }
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
