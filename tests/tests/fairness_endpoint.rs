//! `GET /v1/events/{id}/fairness` on a real stack: from creation anyone, with no
//! token, reads the commitment and the parameters it binds; once the admitter has
//! closed the event, the seed too, which hashes to that commitment, and the decision
//! log. Unknown and invalid events get the API's usual JSON errors.

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

async fn decision_log(api: &ApiServer, event: &str) -> (reqwest::StatusCode, Value) {
    let response = api
        .client()
        .get(format!("{}/v1/events/{event}/fairness/log", api.base))
        .send()
        .await
        .expect("request");
    (
        response.status(),
        response.json().await.expect("a JSON body"),
    )
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
    let commitment = events::create(
        &pool,
        &event,
        &config,
        &seed,
        &stack.env.seed_key().expect("seed key"),
    )
    .await
    .expect("create");
    let record = events::transition(&pool, &event, EventState::Open)
        .await
        .expect("open");
    events::mirror(&api.store, &record).await.expect("mirror");

    let (status, body, cache) = fairness(&api, event.as_str()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["commitment"], commitment.to_hex());
    assert_eq!(body["rule"], "dropgate/draw/v2");
    assert_eq!(body["stock_total"], 7);
    assert_eq!(body["win_probability"], 0.25);
    assert_eq!(body["threshold"], (1u128 << 62).to_string());
    assert_eq!(body["queue_mode"], "fifo");
    assert!(
        body["seed"].is_null(),
        "the seed is secret until the close: {body}"
    );
    assert_eq!(cache.as_deref(), Some("public, max-age=5"));
    assert!(body["decision_log"].is_null(), "{body}");
    let (status, body) = decision_log(&api, event.as_str()).await;
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (404, "decision_log_not_yet_public")
    );

    // The operator closes; the admitter finishes the close and publishes the seed. One
    // user is still in flight when it gives up waiting (a close drain of 0), as after
    // a drain timeout: their admission reaches the draw after the close, below.
    let late = dropgate_core::UserKey::parse("shop", "late").expect("user");
    let _: () = redis::cmd("ZADD")
        .arg(dropgate_functions::queue::EventKeys::new(&event).inflight())
        .arg(dropgate_tests::clock::now_ms() / 1000)
        .arg(late.member())
        .query_async(&mut api.store.connection())
        .await
        .expect("in flight");
    let (waiting_topic, results_topic) = stack.fresh_topics(1).expect("topics");
    let args = dropgate_functions::admitter::AdmitterArgs {
        close_drain_ms: 0,
        ..dropgate_tests::admitter::args_for(
            &stack.env.redis_url,
            &database_url,
            &stack.env.kafka_brokers,
            dropgate_functions::config::TopicArgs::new(waiting_topic, results_topic),
            &event,
            stack.env.seed_key_args(),
        )
    };
    let _admitter = dropgate_tests::admitter::Running::start(&args).await.0;
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
    let log_path = format!("/v1/events/{}/fairness/log", event.as_str());
    assert_eq!(body["decision_log"], log_path.as_str(), "{body}");
    let (status, log) = decision_log(&api, event.as_str()).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["seed"], revealed);
    assert_eq!(log["rule"], "dropgate/draw/v2");
    assert_eq!(log["decisions"], serde_json::json!([]), "nobody entered");

    // That admission reaches the draw after the close and is answered `closed`: the
    // admitter publishes the log again with it.
    let mut conn = pool.acquire().await.expect("connection");
    dropgate_functions::event_lifecycle::record_final_states(
        &mut conn,
        &event,
        &[(&late, 1)],
        dropgate_core::UserState::Closed,
        dropgate_tests::clock::now_ms(),
    )
    .await
    .expect("a late answer");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, log) = decision_log(&api, event.as_str()).await;
        if log["without_a_draw"]
            .as_array()
            .is_some_and(|told| told.len() == 1)
        {
            assert_eq!(log["without_a_draw"][0]["state"], "closed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log never named the late answer: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The log as a browser fetches it: gzipped on request, with an ETag a revalidation
    // gets 304 for.
    let url = format!("{}{log_path}", api.base);
    let plain = api.client().get(&url).send().await.expect("log");
    assert_eq!(plain.headers().get("content-encoding"), None);
    let etag = plain.headers()["etag"].to_str().expect("ascii").to_owned();
    let plain = plain.text().await.expect("text");
    let zipped = api
        .client()
        .get(&url)
        .header("Accept-Encoding", "br, gzip")
        .send()
        .await
        .expect("log");
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["etag"].to_str().expect("ascii"), etag);
    let zipped = zipped.bytes().await.expect("bytes");
    let mut inflated = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&zipped[..]),
        &mut inflated,
    )
    .expect("gzip");
    assert_eq!(inflated, plain, "the gzip is the same log");
    let revalidated = api
        .client()
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("log");
    assert_eq!(revalidated.status(), 304);

    // Redis loses the log alone (evicted, or deleted by hand): the admitter publishes
    // it again, though its record still says it is served.
    let log_key = dropgate_functions::queue::EventKeys::new(&event).decision_log();
    let _: () = redis::cmd("DEL")
        .arg(&log_key)
        .query_async(&mut api.store.connection())
        .await
        .expect("DEL");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let present: bool = redis::cmd("EXISTS")
            .arg(&log_key)
            .query_async(&mut api.store.connection())
            .await
            .expect("EXISTS");
        if present {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the admitter did not publish the lost log again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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

#[tokio::test(flavor = "multi_thread")]
async fn a_beacon_round_is_public_from_creation_and_its_value_from_the_opening() {
    let stack = TestStack::shared().await;
    let (pool, database_url) = stack.fresh_database().await.expect("database");
    let api = ApiServer::start(stack).await.expect("queue-api");
    let event = EventId::parse(TestStack::unique("beacon")).expect("valid");
    events::create_with_beacon(
        &pool,
        &event,
        &EventConfig::new(3, 0),
        &EventSeed::from_bytes([43; 32]),
        &stack.env.seed_key().expect("seed key"),
        Some("drand-quicknet/99"),
    )
    .await
    .expect("create");
    let refused = events::transition(&pool, &event, EventState::Open)
        .await
        .expect_err("no opening without the beacon's value");
    assert!(refused.to_string().contains("--beacon-value"), "{refused}");
    let record = events::load(&pool, &event).await.expect("load");
    events::mirror(&api.store, &record).await.expect("mirror");
    let _admitter = dropgate_tests::admitter::serve(stack, &database_url, &event).await;

    let wait_for = |what: &'static str, ready: fn(&Value) -> bool| {
        let api = &api;
        let event = event.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (status, body, _) = fairness(api, event.as_str()).await;
                if status == 200 && ready(&body) {
                    return body;
                }
                assert!(Instant::now() < deadline, "never {what}: {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let before = wait_for("the round", |body| body["beacon"].is_object()).await;
    assert_eq!(before["beacon"]["round"], "drand-quicknet/99");
    assert!(before["beacon"]["value"].is_null(), "{before}");

    for bad in ["", "XYZ", "abc"] {
        assert!(
            events::supply_beacon(&pool, &event, bad).await.is_err(),
            "{bad:?}"
        );
    }
    let value = "7e".repeat(32);
    events::supply_beacon(&pool, &event, &value)
        .await
        .expect("value");
    events::supply_beacon(&pool, &event, &value)
        .await
        .expect("the same value again is no change");
    assert!(
        events::supply_beacon(&pool, &event, &"7f".repeat(32))
            .await
            .is_err(),
        "another value is refused"
    );
    events::transition(&pool, &event, EventState::Open)
        .await
        .expect("opens with the value");
    let after = wait_for("the value", |body| body["beacon"]["value"].is_string()).await;
    assert_eq!(after["beacon"]["value"], value.as_str());
    api.stop().await.expect("stop");
}
