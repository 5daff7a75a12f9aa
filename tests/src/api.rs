//! A real queue-api on port 0 against the test stack's Redis, with keys of the test's
//! own, and the client helpers tests use to talk to it over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use dropgate_core::{EventId, EventState, UserKey};
use dropgate_functions::auth::dev::{LOCAL_AUDIENCE, LOCAL_ISSUER, jwks_for, sign_with};
use dropgate_functions::auth::{Algorithm, KeySourceArgs};
use dropgate_functions::config::RedisArgs;
use dropgate_functions::queue::{EventKeys, EventMeta, Notice, QueueStore};
use dropgate_functions::queue_api::{ApiArgs, Application};
use jwt_simple::prelude::RS256KeyPair;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::TestStack;

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
        redis: RedisArgs::url(stack.env.redis_url.clone()),
        keys: KeySourceArgs {
            jwks_file: Some(jwks_file),
            jwks_url: None,
            jwt_public_key_file: None,
            jwt_key_id: None,
        },
        jwt_algorithms: vec![Algorithm::Rs256],
        jwt_issuer: LOCAL_ISSUER.to_owned(),
        jwt_audience: LOCAL_AUDIENCE.to_owned(),
        cors_origins: vec!["https://shop.example".to_owned()],
        max_streams: 1_000,
        // Tests send thousands of requests from one address and a few users.
        user_rate_per_s: 0,
        user_burst: 0,
        ip_rate_per_s: 0,
        ip_burst: 0,
        trusted_proxy_hops: 0,
        token_cache: 100_000,
        dev_token_key: None,
    }
}

/// A running queue-api; stopped when dropped (also when the test fails).
pub struct ApiServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Redis access for arranging and checking state.
    pub store: QueueStore,
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
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            base,
            store: QueueStore::connect(&stack.env.redis()).await?,
            stop: Some(stop),
            task: Some(task),
            _keys_dir: keys_dir,
        })
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
        };
        self.store.put_event_meta(event, &meta).await
    }

    /// Writes a decided record for `user` (state code W, L or S, its ticket and
    /// decision order) and publishes the stream notice, as result-relay does.
    pub async fn decide(
        &self,
        event: &EventId,
        user: &UserKey,
        code: char,
        ticket: u64,
        order: u64,
    ) -> Result<()> {
        let keys = EventKeys::new(event);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        let record = format!("{code}|{ticket}|{}|{order}|{now_ms}", now_ms / 1000);
        let _: () = redis::pipe()
            .hset(keys.users(), user.member(), record)
            .publish(keys.channel(), Notice::Result(user.member()).encode())
            .query_async(&mut self.store.connection())
            .await?;
        Ok(())
    }

    /// `<base>/v1/events/<event>/queue<suffix>`.
    pub fn queue_url(&self, event: &EventId, suffix: &str) -> String {
        format!("{}/v1/events/{event}/queue{suffix}", self.base)
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
