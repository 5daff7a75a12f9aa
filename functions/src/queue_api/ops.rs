//! Health, readiness and Prometheus metrics, and the middleware that records request
//! counts and latencies by route and status and logs server-side failures.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::Failure;
use crate::telemetry::prometheus;

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Whether Redis answers, recorded as `dropgate_ready` as the other functions' ops
/// ports do.
async fn redis_ready(state: &AppState) -> bool {
    let ready = state.store.ping().await;
    metrics::gauge!("dropgate_ready").set(if ready { 1.0 } else { 0.0 });
    ready
}

/// `GET /readyz`: Redis answers.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if redis_ready(&state).await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": "unavailable", "message": "Redis does not answer"}})),
        )
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text, with queue gauges read fresh for the events this
/// instance has served.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    redis_ready(&state).await;
    let events = state.streams.known_events();
    metrics::gauge!("dropgate_queue_watched_events").set(events.len() as f64);
    for event in events {
        if let Ok((length, serving)) = state.store.queue_gauges(&event).await {
            let label = event.to_string();
            metrics::gauge!("dropgate_queue_length", "event" => label.clone()).set(length as f64);
            metrics::gauge!("dropgate_queue_serving", "event" => label).set(serving as f64);
        }
    }
    metrics::gauge!("dropgate_sse_open_streams").set(state.streams.open() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        prometheus().render(),
    )
        .into_response()
}

/// Counts every request and times it, labelled by matched route and status; logs the
/// cause of a server-side failure with the request's method and route.
pub(crate) async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    let (requests, duration) = request_metrics(route, &method, status);
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    if let Some(failure) = response.extensions().get::<Failure>() {
        let (method, error) = (method.as_str(), failure.cause.as_str());
        if failure.internal {
            tracing::error!(
                method,
                route,
                status,
                error,
                "request failed: internal error"
            );
        } else {
            tracing::warn!(
                method,
                route,
                status,
                error,
                "request failed: Redis unavailable"
            );
        }
    }
    response
}

type RequestMetrics = (metrics::Counter, metrics::Histogram);

/// The counter and histogram of one route, method and status, registered once: looking
/// them up by their labels on every request (three label strings, two registry
/// lookups) cost queue-api about as much as the rest of this middleware. Methods
/// outside HTTP's own are labelled `OTHER`, so a client inventing methods cannot
/// grow the series without bound.
fn request_metrics(route: &str, method: &Method, status: u16) -> RequestMetrics {
    type ByRoute = HashMap<String, HashMap<(Method, u16), RequestMetrics>>;
    static HANDLES: LazyLock<RwLock<ByRoute>> = LazyLock::new(Default::default);
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    let method = if known.contains(method) {
        method.clone()
    } else {
        Method::from_bytes(b"OTHER").unwrap_or(Method::GET)
    };
    let key = (method, status);
    if let Some(handles) = HANDLES
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(route)
        .and_then(|by_method| by_method.get(&key))
    {
        return handles.clone();
    }
    let labels = [
        ("route", route.to_owned()),
        ("method", key.0.as_str().to_owned()),
        ("status", status.to_string()),
    ];
    let handles = (
        metrics::counter!("dropgate_http_requests_total", &labels),
        metrics::histogram!("dropgate_http_request_duration_seconds", &labels),
    );
    HANDLES
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(route.to_owned())
        .or_default()
        .insert(key, handles.clone());
    handles
}
