//! Extractors whose rejections are [`ApiError`]s, so even a bad path, a bad token or a
//! malformed body gets the API's JSON error shape, and the per-address limit.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dropgate_core::{EventId, UserKey};

use super::{ApiError, AppState, MAX_BODY_BYTES};

/// The `{event_id}` path segment, validated.
pub(crate) struct EventPath(pub(crate) EventId);

impl<S: Send + Sync> FromRequestParts<S> for EventPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidEventId(e.body_text()))?;
        EventId::parse(raw)
            .map(EventPath)
            .map_err(|e| ApiError::InvalidEventId(e.to_string()))
    }
}

/// The authenticated caller; also spends one of the caller's per-user tokens.
pub(crate) struct Caller(pub(crate) UserKey);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| crate::auth::AuthError::MalformedToken)?,
            ),
        };
        let user = state.auth.authenticate(header).await?;
        state
            .user_limits
            .check(&user.member(), Instant::now())
            .map_err(ApiError::RateLimited)?;
        Ok(Caller(user))
    }
}

/// Checks that a body is empty or a JSON object (enter takes no fields today; an object
/// keeps room for optional ones without breaking clients). Anything else is a clear
/// 400, or 413 when too large.
pub(crate) struct EmptyOrJsonObject;

impl<S: Send + Sync> FromRequest<S> for EmptyOrJsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge(MAX_BODY_BYTES)
                } else {
                    ApiError::MalformedBody(rejection.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self);
        }
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
            .map(|_| Self)
            .map_err(|e| ApiError::MalformedBody(e.to_string()))
    }
}

/// The client's address: the socket peer, or the first `X-Forwarded-For` entry when
/// configured to trust the load balancer in front.
fn client_address(request: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(first) = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .and_then(|first| first.trim().parse().ok())
    {
        return Some(first);
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// Middleware: one token of the caller's address bucket per API request.
pub(crate) async fn limit_by_address(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(address) = client_address(&request, state.trust_forwarded_for)
        && let Err(wait) = state.ip_limits.check(&address.to_string(), Instant::now())
    {
        return ApiError::RateLimited(wait).into_response();
    }
    next.run(request).await
}
