//! The result-relay binary against real Redis and the real Kafka-protocol broker:
//! results reach users' records, counters and open streams; redeliveries, crashes
//! before the commit, malformed messages and conflicting results change nothing they
//! should not.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dropgate_core::{DrawResult, Outcome, UserKey, UserRecord, UserState};
use dropgate_functions::queue::{EventKeys, LineEntry};
use dropgate_tests::TestStack;
use dropgate_tests::api::{ApiServer, token};
use dropgate_tests::clock::now_s;
use dropgate_tests::relay::{FAILPOINT, PATIENCE, Setup};
use dropgate_tools::stack::{self, Component, StopMode};
use redis::AsyncCommands;
use serde_json::Value;

fn user(name: &str) -> UserKey {
    UserKey::parse("shop", name).expect("valid user")
}

#[tokio::test(flavor = "multi_thread")]
async fn results_reach_records_counters_stock_and_open_streams() {
    let setup = Setup::new(TestStack::shared().await).await;
    let server = ApiServer::start(setup.stack)
        .await
        .expect("queue-api starts");
    server
        .set_event_state(&setup.event, dropgate_core::EventState::Open, 100)
        .await
        .expect("event");
    let _: () = setup
        .store
        .connection()
        .hset(EventKeys::new(&setup.event).meta(), "stock_left", 10)
        .await
        .expect("stock");
    let names = ["ana", "ben", "cid", "dan"];
    let mut tickets = HashMap::new();
    for name in names {
        let (_, body) = server.enter(&setup.event, &token("shop", name)).await;
        let ticket = body["ticket"].as_u64().expect("a ticket");
        setup.admit(&user(name), ticket).await;
        tickets.insert(name, ticket);
    }
    let mut stream = server
        .open_stream(&setup.event, &token("shop", "ana"), None)
        .await;
    let first = stream
        .next(Duration::from_secs(10))
        .await
        .expect("an event")
        .expect("stream open");
    assert_eq!(first.name, "position", "{first:?}");

    let mut relay = setup.start_relay().await;
    let plan = [
        ("ana", Outcome::Won, 1, 9),
        ("ben", Outcome::Lost, 2, 9),
        ("cid", Outcome::Won, 3, 8),
    ];
    for (name, outcome, order, stock_left) in plan {
        let result = DrawResult {
            stock_left,
            ..setup.result(&user(name), tickets[name], outcome, order)
        };
        setup.produce_result(&result).await;
    }
    for (name, outcome, order, _) in plan {
        let record = setup.decided(&user(name), &relay).await;
        assert_eq!(record.state, outcome.user_state(), "{name}");
        assert_eq!(record.ticket, tickets[name], "{name} keeps the ticket");
        assert_eq!(
            record.decided.map(|decided| decided.decision_order),
            Some(order)
        );
    }
    // A result carrying an older, larger stock count must not raise it again.
    let late = DrawResult {
        stock_left: 9,
        ..setup.result(&user("dan"), tickets["dan"], Outcome::Lost, 4)
    };
    setup.produce_result(&late).await;
    assert_eq!(
        setup.decided(&user("dan"), &relay).await.state,
        UserState::Lost
    );
    let stats = setup.stats().await;
    assert_eq!(stats.get("won"), Some(&2), "{stats:?}");
    assert_eq!(stats.get("lost"), Some(&2), "{stats:?}");
    assert_eq!(setup.stock_left().await, Some(8));
    assert_eq!(
        relay.metric("dropgate_relay_applied_total").await,
        4.0,
        "{}",
        relay.log_text()
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = stream
            .next(left)
            .await
            .expect("the result arrives")
            .expect("stream open until the result");
        if event.name == "result" {
            break event;
        }
    };
    let body: Value = serde_json::from_str(&result.data).expect("JSON data");
    assert_eq!(body["state"], "won", "{body}");
    assert_eq!(body["result"]["decision_order"], 1, "{body}");

    relay.terminate();
    let status = relay.exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{}", relay.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_result_is_applied_once() {
    let setup = Setup::new(TestStack::shared().await).await;
    let ana = user("ana");
    setup.admit(&ana, 7).await;
    let relay = setup.start_relay().await;
    let result = setup.result(&ana, 7, Outcome::Won, 1);
    setup.produce_result(&result).await;
    setup.produce_result(&result).await;
    relay
        .wait_metric("dropgate_relay_duplicates_total", 1.0)
        .await;

    let record = setup.decided(&ana, &relay).await;
    assert_eq!(record.state, UserState::Won);
    assert_eq!(record.ticket, 7);
    let stats = setup.stats().await;
    assert_eq!(stats.get("won"), Some(&1), "{stats:?}");
    assert_eq!(relay.metric("dropgate_relay_applied_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_redis_and_the_commit_redelivers_without_doubling() {
    let setup = Setup::new(TestStack::shared().await).await;
    let ana = user("ana");
    setup.admit(&ana, 3).await;
    let (partition, offset) = setup
        .produce_result(&setup.result(&ana, 3, Outcome::Lost, 1))
        .await;

    let mut crashing = setup.spawn_relay(Some(FAILPOINT));
    let status = crashing.exit(PATIENCE).await;
    assert!(!status.success(), "the failpoint aborts: {status}");
    assert!(crashing.log_text().contains(FAILPOINT));
    // Redis has the result, the broker has no commit for it.
    assert_eq!(
        setup.record(&ana).await.map(|r| r.state),
        Some(UserState::Lost)
    );
    assert_eq!(setup.committed(partition), None);

    let relay = setup.start_relay().await;
    relay
        .wait_metric("dropgate_relay_duplicates_total", 1.0)
        .await;
    setup.committed_past(partition, offset, &relay).await;
    let record = setup.decided(&ana, &relay).await;
    assert_eq!(record.state, UserState::Lost);
    assert_eq!(record.decided.map(|d| d.decision_order), Some(1));
    let stats = setup.stats().await;
    assert_eq!(stats.get("lost"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("won"), None, "{stats:?}");
    assert_eq!(relay.metric("dropgate_relay_applied_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_message_is_dead_lettered_and_does_not_hold_up_the_results_behind_it() {
    let stack = TestStack::shared().await;
    let setup = Setup::new(stack).await;
    let ana = user("ana");
    let relay = setup.start_relay().await;
    // Same key, so the same partition and this order: the bad ones come first. A
    // newer producer's result (version 2) and bytes nobody can read.
    let newer = br#"{"version":2,"event_id":"e","user":{"platform_id":"shop","user_id":"ana"}}"#;
    let (partition, offset) = setup.produce(&ana.member(), newer).await;
    setup.produce(&ana.member(), b"{not json").await;
    // No record yet: the result creates it from its own ticket.
    setup
        .produce_result(&setup.result(&ana, 5, Outcome::Won, 1))
        .await;

    let record = setup.decided(&ana, &relay).await;
    assert_eq!(record.state, UserState::Won);
    assert_eq!(record.ticket, 5);

    let letters = stack.dead_letters(&setup.dead_letter, 2, PATIENCE).await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(reasons, ["unknown_version", "malformed"], "{letters:?}");
    let first = &letters[0];
    assert_eq!(first.source_topic, setup.topic);
    assert_eq!((first.partition, first.offset), (partition, offset));
    assert_eq!(first.key.as_deref(), Some(ana.member().as_str()));
    assert_eq!(first.payload().expect("hex"), newer);
    assert_eq!(relay.metric("dropgate_dead_letters_total").await, 2.0);

    // Replayed, the letters go back to the results topic; this relay still cannot
    // read them, so they are set aside again rather than lost.
    let replayed = std::process::Command::new(dropgate_tests::dropgate_binary().expect("built"))
        .args(["dead-letter", "replay"])
        .env("DROPGATE_KAFKA_BROKERS", &stack.env.kafka_brokers)
        .env("DROPGATE_TOPIC_DEAD_LETTER", &setup.dead_letter)
        .output()
        .expect("dropgate runs");
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&replayed.stdout).contains("2 dead letters replayed"),
        "{}",
        String::from_utf8_lossy(&replayed.stdout)
    );
    let letters = stack.dead_letters(&setup.dead_letter, 4, PATIENCE).await;
    assert_eq!(letters.len(), 4, "{letters:?}");
    assert_eq!(letters[2].payload().expect("hex"), newer);
    assert_eq!(letters[2].source_topic, setup.topic);
    assert_eq!(setup.decided(&ana, &relay).await.state, UserState::Won);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflicting_result_does_not_change_the_first() {
    let setup = Setup::new(TestStack::shared().await).await;
    let ana = user("ana");
    setup.admit(&ana, 9).await;
    let relay = setup.start_relay().await;
    setup
        .produce_result(&setup.result(&ana, 9, Outcome::Won, 4))
        .await;
    setup
        .produce_result(&setup.result(&ana, 9, Outcome::Lost, 5))
        .await;
    relay
        .wait_metric("dropgate_relay_conflicts_total", 1.0)
        .await;

    let record = setup.decided(&ana, &relay).await;
    assert_eq!(record.state, UserState::Won);
    assert_eq!(record.decided.map(|d| d.decision_order), Some(4));
    let stats = setup.stats().await;
    assert_eq!(stats.get("won"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("lost"), None, "{stats:?}");
    let log = relay.log_text();
    assert!(log.contains("conflicting result ignored"), "{log}");
    assert!(
        log.contains(r#""kept":"won""#) && log.contains(r#""refused":"lost""#),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_unit_sets_stock_to_zero_and_leaves_waiting_users_to_the_admitter() {
    let setup = Setup::new(TestStack::shared().await).await;
    let (ana, ben) = (user("ana"), user("ben"));
    setup.admit(&ana, 1).await;
    let keys = EventKeys::new(&setup.event);
    let _: () = redis::pipe()
        .hset(
            keys.users(),
            ben.member(),
            UserRecord::waiting(2, now_s()).encode(),
        )
        .rpush(
            keys.line(),
            LineEntry {
                ticket: 2,
                member: ben.member(),
            }
            .encode(),
        )
        .query_async(&mut setup.store.connection())
        .await
        .expect("a waiting user");
    let relay = setup.start_relay().await;
    let last = DrawResult {
        stock_left: 0,
        ..setup.result(&ana, 1, Outcome::Won, 1)
    };
    setup.produce_result(&last).await;

    assert_eq!(setup.decided(&ana, &relay).await.state, UserState::Won);
    assert_eq!(setup.stock_left().await, Some(0));
    assert_eq!(
        setup.record(&ben).await.map(|r| r.state),
        Some(UserState::Waiting)
    );
    let queued = setup.store.in_line(&setup.event).await.expect("line");
    assert_eq!(
        queued
            .iter()
            .map(|place| (place.ticket, place.member.clone()))
            .collect::<Vec<_>>(),
        [(2, ben.member())],
        "still in line, for the admitter to tell"
    );
    assert!(relay.log_text().contains("stock reached 0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_holds_the_batch_uncommitted_until_redis_is_back() {
    let stack = TestStack::dedicated().await.expect("stack starts");
    let setup = Setup::new(&stack).await;
    let ana = user("ana");
    let relay = setup.start_relay().await;
    stack::stop_component(stack.state_dir(), Component::Redis, StopMode::Crash)
        .expect("Redis stops");
    let (partition, offset) = setup
        .produce_result(&setup.result(&ana, 1, Outcome::Won, 1))
        .await;

    relay.wait_ready(false).await;
    relay
        .wait_metric("dropgate_relay_redis_failures_total", 2.0)
        .await;
    assert_eq!(
        setup.committed(partition),
        None,
        "committed before Redis had it"
    );

    let mut quiet = |_: &str| {};
    stack::restart_component(
        &stack.options,
        Component::Redis,
        StopMode::Crash,
        &mut quiet,
    )
    .await
    .expect("Redis restarts");
    assert_eq!(setup.decided(&ana, &relay).await.state, UserState::Won);
    setup.committed_past(partition, offset, &relay).await;
    relay.wait_ready(true).await;
    assert_eq!(setup.stats().await.get("won"), Some(&1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_fails_the_start_and_names_it() {
    let mut setup = Setup::new(TestStack::shared().await).await;
    setup.topic = TestStack::unique("missing-topic");
    let mut relay = setup.spawn_relay(None);
    let status = relay.exit(PATIENCE).await;
    assert_eq!(status.code(), Some(1), "{}", relay.log_text());
    let log = relay.log_text();
    assert!(
        log.contains(&format!("the topic {} does not exist", setup.topic)),
        "{log}"
    );
}
