//! result-relay on the Pub/Sub transport: `POST /pubsub/result-notification` takes one
//! pushed result per request. Concurrent requests go to Redis together, in one
//! pipeline of the same `apply_result` script the Kafka path runs, and each request
//! is answered 204 only after Redis took its result; a redelivery finds the result
//! applied and changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::RedisConn;
use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use dropgate_core::DrawResult;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Origin, RelayArgs, report};
use crate::ops_server::Readiness;
use crate::pubsub::batcher::Batcher;
use crate::pubsub::oidc::PushAuth;
use crate::pubsub::push::{self, PushError};
use crate::queue::QueueStore;
use crate::queue::scripts::apply_result::ApplyResultScript;

/// The route Pub/Sub pushes result-notification messages to.
pub(super) const ROUTE: &str = "/pubsub/result-notification";

/// Whether Redis took a result (the error text is kept for the 503 answer).
type Verdict = Result<(), String>;

struct State_ {
    auth: PushAuth,
    batcher: Batcher<(DrawResult, String), Verdict>,
    shutdown: watch::Receiver<bool>,
}

/// result-relay serving push deliveries.
pub struct RelayPush {
    redis: RedisConn,
    auth: PushAuth,
    batch_size: usize,
    batch_wait: Duration,
    readiness: Readiness,
}

impl std::fmt::Debug for RelayPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayPush")
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl RelayPush {
    /// Connects to Redis; push requests are checked by `auth`.
    pub async fn connect(args: &RelayArgs, auth: PushAuth, readiness: Readiness) -> Result<Self> {
        let store = QueueStore::connect(&args.redis)
            .await
            .context("Redis (DROPGATE_REDIS_URL) is not usable")?;
        Ok(Self {
            redis: store.connection(),
            auth,
            batch_size: args.batch_size as usize,
            batch_wait: Duration::from_millis(args.batch_wait_ms),
            readiness,
        })
    }

    /// Serves the push route and the ops routes on `address` until `shutdown` turns
    /// true. Returns the bound address and the server task.
    pub async fn start(
        self,
        address: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(SocketAddr, JoinHandle<Result<()>>)> {
        let script = Arc::new(ApplyResultScript::default());
        let redis = self.redis;
        let readiness = self.readiness.clone();
        let batcher = Batcher::spawn(self.batch_size, self.batch_wait, move |items| {
            let script = Arc::clone(&script);
            let mut redis = redis.clone();
            let readiness = readiness.clone();
            async move { apply_batch(&script, &mut redis, &readiness, items).await }
        });
        let state = Arc::new(State_ {
            auth: self.auth,
            batcher,
            shutdown: shutdown.clone(),
        });
        let router = Router::new().route(ROUTE, post(receive)).with_state(state);
        self.readiness.set(true);
        let (bound, server) = push::serve(address, router, self.readiness, shutdown).await?;
        let server = tokio::spawn(async move {
            let served = server.await;
            tracing::info!("result-relay stopped");
            served?
        });
        Ok((bound, server))
    }
}

async fn receive(State(state): State<Arc<State_>>, headers: HeaderMap, body: Body) -> Response {
    push::answer(ROUTE, handle(&state, &headers, body).await)
}

async fn handle(state: &State_, headers: &HeaderMap, body: Body) -> Result<(), PushError> {
    let (result, message_id) = push::receive::<DrawResult>(
        &state.auth,
        &state.shutdown,
        headers,
        body,
        push::MAX_RESULT_PUSH_BODY,
        "dropgate_relay_malformed_total",
    )
    .await?;
    match state.batcher.submit((result, message_id)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(cause)) => Err(PushError::Unavailable(anyhow::anyhow!(cause))),
        None => Err(PushError::Unavailable(anyhow::anyhow!(
            "the batching task is gone"
        ))),
    }
}

/// Applies one batch in one pipeline. Redis takes all of it or the call fails as a
/// whole (every request then gets 503 and is redelivered; each script call is
/// idempotent, so whatever did get applied is found applied next time).
async fn apply_batch(
    script: &ApplyResultScript,
    redis: &mut RedisConn,
    readiness: &Readiness,
    items: Vec<(DrawResult, String)>,
) -> Vec<Verdict> {
    let started = Instant::now();
    let (results, ids): (Vec<DrawResult>, Vec<String>) = items.into_iter().unzip();
    match script.apply_all(redis, &results).await {
        Ok(answers) => {
            readiness.set(true);
            for ((result, id), answer) in results.iter().zip(&ids).zip(answers) {
                report(result, Origin::Push { message_id: id }, answer);
            }
            metrics::histogram!("dropgate_relay_batch_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            vec![Ok(()); results.len()]
        }
        Err(error) => {
            readiness.set(false);
            metrics::counter!("dropgate_relay_redis_failures_total").increment(1);
            let cause = format!("{error:#}");
            vec![Err(cause); results.len()]
        }
    }
}
