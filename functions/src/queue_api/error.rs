//! The one error type of the public API. Every failure a client can cause is a 4xx
//! with a stable snake_case code; server-side causes are a 5xx with fixed text, the
//! cause logged with the request's method and route (see [`Failure`]). The body is always
//! `{"error": {"code": "...", "message": "..."}}`.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: the token was missing or not acceptable.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 400: the event id in the path is not a valid id.
    #[error("invalid event id: {0}")]
    InvalidEventId(String),
    /// 404: no such event.
    #[error("no such event")]
    UnknownEvent,
    /// 403: the event takes users of other platforms only.
    #[error("this event does not take users of your platform")]
    PlatformNotAllowed,
    /// 404: the caller never entered this event's queue.
    #[error("you have not entered this event's queue; POST to /v1/events/{{event_id}}/queue first")]
    NotInQueue,
    /// 410: the event is closed.
    #[error("the event is closed")]
    EventClosed,
    /// 410: the event is sold out.
    #[error("the event is sold out")]
    EventSoldOut,
    /// 400: the body is not a JSON object.
    #[error("the request body must be empty or a JSON object: {0}")]
    MalformedBody(String),
    /// 413: the body is too large.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// 429: too many requests from this user or address.
    #[error("too many requests; retry after {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// 503: this instance has as many open streams as it allows.
    #[error(
        "this server has too many open streams; poll GET /v1/events/{{event_id}}/queue/me instead"
    )]
    TooManyStreams,
    /// 503: Redis is unreachable.
    #[error("the queue is temporarily unavailable; retry shortly")]
    Unavailable(#[source] anyhow::Error),
    /// 404: the event's decision log is published at its close, and it has not closed.
    #[error("the decision log is published when the event closes; it has not closed yet")]
    DecisionLogNotYetPublic,
    /// 404: the decision log was too large to serve here.
    #[error(
        "this event's decision log is too large to be served here; the operator publishes it (dropgate event fairness)"
    )]
    DecisionLogNotServed,
    /// 408: the request took longer than the server allows (a slow body).
    #[error("the request took too long; send it again")]
    RequestTimeout,
    /// 404: no such route.
    #[error("no such route")]
    NotFound,
    /// 405: the route exists but not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 500: a bug or corrupted data; the client sees fixed text.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::PlatformNotAllowed => StatusCode::FORBIDDEN,
            ApiError::InvalidEventId(_) | ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownEvent
            | ApiError::NotInQueue
            | ApiError::DecisionLogNotYetPublic
            | ApiError::DecisionLogNotServed
            | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::EventClosed | ApiError::EventSoldOut => StatusCode::GONE,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooManyStreams | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable code (documented in docs/api.md).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Auth(e) => e.code(),
            ApiError::InvalidEventId(_) => "invalid_event_id",
            ApiError::UnknownEvent => "unknown_event",
            ApiError::PlatformNotAllowed => "platform_not_allowed",
            ApiError::NotInQueue => "not_in_queue",
            ApiError::EventClosed => "event_closed",
            ApiError::EventSoldOut => "event_sold_out",
            ApiError::MalformedBody(_) => "malformed_body",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::TooManyStreams => "too_many_streams",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::DecisionLogNotYetPublic => "decision_log_not_yet_public",
            ApiError::DecisionLogNotServed => "decision_log_not_served",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let failure = match &self {
            ApiError::Unavailable(cause) => Some(Failure {
                internal: false,
                cause: format!("{cause:#}"),
            }),
            ApiError::Internal(cause) => Some(Failure {
                internal: true,
                cause: format!("{cause:#}"),
            }),
            _ => None,
        };
        let status = self.status();
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (status, Json(body)).into_response();
        let retry_after = match &self {
            ApiError::RateLimited(wait) => Some(wait.as_secs().max(1)),
            ApiError::TooManyStreams | ApiError::Unavailable(_) => Some(2),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dropgate\""),
            );
        }
        if let Some(failure) = failure {
            response.extensions_mut().insert(failure);
        }
        response
    }
}

/// A server-side cause behind a 5xx answer, for the log. It travels in the response's
/// extensions to the API router's metrics layer, which logs it once with the request's
/// method, route and status: the handler that failed does not know its route, and
/// the per-request span that would carry them costs every request (see
/// `telemetry::request_spans`).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// An internal error (logged as an error); otherwise Redis was unavailable (a
    /// warning: clients are told to retry).
    pub(crate) internal: bool,
    /// The cause, with its chain.
    pub(crate) cause: String,
}

/// Redis and other infrastructure failures are "unavailable" to the client.
impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        if error.downcast_ref::<redis::RedisError>().is_some() {
            ApiError::Unavailable(error)
        } else {
            ApiError::Internal(error)
        }
    }
}
