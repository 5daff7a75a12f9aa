//! What every push endpoint shares: its settings, the request checks (OIDC token,
//! body size, envelope), the error answers, and the one HTTP port a Cloud Run service
//! has, serving the push route beside `/healthz`, `/readyz` and `/metrics`.
//!
//! The answer decides what Pub/Sub does: a 2xx acknowledges the message (it is never
//! delivered again), anything else makes Pub/Sub redeliver it with backoff until the
//! subscription's dead-letter policy moves it aside. So 2xx is sent only after the
//! message's effect is durable; a message that can never be handled (malformed,
//! unknown event) gets a 4xx and ends in the dead-letter topic, where an operator can
//! read it, instead of being dropped.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dropgate_core::Message;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::envelope::{MalformedEnvelope, PushedMessage};
use super::oidc::{GOOGLE_CERTS_URL, PushAuth, PushAuthError};
use crate::ops_server::Readiness;

/// Largest push of admissions goods-worker accepts: a batch of at most
/// [`crate::bus::PUBSUB_BATCH_BYTES`], base64-encoded in the envelope, with room to
/// spare. Pub/Sub's own limit (10 MB) would let one request hold that much memory.
pub const MAX_ADMISSIONS_PUSH_BODY: usize = 512 * 1024;

/// Largest push of one result result-relay accepts: a result is a few hundred bytes.
pub const MAX_RESULT_PUSH_BODY: usize = 64 * 1024;

/// Push endpoint settings.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The audience push tokens must name: the service URL set as the subscription's
    /// OIDC audience.
    #[arg(long, env = "DROPGATE_PUSH_AUDIENCE")]
    pub push_audience: Option<String>,
    /// The service account email the push subscription signs its tokens as.
    #[arg(long, env = "DROPGATE_PUSH_SERVICE_ACCOUNT")]
    pub push_service_account: Option<String>,
    /// Where the token signing keys are: a JWKS URL or file.
    #[arg(long, env = "DROPGATE_PUSH_JWKS", default_value = GOOGLE_CERTS_URL)]
    pub push_jwks: String,
}

impl PushArgs {
    /// The token check these settings describe (keys loaded now).
    pub async fn auth(&self) -> Result<PushAuth> {
        PushAuth::load(
            &self.push_jwks,
            self.push_audience.as_deref(),
            self.push_service_account.as_deref(),
        )
        .await
    }
}

/// Why a push request was not acknowledged. The body is always
/// `{"error": {"code": "...", "message": "..."}}`, as on the public API.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// 401/403: the OIDC token is missing or not acceptable.
    #[error(transparent)]
    Auth(#[from] PushAuthError),
    /// 400: the body is not a push envelope.
    #[error("{0}")]
    MalformedEnvelope(#[from] MalformedEnvelope),
    /// 400: the message data is not a message of this format version.
    #[error("the message data is not readable: {0}")]
    MalformedMessage(String),
    /// 413: larger than the route accepts.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// 404: the message names an event that does not exist.
    #[error("event {0} does not exist")]
    UnknownEvent(String),
    /// 503: a backend failed; nothing was acknowledged, so Pub/Sub redelivers.
    #[error("temporarily unavailable; the message will be redelivered")]
    Unavailable(#[source] anyhow::Error),
    /// 503: the service is stopping.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// 404: no such route.
    #[error("no such route")]
    NotFound,
    /// 405: the route exists, not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
}

impl PushError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            PushError::Auth(PushAuthError::Token(_)) => StatusCode::UNAUTHORIZED,
            PushError::Auth(_) => StatusCode::FORBIDDEN,
            PushError::MalformedEnvelope(_) | PushError::MalformedMessage(_) => {
                StatusCode::BAD_REQUEST
            }
            PushError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PushError::UnknownEvent(_) | PushError::NotFound => StatusCode::NOT_FOUND,
            PushError::Unavailable(_) | PushError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            PushError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            PushError::Auth(error) => error.code(),
            PushError::MalformedEnvelope(_) => "malformed_envelope",
            PushError::MalformedMessage(_) => "malformed_message",
            PushError::BodyTooLarge(_) => "body_too_large",
            PushError::UnknownEvent(_) => "unknown_event",
            PushError::Unavailable(_) => "unavailable",
            PushError::ShuttingDown => "shutting_down",
            PushError::NotFound => "not_found",
            PushError::MethodNotAllowed => "method_not_allowed",
        }
    }
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        match &self {
            PushError::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "push not acknowledged");
            }
            PushError::Auth(error) => tracing::warn!(%error, "push refused"),
            _ => {}
        }
        let status = self.status();
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(2));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dropgate-push\""),
            );
        }
        response
    }
}

/// Takes one push carrying an `M`: refused while stopping (Pub/Sub redelivers it,
/// to this instance's successor), then the token, at most `max_body` bytes, the
/// envelope and the message, an unreadable one counted under `malformed_metric`.
/// The token is checked first, so an unauthenticated caller learns nothing about the
/// body format. Returns the message and Pub/Sub's message id.
pub async fn receive<M: Message>(
    auth: &PushAuth,
    shutdown: &watch::Receiver<bool>,
    headers: &HeaderMap,
    body: Body,
    max_body: usize,
    malformed_metric: &'static str,
) -> Result<(M, String), PushError> {
    if *shutdown.borrow() {
        return Err(PushError::ShuttingDown);
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or_default());
    auth.check(authorization).await?;
    let bytes = axum::body::to_bytes(body, max_body)
        .await
        .map_err(|_| PushError::BodyTooLarge(max_body))?;
    let pushed = PushedMessage::parse(&bytes)?;
    let message = M::decode(&pushed.data).map_err(|error| {
        metrics::counter!(malformed_metric).increment(1);
        tracing::error!(%error, message_id = %pushed.message_id, "malformed message refused");
        PushError::MalformedMessage(error.to_string())
    })?;
    Ok((message, pushed.message_id))
}

/// The answer to one push: 204 once the message is handled durably, else the error
/// (which makes Pub/Sub redeliver or dead-letter it); counted per route and result.
pub fn answer(route: &'static str, handled: Result<(), PushError>) -> Response {
    let result = match &handled {
        Ok(()) => "204",
        Err(error) => error.code(),
    };
    metrics::counter!("dropgate_push_requests_total", "route" => route, "result" => result)
        .increment(1);
    match handled {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Binds `address` and serves `push` (the function's push route) with the health,
/// readiness and metrics routes, until `shutdown` turns true; requests in flight are
/// finished first. Returns the bound address and the server task.
pub async fn serve(
    address: SocketAddr,
    push: Router,
    readiness: Readiness,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<Result<()>>)> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("Failed to listen on {address} (DROPGATE_HEALTH_ADDR)"))?;
    let bound = listener.local_addr()?;
    let router = push
        .merge(crate::ops_server::routes(readiness))
        .fallback(|| async { PushError::NotFound })
        .method_not_allowed_fallback(|| async { PushError::MethodNotAllowed })
        .layer(crate::telemetry::request_spans());
    let mut stop = shutdown;
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            })
            .await
            .context("the push server failed")
    });
    Ok((bound, server))
}

/// A push endpoint that is bound and serving, stopped through its own signal: the
/// endpoints need a shutdown receiver when they start (to refuse new pushes while
/// draining), before the service is handed the process's one.
pub struct PushServer {
    address: SocketAddr,
    server: JoinHandle<Result<()>>,
    stop: watch::Sender<bool>,
}

impl PushServer {
    /// Starts the server `start` builds with the receiving end of a fresh signal.
    pub async fn start<F, Fut>(start: F) -> Result<Self>
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = Result<(SocketAddr, JoinHandle<Result<()>>)>>,
    {
        let (stop, stopped) = watch::channel(false);
        let (address, server) = start(stopped).await?;
        Ok(Self {
            address,
            server,
            stop,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` turns true, then drains.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let stop = self.stop;
        tokio::spawn(async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
            let _ = stop.send(true);
        });
        self.server.await.context("the push server's task failed")?
    }
}
