//! queue-api over real HTTP against real Redis: entering, positions, results by poll
//! and by stream, the token matrix, limits, and hostile input.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dropgate_core::{EventId, EventState, UserKey};
use dropgate_functions::auth::Claims;
use dropgate_functions::auth::dev::{LOCAL_AUDIENCE, LOCAL_ISSUER};
use dropgate_functions::queue::EventKeys;
use dropgate_functions::queue_api::QueueView;
use dropgate_tests::api::{ApiServer, SseReader, signing_key, token};
use dropgate_tests::{TestStack, dropgate_binary, workspace_binary};
use dropgate_tools::stack::{Component, StopMode};
use futures_util::StreamExt;
use jwt_simple::prelude::{
    Duration as JwtDuration, HS256Key, JWTClaims, MACLike, RS256KeyPair, RSAKeyPairLike,
    UnixTimeStamp,
};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .expect("client")
}

async fn enter(
    client: &reqwest::Client,
    server: &ApiServer,
    event: &EventId,
    token: &str,
) -> (StatusCode, Value) {
    let response = client
        .post(server.queue_url(event, ""))
        .bearer_auth(token)
        .send()
        .await
        .expect("enter answers");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

async fn status(
    client: &reqwest::Client,
    server: &ApiServer,
    event: &EventId,
    token: &str,
) -> (StatusCode, Value) {
    let response = client
        .get(server.queue_url(event, "/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("status answers");
    let code = response.status();
    (code, response.json().await.expect("JSON body"))
}

async fn open_stream(
    client: &reqwest::Client,
    server: &ApiServer,
    event: &EventId,
    token: &str,
    last_event_id: Option<&str>,
) -> SseReader {
    let mut request = client
        .get(server.queue_url(event, "/me/stream"))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.expect("stream answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("ascii"),
        "text/event-stream"
    );
    SseReader::new(response)
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

async fn set_serving(server: &ApiServer, event: &EventId, serving: u64) {
    let _: () = redis::cmd("SET")
        .arg(EventKeys::new(event).serving())
        .arg(serving)
        .query_async(&mut server.store.connection())
        .await
        .expect("SET serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn enter_gives_a_ticket_and_reentering_keeps_it() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(100).await.expect("event");
    let client = client();

    let (first_status, first) = enter(&client, &server, &event, &token("shop", "ana")).await;
    assert_eq!(first_status, StatusCode::CREATED, "{first}");
    assert_eq!(first["event_id"], event.to_string());
    assert_eq!(first["ticket"], 1);
    assert_eq!(first["state"], "waiting");
    assert_eq!(first["position"], 1);
    assert!(first["poll_after_ms"].as_u64().expect("poll_after_ms") > 0);

    let (second_status, second) = enter(&client, &server, &event, &token("shop", "bo")).await;
    assert_eq!(second_status, StatusCode::CREATED);
    assert_eq!(second["ticket"], 2);
    assert_eq!(second["position"], 2);

    // A fresh token for the same identity is the same user.
    let (again_status, again) = enter(&client, &server, &event, &token("shop", "ana")).await;
    assert_eq!(again_status, StatusCode::OK, "{again}");
    assert_eq!(again["ticket"], 1);
    // The same user id on another platform is someone else.
    let (other_status, other) = enter(&client, &server, &event, &token("market", "ana")).await;
    assert_eq!(other_status, StatusCode::CREATED);
    assert_eq!(other["ticket"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_concurrent_enters_get_distinct_gap_free_tickets() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(100).await.expect("event");
    let client = client();
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
    let client = client();
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
async fn position_shrinks_as_the_serving_counter_moves() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(2).await.expect("event");
    let client = client();
    for name in ["a", "b", "c", "d"] {
        enter(&client, &server, &event, &token("shop", name)).await;
    }
    let last = token("shop", "d");
    let (_, view) = status(&client, &server, &event, &last).await;
    assert_eq!(view["position"], 4);
    assert_eq!(view["eta_s"], 2, "4 ahead at 2 per second");

    set_serving(&server, &event, 2).await;
    let (code, view) = status(&client, &server, &event, &last).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(view["position"], 2);
    assert_eq!(view["state"], "waiting");
    assert_eq!(view["result"], Value::Null);

    // The stream follows the counter too.
    let mut stream = open_stream(&client, &server, &event, &last, None).await;
    let first = stream.next(PATIENCE).await.expect("event").expect("open");
    assert_eq!(first.name, "position");
    let first: QueueView = serde_json::from_str(&first.data).expect("view");
    assert_eq!(first.position, 2);
    set_serving(&server, &event, 3).await;
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
    let client = client();
    let user = UserKey::parse("shop", "winner").expect("valid");
    let token = token("shop", "winner");
    enter(&client, &server, &event, &token).await;

    let mut stream = open_stream(&client, &server, &event, &token, None).await;
    let first = stream.next(PATIENCE).await.expect("event").expect("open");
    assert_eq!(first.name, "position");
    let resume_from = first.id.clone().expect("events carry ids");

    server
        .decide(&event, &user, dropgate_core::UserState::Won, 1, 1)
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
    let (code, polled) = status(&client, &server, &event, &token).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(polled["state"], "won");
    assert_eq!(polled["result"]["outcome"], "won");
    assert_eq!(polled["poll_after_ms"], 0);

    // A client whose connection dropped before the result reconnects and still gets it.
    let mut resumed = open_stream(&client, &server, &event, &token, Some(&resume_from)).await;
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
    let client = client();
    let token = token("shop", "late");
    enter(&client, &server, &event, &token).await;
    let mut stream = open_stream(&client, &server, &event, &token, None).await;
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

    let (code, polled) = status(&client, &server, &event, &token).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(polled["state"], "sold_out");
    assert_eq!(polled["poll_after_ms"], 0);

    let (code, body) = enter(&client, &server, &event, &self::token("shop", "newcomer")).await;
    assert_eq!(code, StatusCode::GONE);
    assert_eq!(error_code(&body), "event_sold_out");
}

fn claims(user: Option<&str>, platform: Option<&str>) -> JWTClaims<Claims> {
    jwt_simple::prelude::Claims::with_custom_claims(
        Claims {
            user_id: user.map(str::to_owned),
            platform_id: platform.map(str::to_owned),
        },
        JwtDuration::from_hours(1),
    )
    .with_issuer(LOCAL_ISSUER)
    .with_audience(LOCAL_AUDIENCE)
}

fn signed(claims: JWTClaims<Claims>) -> String {
    signing_key().sign(claims).expect("sign")
}

fn now_stamp() -> UnixTimeStamp {
    jwt_simple::prelude::Clock::now_since_epoch()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_token_gets_its_own_code() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = client();

    let good = claims(Some("u1"), Some("shop"));
    let header_json = |alg: &str| {
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"{alg}","typ":"JWT","kid":"test-key-1"}}"#
        ))
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).expect("claims json"));
    let alg_none = format!("{}.{payload}.", header_json("none"));
    let public_pem = signing_key().public_key().to_pem().expect("pem");
    let hs256_with_public_key = HS256Key::from_bytes(public_pem.as_bytes())
        .with_key_id("test-key-1")
        .authenticate(good.clone())
        .expect("hs256");
    let other_pair = RS256KeyPair::generate(2048).expect("key");
    let wrong_key = other_pair
        .clone()
        .with_key_id("test-key-1")
        .sign(good.clone())
        .expect("sign");
    let unknown_kid = other_pair
        .with_key_id("no-such-key")
        .sign(good.clone())
        .expect("sign");
    let mut expired = good.clone();
    expired.issued_at = Some(now_stamp() - JwtDuration::from_hours(2));
    expired.expires_at = Some(now_stamp() - JwtDuration::from_secs(120));
    let mut not_yet = good.clone();
    not_yet.invalid_before = Some(now_stamp() + JwtDuration::from_secs(600));
    let mut no_expiry = good.clone();
    no_expiry.expires_at = None;
    let wrong_aud = claims(Some("u1"), Some("shop")).with_audience("someone-else");
    let wrong_iss = claims(Some("u1"), Some("shop")).with_issuer("https://evil.example");

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no Authorization header", None, "missing_token"),
        (
            "not a bearer token",
            Some("Basic dXNlcjpwYXNz".to_owned()),
            "malformed_token",
        ),
        (
            "garbage",
            Some("Bearer not-a-jwt".to_owned()),
            "malformed_token",
        ),
        (
            "alg none",
            Some(format!("Bearer {alg_none}")),
            "wrong_algorithm",
        ),
        (
            "HS256 keyed with the public key",
            Some(format!("Bearer {hs256_with_public_key}")),
            "wrong_algorithm",
        ),
        (
            "signed with another key",
            Some(format!("Bearer {wrong_key}")),
            "invalid_signature",
        ),
        (
            "unknown kid",
            Some(format!("Bearer {unknown_kid}")),
            "unknown_key_id",
        ),
        (
            "expired",
            Some(format!("Bearer {}", signed(expired))),
            "token_expired",
        ),
        (
            "nbf in the future",
            Some(format!("Bearer {}", signed(not_yet))),
            "token_not_yet_valid",
        ),
        (
            "no exp",
            Some(format!("Bearer {}", signed(no_expiry))),
            "token_missing_expiry",
        ),
        (
            "wrong audience",
            Some(format!("Bearer {}", signed(wrong_aud))),
            "wrong_audience",
        ),
        (
            "wrong issuer",
            Some(format!("Bearer {}", signed(wrong_iss))),
            "wrong_issuer",
        ),
        (
            "no userId",
            Some(format!("Bearer {}", signed(claims(None, Some("shop"))))),
            "invalid_identity_claims",
        ),
        (
            "no platformId",
            Some(format!("Bearer {}", signed(claims(Some("u1"), None)))),
            "invalid_identity_claims",
        ),
        (
            "unsafe userId",
            Some(format!(
                "Bearer {}",
                signed(claims(Some("a b\n"), Some("shop")))
            )),
            "invalid_identity_claims",
        ),
        (
            "9 KiB token",
            Some(format!("Bearer {}", "a".repeat(9 * 1024))),
            "token_too_large",
        ),
    ];
    for (case, authorization, expected) in cases {
        for (method, url) in [
            (reqwest::Method::POST, server.queue_url(&event, "")),
            (reqwest::Method::GET, server.queue_url(&event, "/me")),
            (reqwest::Method::GET, server.queue_url(&event, "/me/stream")),
        ] {
            let mut request = client.request(method.clone(), &url);
            if let Some(value) = &authorization {
                request = request.header("Authorization", value);
            }
            let response = request.send().await.expect("answers");
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{case} on {method} {url}"
            );
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{case}"
            );
            let body: Value = response.json().await.expect("JSON error");
            assert_eq!(
                error_code(&body),
                expected,
                "{case} on {method} {url}: {body}"
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{case}"
            );
        }
    }
    // None of them entered anybody.
    let stats = server.store.stats(&event).await.expect("stats");
    assert_eq!(stats.get("entered"), None);
    // And the good token still works.
    let (code, _) = enter(&client, &server, &event, &token("shop", "u1")).await;
    assert_eq!(code, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_errors_with_stable_codes() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = client();
    let token = token("shop", "curious");
    let unknown = EventId::parse("no-such-event").expect("valid");

    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            client
                .post(server.queue_url(&event, ""))
                .bearer_auth(&token)
                .body("[1,2]"),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            client
                .post(server.queue_url(&event, ""))
                .bearer_auth(&token)
                .body("{\"a\":"),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            client
                .post(server.queue_url(&event, ""))
                .bearer_auth(&token)
                .body(vec![b'{'; 4096]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            client
                .post(server.queue_url(&unknown, ""))
                .bearer_auth(&token),
            StatusCode::NOT_FOUND,
            "unknown_event",
        ),
        (
            client
                .get(server.queue_url(&unknown, "/me"))
                .bearer_auth(&token),
            StatusCode::NOT_FOUND,
            "unknown_event",
        ),
        (
            client
                .get(server.queue_url(&event, "/me"))
                .bearer_auth(&token),
            StatusCode::NOT_FOUND,
            "not_in_queue",
        ),
        (
            client
                .get(server.queue_url(&event, "/me/stream"))
                .bearer_auth(&token),
            StatusCode::NOT_FOUND,
            "not_in_queue",
        ),
        (
            client
                .post(format!("{}/v1/events/bad%20id/queue", server.base))
                .bearer_auth(&token),
            StatusCode::BAD_REQUEST,
            "invalid_event_id",
        ),
        (
            client
                .post(format!(
                    "{}/v1/events/{}/queue",
                    server.base,
                    "x".repeat(200)
                ))
                .bearer_auth(&token),
            StatusCode::BAD_REQUEST,
            "invalid_event_id",
        ),
        (
            client.get(format!("{}/v1/nothing", server.base)),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            client
                .delete(server.queue_url(&event, ""))
                .bearer_auth(&token),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (request, expected_status, expected_code) in cases {
        let response = request.send().await.expect("answers");
        let url = response.url().to_string();
        assert_eq!(response.status(), expected_status, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{url}"
        );
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(error_code(&body), expected_code, "{url}: {body}");
    }

    // An empty body and a JSON object are both fine for enter.
    let response = client
        .post(server.queue_url(&event, ""))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::CREATED);

    // A closed event takes nobody new but still answers those inside.
    server
        .set_event_state(&event, EventState::Closed, 10)
        .await
        .expect("close");
    let (code, body) = enter(&client, &server, &event, &self::token("shop", "too-late")).await;
    assert_eq!(code, StatusCode::GONE);
    assert_eq!(error_code(&body), "event_closed");
    let (code, _) = status(&client, &server, &event, &token).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_random_requests_never_get_a_5xx() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = client();
    let valid = token("shop", "fuzzer");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let segments = [
        "v1",
        "events",
        "queue",
        "me",
        "stream",
        "healthz",
        "metrics",
        "..",
        "%00",
        "%FF",
        "",
        "{event_id}",
        &event.to_string(),
    ];
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
        reqwest::Method::OPTIONS,
        reqwest::Method::HEAD,
    ];
    let mut requests = Vec::new();
    for _ in 0..3_000 {
        let depth = rng.random_range(0..7);
        let mut path = String::new();
        for _ in 0..depth {
            path.push('/');
            if rng.random_bool(0.2) {
                let bytes: Vec<u8> = (0..rng.random_range(0..12)).map(|_| rng.random()).collect();
                for byte in bytes {
                    path.push_str(&format!("%{byte:02X}"));
                }
            } else {
                path.push_str(segments[rng.random_range(0..segments.len())]);
            }
        }
        let method = methods[rng.random_range(0..methods.len())].clone();
        let mut request = client.request(method, format!("{}{path}", server.base));
        request = match rng.random_range(0..5) {
            0 => request,
            1 => request.bearer_auth(&valid),
            2 => request.header(
                "Authorization",
                format!("Bearer {}", random_text(&mut rng, 64)),
            ),
            3 => request.header("Authorization", random_text(&mut rng, 200)),
            _ => request.header(
                "Authorization",
                format!(
                    "Bearer {}.{}.{}",
                    random_text(&mut rng, 20),
                    random_text(&mut rng, 40),
                    random_text(&mut rng, 20)
                ),
            ),
        };
        if rng.random_bool(0.3) {
            request = request.header("Last-Event-ID", random_text(&mut rng, 30));
        }
        if rng.random_bool(0.3) {
            request = request.header(
                "Content-Type",
                [
                    "application/json",
                    "text/plain",
                    "multipart/form-data",
                    "\u{7f}",
                ][rng.random_range(0..4)]
                .replace('\u{7f}', "x/y"),
            );
        }
        if rng.random_bool(0.5) {
            let body: Vec<u8> = (0..rng.random_range(0..2_048))
                .map(|_| rng.random())
                .collect();
            request = request.body(body);
        }
        requests.push(request);
    }
    let statuses: Vec<(StatusCode, String)> = futures_util::stream::iter(requests)
        .map(|request| async move {
            let response = request.timeout(Duration::from_secs(2)).send().await;
            match response {
                Ok(response) => (response.status(), response.url().to_string()),
                // A stream that opened (valid token, right path) is cut by the timeout.
                Err(error) if error.is_timeout() => (StatusCode::OK, String::new()),
                Err(error) => panic!("request failed: {error}"),
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let server_errors: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| status.is_server_error())
        .collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    assert!(
        statuses.iter().any(|(status, _)| status.is_client_error()),
        "the fuzz reached error paths"
    );

    // Raw bytes that are not HTTP at all.
    for garbage in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/events/x/queue HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = server.base.trim_start_matches("http://").to_owned();
        let mut socket = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        socket.write_all(garbage).await.expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut answer)).await;
        assert!(
            !answer.starts_with(b"HTTP/1.1 5"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    // The server is still fine afterwards.
    let response = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("health");
    assert_eq!(response.status(), StatusCode::OK);
}

fn random_text(rng: &mut impl Rng, max: usize) -> String {
    const CHARS: &[u8] = b"abcXYZ019-_.~+/=%!$ {}\"'";
    (0..rng.random_range(0..max))
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_answer_429_and_503_with_retry_after() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start_with(stack, |args| {
        args.user_rate_per_s = 1;
        args.user_burst = 3;
        args.max_streams = 1;
    })
    .await
    .expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = client();
    let first = token("shop", "s1");
    let second = token("shop", "s2");
    enter(&client, &server, &event, &first).await;
    enter(&client, &server, &event, &second).await;

    let mut open = open_stream(&client, &server, &event, &first, None).await;
    assert_eq!(
        open.next(PATIENCE)
            .await
            .expect("event")
            .expect("open")
            .name,
        "position"
    );
    let refused = client
        .get(server.queue_url(&event, "/me/stream"))
        .bearer_auth(&second)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(error_code(&body), "too_many_streams");
    // Polling still works for the one turned away.
    let (code, _) = status(&client, &server, &event, &second).await;
    assert_eq!(code, StatusCode::OK);

    // s2 has spent 3 of 3 (enter, stream, status): the next is limited.
    let (code, body) = status(&client, &server, &event, &second).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "rate_limited");
    drop(open);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_tells_open_streams_to_reconnect() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = client();
    let token = token("shop", "patient");
    enter(&client, &server, &event, &token).await;
    let mut stream = open_stream(&client, &server, &event, &token, None).await;
    assert_eq!(
        stream
            .next(PATIENCE)
            .await
            .expect("event")
            .expect("open")
            .name,
        "position"
    );
    let stopping = tokio::spawn(server.stop());
    let told = stream
        .next(PATIENCE)
        .await
        .expect("event")
        .expect("reconnect");
    assert_eq!(told.name, "reconnect");
    assert_eq!(stream.next(PATIENCE).await.expect("end"), None);
    stopping.await.expect("join").expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_metrics_and_cors() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = client();
    enter(&client, &server, &event, &token("shop", "m1")).await;

    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("dropgate_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dropgate_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("dropgate_queue_length{{event=\"{event}\"}} 1")),
        "{metrics}"
    );
    assert!(metrics.contains("dropgate_sse_open_streams"), "{metrics}");

    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.queue_url(&event, ""))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let allowed = preflight("https://shop.example").await.expect("preflight");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let other = preflight("https://evil.example").await.expect("preflight");
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_fails_when_redis_is_gone() {
    let stack = TestStack::dedicated().await.expect("stack");
    let server = ApiServer::start(&stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = client();
    dropgate_tools::stack::stop_component(stack.state_dir(), Component::Redis, StopMode::Crash)
        .expect("stop redis");
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (code, body) = enter(&client, &server, &event, &token("shop", "r1")).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "unavailable");
}

/// Kills a child process when dropped, so a failing test leaves nothing running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_api_binary_trusts_tokens_from_dropgate_token_and_stops_on_sigterm() {
    let stack = TestStack::shared().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let mut command = std::process::Command::new(workspace_binary("queue-api").expect("built"));
    for (name, value) in stack.env.vars() {
        command.env(name, value);
    }
    let child = command
        .env("DROPGATE_API_ADDR", format!("127.0.0.1:{port}"))
        .env("DROPGATE_API_IP_RATE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("queue-api starts");
    let mut running = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "queue-api did not answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let output = std::process::Command::new(dropgate_binary().expect("built"))
        .args([
            "token",
            "--user",
            "cli-user",
            "--platform",
            "shop",
            "--ttl",
            "10m",
            "--state-dir",
        ])
        .arg(stack.state_dir())
        .output()
        .expect("dropgate token runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let store = dropgate_functions::queue::QueueStore::connect(&stack.env.redis())
        .await
        .expect("redis");
    let event = EventId::parse(TestStack::unique("bin")).expect("valid");
    let meta = dropgate_functions::queue::EventMeta {
        state: EventState::Open,
        rate_per_s: 10,
        abandon_timeout_ms: 120_000,
        opens_at_ms: 0,
    };
    store.put_event_meta(&event, &meta).await.expect("meta");
    let response = client
        .post(format!("{base}/v1/events/{event}/queue"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("enter");
    assert_eq!(response.status(), StatusCode::CREATED);

    let bad_identity = std::process::Command::new(dropgate_binary().expect("built"))
        .args([
            "token",
            "--user",
            "has space",
            "--platform",
            "shop",
            "--state-dir",
        ])
        .arg(stack.state_dir())
        .output()
        .expect("dropgate token runs");
    assert_eq!(bad_identity.status.code(), Some(2));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = running.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue-api ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
