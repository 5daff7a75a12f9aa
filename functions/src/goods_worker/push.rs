//! goods-worker on the Pub/Sub transport: `POST /pubsub/waiting-queue` takes one
//! pushed admission per request. Concurrent requests are decided together (one
//! PostgreSQL transaction per event and batch, as on the Kafka path), and each
//! request is answered 204 only once its user's draw and result are committed to the
//! outbox: from there the result reaches result-notification even if this instance
//! dies right after answering (the re-send loop of any instance delivers it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use dropgate_core::{Admitted, EventId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{GoodsArgs, Settled, Settler, by_event, connect_database, resend_loop};
use crate::bus::Publisher;
use crate::ops_server::Readiness;
use crate::pubsub::batcher::Batcher;
use crate::pubsub::oidc::PushAuth;
use crate::pubsub::push::{self, PushError};

/// The route Pub/Sub pushes waiting-queue messages to.
pub(super) const ROUTE: &str = "/pubsub/waiting-queue";

/// What became of one pushed admission (cloneable, unlike the error it turns into).
#[derive(Debug, Clone)]
enum Verdict {
    Recorded,
    UnknownEvent(EventId),
    Unavailable(String),
}

struct State_ {
    auth: PushAuth,
    batcher: Batcher<Admitted, Verdict>,
    shutdown: watch::Receiver<bool>,
}

/// goods-worker serving push deliveries.
pub struct GoodsPush {
    settler: Settler,
    auth: PushAuth,
    batch_size: usize,
    batch_wait: Duration,
    readiness: Readiness,
}

impl GoodsPush {
    /// Connects to PostgreSQL; results go out through `publisher` (Pub/Sub in a
    /// deployment), push requests are checked by `auth`.
    pub async fn connect(
        args: &GoodsArgs,
        publisher: Publisher,
        auth: PushAuth,
        readiness: Readiness,
    ) -> Result<Self> {
        let pool = connect_database(args).await?;
        Ok(Self {
            settler: Settler { pool, publisher },
            auth,
            batch_size: args.batch_size as usize,
            batch_wait: Duration::from_millis(args.batch_wait_ms),
            readiness,
        })
    }

    /// Serves the push route and the ops routes on `address`, and re-sends what the
    /// outbox holds unsent, until `shutdown` turns true. Returns the bound address and
    /// the server task (which ends after the requests in flight are answered).
    pub async fn start(
        self,
        address: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(SocketAddr, JoinHandle<Result<()>>)> {
        let resend = tokio::spawn(resend_loop(self.settler.clone(), shutdown.clone()));
        let settler = self.settler;
        let readiness = self.readiness.clone();
        let batcher = Batcher::spawn(self.batch_size, self.batch_wait, move |admissions| {
            let settler = settler.clone();
            let readiness = readiness.clone();
            async move { settle_batch(&settler, &readiness, admissions).await }
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
            resend.abort();
            tracing::info!("goods-worker stopped");
            served?
        });
        Ok((bound, server))
    }
}

async fn receive(State(state): State<Arc<State_>>, headers: HeaderMap, body: Body) -> Response {
    push::answer(ROUTE, handle(&state, &headers, body).await)
}

async fn handle(state: &State_, headers: &HeaderMap, body: Body) -> Result<(), PushError> {
    let (admitted, _) = push::receive::<Admitted>(
        &state.auth,
        &state.shutdown,
        headers,
        body,
        "dropgate_goods_malformed_total",
    )
    .await?;
    match state.batcher.submit(admitted).await {
        Some(Verdict::Recorded) => Ok(()),
        Some(Verdict::UnknownEvent(event)) => Err(PushError::UnknownEvent(event.to_string())),
        Some(Verdict::Unavailable(cause)) => Err(PushError::Unavailable(anyhow::anyhow!(cause))),
        None => Err(PushError::Unavailable(anyhow::anyhow!(
            "the batching task is gone"
        ))),
    }
}

/// Settles one batch of pushed admissions and gives each its verdict. Each event is
/// its own transaction, so a failing or unknown event does not hold up the others.
async fn settle_batch(
    settler: &Settler,
    readiness: &Readiness,
    admissions: Vec<Admitted>,
) -> Vec<Verdict> {
    let order: Vec<EventId> = admissions
        .iter()
        .map(|admitted| admitted.event_id.clone())
        .collect();
    let mut verdicts: HashMap<EventId, Verdict> = HashMap::new();
    for (event, group) in by_event(admissions) {
        let verdict = match settler.settle_event(&event, &group).await {
            Ok(Settled::Recorded) => {
                readiness.set(true);
                Verdict::Recorded
            }
            Ok(Settled::UnknownEvent) => Verdict::UnknownEvent(event.clone()),
            Err(error) => {
                readiness.set(false);
                // Nothing was recorded: Pub/Sub redelivers after its backoff.
                Verdict::Unavailable(format!("{error:#}"))
            }
        };
        verdicts.insert(event, verdict);
    }
    order
        .iter()
        .map(|event| {
            verdicts
                .get(event)
                .cloned()
                .unwrap_or_else(|| Verdict::Unavailable("no verdict".into()))
        })
        .collect()
}
