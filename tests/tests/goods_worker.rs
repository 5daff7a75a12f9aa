//! goods-worker on real PostgreSQL and tansu: never oversell, never draw a user
//! twice, never lose a result, through duplicates, crashes and a database restart.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dropgate_core::{Beacon, DrawResult, EventSeed, EventState, Outcome, UserKey, draw_value};
use dropgate_functions::event_lifecycle;
use dropgate_tests::goods::{DropFixture, Workers};
use dropgate_tests::{KillOnDrop, TestStack, dropgate_binary, workspace_binary};
use dropgate_tools::events;
use dropgate_tools::stack::{self, Component, StopMode};

const PATIENCE: Duration = Duration::from_secs(120);

/// Every user has results that all say the same thing; returns one per user.
fn one_outcome_per_user(results: &HashMap<String, Vec<DrawResult>>) -> HashMap<String, DrawResult> {
    results
        .iter()
        .map(|(user, seen)| {
            let first = &seen[0];
            for other in seen {
                assert_eq!(
                    (other.outcome, other.decision_order),
                    (first.outcome, first.decision_order),
                    "{user} was announced two different outcomes"
                );
            }
            (user.clone(), first.clone())
        })
        .collect()
}

async fn draws_per_user(drop: &DropFixture) -> (i64, i64) {
    sqlx::query_as(
        "select count(*), count(distinct (platform_id, user_id)) from draws where event_id = $1",
    )
    .bind(drop.event.as_str())
    .fetch_one(&drop.pool)
    .await
    .expect("count draws")
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_on_six_partitions_with_every_message_twice_never_oversell() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 6, 100, 0.05, [7; 32])
        .await
        .expect("drop");
    let users = drop.users(20_000);
    let workers = Workers::start(&drop, 3, &TestStack::unique("goods"))
        .await
        .expect("workers");
    drop.admit_keyed_by_user(&users, 2).await.expect("admit");

    let results = drop.results(users.len(), PATIENCE).await.expect("results");
    workers.stop().await.expect("workers stop cleanly");
    let outcomes = one_outcome_per_user(&results);
    assert_eq!(outcomes.len(), users.len(), "every user has a result");

    let (rows, distinct) = draws_per_user(&drop).await;
    assert_eq!(
        (rows, distinct),
        (20_000, 20_000),
        "exactly one draw per user"
    );
    let counts = drop.outcome_counts().await.expect("counts");
    let won = counts.get("won").copied().unwrap_or(0);
    assert!(won <= 100, "oversold: {won} winners for 100 units");
    // 20,000 users at 5 % exhaust 100 units long before the end.
    assert_eq!(won, 100);
    assert!(counts.get("sold_out").copied().unwrap_or(0) > 0);
    let announced_won = outcomes
        .values()
        .filter(|r| r.outcome == Outcome::Won)
        .count();
    assert_eq!(announced_won, 100);

    let record = events::load(&drop.pool, &drop.event).await.expect("event");
    assert_eq!(record.stock_left, 0);
    assert_eq!(record.state, EventState::SoldOut);
    assert_eq!(record.decisions_made, 20_000);
    // Decision orders are exactly 1..=20,000.
    let mut orders: Vec<u64> = outcomes.values().map(|r| r.decision_order).collect();
    orders.sort_unstable();
    assert_eq!(orders, (1..=20_000).collect::<Vec<u64>>());
    let unsent: i64 = sqlx::query_scalar("select count(*) from outbox where sent_at is null")
        .fetch_one(&drop.pool)
        .await
        .expect("outbox");
    assert_eq!(unsent, 0, "every result was published");
}

/// Admissions keyed by their event, as the admitter sends them on Kafka, are decided
/// in ticket order whatever the number of workers and partitions, each message sent
/// twice: the decision order is the line's.
#[tokio::test(flavor = "multi_thread")]
async fn several_workers_decide_one_event_in_ticket_order() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 6, 50, 0.05, [17; 32])
        .await
        .expect("drop");
    let users = drop.users(3_000);
    let workers = Workers::start(&drop, 3, &TestStack::unique("goods"))
        .await
        .expect("workers");
    drop.admit(&users, 2).await.expect("admit");
    drop.results(users.len(), PATIENCE).await.expect("results");
    workers.stop().await.expect("workers stop cleanly");

    let tickets: Vec<i64> =
        sqlx::query_scalar("select ticket from draws where event_id = $1 order by decision_order")
            .bind(drop.event.as_str())
            .fetch_all(&drop.pool)
            .await
            .expect("draws");
    assert_eq!(tickets.len(), users.len());
    let out_of_order = tickets.windows(2).filter(|pair| pair[1] < pair[0]).count();
    assert_eq!(out_of_order, 0, "decisions went against the ticket order");
    let counts = drop.outcome_counts().await.expect("counts");
    assert_eq!(counts.get("won").copied(), Some(50), "{counts:?}");
    drop.check_winners_announced().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certain_wins_stop_exactly_at_the_stock() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 3, 50, 1.0, [1; 32])
        .await
        .expect("drop");
    let users = drop.users(500);
    let workers = Workers::start(&drop, 2, &TestStack::unique("goods"))
        .await
        .expect("workers");
    drop.admit(&users, 1).await.expect("admit");
    let results = drop.results(users.len(), PATIENCE).await.expect("results");
    workers.stop().await.expect("stop");
    let outcomes = one_outcome_per_user(&results);
    assert_eq!(outcomes.len(), 500);
    let counts = drop.outcome_counts().await.expect("counts");
    assert_eq!(counts.get("won"), Some(&50));
    assert_eq!(counts.get("sold_out"), Some(&450));
    assert_eq!(counts.get("lost"), None);
    // The first 50 in decision order won; each result carries the stock after its batch.
    for result in outcomes.values() {
        assert_eq!(
            result.outcome == Outcome::Won,
            result.decision_order <= 50,
            "{result:?}"
        );
    }
    assert!(outcomes.values().any(|result| result.stock_left == 0));
}

fn spawn_worker(drop: &DropFixture, group: &str, failpoint: Option<&str>) -> KillOnDrop {
    let mut command = Command::new(workspace_binary("goods-worker").expect("built"));
    for (name, value) in drop.env(group) {
        command.env(name, value);
    }
    command.env("DROPGATE_KAFKA_INSTANCE_ID", format!("{group}-worker"));
    if let Some(failpoint) = failpoint {
        command.env("DROPGATE_FAILPOINT", failpoint);
    }
    KillOnDrop(
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("goods-worker starts"),
    )
}

fn wait_for_exit(process: &mut KillOnDrop, patience: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = process.0.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not reach its failpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn crash_then_recover(failpoint: &str) {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 2, 30, 0.2, [3; 32])
        .await
        .expect("drop");
    let users = drop.users(400);
    drop.admit(&users, 1).await.expect("admit");

    // Both processes share one group: the second picks up the first one's offsets.
    // And one static membership, as a restarted pod or stack instance has: the second
    // takes the dead one's place at once. (Joined dynamically, the test broker can
    // leave the dead leader's assignment standing, with the newcomer given nothing.)
    let group = TestStack::unique("goods");
    let mut crashing = spawn_worker(&drop, &group, Some(failpoint));
    let status = tokio::task::block_in_place(|| wait_for_exit(&mut crashing, PATIENCE));
    assert!(
        !status.success(),
        "the failpoint aborted the worker: {status:?}"
    );

    let _recovered = spawn_worker(&drop, &group, None);
    let results = drop.results(users.len(), PATIENCE).await.expect("results");
    let outcomes = one_outcome_per_user(&results);
    assert_eq!(
        outcomes.len(),
        users.len(),
        "every user's result arrives after the crash"
    );
    let (rows, distinct) = draws_per_user(&drop).await;
    assert_eq!((rows, distinct), (400, 400), "no user drawn twice");
    let won = drop
        .outcome_counts()
        .await
        .expect("counts")
        .get("won")
        .copied()
        .unwrap_or(0);
    assert!(won <= 30);
    drop.check_winners_announced().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_commit_before_publish_still_delivers_every_result() {
    crash_then_recover("goods_after_commit_before_publish").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_commit_redoes_the_batch_without_a_second_draw() {
    crash_then_recover("goods_before_commit").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_on_a_finished_event_and_fails_on_an_altered_draw() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 2, 20, 0.1, [9; 32])
        .await
        .expect("drop");
    let users = drop.users(600);
    let workers = Workers::start(&drop, 1, &TestStack::unique("goods"))
        .await
        .expect("workers");
    drop.admit(&users, 1).await.expect("admit");
    drop.results(users.len(), PATIENCE).await.expect("results");
    workers.stop().await.expect("stop");

    let cli = |args: &[&str]| {
        Command::new(dropgate_binary().expect("built"))
            .args(args)
            .env("DATABASE_URL", &drop.database_url)
            .env_remove("DROPGATE_REDIS_URL")
            .output()
            .expect("dropgate runs")
    };
    let event = drop.event.to_string();
    let early = cli(&["event", "verify", "--id", &event]);
    assert_eq!(
        early.status.code(),
        Some(1),
        "the seed is secret until close"
    );
    assert!(String::from_utf8_lossy(&early.stderr).contains("closed"));

    // The admitter finishes the close; it mirrors the event into Redis by itself.
    let _admitter = dropgate_tests::admitter::serve(stack, &drop.database_url, &drop.event).await;
    let closed = cli(&["event", "close", "--id", &event, "--wait-secs", "30"]);
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    let passed = cli(&["event", "verify", "--id", &event]);
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stdout)
    );
    let summary = String::from_utf8_lossy(&passed.stdout);
    assert!(summary.contains("600 decisions"), "{summary}");

    sqlx::query(
        "update draws set outcome = 'won' where event_id = $1
            and decision_order = (select min(decision_order) from draws where event_id = $1 and outcome = 'lost')",
    )
    .bind(drop.event.as_str())
    .execute(&drop.pool)
    .await
    .expect("tamper");
    let failed = cli(&["event", "verify", "--id", &event]);
    assert_eq!(
        failed.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&failed.stdout)
    );
    assert!(String::from_utf8_lossy(&failed.stdout).contains("wrong_outcome"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_restart_mid_run_loses_nothing() {
    let stack = TestStack::dedicated().await.expect("stack");
    let drop = DropFixture::open(&stack, 3, 100, 0.05, [5; 32])
        .await
        .expect("drop");
    let users = drop.users(6_000);
    let workers = Workers::start(&drop, 2, &TestStack::unique("goods"))
        .await
        .expect("workers");
    drop.admit(&users[..3_000], 1)
        .await
        .expect("admit first half");
    let mut quiet = |_: &str| {};
    // A clean restart (fast shutdown: every open connection is cut mid-batch).
    stack::restart_component(
        &stack.options,
        Component::Postgres,
        StopMode::Graceful,
        &mut quiet,
    )
    .await
    .expect("PostgreSQL restarts");
    drop.admit(&users[3_000..], 1)
        .await
        .expect("admit second half");
    let results = drop.results(users.len(), PATIENCE).await.expect("results");
    workers.stop().await.expect("stop");
    assert_eq!(one_outcome_per_user(&results).len(), users.len());
    let (rows, distinct) = draws_per_user(&drop).await;
    assert_eq!((rows, distinct), (6_000, 6_000));
}

/// An admission no decoder of this build reads (a newer producer's version during a
/// rolling upgrade, or garbage) is set aside in the dead-letter topic with the reason,
/// and the admissions behind it in its partition are decided as usual.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_admission_is_dead_lettered_and_the_partition_goes_on() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 1, 10, 0.5, [4; 32])
        .await
        .expect("drop");
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &drop.brokers)
        .create()
        .expect("producer");
    let newer = format!(
        r#"{{"version":2,"event_id":"{}","user":{{"platform_id":"shop","user_id":"skew"}},"ticket":1}}"#,
        drop.event
    );
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&drop.waiting_topic)
                .key("shop:skew")
                .payload(newer.as_bytes()),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| error)
        .expect("delivered");
    let users = drop.users(3);
    drop.admit(&users, 1).await.expect("admit");

    let workers = Workers::start(&drop, 1, &TestStack::unique("goods"))
        .await
        .expect("workers");
    let results = drop.results(3, PATIENCE).await.expect("results");
    assert_eq!(results.len(), 3, "the admissions behind it were decided");
    let letters = stack
        .dead_letters(&drop.dead_letter_topic, 1, PATIENCE)
        .await;
    workers.stop().await.expect("stop");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].reason, "unknown_version");
    assert_eq!(letters[0].source_topic, drop.waiting_topic);
    assert_eq!(letters[0].key.as_deref(), Some("shop:skew"));
    assert_eq!(letters[0].payload().expect("hex"), newer.as_bytes());
    let (draws, _) = draws_per_user(&drop).await;
    assert_eq!(draws, 3, "nobody was drawn from the unreadable admission");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_beacon_drop_draws_under_the_mixed_key_and_verifies_only_with_its_value() {
    let stack = TestStack::shared().await;
    let seed = [21; 32];
    let beacon = Beacon {
        round: "drand-quicknet/777".into(),
        value: Some("c3".repeat(32)),
    };
    let drop = DropFixture::open_with_beacon(stack, 10, 0.2, seed, &beacon)
        .await
        .expect("drop");
    let users = drop.users(200);
    let workers = Workers::start(&drop, 1, &TestStack::unique("goods"))
        .await
        .expect("workers");
    drop.admit(&users, 1).await.expect("admit");
    drop.results(users.len(), PATIENCE).await.expect("results");
    workers.stop().await.expect("stop");

    // The stored values are the mixed key's, not the seed's.
    let seed = EventSeed::from_bytes(seed);
    let key = seed.event_key(Some(&beacon)).expect("key");
    let first: (String, i64) = sqlx::query_as(
        "select user_id, draw_value from draws where event_id = $1 and decision_order = 1",
    )
    .bind(drop.event.as_str())
    .fetch_one(&drop.pool)
    .await
    .expect("first draw");
    let user = UserKey::parse("shop", &first.0).expect("user");
    let stored = dropgate_functions::goods_worker::store::from_stored(first.1);
    assert_eq!(stored, draw_value(&key, &drop.event, &user));
    assert_ne!(stored, draw_value(&seed, &drop.event, &user));

    // Closed and revealed as the admitter does it.
    let seed_key = stack.env.seed_key().expect("seed key");
    assert!(
        event_lifecycle::begin_closing(&drop.pool, &drop.event)
            .await
            .expect("closing")
    );
    assert!(
        event_lifecycle::finish_closing(&drop.pool, &seed_key, &drop.event)
            .await
            .expect("closed")
    );
    let report = events::verify_event(&drop.pool, &drop.event)
        .await
        .expect("verify");
    assert!(report.passed(), "{:?}", report.findings);
    let mut conn = drop.pool.acquire().await.expect("connection");
    let data = events::fairness_data(&mut conn, &drop.event)
        .await
        .expect("fairness data");
    assert_eq!(data["beacon"]["round"], "drand-quicknet/777");
    assert_eq!(
        dropgate_tests::independent_verdict(&data),
        (Some(0), Vec::new())
    );

    // Another value is another drop: both verifiers see every draw value wrong.
    let mut tx = drop.pool.begin().await.expect("transaction");
    sqlx::query("update events set beacon_value = $2 where event_id = $1")
        .bind(drop.event.as_str())
        .bind("d4".repeat(32))
        .execute(&mut *tx)
        .await
        .expect("tamper");
    let tampered = events::verify_event_on(&mut tx, &drop.event)
        .await
        .expect("verify");
    assert!(
        tampered
            .findings
            .iter()
            .any(|finding| matches!(finding, dropgate_core::Finding::WrongDrawValue { .. })),
        "{:?}",
        tampered.findings
    );
    let data = events::fairness_data(&mut tx, &drop.event)
        .await
        .expect("fairness data");
    let (code, kinds) = dropgate_tests::independent_verdict(&data);
    assert_eq!(code, Some(2));
    assert!(
        kinds.iter().any(|kind| kind == "wrong_draw_value"),
        "{kinds:?}"
    );
    tx.rollback().await.expect("rollback");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_of_an_earlier_draw_rule_is_neither_drawn_nor_verified_by_this_rule() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 1, 5, 0.5, [23; 32])
        .await
        .expect("drop");
    sqlx::query("update events set draw_rule = 'dropgate/draw/v1' where event_id = $1")
        .bind(drop.event.as_str())
        .execute(&drop.pool)
        .await
        .expect("an event created before rule v2");
    let refused = dropgate_functions::goods_worker::store::record_batch(
        &drop.pool,
        &stack.env.seed_key().expect("seed key"),
        &drop.event,
        &drop.users(3),
        1_000,
        || {},
    )
    .await
    .expect_err("not drawn under another rule");
    assert!(
        refused.to_string().contains("draw rule dropgate/draw/v1"),
        "{refused}"
    );
    let draws: i64 = sqlx::query_scalar("select count(*) from draws where event_id = $1")
        .bind(drop.event.as_str())
        .fetch_one(&drop.pool)
        .await
        .expect("count");
    assert_eq!(draws, 0);
    let verify = events::verify_event(&drop.pool, &drop.event)
        .await
        .expect_err("not judged by another rule");
    assert!(verify.to_string().contains("dropgate/draw/v1"), "{verify}");
}
