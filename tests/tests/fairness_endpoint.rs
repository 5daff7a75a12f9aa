//! `GET /v1/events/{id}/fairness` on a real stack: from creation anyone, with no
//! token, reads the commitment and the parameters it binds; once the admitter has
//! closed the event, the seed too, which hashes to that commitment. Unknown and
//! invalid events get the API's usual JSON errors.

use std::time::{Duration, Instant};

use dropgate_core::{EventConfig, EventId, EventSeed, EventState};
use dropgate_tests::TestStack;
use dropgate_tests::api::{ApiServer, error_code};
use dropgate_tools::events;
use serde_json::Value;
use sha2::{Digest, Sha256};

async fn fairness(api: &ApiServer, event: &str) -> (reqwest::StatusCode, Value, Option<String>) {
    let response = api
        .client()
        .get(format!("{}/v1/events/{event}/fairness", api.base))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let cache = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status, response.json().await.expect("a JSON body"), cache)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_commitment_is_public_from_creation_and_the_seed_after_the_close() {
    let stack = TestStack::shared().await;
    let (pool, database_url) = stack.fresh_database().await.expect("database");
    let api = ApiServer::start(stack).await.expect("queue-api");
    let event = EventId::parse(TestStack::unique("fair")).expect("valid");
    let seed = EventSeed::from_bytes([42; 32]);
    let mut config = EventConfig::new(7, 0);
    config.win_probability = 0.25;
    let commitment = events::create(&pool, &event, &config, &seed)
        .await
        .expect("create");
    let record = events::transition(&pool, &event, EventState::Open)
        .await
        .expect("open");
    events::mirror(&api.store, &record).await.expect("mirror");

    let (status, body, cache) = fairness(&api, event.as_str()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["commitment"], commitment.to_hex());
    assert_eq!(body["rule"], "dropgate/draw/v1");
    assert_eq!(body["stock_total"], 7);
    assert_eq!(body["win_probability"], 0.25);
    assert_eq!(body["threshold"], (1u128 << 62).to_string());
    assert_eq!(body["queue_mode"], "fifo");
    assert!(
        body["seed"].is_null(),
        "the seed is secret until the close: {body}"
    );
    assert_eq!(cache.as_deref(), Some("public, max-age=5"));

    // The operator closes; the admitter finishes the close and publishes the seed.
    let _admitter = dropgate_tests::admitter::serve(stack, &database_url, &event).await;
    events::transition(&pool, &event, EventState::Closing)
        .await
        .expect("closing");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body, _) = fairness(&api, event.as_str()).await;
        assert_eq!(status, 200);
        if body["seed"].is_string() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the seed was not published: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let revealed = body["seed"].as_str().expect("seed");
    assert_eq!(revealed, seed.to_hex());
    let hashed: String = Sha256::digest(hex_bytes(revealed))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hashed, body["commitment"],
        "the seed hashes to the commitment"
    );
    assert!(
        body["seed_revealed_at_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0)
    );

    let (status, body, _) = fairness(&api, "no-such-event").await;
    assert_eq!((status.as_u16(), error_code(&body)), (404, "unknown_event"));
    let (status, body, _) = fairness(&api, "bad%20id").await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (400, "invalid_event_id")
    );
    api.stop().await.expect("stop");
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}
