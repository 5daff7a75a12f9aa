//! Telemetry every service installs once at start ([`init`]): structured logs and the
//! process-wide Prometheus recorder; and the request span every HTTP server wraps its
//! routes in ([`request_spans`]).
//!
//! Logs are human-readable text by default, JSON lines with `DROPGATE_LOG_FORMAT=json`
//! (what Cloud Logging and most collectors parse), filtered by `RUST_LOG` (default
//! `info`).

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use tracing::Span;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The telemetry settings every service shares.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryArgs {
    /// Log line format (the level filter is the standard `RUST_LOG`, default `info`).
    #[arg(long, env = "DROPGATE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Installs the log subscriber and the Prometheus recorder. Safe to call more than
/// once (later calls are no-ops), so tests that build several services in one process
/// do not fail. The recorder exists before the first metric is recorded, so a
/// service's early counters are not lost before the first scrape.
pub fn init(args: &TelemetryArgs) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    prometheus();
}

/// The process-wide Prometheus recorder (installed once; every server in the process,
/// tests included, renders from it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new())
            // A per-event gauge of an event this instance forgot (queue-api forgets
            // events idle for 10 minutes) stops being set: drop its series rather than
            // report a stale value for ever. Live gauges are set on every scrape or
            // batch.
            .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(900)));
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (a test harness): render from a private
            // one so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// The trace layer of [`request_spans`].
pub type RequestSpans = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request) -> Span,
    (),
    fn(&Response, Duration, &Span),
    (),
    (),
    (),
>;

/// With `RUST_LOG=debug`, a span per request carrying method and route, and one event
/// per answered request with its status and latency: whatever a handler logs carries
/// the request it belongs to. At the default level there is neither: a drop serves
/// tens of thousands of requests a second, their counts and latencies go to
/// Prometheus, and an `info` span for each (registry slot, filter bookkeeping,
/// formatted fields) cost queue-api 1.6 µs of CPU per request, 5 % of a cached-token
/// enter (`perf` under `dropgate bench --only enter`). Errors are logged by whoever answers
/// them, with the fields they need; queue-api's failures name method and route.
pub fn request_spans() -> RequestSpans {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request) -> Span)
        .on_request(())
        .on_response(record_response as fn(&Response, Duration, &Span))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Whether [`request_spans`] would write anything: the installed filter lets `debug`
/// through somewhere. Checked once when a router is built (the filter is fixed for
/// the process's life); without it the layer is left out, as its latency clock and
/// response wrapper cost every request for nothing.
pub fn requests_logged() -> bool {
    tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG
}

fn request_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::debug_span!("request", method = request.method().as_str(), route)
}

/// The status and latency go on the closing event only: recorded on the span, the
/// text log formatted them into it on every request although no event follows them.
fn record_response(response: &Response, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1_000.0;
    tracing::debug!(status, latency_ms, "request answered");
}
