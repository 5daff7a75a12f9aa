//! goods-worker's Pub/Sub push endpoint against real PostgreSQL and tansu, with
//! requests in Pub/Sub's push format carrying OIDC tokens signed by a test key
//! configured as trusted (no Pub/Sub is needed: the endpoint only sees HTTP).
//!
//! The push path must record exactly what the Kafka path records, answer 204 only once
//! a result is in the outbox, stay idempotent under redelivery, and refuse anything
//! malformed or unauthenticated with a 4xx JSON error.

use std::collections::HashMap;
use std::time::Duration;

use dropgate_core::{
    Admitted, AdmittedBatch, DrawResult, EventId, EventState, MESSAGE_VERSION, Message as _,
    Outcome,
};
use dropgate_tests::TestStack;
use dropgate_tests::goods::{DropFixture, Workers};
use dropgate_tests::push::{PushServer, Token, assert_refused, bearer, envelope_for};
use dropgate_tools::events;
use futures_util::StreamExt;
use jwt_simple::prelude::{Duration as JwtDuration, HS256Key, MACLike, RS256KeyPair};
use reqwest::StatusCode;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(120);

/// Every recorded draw: (platform, user, ticket, outcome, decision order, draw value).
async fn draws(drop: &DropFixture) -> Vec<(String, String, i64, String, i64, i64)> {
    sqlx::query_as(
        "select platform_id, user_id, ticket, outcome, decision_order, draw_value
           from draws where event_id = $1 order by decision_order",
    )
    .bind(drop.event.as_str())
    .fetch_all(&drop.pool)
    .await
    .expect("draws")
}

async fn unsent(drop: &DropFixture) -> i64 {
    sqlx::query_scalar("select count(*) from outbox where sent_at is null")
        .fetch_one(&drop.pool)
        .await
        .expect("outbox")
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_admissions_are_drawn_exactly_as_the_kafka_path_draws_them() {
    let stack = TestStack::shared().await;
    let event = EventId::parse(TestStack::unique("same")).expect("event id");
    let by_push = DropFixture::open_as(stack, &event, 1, 20, 0.2, [42; 32])
        .await
        .expect("drop");
    let by_kafka = DropFixture::open_as(stack, &event, 1, 20, 0.2, [42; 32])
        .await
        .expect("drop");
    let users = by_push.users(200);

    // Kafka: one partition, so decisions follow the tickets.
    let workers = Workers::start(&by_kafka, 1, &TestStack::unique("goods"))
        .await
        .expect("workers");
    by_kafka.admit(&users, 1).await.expect("admit");
    let kafka_results = by_kafka
        .results(users.len(), PATIENCE)
        .await
        .expect("results");
    workers.stop().await.expect("workers stop");
    assert_eq!(kafka_results.len(), users.len());

    // Push: one request at a time in ticket order, so the same order.
    let server = PushServer::goods(&by_push).await;
    for (n, admitted) in users.iter().enumerate() {
        let (status, body) = server.push_admission(admitted, &format!("m{n}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        // Acknowledged means recorded: the draw is in PostgreSQL before the answer.
        let recorded: i64 =
            sqlx::query_scalar("select count(*) from draws where event_id = $1 and user_id = $2")
                .bind(event.as_str())
                .bind(admitted.user.user_id.as_str())
                .fetch_one(&by_push.pool)
                .await
                .expect("count");
        assert_eq!(
            recorded,
            1,
            "{} acknowledged but not recorded",
            admitted.user.member()
        );
    }
    let push_results = by_push
        .results(users.len(), PATIENCE)
        .await
        .expect("results");
    server.stop().await;

    let pushed = draws(&by_push).await;
    assert_eq!(pushed.len(), 200);
    assert_eq!(
        pushed,
        draws(&by_kafka).await,
        "the two paths drew differently"
    );
    let outcomes: HashMap<&str, usize> = pushed.iter().fold(HashMap::new(), |mut counts, row| {
        *counts.entry(row.3.as_str()).or_default() += 1;
        counts
    });
    assert_eq!(outcomes.get("won"), Some(&20), "{outcomes:?}");
    assert!(
        outcomes.get("lost").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
    assert!(
        outcomes.get("sold_out").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
    // The results published from the push path say what the Kafka path's say.
    assert_eq!(push_results.len(), users.len());
    for (user, results) in &push_results {
        let theirs = &kafka_results[user][0];
        for ours in results {
            assert_eq!(
                (ours.outcome, ours.decision_order, ours.ticket),
                (theirs.outcome, theirs.decision_order, theirs.ticket),
                "{user}"
            );
        }
    }
    assert_eq!(unsent(&by_push).await, 0, "every result was published");
    let record = events::load(&by_push.pool, &event).await.expect("event");
    assert_eq!((record.stock_left, record.decisions_made), (0, 200));
    assert_eq!(record.state, EventState::SoldOut);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_duplicated_pushes_never_oversell_nor_draw_twice() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 1, 30, 0.1, [3; 32])
        .await
        .expect("drop");
    let users = drop.users(1_000);
    let server = PushServer::goods(&drop).await;
    // Every admission twice, with different message ids (as an admitter re-publish
    // would send it), 64 requests in flight.
    let deliveries: Vec<(usize, &Admitted)> = users
        .iter()
        .enumerate()
        .chain(users.iter().enumerate().rev())
        .collect();
    let statuses: Vec<(StatusCode, Value)> = futures_util::stream::iter(deliveries)
        .enumerate()
        .map(|(n, (_, admitted))| {
            let server = &server;
            async move { server.push_admission(admitted, &format!("d{n}")).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for (status, body) in &statuses {
        assert_eq!(*status, StatusCode::NO_CONTENT, "{body}");
    }
    server.stop().await;

    let rows = draws(&drop).await;
    assert_eq!(rows.len(), 1_000, "one draw per user");
    let orders: Vec<i64> = rows.iter().map(|row| row.4).collect();
    assert_eq!(
        orders,
        (1..=1_000).collect::<Vec<i64>>(),
        "gap-free decision order"
    );
    let counts = drop.outcome_counts().await.expect("counts");
    assert_eq!(counts.get("won"), Some(&30), "{counts:?}");
    let record = events::load(&drop.pool, &drop.event).await.expect("event");
    assert_eq!((record.stock_left, record.decisions_made), (0, 1_000));
    // Every acknowledged delivery's user has its result in the outbox: one row per
    // delivery, except where both deliveries of a user met in one batch (decided once,
    // announced once).
    let (rows, users_announced): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct message_key) from outbox
          where event_id = $1 and stream = 'results'",
    )
    .bind(drop.event.as_str())
    .fetch_one(&drop.pool)
    .await
    .expect("outbox");
    assert_eq!(users_announced, 1_000);
    assert!((1_000..=2_000).contains(&rows), "{rows} outbox rows");
    assert_eq!(unsent(&drop).await, 0);
    drop.check_winners_announced().await;
    let results = drop.results(1_000, PATIENCE).await.expect("results");
    assert_eq!(results.len(), 1_000);
    for (user, seen) in &results {
        assert!(
            seen.iter().all(|r| (r.outcome, r.decision_order)
                == (seen[0].outcome, seen[0].decision_order)),
            "{user} was announced two outcomes: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_push_re_announces_and_never_draws_again() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 1, 5, 1.0, [9; 32])
        .await
        .expect("drop");
    let users = drop.users(2);
    let server = PushServer::goods(&drop).await;
    for _ in 0..3 {
        // The same message (same id) as Pub/Sub redelivers it.
        let (status, body) = server.push_admission(&users[0], "same-message").await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, _) = server.push_admission(&users[1], "other").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server.stop().await;

    let rows = draws(&drop).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].1.as_str(), rows[0].3.as_str(), rows[0].4),
        ("u1", "won", 1)
    );
    assert_eq!((rows[1].1.as_str(), rows[1].4), ("u2", 2));
    let record = events::load(&drop.pool, &drop.event).await.expect("event");
    assert_eq!((record.stock_left, record.decisions_made), (3, 2));
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "select payload from outbox where message_key = 'shop:u1' order by outbox_id",
    )
    .fetch_all(&drop.pool)
    .await
    .expect("outbox");
    assert_eq!(payloads.len(), 3, "each delivery announced its result");
    for payload in &payloads {
        let result = DrawResult::decode(payload).expect("result");
        assert_eq!((result.outcome, result.decision_order), (Outcome::Won, 1));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_batch_is_decided_at_once_in_ticket_order() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 1, 5, 1.0, [6; 32])
        .await
        .expect("drop");
    let server = PushServer::goods(&drop).await;
    let users = drop.users(50);
    for (tick, admitted) in users.chunks(20).enumerate() {
        let batch = AdmittedBatch {
            version: MESSAGE_VERSION,
            event_id: drop.event.clone(),
            admitted: admitted.to_vec(),
        };
        let answer = server
            .post(
                "/pubsub/waiting-queue",
                Some(&bearer(&Token::default().sign())),
                envelope_for(&batch.encode(), drop.event.as_str(), &tick.to_string()),
            )
            .await;
        assert_eq!(answer.0, StatusCode::NO_CONTENT, "{answer:?}");
    }
    // Answered only once recorded: every user is drawn by now.
    let rows = draws(&drop).await;
    let tickets: Vec<i64> = rows.iter().map(|row| row.2).collect();
    assert_eq!(
        tickets,
        (1..=50).collect::<Vec<i64>>(),
        "decided in ticket order"
    );
    let winners: Vec<i64> = rows
        .iter()
        .filter(|row| row.3 == "won")
        .map(|row| row.2)
        .collect();
    assert_eq!(
        winners,
        vec![1, 2, 3, 4, 5],
        "the first five tickets take the stock"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_pushes_and_bad_tokens_get_4xx_json_and_record_nothing() {
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 1, 5, 1.0, [5; 32])
        .await
        .expect("drop");
    let admitted = drop.users(1).remove(0);
    let good_body = envelope_for(&admitted.encode(), &admitted.key(), "1");
    let server = PushServer::goods(&drop).await;
    let route = "/pubsub/waiting-queue";
    let valid = bearer(&Token::default().sign());
    let stranger = RS256KeyPair::generate(2048)
        .expect("key")
        .with_key_id("google-test-1");

    let token_cases: Vec<(&str, Option<String>, StatusCode, &str)> = vec![
        ("no token", None, StatusCode::UNAUTHORIZED, "missing_token"),
        (
            "basic auth",
            Some("Basic dXNlcjpwYXNz".into()),
            StatusCode::UNAUTHORIZED,
            "malformed_token",
        ),
        (
            "garbage",
            Some(bearer("not.a.jwt")),
            StatusCode::UNAUTHORIZED,
            "malformed_token",
        ),
        (
            "another key, same kid",
            Some(bearer(&Token::default().sign_with(&stranger))),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "unknown kid",
            Some(bearer(
                &Token::default().sign_with(&stranger.clone().with_key_id("other")),
            )),
            StatusCode::UNAUTHORIZED,
            "unknown_key_id",
        ),
        (
            "HS256",
            Some(bearer(
                &HS256Key::from_bytes(&[7u8; 32])
                    .authenticate(jwt_simple::prelude::Claims::create(JwtDuration::from_secs(
                        60,
                    )))
                    .expect("hs256"),
            )),
            StatusCode::UNAUTHORIZED,
            "wrong_algorithm",
        ),
        (
            "wrong audience",
            Some(bearer(
                &Token {
                    audience: "https://elsewhere.example",
                    ..Token::default()
                }
                .sign(),
            )),
            StatusCode::UNAUTHORIZED,
            "wrong_audience",
        ),
        (
            "wrong issuer",
            Some(bearer(
                &Token {
                    issuer: "https://issuer.example",
                    ..Token::default()
                }
                .sign(),
            )),
            StatusCode::UNAUTHORIZED,
            "wrong_issuer",
        ),
        (
            "expired",
            Some(bearer(
                &Token {
                    expired: true,
                    ..Token::default()
                }
                .sign(),
            )),
            StatusCode::UNAUTHORIZED,
            "token_expired",
        ),
        (
            "another service account",
            Some(bearer(
                &Token {
                    email: Some("intruder@evil.iam.gserviceaccount.com"),
                    ..Token::default()
                }
                .sign(),
            )),
            StatusCode::FORBIDDEN,
            "wrong_service_account",
        ),
        (
            "no email",
            Some(bearer(
                &Token {
                    email: None,
                    ..Token::default()
                }
                .sign(),
            )),
            StatusCode::FORBIDDEN,
            "wrong_service_account",
        ),
        (
            "email not verified",
            Some(bearer(
                &Token {
                    verified: Some(false),
                    ..Token::default()
                }
                .sign(),
            )),
            StatusCode::FORBIDDEN,
            "email_unverified",
        ),
        (
            "no email_verified",
            Some(bearer(
                &Token {
                    verified: None,
                    ..Token::default()
                }
                .sign(),
            )),
            StatusCode::FORBIDDEN,
            "email_unverified",
        ),
    ];
    for (case, authorization, status, code) in &token_cases {
        let answer = server
            .post(route, authorization.as_deref(), good_body.clone())
            .await;
        assert_refused(&answer, *status, code, case);
    }

    let unknown_event = Admitted {
        event_id: EventId::parse(TestStack::unique("nope")).expect("id"),
        ..admitted.clone()
    };
    let mut two = drop.users(2);
    two.reverse();
    let backwards = AdmittedBatch {
        version: MESSAGE_VERSION,
        event_id: drop.event.clone(),
        admitted: two.clone(),
    };
    two.reverse();
    two[1].event_id = unknown_event.event_id.clone();
    let mixed = AdmittedBatch {
        admitted: two,
        ..backwards.clone()
    };
    let body_cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "empty body",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "malformed_envelope",
        ),
        (
            "not JSON",
            b"{\"message\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_envelope",
        ),
        (
            "no data",
            br#"{"message":{"messageId":"1"},"subscription":"s"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_envelope",
        ),
        (
            "bad base64",
            br#"{"message":{"data":"***","messageId":"1"},"subscription":"s"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_envelope",
        ),
        (
            "not an admission",
            envelope_for(b"{\"version\":1,\"hello\":true}", "shop:u1", "2"),
            StatusCode::BAD_REQUEST,
            "malformed_message",
        ),
        (
            "a newer format",
            envelope_for(
                &String::from_utf8(admitted.encode())
                    .expect("utf-8")
                    .replacen("\"version\":1", "\"version\":99", 1)
                    .into_bytes(),
                "shop:u1",
                "3",
            ),
            StatusCode::BAD_REQUEST,
            "malformed_message",
        ),
        (
            "a batch against the ticket order",
            envelope_for(&backwards.encode(), drop.event.as_str(), "6"),
            StatusCode::BAD_REQUEST,
            "malformed_message",
        ),
        (
            "a batch holding another event's admission",
            envelope_for(&mixed.encode(), drop.event.as_str(), "7"),
            StatusCode::BAD_REQUEST,
            "malformed_message",
        ),
        (
            "unknown event",
            envelope_for(&unknown_event.encode(), "shop:u1", "4"),
            StatusCode::NOT_FOUND,
            "unknown_event",
        ),
        (
            "oversized",
            envelope_for(&vec![b'x'; 1024 * 1024], "shop:u1", "5"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (case, body, status, code) in body_cases {
        let answer = server.post(route, Some(&valid), body).await;
        assert_refused(&answer, status, code, case);
    }
    let answer = server
        .post("/pubsub/nowhere", Some(&valid), good_body.clone())
        .await;
    assert_refused(&answer, StatusCode::NOT_FOUND, "not_found", "unknown route");
    let response = reqwest::get(format!("{}{route}", server.url))
        .await
        .expect("GET");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert_refused(
        &(status, body),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "GET",
    );

    assert!(
        draws(&drop).await.is_empty(),
        "a refused push recorded a draw"
    );
    // The same server still takes a good push: nothing above broke it.
    let (status, body) = server.push_admission(&admitted, "ok").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(draws(&drop).await.len(), 1);
    let ready = reqwest::get(format!("{}/readyz", server.url))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    server.stop().await;
}
