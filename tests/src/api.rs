//! A real queue-api on port 0 against the test stack's Redis, with keys of the test's
//! own, and the client helpers tests use to talk to it over HTTP: enter, poll, open a
//! stream, and read error codes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use dropgate_core::{Decided, EventId, EventState, UserKey, UserRecord, UserState};
use dropgate_functions::auth::dev::{DevKeys, LOCAL_AUDIENCE, LOCAL_ISSUER, jwks_for, sign_with};
use dropgate_functions::auth::{Algorithm, KeySourceArgs};
use dropgate_functions::config::RedisArgs;
use dropgate_functions::ops_server::OpsArgs;
use dropgate_functions::queue::{EventKeys, EventMeta, Notice, QueueStore};
use dropgate_functions::queue_api::{ApiArgs, Application};
use jwt_simple::prelude::RS256KeyPair;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::TestStack;
use crate::clock::now_ms;

/// The signing key every test server trusts (generated once per test binary: RSA key
/// generation is slow).
pub fn signing_key() -> &'static RS256KeyPair {
    static KEY: std::sync::OnceLock<RS256KeyPair> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        RS256KeyPair::generate(2048)
            .expect("RSA key generation")
            .with_key_id("test-key-1")
    })
}

/// A token for (`platform`, `user`), valid for an hour.
pub fn token(platform: &str, user: &str) -> String {
    sign_with(signing_key(), platform, user, Duration::from_secs(3600)).expect("signing")
}

/// Settings a test may change before the server starts.
pub fn default_args(stack: &TestStack, jwks_file: PathBuf) -> ApiArgs {
    ApiArgs {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ops: OpsArgs {
            health_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        },
        redis: RedisArgs::url(stack.env.redis_url.clone()),
        keys: KeySourceArgs::jwks_file(jwks_file),
        jwt_algorithms: vec![Algorithm::Rs256],
        jwt_issuer: LOCAL_ISSUER.to_owned(),
        jwt_audience: LOCAL_AUDIENCE.to_owned(),
        jwt_max_lifetime_secs: 86_400,
        cors_origins: vec!["https://shop.example".to_owned()],
        max_streams: 1_000,
        // Tests send thousands of requests from one address and a few users.
        user_rate_per_s: 0,
        user_burst: 0,
        ip_rate_per_s: 0,
        ip_burst: 0,
        trusted_proxy_hops: 0,
        header_timeout_ms: 10_000,
        request_timeout_ms: 15_000,
        token_cache: 100_000,
        http_threads: 0,
        dev_token_key: None,
    }
}

/// A running queue-api; stopped when dropped (also when the test fails).
pub struct ApiServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `http://127.0.0.1:<ops port>`: health, readiness, metrics.
    pub ops: String,
    /// Redis access for arranging and checking state.
    pub store: QueueStore,
    /// The HTTP client the helpers use (with room for many idle connections, for tests
    /// that send thousands of requests).
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
    _keys_dir: tempfile::TempDir,
}

impl ApiServer {
    /// Starts queue-api with default test settings.
    pub async fn start(stack: &TestStack) -> Result<Self> {
        Self::start_with(stack, |_| {}).await
    }

    /// Starts queue-api with settings changed by `adjust`.
    pub async fn start_with(stack: &TestStack, adjust: impl FnOnce(&mut ApiArgs)) -> Result<Self> {
        let keys_dir = tempfile::tempdir()?;
        let jwks_file = keys_dir.path().join("jwks.json");
        std::fs::write(&jwks_file, jwks_for(signing_key()))?;
        let mut args = default_args(stack, jwks_file);
        adjust(&mut args);
        let application = Application::build(&args).await?;
        let base = format!("http://127.0.0.1:{}", application.port());
        let ops = format!("http://127.0.0.1:{}", application.ops_port());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            base,
            ops,
            store: QueueStore::connect(&stack.env.redis()).await?,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                // The server closes connections idle past its header deadline (10 s);
                // give them up first rather than race its close.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            stop: Some(stop),
            task: Some(task),
            _keys_dir: keys_dir,
        })
    }

    /// Starts queue-api in local mode: it trusts the stack's own key and signs tokens
    /// with it on `POST /dev/token`.
    pub async fn start_local_mode(stack: &TestStack) -> Result<Self> {
        let keys = DevKeys::in_state_dir(stack.state_dir());
        Self::start_with(stack, |args| {
            args.keys.jwks_file = Some(keys.jwks.clone());
            args.dev_token_key = Some(keys.private_key.clone());
        })
        .await
    }

    /// The JWKS file this server trusts (rewrite it to rotate keys).
    pub fn jwks_path(&self) -> PathBuf {
        self._keys_dir.path().join("jwks.json")
    }

    /// The HTTP client the helpers use, for requests they do not cover.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A new open event of this test's own, admitting `rate_per_s`.
    pub async fn open_event(&self, rate_per_s: u32) -> Result<EventId> {
        let event = EventId::parse(TestStack::unique("ev"))?;
        self.set_event_state(&event, EventState::Open, rate_per_s)
            .await?;
        Ok(event)
    }

    /// Sets an event's state as the event admin would.
    pub async fn set_event_state(
        &self,
        event: &EventId,
        state: EventState,
        rate_per_s: u32,
    ) -> Result<()> {
        let meta = EventMeta {
            state,
            rate_per_s,
            abandon_timeout_ms: 120_000,
            opens_at_ms: 0,
            allowed_platforms: Vec::new(),
        };
        self.store.put_event_meta(event, &meta).await
    }

    /// Sets the event's serving counter, as the admitter moves it.
    pub async fn set_serving(&self, event: &EventId, serving: u64) {
        let _: () = redis::cmd("SET")
            .arg(EventKeys::new(event).serving())
            .arg(serving)
            .query_async(&mut self.store.connection())
            .await
            .expect("SET serving");
    }

    /// Writes `user`'s decided record (`state` is the outcome: won, lost or sold out;
    /// with its ticket and decision order) and publishes the stream notice, as
    /// result-relay does.
    pub async fn decide(
        &self,
        event: &EventId,
        user: &UserKey,
        state: UserState,
        ticket: u64,
        order: u64,
    ) -> Result<()> {
        anyhow::ensure!(
            matches!(state, UserState::Won | UserState::Lost | UserState::SoldOut),
            "{state} is not an outcome a draw decides"
        );
        let keys = EventKeys::new(event);
        let now_ms = now_ms();
        let record = UserRecord {
            state,
            ticket,
            last_seen_s: now_ms / 1000,
            decided: Some(Decided {
                decision_order: order,
                decided_at_ms: now_ms,
            }),
        };
        let _: () = redis::pipe()
            .hset(keys.users(), user.member(), record.encode())
            .publish(keys.channel(), Notice::Result(user.member()).encode())
            .query_async(&mut self.store.connection())
            .await?;
        Ok(())
    }

    /// The Prometheus text of `GET /metrics` on the ops port.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.ops))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// `<base>/v1/events/<event>/queue<suffix>`.
    pub fn queue_url(&self, event: &EventId, suffix: &str) -> String {
        format!("{}/v1/events/{event}/queue{suffix}", self.base)
    }

    /// `<base>/e/<event>`: the event's waiting-room page.
    pub fn page_url(&self, event: &EventId) -> String {
        format!("{}/e/{event}", self.base)
    }

    /// `POST .../queue` with `token`: the status and the JSON body.
    pub async fn enter(&self, event: &EventId, token: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.queue_url(event, ""))
            .bearer_auth(token)
            .send()
            .await
            .expect("enter answers");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    /// `GET .../queue/me` with `token`: the status and the JSON body.
    pub async fn status(&self, event: &EventId, token: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.queue_url(event, "/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("status answers");
        let code = response.status();
        (code, response.json().await.expect("JSON body"))
    }

    /// `GET .../queue/me/stream` with `token` (resuming after `last_event_id` if
    /// given); asserts it opened as an event stream.
    pub async fn open_stream(
        &self,
        event: &EventId,
        token: &str,
        last_event_id: Option<&str>,
    ) -> SseReader {
        let mut request = self
            .client
            .get(self.queue_url(event, "/me/stream"))
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

    /// Stops accepting, tells streams to reconnect, drains; waits for the end.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .context("queue-api did not stop within 15 s")?
                .context("queue-api task panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The `error.code` of a JSON error body (`<no error code>` when it has none).
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// The value of the unlabelled series `name` in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(str::to_owned)
}

/// One Server-Sent Event as a client sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    /// `event:` (empty for unnamed).
    pub name: String,
    /// `id:`.
    pub id: Option<String>,
    /// `data:` lines joined by newlines.
    pub data: String,
}

/// Reads Server-Sent Events from a streaming response, as a browser's EventSource does
/// (comments and `retry:` skipped).
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Wraps a 200 `text/event-stream` response.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the server ended the stream. Gives up after
    /// `patience`.
    pub async fn next(&mut self, patience: Duration) -> Result<Option<SseEvent>> {
        tokio::time::timeout(patience, self.next_event())
            .await
            .context("no event within the expected time")?
    }

    async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        event.name = value.trim_start().to_owned();
                    } else if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim_start().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        if has_data {
                            event.data.push('\n');
                        }
                        event
                            .data
                            .push_str(value.strip_prefix(' ').unwrap_or(value));
                        has_data = true;
                    }
                }
                if has_data {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return Ok(None),
            }
        }
    }
}
