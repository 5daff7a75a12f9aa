//! The small HTTP port every background function (admitter, goods-worker,
//! result-relay) serves for its orchestrator: `/healthz` (the process runs), `/readyz`
//! (its dependencies answered recently) and `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

/// The ops-port setting.
#[derive(Debug, Clone, clap::Args)]
pub struct OpsArgs {
    /// Address of the health and metrics port.
    #[arg(long, env = "DROPGATE_HEALTH_ADDR", default_value = "127.0.0.1:9090")]
    pub health_addr: SocketAddr,
}

/// Whether the function is ready; the function's loop flips it.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the function (not) ready, also as the gauge `dropgate_ready` (1 or 0), which
    /// the "store unreachable" alert watches.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
        metrics::gauge!("dropgate_ready").set(if ready { 1.0 } else { 0.0 });
    }

    /// Whether it is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Binds the ops port and serves it in the background until the process ends.
/// Returns the bound address (useful with port 0).
pub async fn spawn(args: &OpsArgs, readiness: Readiness) -> Result<SocketAddr> {
    let listener = TcpListener::bind(args.health_addr)
        .await
        .with_context(|| format!("Failed to listen on {}", args.health_addr))?;
    let address = listener.local_addr()?;
    let router = routes(readiness);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "ops port stopped");
        }
    });
    Ok(address)
}

/// `/healthz`, `/readyz` and `/metrics`, for a server of the function's own or to
/// merge beside other routes (the Pub/Sub push endpoint shares the one port Cloud Run
/// gives a service).
pub fn routes(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Readiness>) -> Response {
    if readiness.get() {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": {"code": "unavailable", "message": "not ready"}})),
        )
            .into_response()
    }
}

async fn metrics(State(readiness): State<Readiness>) -> Response {
    // Set at every scrape too: an idle function changes its readiness seldom, and a
    // gauge not set for 15 minutes leaves /metrics.
    readiness.set(readiness.get());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}
