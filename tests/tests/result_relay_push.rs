//! result-relay's Pub/Sub push endpoint against real Redis, with requests in Pub/Sub's
//! push format carrying OIDC tokens signed by a test key configured as trusted: a
//! pushed result is applied once however often it is redelivered, and malformed or
//! unauthenticated pushes get a 4xx JSON error.

use dropgate_core::{
    DrawResult, EventId, MESSAGE_VERSION, Message as _, Outcome, UserKey, UserRecord, UserState,
};
use dropgate_functions::queue::{EventKeys, QueueStore};
use dropgate_tests::TestStack;
use dropgate_tests::push::{PushServer, Token, assert_refused, bearer, envelope_for};
use redis::AsyncCommands;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn result_relay_applies_pushed_results_once_and_refuses_bad_pushes() {
    let stack = TestStack::shared().await;
    let event = EventId::parse(TestStack::unique("relay")).expect("event id");
    let store = QueueStore::connect(&stack.env.redis())
        .await
        .expect("redis");
    let keys = EventKeys::new(&event);
    let user = UserKey::parse("web", "pushed-1").expect("user");
    let admitted = UserRecord {
        state: UserState::Admitted,
        ticket: 7,
        last_seen_s: 1_700_000_000,
        decided: None,
    };
    let _: () = store
        .connection()
        .hset(keys.users(), user.member(), admitted.encode())
        .await
        .expect("admit");
    let result = DrawResult {
        version: MESSAGE_VERSION,
        event_id: event.clone(),
        user: user.clone(),
        ticket: 7,
        outcome: Outcome::Won,
        decision_order: 1,
        stock_left: 9,
        decided_at_ms: 1_700_000_000_000,
    };
    let server = PushServer::relay(stack).await;
    let route = "/pubsub/result-notification";
    let valid = bearer(&Token::default().sign());
    let body = envelope_for(&result.encode(), &result.key(), "r1");
    for _ in 0..3 {
        let (status, answer) = server.post(route, Some(&valid), body.clone()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    }
    let text: String = store
        .connection()
        .hget(keys.users(), user.member())
        .await
        .expect("record");
    let record = UserRecord::decode(&text).expect("record");
    assert_eq!(record.state, UserState::Won);
    let stats = store.stats(&event).await.expect("stats");
    assert_eq!(stats.get("won"), Some(&1), "applied once: {stats:?}");

    let answer = server
        .post(
            route,
            Some(&valid),
            envelope_for(b"[]", "web:pushed-1", "r2"),
        )
        .await;
    assert_refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "malformed_message",
        "not a result",
    );
    let answer = server.post(route, None, body.clone()).await;
    assert_refused(
        &answer,
        StatusCode::UNAUTHORIZED,
        "missing_token",
        "no token",
    );
    let answer = server.post(route, Some(&valid), b"{}".to_vec()).await;
    assert_refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "malformed_envelope",
        "empty envelope",
    );
    // A result is a few hundred bytes: this route keeps its body limit small, whatever
    // goods-worker's admission batches need.
    let answer = server
        .post(
            route,
            Some(&valid),
            envelope_for(&vec![b'x'; 128 * 1024], "web:pushed-1", "r3"),
        )
        .await;
    assert_refused(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "oversized",
    );
    server.stop().await;
}
