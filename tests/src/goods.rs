//! goods-worker fixtures: an event in a fresh database, admitted users on a fresh
//! topic, in-process workers stopped on drop, and readers of the results and winners
//! topics.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dropgate_core::{
    Admitted, BatchWinners, Beacon, DrawResult, EventConfig, EventId, EventSeed, EventState,
    MESSAGE_VERSION, Message, UserKey,
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

use dropgate_functions::seed_vault::SeedKeyArgs;

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
    /// Each batch's winners go here.
    pub winners_topic: String,
    /// The event.
    pub event: EventId,
    /// Brokers.
    pub brokers: String,
    /// The stack's seed key.
    pub seed_key: SeedKeyArgs,
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
        Self::open_with(stack, event, partitions, stock, probability, seed, None).await
    }

    /// Like [`DropFixture::open`], for an event that names `beacon` at creation and is
    /// given its value before it opens.
    pub async fn open_with_beacon(
        stack: &TestStack,
        stock: u32,
        probability: f64,
        seed: [u8; 32],
        beacon: &Beacon,
    ) -> Result<Self> {
        let event = EventId::parse(TestStack::unique("beacon"))?;
        Self::open_with(stack, &event, 1, stock, probability, seed, Some(beacon)).await
    }

    async fn open_with(
        stack: &TestStack,
        event: &EventId,
        partitions: u32,
        stock: u32,
        probability: f64,
        seed: [u8; 32],
        beacon: Option<&Beacon>,
    ) -> Result<Self> {
        let (pool, database_url) = stack.fresh_database().await?;
        let (waiting_topic, results_topic) = stack.fresh_topics(partitions)?;
        let mut config = EventConfig::new(stock, 0);
        config.win_probability = probability;
        events::create_with_beacon(
            &pool,
            event,
            &config,
            &EventSeed::from_bytes(seed),
            &stack.env.seed_key()?,
            beacon.map(|b| b.round.as_str()),
        )
        .await?;
        if let Some(value) = beacon.and_then(|b| b.value.as_deref()) {
            events::supply_beacon(&pool, event, value).await?;
        }
        events::transition(&pool, event, EventState::Open).await?;
        Ok(Self {
            pool,
            database_url,
            waiting_topic,
            results_topic,
            dead_letter_topic: stack.fresh_topic("dead-letter", 1)?,
            winners_topic: stack.fresh_topic("winners", 1)?,
            event: event.clone(),
            brokers: stack.env.kafka_brokers.clone(),
            seed_key: stack.env.seed_key_args(),
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
                winners: self.winners_topic.clone(),
                ..TopicArgs::new(self.waiting_topic.clone(), self.results_topic.clone())
            },
            ops: OpsArgs {
                health_addr: "127.0.0.1:0".parse().expect("address"),
            },
            seed_key: self.seed_key.clone(),
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
            ("DROPGATE_TOPIC_WINNERS", self.winners_topic.clone()),
            ("DROPGATE_GOODS_GROUP", group.to_owned()),
            ("DROPGATE_HEALTH_ADDR", "127.0.0.1:0".to_owned()),
            (
                "DROPGATE_SEED_KEY_FILE",
                self.seed_key.seed_key_file.display().to_string(),
            ),
        ]
    }

    /// Reads the results topic until `users` distinct users have a result (or
    /// `patience` runs out); returns every result seen, grouped by user.
    pub async fn results(
        &self,
        users: usize,
        patience: Duration,
    ) -> Result<HashMap<String, Vec<DrawResult>>> {
        let mut seen: HashMap<String, Vec<DrawResult>> = HashMap::new();
        read_topic(
            &self.brokers,
            &self.results_topic,
            patience,
            |key, result: DrawResult| {
                anyhow::ensure!(
                    key == result.user.member(),
                    "message key {key} is not its user"
                );
                seen.entry(key.to_owned()).or_default().push(result);
                Ok(seen.len() >= users)
            },
        )
        .await?;
        Ok(seen)
    }

    /// Reads the winners topic until `winners` distinct winners are named (or
    /// `patience` runs out); returns every message seen, each checked to be keyed by
    /// this drop's event.
    pub async fn winners(&self, winners: usize, patience: Duration) -> Result<Vec<BatchWinners>> {
        let mut seen = Vec::new();
        let mut named = std::collections::HashSet::new();
        read_topic(
            &self.brokers,
            &self.winners_topic,
            patience,
            |key, message: BatchWinners| {
                anyhow::ensure!(
                    key == self.event.as_str(),
                    "winners message keyed {key}, not by its event"
                );
                named.extend(message.winners.iter().map(|w| w.decision_order));
                seen.push(message);
                Ok(named.len() >= winners)
            },
        )
        .await?;
        Ok(seen)
    }

    /// Panics unless the winners messages name every recorded winner, each under its
    /// own decision order, and no one else: checkout hears exactly the draw's winners.
    pub async fn check_winners_announced(&self) {
        let recorded: Vec<(i64, String, i64)> = sqlx::query_as(
            "select decision_order, platform_id || ':' || user_id, ticket from draws
              where event_id = $1 and outcome = 'won' order by decision_order",
        )
        .bind(self.event.as_str())
        .fetch_all(&self.pool)
        .await
        .expect("winners");
        assert!(!recorded.is_empty(), "the drop has winners to announce");
        let messages = self
            .winners(recorded.len(), Duration::from_secs(60))
            .await
            .expect("winners messages");
        let mut named: HashMap<u64, (String, u64)> = HashMap::new();
        for message in &messages {
            assert!(!message.winners.is_empty(), "no message without a winner");
            assert!(
                message
                    .winners
                    .windows(2)
                    .all(|pair| pair[0].decision_order < pair[1].decision_order),
                "a message lists its winners in decision order"
            );
            for winner in &message.winners {
                let entry = (winner.user.member(), winner.ticket);
                let first = named.entry(winner.decision_order).or_insert(entry.clone());
                assert_eq!(*first, entry, "a re-sent message names the same winner");
            }
        }
        let expected: HashMap<u64, (String, u64)> = recorded
            .into_iter()
            .map(|(order, member, ticket)| (order as u64, (member, ticket as u64)))
            .collect();
        assert_eq!(
            named, expected,
            "the winners messages name exactly the draw's winners"
        );
        let last = messages
            .iter()
            .map(|m| m.stock_left)
            .min()
            .expect("messages");
        assert_eq!(
            messages[0].stock_total - last,
            expected.len() as u64,
            "stock_total - stock_left counts the winners so far"
        );
    }

    /// (outcome, count) of the recorded draws.
    pub async fn outcome_counts(&self) -> Result<HashMap<String, i64>> {
        Ok(events::outcome_counts(&self.pool, &self.event)
            .await?
            .into_iter()
            .collect())
    }
}

/// Reads `topic` from the start, handing each message and its key to `take` until it
/// says it has all it expects (then two more seconds, to catch duplicates) or
/// `patience` runs out.
async fn read_topic<T: Message>(
    brokers: &str,
    topic: &str,
    patience: Duration,
    mut take: impl FnMut(&str, T) -> Result<bool>,
) -> Result<()> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", TestStack::unique("reader"))
        .set("group.id", TestStack::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + patience;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline || quiet_until.is_some_and(|until| now >= until) {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            Ok(Ok(message)) => {
                let decoded = T::decode(message.payload().unwrap_or_default())?;
                let key = message
                    .key()
                    .map(|key| String::from_utf8_lossy(key).into_owned())
                    .unwrap_or_default();
                if take(&key, decoded)? && quiet_until.is_none() {
                    quiet_until = Some(Instant::now() + Duration::from_secs(2));
                }
            }
            Ok(Err(error)) => anyhow::bail!("reading {topic}: {error}"),
            Err(_) => {}
        }
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
