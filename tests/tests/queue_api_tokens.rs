//! queue-api's token matrix over real HTTP: every way a bearer token can be wrong
//! (missing, malformed, wrong algorithm, key, time, audience, issuer or identity,
//! oversized) gets 401 with its own stable error code on every queue route, and
//! enters nobody.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dropgate_functions::auth::Claims;
use dropgate_functions::auth::dev::{LOCAL_AUDIENCE, LOCAL_ISSUER};
use dropgate_tests::TestStack;
use dropgate_tests::api::{ApiServer, error_code, signing_key, token};
use jwt_simple::prelude::{
    Duration as JwtDuration, HS256Key, JWTClaims, MACLike, RS256KeyPair, RSAKeyPairLike,
    UnixTimeStamp,
};
use reqwest::StatusCode;
use serde_json::Value;

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
    let client = server.client();

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
    let mut ten_years = good.clone();
    ten_years.expires_at = Some(now_stamp() + JwtDuration::from_days(3_650));
    let mut no_iat_ten_years = ten_years.clone();
    no_iat_ten_years.issued_at = None;
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
            "valid for ten years",
            Some(format!("Bearer {}", signed(ten_years))),
            "token_lifetime_too_long",
        ),
        (
            "valid for ten years, no iat",
            Some(format!("Bearer {}", signed(no_iat_ten_years))),
            "token_lifetime_too_long",
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
    let (code, _) = server.enter(&event, &token("shop", "u1")).await;
    assert_eq!(code, StatusCode::CREATED);
}

/// The identity provider withdraws a key (it leaked, or rotation finished): tokens it
/// signed stop working within the refresh interval, also those already verified and
/// cached, while tokens from the new key work at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_whose_key_left_the_key_set_is_refused_within_the_refresh_interval() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start_with(stack, |args| args.keys.jwks_refresh_secs = 1)
        .await
        .expect("queue-api starts");
    let event = server.open_event(10).await.expect("event");
    let old = token("shop", "rotated");
    let (code, body) = server.enter(&event, &old).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (code, _) = server.status(&event, &old).await;
    assert_eq!(
        code,
        StatusCode::OK,
        "verified once, then served from the cache"
    );

    let new_key = RS256KeyPair::generate(2048)
        .expect("key")
        .with_key_id("test-key-2");
    std::fs::write(
        server.jwks_path(),
        dropgate_functions::auth::dev::jwks_for(&new_key),
    )
    .expect("rotate the JWKS");
    let fresh = dropgate_functions::auth::dev::sign_with(
        &new_key,
        "shop",
        "rotated",
        std::time::Duration::from_secs(3600),
    )
    .expect("sign");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (old_code, old_body) = server.status(&event, &old).await;
        let (fresh_code, fresh_body) = server.status(&event, &fresh).await;
        if old_code == StatusCode::UNAUTHORIZED && fresh_code == StatusCode::OK {
            assert_eq!(error_code(&old_body), "unknown_key_id", "{old_body}");
            assert_eq!(
                fresh_body["ticket"], body["ticket"],
                "the same user, the same place"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "5 s after the rotation: the withdrawn key's token gets {old_code} {old_body}, the new key's {fresh_code} {fresh_body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
