//! The waiting-room page's HTTP surface, against a real queue-api on the test stack:
//! the page is HTML with strict security headers and hashed assets, errors on its
//! routes stay JSON, and the dev sign-in route exists only in local mode, where it
//! signs tokens queue-api accepts. The page itself, in a browser, is specified in
//! `waiting_room.rs`.

use dropgate_tests::TestStack;
use dropgate_tests::api::{ApiServer, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn the_page_is_html_with_strict_security_headers_and_hashed_assets() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let client = server.client();

    let response = client
        .get(format!("{}/e/summer-drop", server.base))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        // Only the configured frontend (ApiServer's CORS origin) may frame the page.
        "frame-ancestors 'self' https://shop.example",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = response.text().await.expect("html");
    assert!(html.contains(r#"name="dropgate-dev-login" content="off""#));
    assert!(!html.contains("<script>"), "no inline script");

    // Both assets are linked by hashed name and served with the same headers.
    let mut linked = 0;
    for piece in html.split('"').filter(|piece| piece.starts_with("assets/")) {
        linked += 1;
        let response = client
            .get(format!("{}/e/{piece}", server.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), StatusCode::OK, "{piece}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(
            response.headers()["cache-control"]
                .to_str()
                .expect("ascii")
                .contains("immutable")
        );
        let content_type = response.headers()["content-type"].to_str().expect("ascii");
        assert!(
            content_type.starts_with("text/css") || content_type.starts_with("text/javascript"),
            "{piece}: {content_type}"
        );
    }
    assert_eq!(linked, 2, "one stylesheet and one script: {html}");

    // Errors stay JSON, on the page's routes too.
    for (path, status, code) in [
        ("/e/assets/nope.js", StatusCode::NOT_FOUND, "not_found"),
        ("/e/bad%20id", StatusCode::BAD_REQUEST, "invalid_event_id"),
        ("/dev/token", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let response = client
            .request(
                if path == "/dev/token" {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::GET
                },
                format!("{}{path}", server.base),
            )
            .json(&json!({"platform": "shop", "user": "ana"}))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(error_code(&body), code, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_mode_signs_tokens_queue_api_accepts() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start_local_mode(stack)
        .await
        .expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let client = server.client();
    let dev_token = format!("{}/dev/token", server.base);

    let page = client
        .get(server.page_url(&event))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains(r#"name="dropgate-dev-login" content="on""#));

    let response = client
        .post(&dev_token)
        .json(&json!({"platform": "shop", "user": "dev-ana"}))
        .send()
        .await
        .expect("dev token");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    let signed = body["token"].as_str().expect("token");
    let (status, view) = server.enter(&event, signed).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");

    for bad in [
        json!({"platform": "shop", "user": "has space"}),
        json!({"platform": "shop"}),
        json!("not an object"),
    ] {
        let response = client
            .post(&dev_token)
            .json(&bad)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(error_code(&body), "malformed_body", "{bad}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dev_sign_in_refuses_to_start_on_a_non_loopback_address() {
    let stack = TestStack::shared().await;
    let keys = dropgate_functions::auth::dev::DevKeys::in_state_dir(stack.state_dir());
    let jwks = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(jwks.path(), r#"{"keys":[]}"#).expect("write");
    let mut args = dropgate_tests::api::default_args(stack, jwks.path().to_path_buf());
    args.dev_token_key = Some(keys.private_key.clone());
    args.listen = "0.0.0.0:0".parse().expect("address");
    let refused = dropgate_functions::queue_api::Application::build(&args)
        .await
        .err()
        .expect("refused on every interface");
    let message = format!("{refused:#}");
    assert!(
        message.contains("DROPGATE_API_DEV_SIGNING_KEY") && message.contains("loopback"),
        "{message}"
    );
    // On loopback it starts: local_mode_signs_tokens_queue_api_accepts.
}
