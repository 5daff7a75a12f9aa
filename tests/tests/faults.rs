//! The fault suite: a drop of a few thousand simulated users through the real HTTP
//! API, with queue-api, the admitter, two goods-workers and result-relay running as
//! real processes on a stack of the test's own, and one fault (or operator act) struck
//! mid-drop per test. After recovery each test checks the invariants of docs/architecture.md: winners <= stock, one
//! draw per user, every user in exactly one final state that the API shows and the
//! database agrees with, FIFO admission, and `verify`.
//!
//! Needs the function binaries: `cargo build -p dropgate-functions --bins`.

use dropgate_tests::faults::{self, DropPlan, Fault};
use dropgate_tools::stack::{Component, StopMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_api_killed_mid_drop() {
    faults::run(Fault::Kill("queue-api"), DropPlan::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admitter_killed_mid_drop() {
    faults::run(Fault::Kill("admitter"), DropPlan::default()).await;
}

/// One of two goods-workers dies: its batches are redone from the committed offsets
/// and the outbox. The restarted instance rejoins its group as the static member it
/// was (DROPGATE_KAFKA_INSTANCE_ID); as a new member it could find the group led by
/// the dead one, and tansu 0.6.0 then settled the survivors on an empty assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn goods_worker_killed_mid_drop() {
    faults::run(Fault::Kill("goods-worker-1"), DropPlan::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn result_relay_killed_mid_drop() {
    faults::run(Fault::Kill("result-relay"), DropPlan::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_crashed_and_restarted_mid_drop() {
    faults::run(
        Fault::Restart(Component::Broker, StopMode::Crash),
        DropPlan::default(),
    )
    .await;
}

/// A clean broker stop (SIGTERM) mid-drop wedges tansu 0.6.0 itself: its storage
/// service fails the produce requests in flight while shutting down, and after the
/// restart the first idempotent produce of a producer whose epoch row is missing
/// panics its storage task (`lite.rs:503 "more or less than one row"`), after which
/// every request panics (`service.rs:337 unreachable`), topic creation included. The
/// crash restart above covers the broker going away; run this one by hand (`--ignored`)
/// against another broker build.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "tansu 0.6.0 cannot serve idempotent producers after a SIGTERM restart mid-produce"]
async fn broker_stopped_cleanly_and_restarted_mid_drop() {
    faults::run(
        Fault::Restart(Component::Broker, StopMode::Graceful),
        DropPlan::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_crashed_mid_drop() {
    faults::run(
        Fault::Restart(Component::Redis, StopMode::Crash),
        DropPlan::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_mid_drop() {
    faults::run(
        Fault::Restart(Component::Postgres, StopMode::Graceful),
        DropPlan::default(),
    )
    .await;
}

/// Closed mid-drop with most of the line still waiting: everyone waiting is told
/// `closed` (and PostgreSQL records it), the admitted are still drawn, and only then
/// is the seed revealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_closed_mid_drop() {
    faults::run(Fault::Close, DropPlan::default()).await;
}

/// The close reaches PostgreSQL only: the admitter corrects the Redis mirror, and no
/// draw is recorded after the seed is revealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_closed_mid_drop_without_the_redis_mirror() {
    faults::run(Fault::CloseWithoutMirror, DropPlan::default()).await;
}

/// `closes_at` comes due mid-drop and nobody acts: the admitter closes the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closes_at_reached_mid_drop() {
    faults::run(Fault::ClosesAtDue, DropPlan::default()).await;
}

/// Redis loses its last acknowledged writes (restored from an AOF copy two seconds
/// older): results already applied, tickets already handed out, admissions already
/// made. Afterwards a fresh status for every user equals PostgreSQL, no ticket is held
/// twice, and verify passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_rolled_back_mid_drop() {
    faults::run(
        Fault::RedisRolledBack(std::time::Duration::from_secs(2)),
        DropPlan::default(),
    )
    .await;
}

/// Redis comes back empty mid-drop: the event is mirrored again and every recorded
/// outcome written back from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_emptied_mid_drop() {
    faults::run(Fault::RedisEmptied, DropPlan::default()).await;
}

/// Redis fails over to a real asynchronous replica under load (the primary killed, the
/// replica promoted with what it had): the same invariants hold afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_failed_over_to_its_replica_mid_drop() {
    faults::run(Fault::RedisFailover, DropPlan::default()).await;
}

/// PostgreSQL stopped in immediate mode (no checkpoint: crash recovery at the next
/// start) mid-drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_crashed_mid_drop() {
    faults::run(
        Fault::Restart(Component::Postgres, StopMode::Crash),
        DropPlan::default(),
    )
    .await;
}

/// Three events on sale at once on a Redis Cluster of three primaries, each event on
/// another primary; the primary holding the first is killed (`kill -9`) mid-drop and
/// started again. The other two carry on meanwhile, and all three hold every
/// invariant afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_primary_crashed_mid_drop() {
    faults::run(
        Fault::RedisPrimaryCrashed,
        DropPlan {
            users: 1_500,
            stock: 40,
            redis_cluster: 3,
            events: 3,
            ..DropPlan::default()
        },
    )
    .await;
}
