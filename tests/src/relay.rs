//! result-relay as a process against the test stack: what one test relays (a topic,
//! consumer group and event of its own, see [`Setup`]) and the running binary, killed
//! on drop ([`RelayProcess`]), with waits on its records, commits, readiness and
//! metrics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dropgate_core::{
    DrawResult, EventId, MESSAGE_VERSION, Message as _, Outcome, UserKey, UserRecord, UserState,
};
use dropgate_functions::config::KafkaArgs;
use dropgate_functions::kafka;
use dropgate_functions::queue::{EventKeys, LineEntry, QueueStore};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use redis::AsyncCommands;
use reqwest::StatusCode;

use crate::clock::{now_ms, now_s};
use crate::{TestStack, workspace_binary};

/// Joining a consumer group on tansu takes a few seconds; results then take
/// milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// Partitions of each test's results topic.
pub const PARTITIONS: u32 = 3;
/// The failpoint that aborts result-relay after Redis has a batch, before the commit.
pub const FAILPOINT: &str = "relay_after_redis_before_commit";

/// A running result-relay process; killed when dropped, so a failing test leaves
/// nothing running.
pub struct RelayProcess {
    child: Child,
    /// `http://127.0.0.1:<port>` of its health, readiness and metrics.
    pub ops: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one test relays: its own topic, consumer group and event.
pub struct Setup<'a> {
    /// The stack it runs on.
    pub stack: &'a TestStack,
    /// The results topic the relay reads (a fresh one).
    pub topic: String,
    /// Where the relay sets unreadable results aside (a fresh one).
    pub dead_letter: String,
    /// The relay's consumer group.
    pub group: String,
    /// The event the results are for.
    pub event: EventId,
    /// Redis access for arranging and checking state.
    pub store: QueueStore,
    producer: kafka::Producer,
}

impl<'a> Setup<'a> {
    /// A fresh topic, group and event on `stack`.
    pub async fn new(stack: &'a TestStack) -> Self {
        let (_, topic) = stack.fresh_topics(PARTITIONS).expect("topics");
        let args = KafkaArgs::brokers(stack.env.kafka_brokers.clone());
        Self {
            stack,
            group: TestStack::unique("relay"),
            event: EventId::parse(TestStack::unique("ev")).expect("event id"),
            store: QueueStore::connect(&stack.env.redis())
                .await
                .expect("redis"),
            producer: kafka::producer(&args).await.expect("producer"),
            dead_letter: stack.fresh_topic("dead-letter", 1).expect("topic"),
            topic,
        }
    }

    /// Starts the relay binary and waits until it is ready.
    pub async fn start_relay(&self) -> RelayProcess {
        let mut relay = self.spawn_relay(None);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if relay.ready().await {
                return relay;
            }
            if let Ok(Some(status)) = relay.child.try_wait() {
                panic!("result-relay exited with {status}: {}", relay.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "result-relay not ready: {}",
                relay.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the relay binary, with `failpoint` armed if given.
    pub fn spawn_relay(&self, failpoint: Option<&str>) -> RelayProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("relay.log");
        let mut command = Command::new(workspace_binary("result-relay").expect("built"));
        for (name, value) in self.stack.env.vars() {
            command.env(name, value);
        }
        command
            .env("DROPGATE_TOPIC_RESULT_NOTIFICATION", &self.topic)
            .env("DROPGATE_TOPIC_DEAD_LETTER", &self.dead_letter)
            .env("DROPGATE_RELAY_GROUP", &self.group)
            .env("DROPGATE_HEALTH_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env("DROPGATE_LOG_FORMAT", "json")
            .env_remove("DROPGATE_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(point) = failpoint {
            command.env("DROPGATE_FAILPOINT", point);
        }
        RelayProcess {
            child: command.spawn().expect("result-relay starts"),
            ops: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    /// Sends `payload` keyed by `key`; returns its (partition, offset).
    pub async fn produce(&self, key: &str, payload: &[u8]) -> (i32, i64) {
        let delivery = self
            .producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(error, _)| error)
            .expect("delivered");
        (delivery.partition, delivery.offset)
    }

    /// Sends `result` keyed by its user, as goods-worker does; returns its (partition,
    /// offset).
    pub async fn produce_result(&self, result: &DrawResult) -> (i32, i64) {
        self.produce(&result.key(), &result.encode()).await
    }

    /// A result for `user` of this test's event, decided now.
    pub fn result(&self, user: &UserKey, ticket: u64, outcome: Outcome, order: u64) -> DrawResult {
        DrawResult {
            version: MESSAGE_VERSION,
            event_id: self.event.clone(),
            user: user.clone(),
            ticket,
            outcome,
            decision_order: order,
            stock_left: 10,
            decided_at_ms: now_ms(),
        }
    }

    /// Writes `user` as the admitter leaves them: admitted, out of the queue.
    pub async fn admit(&self, user: &UserKey, ticket: u64) {
        let keys = EventKeys::new(&self.event);
        let record = UserRecord {
            state: UserState::Admitted,
            ticket,
            last_seen_s: now_s(),
            decided: None,
        };
        let _: () = redis::pipe()
            .hset(keys.users(), user.member(), record.encode())
            .lrem(
                keys.line(),
                0,
                LineEntry {
                    ticket,
                    member: user.member(),
                }
                .encode(),
            )
            .query_async(&mut self.store.connection())
            .await
            .expect("admit");
    }

    /// `user`'s record, if any.
    pub async fn try_record(&self, user: &UserKey) -> redis::RedisResult<Option<UserRecord>> {
        let text: Option<String> = self
            .store
            .connection()
            .hget(EventKeys::new(&self.event).users(), user.member())
            .await?;
        Ok(text.map(|text| UserRecord::decode(&text).expect("a well-formed record")))
    }

    /// `user`'s record, if any (a Redis error fails the test).
    pub async fn record(&self, user: &UserKey) -> Option<UserRecord> {
        self.try_record(user).await.expect("HGET")
    }

    /// Waits until `user` has a final state.
    pub async fn decided(&self, user: &UserKey, relay: &RelayProcess) -> UserRecord {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Errors are retried: the connection breaks once when Redis restarts.
            if let Ok(Some(record)) = self.try_record(user).await
                && record.state.is_final()
            {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "{user:?} not decided: {}",
                relay.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The event's counters.
    pub async fn stats(&self) -> HashMap<String, u64> {
        self.store.stats(&self.event).await.expect("stats")
    }

    /// The event's `stock_left` in Redis.
    pub async fn stock_left(&self) -> Option<u64> {
        self.store
            .connection()
            .hget(EventKeys::new(&self.event).meta(), "stock_left")
            .await
            .expect("HGET")
    }

    /// The group's committed offset of `partition` (`None` if nothing is committed).
    pub fn committed(&self, partition: i32) -> Option<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.stack.env.kafka_brokers)
            .set("group.id", &self.group)
            .create()
            .expect("consumer");
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&self.topic, partition);
        let committed = consumer
            .committed_offsets(wanted, Duration::from_secs(10))
            .expect("offsets");
        match committed
            .find_partition(&self.topic, partition)
            .map(|element| element.offset())
        {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        }
    }

    /// Waits until the group committed past `offset` in `partition`.
    pub async fn committed_past(&self, partition: i32, offset: i64, relay: &RelayProcess) {
        let deadline = Instant::now() + PATIENCE;
        while self.committed(partition) != Some(offset + 1) {
            assert!(
                Instant::now() < deadline,
                "offset {offset} of partition {partition} not committed: {}",
                relay.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl RelayProcess {
    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of every sample of the counter `name` on /metrics (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.ops))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Whether /readyz answers 200.
    pub async fn ready(&self) -> bool {
        reqwest::get(format!("{}/readyz", self.ops))
            .await
            .is_ok_and(|response| response.status() == StatusCode::OK)
    }

    /// Waits until /readyz answers `ready`.
    pub async fn wait_ready(&self, ready: bool) {
        let deadline = Instant::now() + PATIENCE;
        while self.ready().await != ready {
            assert!(
                Instant::now() < deadline,
                "readiness never became {ready}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the counter `name` reaches `at_least`.
    pub async fn wait_metric(&self, name: &str, at_least: f64) {
        let deadline = Instant::now() + PATIENCE;
        while self.metric(name).await < at_least {
            assert!(
                Instant::now() < deadline,
                "{name} stayed below {at_least}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `patience`) for the process to end.
    pub async fn exit(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "result-relay still running: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }
}
