//! The admitter on real Redis and tansu: FIFO with abandoned users skipped, the rate
//! bound, no one lost to a crash, one leader at a time with takeover, and sold out.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dropgate_core::{
    DrawResult, EventId, EventState, MESSAGE_VERSION, Outcome, UserRecord, UserState,
};
use dropgate_functions::queue::scripts::apply_result::ApplyResultScript;
use dropgate_functions::queue::scripts::finished::FinishedScript;
use dropgate_functions::queue::scripts::join_legacy_queue::JoinLegacyQueueScript;
use dropgate_functions::queue::scripts::retick::RetickScript;
use dropgate_functions::queue::{EventKeys, EventMeta, LineEntry};
use dropgate_tests::admitter::{Fixture, Running};
use dropgate_tests::api::{ApiServer, token};
use dropgate_tests::clock::now_s;
use dropgate_tests::{KillOnDrop, TestStack, workspace_binary};
use redis::AsyncCommands;

#[tokio::test(flavor = "multi_thread")]
async fn admits_in_ticket_order_and_skips_the_abandoned() {
    let stack = TestStack::shared().await;
    let fixture = Fixture::new(stack, 10, 100).await;
    let absent = [3, 7, 8, 20];
    fixture.enter(30, &absent).await;
    let (_running, _) = Running::start(&fixture.args(2_000)).await;

    // At any moment the admitted users are exactly the present users up to the
    // serving counter: nobody overtakes anybody.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut checks = 0;
    loop {
        // One atomic read: records and counter from the same instant.
        let keys = EventKeys::new(&fixture.event);
        let (raw, served): (HashMap<String, String>, Option<u64>) = redis::pipe()
            .atomic()
            .hgetall(keys.users())
            .get(keys.serving())
            .query_async(&mut fixture.store.connection())
            .await
            .expect("read");
        let records: HashMap<u64, UserRecord> = raw
            .into_values()
            .map(|text| UserRecord::decode(&text).expect("record"))
            .map(|record| (record.ticket, record))
            .collect();
        let served = served.unwrap_or(0);
        for (ticket, record) in &records {
            let expected = if *ticket > served {
                UserState::Waiting
            } else if absent.contains(ticket) {
                UserState::Expired
            } else {
                UserState::Admitted
            };
            assert_eq!(
                record.state, expected,
                "ticket {ticket} with serving at {served}"
            );
        }
        checks += 1;
        if served >= 30 {
            break;
        }
        assert!(Instant::now() < deadline, "admission stalled at {served}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(checks > 3, "the order was observed mid-run");

    let messages = fixture.admitted_messages(26, Duration::from_secs(30)).await;
    let tickets: BTreeSet<u64> = messages.values().map(|seen| seen[0].ticket).collect();
    let expected: BTreeSet<u64> = (1..=30).filter(|n| !absent.contains(n)).collect();
    assert_eq!(
        tickets, expected,
        "every present user reached waiting-queue, no absent one did"
    );
    let stats = fixture.store.stats(&fixture.event).await.expect("stats");
    assert_eq!(stats.get("admitted"), Some(&26));
    assert_eq!(stats.get("expired"), Some(&4));
}

#[tokio::test(flavor = "multi_thread")]
async fn never_admits_faster_than_the_rate_allows() {
    let stack = TestStack::shared().await;
    let rate = 20;
    let fixture = Fixture::new(stack, rate, 100).await;
    fixture.enter(500, &[]).await;
    let started = Instant::now();
    let (running, _) = Running::start(&fixture.args(2_000)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(running);
    // Counted after the admitter stopped, bounded by time measured around its run.
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = *fixture
        .store
        .stats(&fixture.event)
        .await
        .expect("stats")
        .get("admitted")
        .unwrap_or(&0);
    let burst = u64::from(rate) * 2 * 100 / 1_000;
    let bound = (f64::from(rate) * elapsed).ceil() as u64 + burst;
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:.2} s at {rate}/s (bound {bound})"
    );
    assert!(admitted > 0, "the admitter admitted somebody");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_script_and_delivery_loses_nobody() {
    let stack = TestStack::shared().await;
    let fixture = Fixture::new(stack, 1_000, 100).await;
    fixture.enter(200, &[]).await;
    let spawn = |failpoint: Option<&str>| {
        let mut command = Command::new(workspace_binary("admitter").expect("built"));
        command
            .env("DROPGATE_REDIS_URL", &fixture.redis_url)
            .env("DATABASE_URL", &fixture.database_url)
            .env("DROPGATE_KAFKA_BROKERS", &fixture.brokers)
            .env("DROPGATE_TOPIC_WAITING_QUEUE", &fixture.waiting_topic)
            .env("DROPGATE_SEED_KEY_FILE", &fixture.seed_key.seed_key_file)
            .env("DROPGATE_HEALTH_ADDR", "127.0.0.1:0")
            .env("DROPGATE_ADMITTER_LEASE_MS", "500")
            .env("DROPGATE_ADMITTER_EVENTS", fixture.event.as_str())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(failpoint) = failpoint {
            command.env("DROPGATE_FAILPOINT", failpoint);
        }
        KillOnDrop(command.spawn().expect("admitter starts"))
    };
    let mut crashing = spawn(Some("admitter_after_script_before_delivery"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = crashing.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the failpoint was not reached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let stranded: u64 = fixture
        .store
        .connection()
        .zcard(EventKeys::new(&fixture.event).admitting())
        .await
        .expect("ZCARD");
    assert!(stranded > 0, "the crash left admitted users undelivered");

    let _recovered = spawn(None);
    let messages = fixture
        .admitted_messages(200, Duration::from_secs(60))
        .await;
    assert_eq!(
        messages.len(),
        200,
        "every admitted user reached waiting-queue"
    );
    let records = fixture.records().await;
    assert!(
        records
            .values()
            .all(|record| record.state == UserState::Admitted)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_admitters_admit_each_user_once_and_the_survivor_takes_over() {
    let stack = TestStack::shared().await;
    let fixture = Fixture::new(stack, 100, 100).await;
    fixture.enter(300, &[]).await;
    let lease_ms = 1_000;
    let leader_key = EventKeys::new(&fixture.event).leader();
    let holder = || async {
        let holder: Option<String> = fixture
            .store
            .connection()
            .get(&leader_key)
            .await
            .expect("GET leader");
        holder.unwrap_or_default()
    };
    let (first, first_id) = Running::start(&fixture.args(lease_ms)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !holder().await.starts_with(&format!("{first_id}|")) {
        assert!(Instant::now() < deadline, "the first admitter never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_second, second_id) = Running::start(&fixture.args(lease_ms)).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        holder().await.starts_with(&format!("{first_id}|")),
        "one leader while it lives"
    );

    // A crash: the task dies mid-whatever without releasing its lease.
    first.task.abort();
    let crashed_at = Instant::now();
    drop(first);
    let deadline = crashed_at + Duration::from_millis(lease_ms * 3);
    while !holder().await.starts_with(&format!("{second_id}|")) {
        assert!(
            Instant::now() < deadline,
            "no takeover within three lease periods"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let messages = fixture
        .admitted_messages(300, Duration::from_secs(60))
        .await;
    assert_eq!(messages.len(), 300, "everyone reached waiting-queue");
    let stats = fixture.store.stats(&fixture.event).await.expect("stats");
    assert_eq!(
        stats.get("admitted"),
        Some(&300),
        "each user admitted exactly once"
    );
    let records = fixture.records().await;
    assert!(
        records
            .values()
            .all(|record| record.state == UserState::Admitted)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sold_out_stops_admission_and_tells_every_waiting_user() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api");
    let fixture = Fixture::new(stack, 1, 100).await;
    fixture.enter(50, &[]).await;
    let waiting_token = token("shop", "u50");
    let mut stream = server
        .open_stream(&fixture.event, &waiting_token, None)
        .await;
    assert_eq!(
        stream
            .next(Duration::from_secs(10))
            .await
            .expect("event")
            .expect("open")
            .name,
        "position"
    );

    let (_running, _) = Running::start(&fixture.args(2_000)).await;
    // The draw reports the last unit gone (what result-relay writes).
    let _: () = fixture
        .store
        .connection()
        .hset(EventKeys::new(&fixture.event).meta(), "stock_left", 0)
        .await
        .expect("HSET");
    // The admitter may admit someone before it reads the stock, which moves u50 up
    // the line: position updates may come first, then sold_out.
    let told = loop {
        let event = stream
            .next(Duration::from_secs(10))
            .await
            .expect("event")
            .expect("sold_out");
        if event.name != "position" {
            break event;
        }
    };
    assert_eq!(told.name, "sold_out");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = fixture.records().await;
        let waiting = records
            .values()
            .filter(|record| record.state == UserState::Waiting)
            .count();
        if waiting == 0 {
            let sold_out = records
                .values()
                .filter(|record| record.state == UserState::SoldOut)
                .count();
            let admitted = records
                .values()
                .filter(|record| record.state == UserState::Admitted)
                .count();
            assert_eq!(sold_out + admitted, 50);
            assert!(sold_out >= 45, "admission stopped at the sold-out report");
            break;
        }
        assert!(Instant::now() < deadline, "{waiting} users still waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state: String = fixture
        .store
        .connection()
        .hget(EventKeys::new(&fixture.event).meta(), "state")
        .await
        .expect("HGET");
    assert_eq!(state, "sold_out");
    let (_, polled) = server.status(&fixture.event, &waiting_token).await;
    assert_eq!(polled["state"], "sold_out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_event_stops_being_ticked_once_everyone_admitted_is_published() {
    let stack = TestStack::shared().await;
    let live = Fixture::new(stack, 1_000, 100).await;
    let finished = Fixture::new(stack, 1_000, 100).await;
    // Closed with one user admitted but not yet published: that user must still reach
    // the draw before the event is let go.
    let closed = EventMeta {
        state: EventState::Closed,
        rate_per_s: 1_000,
        abandon_timeout_ms: 10_000,
        opens_at_ms: 0,
        allowed_platforms: Vec::new(),
    };
    finished
        .store
        .put_event_meta(&finished.event, &closed)
        .await
        .expect("meta");
    let finished_keys = EventKeys::new(&finished.event);
    let mut redis = finished.store.connection();
    let _: () = redis
        .zadd(finished_keys.admitting(), Fixture::user(7).member(), 7)
        .await
        .expect("ZADD");

    let mut args = finished.args(2_000);
    args.events = vec![live.event.to_string(), finished.event.to_string()];
    let (_running, _) = Running::start(&args).await;

    let events_key = dropgate_functions::queue::EVENTS_KEY;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed: bool = redis
            .sismember(events_key, finished.event.as_str())
            .await
            .expect("SISMEMBER");
        if !listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed event is still ticked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let published = finished.admitted_messages(1, Duration::from_secs(10)).await;
    assert_eq!(
        published.keys().cloned().collect::<Vec<_>>(),
        vec![Fixture::user(7).member()],
        "the admitted user was published before the event was let go"
    );
    let admitting: u64 = redis.zcard(finished_keys.admitting()).await.expect("ZCARD");
    assert_eq!(admitting, 0);

    // An open event keeps being served: users entering later are admitted.
    live.enter(5, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while live
        .records()
        .await
        .values()
        .any(|record| record.state == UserState::Waiting)
    {
        assert!(
            Instant::now() < deadline,
            "the open event's users still wait"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed: bool = redis
        .sismember(events_key, live.event.as_str())
        .await
        .expect("SISMEMBER");
    assert!(listed, "an open event left the events set");
}

/// A rolling upgrade: older queue-api instances still put users in the sorted-set
/// queue of earlier releases while newer ones push to the line, both taking tickets
/// from the same counter. The line takes the older ones in at their ticket's place
/// (also when more arrive after a merge), and the admitter admits everybody.
#[tokio::test(flavor = "multi_thread")]
async fn users_an_older_queue_api_queued_join_the_line_in_ticket_order() {
    let stack = TestStack::shared().await;
    let fixture = Fixture::new(stack, 100, 100).await;
    let keys = EventKeys::new(&fixture.event);
    let mut redis = fixture.store.connection();
    let older = [1, 2, 5, 9, 10, 14, 21, 22, 23, 30];
    let mut enter = async |range: std::ops::RangeInclusive<u64>| {
        for n in range {
            let user = Fixture::user(n);
            if older.contains(&n) {
                // What an older release's enter script wrote.
                let ticket: u64 = redis.incr(keys.seq(), 1).await.expect("INCR");
                let _: () = redis::pipe()
                    .zadd(keys.legacy_queue(), user.member(), ticket)
                    .hset(
                        keys.users(),
                        user.member(),
                        UserRecord::waiting(ticket, now_s()).encode(),
                    )
                    .query_async(&mut redis)
                    .await
                    .expect("an older enter");
            } else {
                fixture
                    .store
                    .enter(&fixture.event, &user, now_s())
                    .await
                    .expect("enter");
            }
        }
    };
    let script = JoinLegacyQueueScript::default();
    let in_order = |upto: u64| -> Vec<(u64, String)> {
        (1..=upto).map(|n| (n, Fixture::user(n).member())).collect()
    };
    let line = async |fixture: &Fixture| -> Vec<(u64, String)> {
        let places = fixture.store.in_line(&fixture.event).await.expect("line");
        places
            .into_iter()
            .map(|place| (place.ticket, place.member))
            .collect()
    };

    enter(1..=20).await;
    let mut conn = fixture.store.connection();
    assert_eq!(script.call(&mut conn, &keys).await.expect("join"), 6);
    assert_eq!(line(&fixture).await, in_order(20));
    enter(21..=30).await;
    assert_eq!(
        script.call(&mut conn, &keys).await.expect("join again"),
        4,
        "only what arrived since"
    );
    assert_eq!(line(&fixture).await, in_order(30));
    let exists: bool = conn.exists(keys.legacy_queue()).await.expect("EXISTS");
    assert!(!exists, "the legacy queue is emptied");

    // Some more arrive the old way while the admitter runs: it merges them itself.
    enter(31..=34).await;
    let _: () = redis::pipe()
        .zadd(keys.legacy_queue(), Fixture::user(35).member(), 35)
        .hset(
            keys.users(),
            Fixture::user(35).member(),
            UserRecord::waiting(35, now_s()).encode(),
        )
        .incr(keys.seq(), 1)
        .query_async(&mut conn)
        .await
        .expect("an older enter");
    let (_running, _) = Running::start(&fixture.args(2_000)).await;
    let messages = fixture.admitted_messages(35, Duration::from_secs(30)).await;
    let tickets: BTreeSet<u64> = messages.values().map(|seen| seen[0].ticket).collect();
    assert_eq!(tickets, (1..=35).collect(), "everybody admitted once");
}

/// A pre-queue shuffle whose operator stopped after its first step: the admitter
/// applies the rest of the plan before it admits anybody, so everyone is admitted
/// with the ticket the shuffle gave them.
#[tokio::test(flavor = "multi_thread")]
async fn the_admitter_finishes_a_shuffle_left_part_way() {
    let stack = TestStack::shared().await;
    let fixture = Fixture::new(stack, 100, 100).await;
    fixture.enter(12, &[]).await;
    fixture
        .store
        .plan_shuffle(&fixture.event, |members| members.reverse())
        .await
        .expect("plan");
    let keys = EventKeys::new(&fixture.event);
    let first = RetickScript::default()
        .call(&mut fixture.store.connection(), &keys, 1)
        .await
        .expect("one step");
    assert_eq!(first.left, 11);

    let (_running, _) = Running::start(&fixture.args(2_000)).await;
    let messages = fixture.admitted_messages(12, Duration::from_secs(30)).await;
    for n in 1..=12 {
        let seen = &messages[&Fixture::user(n).member()];
        assert_eq!(
            seen[0].ticket,
            13 - n,
            "user {n} admitted with its shuffled ticket"
        );
    }
    let planned: bool = fixture
        .store
        .connection()
        .exists(keys.shuffle_plan())
        .await
        .expect("EXISTS");
    assert!(!planned, "the plan is used up");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_is_finished_only_when_no_tick_can_change_it() {
    let stack = TestStack::shared().await;
    let fixture = Fixture::new(stack, 1, 100).await;
    let keys = EventKeys::new(&fixture.event);
    let mut redis = fixture.store.connection();
    let script = FinishedScript::default();
    // (state, and how many users wait in line, await publishing, await a result,
    // await being recorded expired; finished?). A closed event with users still
    // waiting is left out: they are owed a final answer, which closing does not give
    // them yet. Nor is one with users in flight: their result may never land, and only
    // a tick sends them to the draw again.
    let cases = [
        ("open", [0, 0, 0, 0], false),
        ("paused", [0, 0, 0, 0], false),
        ("scheduled", [0, 0, 0, 0], false),
        ("closed", [0, 1, 0, 0], false),
        ("closed", [0, 0, 1, 0], false),
        ("closed", [0, 0, 0, 1], false),
        ("closed", [0, 0, 0, 0], true),
        ("sold_out", [2, 0, 0, 0], false),
        ("sold_out", [0, 1, 0, 0], false),
        ("sold_out", [0, 0, 1, 0], false),
        ("sold_out", [0, 0, 0, 1], false),
        ("sold_out", [0, 0, 0, 0], true),
    ];
    let sets = [
        keys.line(),
        keys.admitting(),
        keys.inflight(),
        keys.expiring(),
    ];
    for (state, counts, expected) in cases {
        let _: () = redis::pipe()
            .del(&sets)
            .hset(keys.meta(), "state", state)
            .query_async(&mut redis)
            .await
            .expect("reset");
        for (set, count) in sets.iter().zip(counts) {
            for n in 0..count {
                let member = Fixture::user(n).member();
                let _: () = if *set == keys.line() {
                    let entry = LineEntry {
                        ticket: n + 1,
                        member,
                    };
                    redis.rpush(set, entry.encode()).await.expect("RPUSH")
                } else {
                    redis.zadd(set, member, n).await.expect("ZADD")
                };
            }
        }
        let finished = script.call(&mut redis, &keys).await.expect("script");
        assert_eq!(
            finished, expected,
            "{state} with (waiting, admitting, in flight, expiring) = {counts:?}"
        );
    }
}

/// A user sent to the draw whose result never lands (lost with Redis' last writes, or
/// set aside by a goods-worker that could not read it) is sent again after the
/// redelivery delay, until a result lands; then never again.
#[tokio::test(flavor = "multi_thread")]
async fn an_admission_without_a_result_is_sent_again_until_one_lands() {
    let stack = TestStack::shared().await;
    let fixture = Fixture::new(stack, 1_000, 100).await;
    fixture.enter(3, &[]).await;
    let mut args = fixture.args(2_000);
    args.redeliver_ms = 1_000;
    let (_running, _) = Running::start(&args).await;

    // Nobody answers: within four seconds every user is sent at least twice.
    let messages = fixture
        .admitted_messages(usize::MAX, Duration::from_secs(4))
        .await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    for (member, sent) in &messages {
        assert!(sent.len() >= 2, "{member} was sent {} times", sent.len());
        assert!(
            sent.iter()
                .all(|admitted| admitted.ticket == sent[0].ticket),
            "{member} is always sent with its own ticket"
        );
    }

    // Results land for everyone: the admissions stop.
    let results: Vec<DrawResult> = messages
        .values()
        .map(|sent| DrawResult {
            version: MESSAGE_VERSION,
            event_id: fixture.event.clone(),
            user: sent[0].user.clone(),
            ticket: sent[0].ticket,
            outcome: Outcome::Lost,
            decision_order: sent[0].ticket,
            stock_left: 100,
            decided_at_ms: 1_000,
        })
        .collect();
    ApplyResultScript::default()
        .apply_all(&mut fixture.store.connection(), &results)
        .await
        .expect("apply");
    // Whatever was already on its way arrives first; then nothing for three seconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = fixture
        .admitted_messages(usize::MAX, Duration::from_secs(3))
        .await;
    let total = |seen: &HashMap<String, Vec<dropgate_core::Admitted>>| -> usize {
        seen.values().map(Vec::len).sum()
    };
    let settled = total(&later);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = fixture
        .admitted_messages(usize::MAX, Duration::from_secs(1))
        .await;
    assert_eq!(
        total(&again),
        settled,
        "users with a result were sent to the draw again"
    );
}

/// Users skipped as abandoned are recorded in PostgreSQL as expired, with their
/// tickets, so the database knows every user's final state.
#[tokio::test(flavor = "multi_thread")]
async fn abandoned_users_are_recorded_expired_in_postgres() {
    let stack = TestStack::shared().await;
    let (pool, database_url) = stack.fresh_database().await.expect("database");
    let absent = [2u64, 4];
    let (event, store) = pg_event(stack, &pool, 5, &absent).await;
    let _admitter = dropgate_tests::admitter::serve(stack, &database_url, &event).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let recorded = loop {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select user_id, ticket from final_states where event_id = $1 and state = 'expired' order by ticket",
        )
        .bind(event.as_str())
        .fetch_all(&pool)
        .await
        .expect("query");
        if rows.len() >= absent.len() || Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        recorded,
        [("u2".to_owned(), 2), ("u4".to_owned(), 4)],
        "the absent users, with their tickets"
    );
    let left: u64 = store
        .connection()
        .zcard(EventKeys::new(&event).expiring())
        .await
        .expect("ZCARD");
    assert_eq!(left, 0, "recorded users leave the expiring set");
}

/// Closing tells the users still in line `closed`, except when the stock was gone
/// first: they were told `sold_out` already, and that answer stands.
#[tokio::test(flavor = "multi_thread")]
async fn closing_tells_the_line_closed_unless_the_stock_was_gone_first() {
    let stack = TestStack::shared().await;
    for (stock_left, expected) in [(0, UserState::SoldOut), (10, UserState::Closed)] {
        let fixture = Fixture::new(stack, 1_000, stock_left).await;
        fixture.enter(50, &[]).await;
        let closing = EventMeta {
            state: EventState::Closing,
            rate_per_s: 1_000,
            abandon_timeout_ms: 10_000,
            opens_at_ms: 0,
            allowed_platforms: Vec::new(),
        };
        fixture
            .store
            .put_event_meta(&fixture.event, &closing)
            .await
            .expect("meta");
        let (_running, _) = Running::start(&fixture.args(2_000)).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let records = fixture.records().await;
            let told: std::collections::HashSet<UserState> =
                records.values().map(|r| r.state).collect();
            if told == std::collections::HashSet::from([expected]) {
                assert_eq!(records.len(), 50);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stock {stock_left}: the line was told {told:?}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A PostgreSQL event of its own, open and mirrored, with users 1..=count entered in
/// Redis (those in `absent` last seen an hour ago).
async fn pg_event(
    stack: &TestStack,
    pool: &sqlx::PgPool,
    count: u64,
    absent: &[u64],
) -> (EventId, dropgate_functions::queue::QueueStore) {
    let event = EventId::parse(TestStack::unique("pg")).expect("valid");
    dropgate_tools::events::create(
        pool,
        &event,
        &dropgate_core::EventConfig::new(100, 1_000),
        &dropgate_core::EventSeed::from_bytes([9; 32]),
        &stack.env.seed_key().expect("seed key"),
    )
    .await
    .expect("create");
    let record = dropgate_tools::events::transition(pool, &event, EventState::Open)
        .await
        .expect("open");
    let store = dropgate_functions::queue::QueueStore::connect(&stack.env.redis())
        .await
        .expect("redis");
    dropgate_tools::events::mirror(&store, &record)
        .await
        .expect("mirror");
    for n in 1..=count {
        let seen = dropgate_tests::clock::now_s() - if absent.contains(&n) { 3_600 } else { 0 };
        store
            .enter(&event, &Fixture::user(n), seen)
            .await
            .expect("enter");
    }
    (event, store)
}

/// [`pg_event`], marked checked by this Redis process so no repair runs: what happens
/// next is the sweep's or the expiry's own doing.
async fn recorded_event(
    stack: &TestStack,
    pool: &sqlx::PgPool,
    count: u64,
    absent: &[u64],
) -> (EventId, dropgate_functions::queue::QueueStore) {
    let (event, store) = pg_event(stack, pool, count, absent).await;
    let mut redis = store.connection();
    let run = redis.primary_run_ids().await.expect("run_id").join(",");
    let _: () = redis
        .hset(EventKeys::new(&event).meta(), "generation", run)
        .await
        .expect("HSET");
    sqlx::query("update events set tickets_issued = $2 where event_id = $1")
        .bind(event.as_str())
        .bind(count as i64)
        .execute(pool)
        .await
        .expect("tickets issued");
    (event, store)
}

/// Records user `n`'s draw in PostgreSQL, as a goods-worker would have.
async fn record_draw(pool: &sqlx::PgPool, event: &EventId, n: u64, outcome: &str) {
    sqlx::query(
        "insert into draws (event_id, platform_id, user_id, ticket, draw_value, outcome, decision_order)
         values ($1, 'shop', $2, $3, 0, $4, $3)",
    )
    .bind(event.as_str())
    .bind(format!("u{n}"))
    .bind(n as i64)
    .bind(outcome)
    .execute(pool)
    .await
    .expect("draw");
}

/// Users Redis still has in line although PostgreSQL already answered them (Redis
/// lost writes, and a draw landed after the repair) are told PostgreSQL's answer by
/// the close's sweep and by an expiry, never a state the database contradicts, and
/// the database keeps one answer per user.
#[tokio::test(flavor = "multi_thread")]
async fn users_postgresql_already_answered_hear_that_answer_not_the_sweep_or_the_expiry() {
    let stack = TestStack::shared().await;
    let (pool, database_url) = stack.fresh_database().await.expect("database");

    // Closing: user 1 was drawn (won), user 2 told sold_out before; user 3 has no
    // answer yet.
    let (closing, store) = recorded_event(stack, &pool, 3, &[]).await;
    record_draw(&pool, &closing, 1, "won").await;
    sqlx::query(
        "insert into final_states (event_id, platform_id, user_id, ticket, state)
         values ($1, 'shop', 'u2', 2, 'sold_out')",
    )
    .bind(closing.as_str())
    .execute(&pool)
    .await
    .expect("final state");
    dropgate_tools::events::transition(&pool, &closing, EventState::Closing)
        .await
        .expect("closing");
    // Open: user 1 is away (so the admit script expires them) but was drawn (lost).
    let (open, _) = recorded_event(stack, &pool, 2, &[1]).await;
    record_draw(&pool, &open, 1, "lost").await;

    let _closing_admitter = dropgate_tests::admitter::serve(stack, &database_url, &closing).await;
    let _open_admitter = dropgate_tests::admitter::serve(stack, &database_url, &open).await;

    let state_of = |event: &EventId, n: u64| {
        let (store, event) = (store.clone(), event.clone());
        async move {
            let text: Option<String> = store
                .connection()
                .hget(EventKeys::new(&event).users(), Fixture::user(n).member())
                .await
                .expect("HGET");
            text.and_then(|text| UserRecord::decode(text.as_str()).ok())
                .map(|record| record.state)
        }
    };
    let expected = [
        (&closing, 1, UserState::Won),
        (&closing, 2, UserState::SoldOut),
        (&closing, 3, UserState::Closed),
        (&open, 1, UserState::Lost),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut told = Vec::new();
        for (event, n, _) in expected {
            told.push(state_of(event, n).await);
        }
        let wanted: Vec<Option<UserState>> = expected.iter().map(|(_, _, s)| Some(*s)).collect();
        if told == wanted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "told {told:?}, PostgreSQL says {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // PostgreSQL holds one answer per user, and not a second one for the drawn.
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select event_id, user_id, state from final_states where event_id in ($1, $2)
         order by event_id, user_id",
    )
    .bind(closing.as_str())
    .bind(open.as_str())
    .fetch_all(&pool)
    .await
    .expect("query");
    let mut expected_rows = vec![
        (closing.to_string(), "u2".to_owned(), "sold_out".to_owned()),
        (closing.to_string(), "u3".to_owned(), "closed".to_owned()),
    ];
    expected_rows.sort();
    let mut rows = rows;
    rows.retain(|(event, _, _)| event == closing.as_str() || event == open.as_str());
    assert_eq!(
        rows.iter()
            .filter(|(event, _, _)| event == closing.as_str())
            .cloned()
            .collect::<Vec<_>>(),
        expected_rows
    );
    assert!(
        !rows
            .iter()
            .any(|(event, user, _)| event == open.as_str() && user == "u1"),
        "the drawn user was recorded expired too: {rows:?}"
    );
}
