//! Admitter fixtures: an event of the test's own in Redis with users entered on
//! demand, the settings of an admitter serving only it, a reader of its waiting-queue
//! topic, and in-process admitters stopped on drop.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dropgate_core::{Admitted, EventId, EventState, Message as _, UserKey, UserRecord};
use dropgate_functions::admitter::{Admitter, AdmitterArgs};
use dropgate_functions::config::{DatabaseArgs, KafkaArgs, RedisArgs, TopicArgs};
use dropgate_functions::ops_server::{OpsArgs, Readiness};
use dropgate_functions::queue::{EventKeys, EventMeta, QueueStore};
use dropgate_functions::seed_vault::SeedKeyArgs;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use redis::AsyncCommands;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::TestStack;
use crate::clock::now_s;

/// One admitter test's event in Redis (open, 10 s abandon timeout) and its topics.
pub struct Fixture {
    /// Redis access for arranging and checking state.
    pub store: QueueStore,
    /// The event.
    pub event: EventId,
    /// Admitted users go here.
    pub waiting_topic: String,
    /// The results topic (unused by the admitter, but part of its settings).
    pub results_topic: String,
    /// The stack's Redis.
    pub redis_url: String,
    /// The stack's brokers.
    pub brokers: String,
    /// The stack's database URL (the fixture's event is in Redis only: the admitter
    /// goes by Redis for events PostgreSQL does not know).
    pub database_url: String,
    /// The stack's seed key.
    pub seed_key: SeedKeyArgs,
}

impl Fixture {
    /// A fresh event admitting `rate_per_s` with `stock_left` units, and fresh topics.
    pub async fn new(stack: &TestStack, rate_per_s: u32, stock_left: u32) -> Self {
        let store = QueueStore::connect(&stack.env.redis())
            .await
            .expect("redis");
        let (waiting_topic, results_topic) = stack.fresh_topics(3).expect("topics");
        let event = EventId::parse(TestStack::unique("adm")).expect("valid");
        let meta = EventMeta {
            state: EventState::Open,
            rate_per_s,
            abandon_timeout_ms: 10_000,
            opens_at_ms: 0,
            allowed_platforms: Vec::new(),
        };
        store.put_event_meta(&event, &meta).await.expect("meta");
        store
            .put_draw_limits(&event, 100_000, stock_left)
            .await
            .expect("limits");
        Self {
            store,
            event,
            waiting_topic,
            results_topic,
            redis_url: stack.env.redis_url.clone(),
            brokers: stack.env.kafka_brokers.clone(),
            database_url: stack.env.database_url.clone(),
            seed_key: stack.env.seed_key_args(),
        }
    }

    /// User `n`: `shop:u<n>`.
    pub fn user(n: u64) -> UserKey {
        UserKey::parse("shop", &format!("u{n}")).expect("valid")
    }

    /// Enters users 1..=count; those in `absent` were last seen long ago.
    pub async fn enter(&self, count: u64, absent: &[u64]) {
        for n in 1..=count {
            let seen = if absent.contains(&n) {
                now_s() - 3_600
            } else {
                now_s()
            };
            self.store
                .enter(&self.event, &Self::user(n), seen)
                .await
                .expect("enter");
        }
    }

    /// Settings of an admitter serving only this event, with leases of `lease_ms`.
    pub fn args(&self, lease_ms: u64) -> AdmitterArgs {
        AdmitterArgs {
            lease_ms,
            ..args_for(
                &self.redis_url,
                &self.database_url,
                &self.brokers,
                TopicArgs::new(self.waiting_topic.clone(), self.results_topic.clone()),
                &self.event,
                self.seed_key.clone(),
            )
        }
    }

    /// Every user's record, by ticket.
    pub async fn records(&self) -> HashMap<u64, UserRecord> {
        let raw: HashMap<String, String> = self
            .store
            .connection()
            .hgetall(EventKeys::new(&self.event).users())
            .await
            .expect("HGETALL");
        raw.into_values()
            .map(|text| {
                let record = UserRecord::decode(&text).expect("record");
                (record.ticket, record)
            })
            .collect()
    }

    /// Reads `waiting-queue` until `expected` distinct users arrived (or patience
    /// runs out), then a little longer; returns messages per user.
    pub async fn admitted_messages(
        &self,
        expected: usize,
        patience: Duration,
    ) -> HashMap<String, Vec<Admitted>> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", TestStack::unique("reader"))
            .set("group.id", TestStack::unique("reader"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer
            .subscribe(&[&self.waiting_topic])
            .expect("subscribe");
        let mut seen: HashMap<String, Vec<Admitted>> = HashMap::new();
        let deadline = Instant::now() + patience;
        let mut quiet_until: Option<Instant> = None;
        while Instant::now() < deadline && quiet_until.is_none_or(|until| Instant::now() < until) {
            if let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_millis(300), consumer.recv()).await
            {
                let admitted =
                    Admitted::decode(message.payload().unwrap_or_default()).expect("Admitted");
                assert_eq!(
                    admitted.event_id,
                    self.event,
                    "a message of another event in {}",
                    message.topic()
                );
                seen.entry(admitted.user.member())
                    .or_default()
                    .push(admitted);
                if seen.len() >= expected && quiet_until.is_none() {
                    quiet_until = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
        seen
    }
}

/// An admitter for `event` alone, on the stack's Redis and the database at
/// `database_url`, with topics of its own: what an operator's close needs running to
/// complete (the admitter finishes a close and reveals the seed).
pub async fn serve(stack: &TestStack, database_url: &str, event: &EventId) -> Running {
    let (waiting_topic, results_topic) = stack.fresh_topics(1).expect("topics");
    let args = args_for(
        &stack.env.redis_url,
        database_url,
        &stack.env.kafka_brokers,
        TopicArgs::new(waiting_topic, results_topic),
        event,
        stack.env.seed_key_args(),
    );
    Running::start(&args).await.0
}

/// Settings of an in-process admitter serving `event` only (tests share one Redis),
/// with the service's defaults otherwise and an ops port the OS picks.
pub fn args_for(
    redis_url: &str,
    database_url: &str,
    brokers: &str,
    topics: TopicArgs,
    event: &EventId,
    seed_key: SeedKeyArgs,
) -> AdmitterArgs {
    AdmitterArgs {
        redis: RedisArgs::url(redis_url.to_owned()),
        database: DatabaseArgs::url(database_url.to_owned()),
        kafka: KafkaArgs::brokers(brokers.to_owned()),
        topics,
        ops: OpsArgs {
            health_addr: "127.0.0.1:0".parse().expect("address"),
        },
        seed_key,
        tick_ms: 100,
        lease_ms: 2_000,
        events: vec![event.to_string()],
        sweep_batch: 1_000,
        close_drain_ms: 300_000,
        redeliver_ms: 30_000,
        decision_log_max_bytes: 32 << 20,
    }
}

/// In-process admitters, stopped (without releasing leases) when dropped.
pub struct Running {
    stop: watch::Sender<bool>,
    /// The admitter's task (aborting it is a crash).
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts an admitter; returns it and its instance id.
    pub async fn start(args: &AdmitterArgs) -> (Self, String) {
        let admitter = Admitter::connect(args, Readiness::default())
            .await
            .expect("admitter");
        let instance = admitter.instance().to_owned();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(admitter.run(stopped));
        (Self { stop, task }, instance)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}
