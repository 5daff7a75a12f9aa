//! goods-worker on the Pub/Sub transport: `POST /pubsub/waiting-queue` takes one
//! pushed message per request, a batch of one event's admissions in ticket order (or
//! one admission, from an admitter of an older release). A batch is decided in one
//! PostgreSQL transaction; single admissions from concurrent requests are decided
//! together (one transaction per event and batch, as on the Kafka path). Each request
//! is answered 204 only once its users' draws and results are committed to the
//! outbox: from there the results reach result-notification even if this instance
//! dies right after answering (the re-send loop of any instance delivers them). The
//! admitter's batches share the event's ordering key, so Pub/Sub pushes the next one
//! only after this answer: the event is decided in ticket order.

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
use dropgate_core::{Admissions, Admitted, EventId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{
    GoodsArgs, GoodsPublishers, Settled, Settler, by_event, connect_database, resend_loop,
};
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
    settler: Settler,
    readiness: Readiness,
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
        publishers: GoodsPublishers,
        auth: PushAuth,
        readiness: Readiness,
    ) -> Result<Self> {
        // A missing key is a setting to fix, said before anything is dialled.
        let seed_key = args.seed_key.load()?;
        let pool = connect_database(args).await?;
        Ok(Self {
            settler: Settler {
                pool,
                seed_key,
                publishers,
            },
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
        let settler = self.settler.clone();
        let readiness = self.readiness.clone();
        let batcher = Batcher::spawn(self.batch_size, self.batch_wait, move |admissions| {
            let settler = settler.clone();
            let readiness = readiness.clone();
            async move { settle_batch(&settler, &readiness, admissions).await }
        });
        let state = Arc::new(State_ {
            auth: self.auth,
            batcher,
            settler: self.settler,
            readiness: self.readiness.clone(),
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
    let (admissions, _) = push::receive::<Admissions>(
        &state.auth,
        &state.shutdown,
        headers,
        body,
        push::MAX_ADMISSIONS_PUSH_BODY,
        "dropgate_goods_malformed_total",
    )
    .await?;
    let verdict = match admissions {
        Admissions::One(admitted) => state.batcher.submit(admitted).await,
        Admissions::Batch(batch) => {
            // Already one event's batch in ticket order: decided as it is.
            settle_batch(&state.settler, &state.readiness, batch.admitted)
                .await
                .into_iter()
                .next()
                .or(Some(Verdict::Recorded))
        }
    };
    match verdict {
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
