//! One Redis connection type for a single server and for a Redis Cluster.
//!
//! Every key of an event carries the hash tag `{ev:<id>}`, so every script, every
//! transaction and every pipeline dropgate sends about one event lands on the one
//! primary that owns the event's slot: cluster mode changes where a command goes, not
//! what it does. Two things differ and live here: a pipeline may only hold one
//! event's keys (the cluster client routes a pipeline to one slot), and "which Redis
//! process holds this data" is asked per primary ([`RedisConn::primary_run_ids`]).
//!
//! Notices for open streams use classic pub/sub (PUBLISH/PSUBSCRIBE), which a cluster
//! delivers to every node: queue-api subscribes once, on any node, to every event's
//! channel ([`RedisConn::subscriber_client`]). Sharded pub/sub would keep each notice
//! on its shard but has no pattern subscription, so every queue-api instance would
//! hold one subscription per event per shard; a notice is one small message per
//! decided user, which the cluster bus carries to a few primaries without strain (not measured
//! yet).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo,
};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::{RedisArgs, RedisMode};

/// A connection to a single Redis or to a Redis Cluster. Cheap to clone: clones share
/// the connections underneath, and both kinds reconnect by themselves.
#[derive(Clone)]
pub enum RedisConn {
    /// One server (reconnects after restarts).
    Single(ConnectionManager),
    /// A cluster: commands go to the primary of their key's slot, and the slot map is
    /// refreshed when the cluster answers MOVED or a node goes away.
    Cluster(ClusterConn),
}

/// How long a cluster connection may go without a single answer, while its commands
/// time out, before it is replaced by a new one.
///
/// The redis crate's async cluster connection (0.32, and 1.8 alike) can stop answering
/// for good after a primary dies and comes back under load: its slot refresh waits for
/// a lock that the in-flight requests hold while they wait for the refresh. Measured
/// on a 3-primary loopback cluster with one primary killed and restarted two seconds
/// later: with 1 or 20 concurrent callers the connection recovers within a second,
/// with 200 it answers nothing for the remaining 30 s of the run (and for ten minutes
/// in the fault suite), while a new connection works at once. During a real outage
/// of one primary the others keep answering, so this only fires when nothing does.
const WEDGED_AFTER: Duration = Duration::from_secs(3);

/// A cluster connection that is replaced when it goes 3 s without a single reply.
/// Clones share it.
#[derive(Clone)]
pub struct ClusterConn {
    shared: Arc<ClusterShared>,
}

struct ClusterShared {
    client: redis::cluster::ClusterClient,
    current: RwLock<ClusterConnection>,
    silence: Silence,
}

/// When a connection has been silent long enough to replace: every reply (a value or
/// a server error, both mean the connection works) resets it, and one replacement
/// runs at a time.
struct Silence {
    started: Instant,
    /// Milliseconds after `started` of the last reply, or of the last replacement.
    last_answer_ms: AtomicU64,
    replacing: AtomicBool,
}

impl Silence {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_answer_ms: AtomicU64::new(0),
            replacing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Notes a command's outcome at `now_ms`; returns how long the connection had been
    /// silent when this call should start the one replacement, else `None`.
    fn observe(&self, now_ms: u64, answered: bool) -> Option<Duration> {
        if answered {
            self.last_answer_ms.store(now_ms, Ordering::Relaxed);
            return None;
        }
        let silent_ms = now_ms.saturating_sub(self.last_answer_ms.load(Ordering::Relaxed));
        if silent_ms < WEDGED_AFTER.as_millis() as u64
            || self.replacing.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        Some(Duration::from_millis(silent_ms))
    }

    /// The replacement ended at `now_ms`; a new connection gets a full grace period.
    fn replaced(&self, now_ms: u64, succeeded: bool) {
        if succeeded {
            self.last_answer_ms.store(now_ms, Ordering::Relaxed);
        }
        self.replacing.store(false, Ordering::Release);
    }
}

impl ClusterConn {
    async fn connect(client: redis::cluster::ClusterClient) -> Result<Self> {
        let connection = client.get_async_connection().await?;
        Ok(ClusterConn {
            shared: Arc::new(ClusterShared {
                client,
                current: RwLock::new(connection),
                silence: Silence::new(),
            }),
        })
    }

    /// The connection to send on now (a cheap handle onto the shared one).
    fn connection(&self) -> ClusterConnection {
        self.shared
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Notes how a command went; after [`WEDGED_AFTER`] without any answer, starts
    /// replacing the connection in the background (the caller's own error goes back
    /// to it as it is).
    fn observe<T>(&self, result: &redis::RedisResult<T>) {
        let unanswered = matches!(result, Err(error) if error.is_timeout()
            || error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal());
        let silence = &self.shared.silence;
        let Some(silent) = silence.observe(silence.now_ms(), !unanswered) else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let made = tokio::time::timeout(
                Duration::from_secs(10),
                shared.client.get_async_connection(),
            )
            .await;
            let succeeded = matches!(made, Ok(Ok(_)));
            match made {
                Ok(Ok(connection)) => {
                    *shared
                        .current
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = connection;
                    tracing::warn!(
                        silent_s = silent.as_secs_f64(),
                        "the Redis Cluster connection stopped answering: replaced it with a new one"
                    );
                }
                Ok(Err(error)) => tracing::warn!(
                    %error,
                    "the Redis Cluster connection stopped answering and no new one could be made yet"
                ),
                Err(_) => tracing::warn!(
                    "the Redis Cluster connection stopped answering and a new one took over 10 s"
                ),
            }
            shared.silence.replaced(shared.silence.now_ms(), succeeded);
        });
    }

    async fn route_command(&self, cmd: &Cmd, routing: RoutingInfo) -> redis::RedisResult<Value> {
        let result = self.connection().route_command(cmd, routing).await;
        self.observe(&result);
        result
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> redis::RedisResult<T> {
        let mut connection = self.connection();
        let result = cmd.query_async(&mut connection).await;
        self.observe(&result);
        result
    }
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConn::Single(_) => "RedisConn::Single",
            RedisConn::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl From<ConnectionManager> for RedisConn {
    fn from(manager: ConnectionManager) -> Self {
        RedisConn::Single(manager)
    }
}

impl RedisConn {
    /// Connects as `args.mode` says. Gives up after about ten seconds, so a wrong
    /// address fails a start-up instead of hanging it; a command that gets no answer
    /// within two seconds fails rather than holding a client's request open.
    pub async fn connect(args: &RedisArgs) -> Result<Self> {
        let connecting = async {
            Ok::<_, anyhow::Error>(match args.mode {
                RedisMode::Single => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Duration::from_secs(2))
                        .set_response_timeout(Duration::from_secs(2))
                        .set_number_of_retries(3)
                        .set_max_delay(1_000);
                    RedisConn::Single(
                        ConnectionManager::new_with_config(args.client()?, config).await?,
                    )
                }
                RedisMode::Cluster => {
                    RedisConn::Cluster(ClusterConn::connect(args.cluster_client()?).await?)
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 10 s"))
            .and_then(|connected| connected)
            .context(
                "Failed to connect to Redis (DROPGATE_REDIS_URL, DROPGATE_REDIS_MODE; for TLS \
                 also DROPGATE_REDIS_CA_FILE)",
            )
    }

    /// The `run_id` of every primary that answers, sorted: the list changes when any
    /// of them restarts or a replica takes over, which is when acknowledged writes can
    /// be lost. A cluster primary that does not answer is left out rather than failing
    /// the call, so the events on the other primaries go on (its own events fail on
    /// their own keys until it is back).
    pub async fn primary_run_ids(&mut self) -> Result<Vec<String>> {
        let mut info = redis::cmd("INFO");
        info.arg("server");
        let mut runs = Vec::new();
        match self {
            RedisConn::Single(connection) => {
                let text: String = info
                    .query_async(connection)
                    .await
                    .context("Failed to read Redis' INFO")?;
                runs.extend(run_id(&text));
            }
            RedisConn::Cluster(connection) => {
                let primaries = cluster_primaries(connection).await?;
                let connection = &*connection;
                let asks = primaries.iter().map(|(host, port)| {
                    let info = &info;
                    async move {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        });
                        connection.route_command(info, routing).await
                    }
                });
                for reply in futures_util::future::join_all(asks).await {
                    match reply {
                        Ok(reply) => {
                            let mut texts = Vec::new();
                            collect_texts(reply, &mut texts);
                            runs.extend(texts.iter().filter_map(|text| run_id(text)));
                        }
                        // Every tick asks again: a warning here would repeat ten times a
                        // second; the failing events' own ticks warn already.
                        Err(error) => {
                            tracing::debug!(%error, "a Redis primary does not answer")
                        }
                    }
                }
            }
        }
        anyhow::ensure!(!runs.is_empty(), "no Redis primary answered with a run_id");
        runs.sort();
        Ok(runs)
    }

    /// Whether Redis answers: the server, or in a cluster at least one primary (a
    /// queue-api that can serve the events on the other primaries stays ready).
    pub async fn ping(&mut self) -> bool {
        let ping = redis::cmd("PING");
        match self {
            RedisConn::Single(connection) => ping.query_async::<String>(connection).await.is_ok(),
            RedisConn::Cluster(connection) => connection
                .route_command(
                    &ping,
                    RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::OneSucceeded),
                    )),
                )
                .await
                .is_ok(),
        }
    }

    /// A client for pub/sub: the server itself, or in a cluster one of its primaries,
    /// asked of the cluster now (a node named in the settings may be gone). `attempt`
    /// picks another primary after a failure.
    pub async fn subscriber_client(
        &mut self,
        args: &RedisArgs,
        attempt: usize,
    ) -> Result<redis::Client> {
        match self {
            RedisConn::Single(_) => args.client(),
            RedisConn::Cluster(connection) => {
                let primaries = cluster_primaries(connection).await?;
                let (host, port) = &primaries[attempt % primaries.len()];
                args.client_at(host, *port)
            }
        }
    }
}

/// The address of every primary, sorted, from `CLUSTER SLOTS` of any node.
async fn cluster_primaries(connection: &ClusterConn) -> Result<Vec<(String, u16)>> {
    let slots: Vec<Value> = connection
        .query(redis::cmd("CLUSTER").arg("SLOTS"))
        .await
        .context("Failed to read the cluster's slots")?;
    let mut primaries = Vec::new();
    for range in slots {
        // [start, end, [host, port, id, ...], replicas...]
        if let Value::Array(parts) = range
            && let Some(Value::Array(primary)) = parts.get(2)
            && let (Some(host), Some(Value::Int(port))) = (primary.first(), primary.get(1))
        {
            let host: String = redis::from_redis_value(host)?;
            let port = u16::try_from(*port)?;
            if !primaries.contains(&(host.clone(), port)) {
                primaries.push((host, port));
            }
        }
    }
    anyhow::ensure!(!primaries.is_empty(), "the cluster names no primary");
    primaries.sort();
    Ok(primaries)
}

fn collect_texts(value: Value, texts: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => texts.push(String::from_utf8_lossy(&bytes).into_owned()),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => texts.push(text),
        Value::Array(values) | Value::Set(values) => values
            .into_iter()
            .for_each(|value| collect_texts(value, texts)),
        Value::Map(pairs) => pairs
            .into_iter()
            .for_each(|(_, value)| collect_texts(value, texts)),
        _ => {}
    }
}

/// The `run_id` in an `INFO server` text.
pub fn run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|run| run.trim().to_owned())
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(connection) => connection.req_packed_command(cmd),
            RedisConn::Cluster(connection) => Box::pin(async move {
                let result = connection.connection().req_packed_command(cmd).await;
                connection.observe(&result);
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConn::Cluster(connection) => Box::pin(async move {
                let result = connection
                    .connection()
                    .req_packed_commands(pipeline, offset, count)
                    .await;
                connection.observe(&result);
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(connection) => connection.get_db(),
            RedisConn::Cluster(connection) => connection.connection().get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_silence_of_wedged_after_starts_one_replacement() {
        let silence = Silence::new();
        let wedged = WEDGED_AFTER.as_millis() as u64;
        // Replies keep it quiet however many commands fail between them.
        assert_eq!(silence.observe(1_000, false), None);
        assert_eq!(silence.observe(1_500, true), None);
        assert_eq!(silence.observe(1_500 + wedged - 1, false), None);
        // Silent for WEDGED_AFTER: one caller starts the replacement, the others do not.
        let started = silence.observe(1_500 + wedged, false);
        assert_eq!(started, Some(WEDGED_AFTER));
        assert_eq!(silence.observe(1_600 + wedged, false), None);
        // A failed replacement may be tried again at once; a made one gets a new
        // grace period.
        silence.replaced(1_700 + wedged, false);
        assert!(silence.observe(1_800 + wedged, false).is_some());
        silence.replaced(1_900 + wedged, true);
        assert_eq!(silence.observe(1_900 + 2 * wedged - 1, false), None);
        assert!(silence.observe(1_900 + 2 * wedged, false).is_some());
    }

    #[test]
    fn run_ids_are_read_from_every_reply_shape() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:1\r\n";
        assert_eq!(run_id(info).as_deref(), Some("abc123"));
        let mut texts = Vec::new();
        collect_texts(
            Value::Map(vec![
                (
                    Value::SimpleString("127.0.0.1:1".into()),
                    Value::VerbatimString {
                        format: redis::VerbatimFormat::Text,
                        text: info.into(),
                    },
                ),
                (
                    Value::SimpleString("127.0.0.1:2".into()),
                    Value::BulkString(b"run_id:def456\r\n".to_vec()),
                ),
            ]),
            &mut texts,
        );
        let runs: Vec<String> = texts.iter().filter_map(|text| run_id(text)).collect();
        assert_eq!(runs, ["abc123", "def456"]);
    }
}
