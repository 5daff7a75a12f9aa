//! queue-api over real HTTP against real Redis, the path of a user who gets in line:
//! entering gives a ticket (once per user, gap-free under concurrency), the position
//! follows the serving counter, the result arrives by poll and by stream (also after
//! reconnecting), and sold out reaches everyone.

use std::collections::BTreeSet;
use std::time::Duration;

use dropgate_core::{EventConfig, EventId, EventState, UserKey, UserState};
use dropgate_functions::queue::{EventKeys, EventMeta};
use dropgate_functions::queue_api::QueueView;
use dropgate_tests::TestStack;
use dropgate_tests::api::{ApiServer, error_code, token};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn enter_gives_a_ticket_and_reentering_keeps_it() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(100).await.expect("event");

    let (first_status, first) = server.enter(&event, &token("shop", "ana")).await;
    assert_eq!(first_status, StatusCode::CREATED, "{first}");
    assert_eq!(first["event_id"], event.to_string());
    assert_eq!(first["ticket"], 1);
    assert_eq!(first["state"], "waiting");
    assert_eq!(first["position"], 1);
    assert!(first["poll_after_ms"].as_u64().expect("poll_after_ms") > 0);

    let (second_status, second) = server.enter(&event, &token("shop", "bo")).await;
    assert_eq!(second_status, StatusCode::CREATED);
    assert_eq!(second["ticket"], 2);
    assert_eq!(second["position"], 2);

    // A fresh token for the same identity is the same user.
    let (again_status, again) = server.enter(&event, &token("shop", "ana")).await;
    assert_eq!(again_status, StatusCode::OK, "{again}");
    assert_eq!(again["ticket"], 1);
    // The same user id on another platform is someone else.
    let (other_status, other) = server.enter(&event, &token("market", "ana")).await;
    assert_eq!(other_status, StatusCode::CREATED);
    assert_eq!(other["ticket"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_concurrent_enters_get_distinct_gap_free_tickets() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(100).await.expect("event");
    let client = server.client();
    let users = 10_000;
    let tokens: Vec<String> = tokio::task::spawn_blocking(move || {
        (0..users)
            .map(|n| token("shop", &format!("user-{n}")))
            .collect()
    })
    .await
    .expect("signing");

    let tickets: Vec<u64> = futures_util::stream::iter(tokens)
        .map(|token| {
            let client = client.clone();
            let url = server.queue_url(&event, "");
            async move {
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("enter");
                assert_eq!(response.status(), StatusCode::CREATED);
                let view: QueueView = response.json().await.expect("view");
                view.ticket
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;

    let distinct: BTreeSet<u64> = tickets.iter().copied().collect();
    assert_eq!(distinct.len(), users);
    assert_eq!(distinct.first(), Some(&1));
    assert_eq!(distinct.last(), Some(&(users as u64)));
    let stats = server.store.stats(&event).await.expect("stats");
    assert_eq!(stats.get("entered"), Some(&(users as u64)));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reentries_of_one_user_share_one_ticket() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(100).await.expect("event");
    let client = server.client();
    let token = token("shop", "eager");
    let answers: Vec<(StatusCode, u64)> = futures_util::stream::iter(0..64)
        .map(|_| {
            let client = client.clone();
            let url = server.queue_url(&event, "");
            let token = token.clone();
            async move {
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("enter");
                let status = response.status();
                let view: QueueView = response.json().await.expect("view");
                (status, view.ticket)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let tickets: BTreeSet<u64> = answers.iter().map(|(_, ticket)| *ticket).collect();
    assert_eq!(tickets, BTreeSet::from([1]));
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "exactly one request created the entry");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_far_back_is_told_to_poll_well_within_the_abandon_timeout() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = EventId::parse(TestStack::unique("ev")).expect("event id");
    // The shortest abandon timeout an event may have, and a long line at 1 user/s:
    // an ETA of hours would ask for a 30 s poll, which would expire the user.
    let meta = EventMeta {
        state: EventState::Open,
        rate_per_s: 1,
        abandon_timeout_ms: EventConfig::MIN_ABANDON_TIMEOUT_MS,
        opens_at_ms: 0,
        allowed_platforms: Vec::new(),
    };
    server
        .store
        .put_event_meta(&event, &meta)
        .await
        .expect("event");
    let _: () = redis::cmd("SET")
        .arg(EventKeys::new(&event).seq())
        .arg(50_000)
        .query_async(&mut server.store.connection())
        .await
        .expect("SET seq");
    let user = token("shop", "far-back");
    let (status, entered) = server.enter(&event, &user).await;
    assert_eq!(status, StatusCode::CREATED, "{entered}");
    assert!(
        entered["eta_s"].as_u64().expect("eta_s") > 3_600,
        "{entered}"
    );
    for _ in 0..20 {
        let (status, polled) = server.status(&event, &user).await;
        assert_eq!(status, StatusCode::OK, "{polled}");
        let poll_after = polled["poll_after_ms"].as_u64().expect("poll_after_ms");
        assert!(
            poll_after <= EventConfig::MIN_ABANDON_TIMEOUT_MS / 2,
            "told to come back in {poll_after} ms; the user is expired after {} ms",
            EventConfig::MIN_ABANDON_TIMEOUT_MS
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn position_shrinks_as_the_serving_counter_moves() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(2).await.expect("event");
    for name in ["a", "b", "c", "d"] {
        server.enter(&event, &token("shop", name)).await;
    }
    let last = token("shop", "d");
    let (_, view) = server.status(&event, &last).await;
    assert_eq!(view["position"], 4);
    assert_eq!(view["eta_s"], 2, "4 ahead at 2 per second");

    server.set_serving(&event, 2).await;
    let (code, view) = server.status(&event, &last).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(view["position"], 2);
    assert_eq!(view["state"], "waiting");
    assert_eq!(view["result"], Value::Null);

    // The stream follows the counter too.
    let mut stream = server.open_stream(&event, &last, None).await;
    let first = stream.next(PATIENCE).await.expect("event").expect("open");
    assert_eq!(first.name, "position");
    let first: QueueView = serde_json::from_str(&first.data).expect("view");
    assert_eq!(first.position, 2);
    server.set_serving(&event, 3).await;
    let moved = stream.next(PATIENCE).await.expect("event").expect("open");
    assert_eq!(moved.name, "position");
    let moved: QueueView = serde_json::from_str(&moved.data).expect("view");
    assert_eq!(moved.position, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decided_user_gets_the_result_by_poll_by_stream_and_after_reconnecting() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let user = UserKey::parse("shop", "winner").expect("valid");
    let token = token("shop", "winner");
    server.enter(&event, &token).await;

    let mut stream = server.open_stream(&event, &token, None).await;
    let first = stream.next(PATIENCE).await.expect("event").expect("open");
    assert_eq!(first.name, "position");
    let resume_from = first.id.clone().expect("events carry ids");

    server
        .decide(&event, &user, UserState::Won, 1, 1)
        .await
        .expect("decide");
    let result = stream.next(PATIENCE).await.expect("event").expect("result");
    assert_eq!(result.name, "result");
    let view: QueueView = serde_json::from_str(&result.data).expect("view");
    assert_eq!(view.state, dropgate_core::UserState::Won);
    let outcome = view.result.expect("result");
    assert_eq!(outcome.outcome, dropgate_core::Outcome::Won);
    assert_eq!(outcome.decision_order, Some(1));
    assert_eq!(
        stream.next(PATIENCE).await.expect("end"),
        None,
        "the stream ends after the result"
    );

    // Polling sees the same result, marked final.
    let (code, polled) = server.status(&event, &token).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(polled["state"], "won");
    assert_eq!(polled["result"]["outcome"], "won");
    assert_eq!(polled["poll_after_ms"], 0);

    // A client whose connection dropped before the result reconnects and still gets it.
    let mut resumed = server.open_stream(&event, &token, Some(&resume_from)).await;
    let again = resumed
        .next(PATIENCE)
        .await
        .expect("event")
        .expect("result");
    assert_eq!(again.name, "result");
    assert_eq!(again.id.as_deref(), Some("result"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sold_out_reaches_waiting_streams_pollers_and_newcomers() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let token = token("shop", "late");
    server.enter(&event, &token).await;
    let mut stream = server.open_stream(&event, &token, None).await;
    assert_eq!(
        stream
            .next(PATIENCE)
            .await
            .expect("event")
            .expect("open")
            .name,
        "position"
    );

    server
        .set_event_state(&event, EventState::SoldOut, 10)
        .await
        .expect("sold out");
    let _: () = redis::cmd("PUBLISH")
        .arg(EventKeys::new(&event).channel())
        .arg("sold_out")
        .query_async(&mut server.store.connection())
        .await
        .expect("publish");
    let told = stream
        .next(PATIENCE)
        .await
        .expect("event")
        .expect("sold_out");
    assert_eq!(told.name, "sold_out");
    assert_eq!(stream.next(PATIENCE).await.expect("end"), None);

    let (code, polled) = server.status(&event, &token).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(polled["state"], "sold_out");
    assert_eq!(polled["poll_after_ms"], 0);

    let (code, body) = server.enter(&event, &self::token("shop", "newcomer")).await;
    assert_eq!(code, StatusCode::GONE);
    assert_eq!(error_code(&body), "event_sold_out");
}
