//! queue-api under hostile input over real HTTP: bad requests get JSON errors with
//! stable codes, and thousands of random requests (and bytes that are not HTTP at all)
//! never get a 5xx nor break the server.

use std::time::Duration;

use dropgate_core::{EventId, EventState};
use dropgate_tests::TestStack;
use dropgate_tests::api::{ApiServer, error_code, token};
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_errors_with_stable_codes() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = server.client();
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
    let (code, body) = server.enter(&event, &self::token("shop", "too-late")).await;
    assert_eq!(code, StatusCode::GONE);
    assert_eq!(error_code(&body), "event_closed");
    let (code, _) = server.status(&event, &token).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_random_requests_never_get_a_5xx() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = server.client();
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
        .get(format!("{}/healthz", server.ops))
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

/// Reads from `socket` until the server closes it; how long that took, or `None` when
/// it was still open after `patience`.
async fn closed_within(
    socket: &mut tokio::net::TcpStream,
    patience: Duration,
) -> Option<(Duration, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(patience, async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some((started.elapsed(), received))
}

/// Slowloris: a client that never finishes its headers would hold a connection (and a
/// task) for ever. The server closes it once the header deadline passes.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::AsyncWriteExt;
    let stack = TestStack::shared().await;
    let server = ApiServer::start_with(stack, |args| args.header_timeout_ms = 500)
        .await
        .expect("queue-api starts");
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    socket
        .write_all(b"GET /v1/events/x/queue/me HTTP/1.1\r\nHost: dropgate\r\nX-Slow: ")
        .await
        .expect("partial headers");
    // Trickle a byte now and then, as a slowloris client does to look alive.
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if socket.write_all(b"a").await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    let closed = closed_within(&mut socket, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "the connection was still open 14 s after its first byte"
    );

    // A client that sends its headers in time is served as before, and the server
    // still answers afterwards.
    let (code, body) = server
        .enter(
            &server.open_event(10).await.expect("event"),
            &token("shop", "prompt"),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

/// A body that never arrives: answered 408 `request_timeout` in JSON, and the
/// connection is not held.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_body_never_arrives_gets_a_json_408() {
    use tokio::io::AsyncWriteExt;
    let stack = TestStack::shared().await;
    let server = ApiServer::start_with(stack, |args| args.request_timeout_ms = 500)
        .await
        .expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/events/{event}/queue HTTP/1.1\r\nHost: dropgate\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{",
        token("shop", "slow-body")
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    let (_, received) = closed_within(&mut socket, Duration::from_secs(10))
        .await
        .expect("the server answered and closed within 10 s");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    let (code, _) = server.status(&event, &token("shop", "slow-body")).await;
    assert_eq!(
        code,
        StatusCode::NOT_FOUND,
        "the timed-out enter took no ticket"
    );
}

/// The request deadline bounds the time to an answer's head, not a stream's life.
#[tokio::test(flavor = "multi_thread")]
async fn streams_outlive_the_request_deadline() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start_with(stack, |args| args.request_timeout_ms = 300)
        .await
        .expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let user = token("shop", "streamer");
    let (code, entered) = server.enter(&event, &user).await;
    assert_eq!(code, StatusCode::CREATED, "{entered}");
    let mut stream = server.open_stream(&event, &user, None).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let ticket = entered["ticket"].as_u64().expect("ticket");
    let member = dropgate_core::UserKey::parse("shop", "streamer").expect("valid");
    server
        .decide(&event, &member, dropgate_core::UserState::Lost, ticket, 1)
        .await
        .expect("decide");
    let mut outcome = None;
    for _ in 0..10 {
        match stream.next(Duration::from_secs(5)).await.expect("an event") {
            Some(event) if event.name == "result" => {
                outcome = Some(event.data);
                break;
            }
            Some(_) => continue,
            None => panic!("the stream ended before its result"),
        }
    }
    let outcome = outcome.expect("the result arrived on the stream");
    assert!(outcome.contains("lost"), "{outcome}");
}
