//! The Pub/Sub push side without Pub/Sub: a key trusted as Google's, OIDC tokens
//! signed with it ([`Token`]), push envelopes in Pub/Sub's format, and goods-worker's
//! and result-relay's push endpoints served in this process ([`PushServer`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use dropgate_core::{Admitted, Message as _};
use dropgate_functions::config::{KafkaArgs, RedisArgs, TopicArgs};
use dropgate_functions::goods_worker::{GoodsPublishers, GoodsPush};
use dropgate_functions::ops_server::{OpsArgs, Readiness};
use dropgate_functions::pubsub::envelope;
use dropgate_functions::pubsub::oidc::PushAuth;
use dropgate_functions::result_relay::{RelayArgs, RelayPush};
use jwt_simple::prelude::{Clock, Duration as JwtDuration, RS256KeyPair, RSAKeyPairLike};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::TestStack;
use crate::goods::DropFixture;

/// The audience the push endpoints expect in tokens.
pub const AUDIENCE: &str = "https://goods-worker-test.a.run.app/pubsub/waiting-queue";
/// The service account the push endpoints trust as Pub/Sub's.
pub const PUSHER: &str = "pubsub-push@dropgate-test.iam.gserviceaccount.com";
/// The subscription envelopes name.
pub const SUBSCRIPTION: &str = "projects/dropgate-test/subscriptions/goods-worker";

/// The key the test trusts as Google's.
pub fn google_key() -> &'static RS256KeyPair {
    static KEY: OnceLock<RS256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        RS256KeyPair::generate(2048)
            .expect("RSA key generation")
            .with_key_id("google-test-1")
    })
}

/// A JWKS file with [`google_key`], written once per test binary.
fn jwks_file() -> &'static PathBuf {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("google-certs.json");
            std::fs::write(&path, dropgate_functions::auth::dev::jwks_for(google_key()))
                .expect("write JWKS");
            (dir, path)
        })
        .1
}

#[derive(Serialize)]
struct PushClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
}

/// What a test token says; [`Token::default`] is what Pub/Sub sends.
#[derive(Debug, Clone)]
pub struct Token {
    /// `iss`.
    pub issuer: &'static str,
    /// `aud`.
    pub audience: &'static str,
    /// `email` (none: left out).
    pub email: Option<&'static str>,
    /// `email_verified` (none: left out).
    pub verified: Option<bool>,
    /// Expired ten minutes ago instead of valid for an hour.
    pub expired: bool,
}

impl Default for Token {
    fn default() -> Self {
        Self {
            issuer: "https://accounts.google.com",
            audience: AUDIENCE,
            email: Some(PUSHER),
            verified: Some(true),
            expired: false,
        }
    }
}

impl Token {
    /// The token signed with `key`.
    pub fn sign_with(&self, key: &RS256KeyPair) -> String {
        let mut claims = jwt_simple::prelude::Claims::with_custom_claims(
            PushClaims {
                email: self.email.map(str::to_owned),
                email_verified: self.verified,
            },
            JwtDuration::from_secs(3600),
        )
        .with_issuer(self.issuer)
        .with_audience(self.audience)
        .with_subject("112233445566778899");
        if self.expired {
            let past = Clock::now_since_epoch() - JwtDuration::from_secs(600);
            claims.issued_at = Some(past - JwtDuration::from_secs(3600));
            claims.expires_at = Some(past);
        }
        key.sign(claims).expect("sign")
    }

    /// The token signed with the trusted [`google_key`].
    pub fn sign(&self) -> String {
        self.sign_with(google_key())
    }
}

/// `Bearer <token>`, an Authorization header's value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The push body Pub/Sub would send for `payload`.
pub fn envelope_for(payload: &[u8], key: &str, message_id: &str) -> Vec<u8> {
    let attributes = HashMap::from([("key".to_owned(), key.to_owned())]);
    envelope::encode(payload, &attributes, message_id, SUBSCRIPTION)
}

/// Asserts a 4xx JSON error with `code`.
pub fn assert_refused(answer: &(StatusCode, Value), status: StatusCode, code: &str, case: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{case}: {body}");
    assert!(got.is_client_error(), "{case}");
    assert_eq!(body["error"]["code"], code, "{case}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{case}: {body}"
    );
}

/// A push server in this process, stopped when dropped (also when a test fails).
pub struct PushServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    client: reqwest::Client,
}

impl Drop for PushServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl PushServer {
    /// goods-worker's push endpoint on `drop`, publishing results to its Kafka
    /// results topic (the transports are independent: what matters here is the push
    /// side, and the results can be read back).
    pub async fn goods(drop: &DropFixture) -> Self {
        let args = drop.args(&TestStack::unique("push"));
        let publishers = GoodsPublishers::kafka(&args)
            .await
            .expect("Kafka publishers");
        let auth = trusted_auth().await;
        let goods = GoodsPush::connect(&args, publishers, auth, Readiness::default())
            .await
            .expect("goods push");
        let (stop, stopped) = watch::channel(false);
        let (address, task) = goods
            .start("127.0.0.1:0".parse().expect("address"), stopped)
            .await
            .expect("serving");
        Self::new(format!("http://{address}"), stop, task)
    }

    /// result-relay's push endpoint, writing to the stack's Redis.
    pub async fn relay(stack: &TestStack) -> Self {
        let args = RelayArgs {
            redis: RedisArgs::url(stack.env.redis_url.clone()),
            kafka: KafkaArgs::brokers(""),
            topics: TopicArgs::default(),
            ops: OpsArgs {
                health_addr: "127.0.0.1:0".parse().expect("address"),
            },
            group: String::new(),
            batch_size: 100,
            batch_wait_ms: 5,
        };
        let relay = RelayPush::connect(&args, trusted_auth().await, Readiness::default())
            .await
            .expect("relay push");
        let (stop, stopped) = watch::channel(false);
        let (address, task) = relay
            .start(args.ops.health_addr, stopped)
            .await
            .expect("serving");
        Self::new(format!("http://{address}"), stop, task)
    }

    fn new(url: String, stop: watch::Sender<bool>, task: JoinHandle<anyhow::Result<()>>) -> Self {
        Self {
            url,
            stop,
            task: Some(task),
            // A fresh connection per push: the server closes one whose body it refused
            // unread (413), and a pooled client could send the next push into that
            // closing connection and fail with a broken pipe.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
        }
    }

    /// POSTs `body` as JSON to `route` with the Authorization header `authorization`
    /// (none: without one); the status and the JSON body (null when empty).
    pub async fn post(
        &self,
        route: &str,
        authorization: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}{route}", self.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, json)
    }

    /// Pushes `admitted` as Pub/Sub would, with a valid token.
    pub async fn push_admission(
        &self,
        admitted: &Admitted,
        message_id: &str,
    ) -> (StatusCode, Value) {
        let body = envelope_for(&admitted.encode(), &admitted.key(), message_id);
        self.post(
            "/pubsub/waiting-queue",
            Some(&bearer(&Token::default().sign())),
            body,
        )
        .await
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("stops in time")
                .expect("joins")
                .expect("served cleanly");
        }
    }
}

/// Push authentication trusting [`google_key`] for [`AUDIENCE`] and [`PUSHER`].
async fn trusted_auth() -> PushAuth {
    PushAuth::load(
        jwks_file().to_str().expect("utf-8 path"),
        Some(AUDIENCE),
        Some(PUSHER),
    )
    .await
    .expect("push auth")
}
