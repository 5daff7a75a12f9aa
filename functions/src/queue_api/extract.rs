//! Extractors whose rejections are [`ApiError`]s, so even a bad path, a bad token or a
//! malformed body gets the API's JSON error shape, and the per-address limit.

use std::net::{IpAddr, SocketAddr};

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
            .check(&user.member())
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

/// The client's address: the socket peer, or, behind `hops` trusted proxies, the
/// `X-Forwarded-For` entry the outermost of them appended (`hops` from the right).
/// Anything left of it was sent by the client and proves nothing.
fn client_address(request: &Request, hops: u8) -> Option<IpAddr> {
    if hops > 0
        && let Some(forwarded) = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| forwarded_client(value, hops))
    {
        return Some(forwarded);
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
    if let Some(address) = client_address(&request, state.trusted_proxy_hops)
        && let Err(wait) = state.ip_limits.check(&address)
    {
        return ApiError::RateLimited(wait).into_response();
    }
    next.run(request).await
}

/// The entry `hops` places from the right of an `X-Forwarded-For` value, if there.
fn forwarded_client(header: &str, hops: u8) -> Option<IpAddr> {
    let entries: Vec<&str> = header.split(',').map(str::trim).collect();
    let index = entries.len().checked_sub(usize::from(hops))?;
    entries.get(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_entry_the_trusted_proxies_appended_counts() {
        // A client forging an address, then Google's LB appending client + itself.
        let header = "6.6.6.6, 203.0.113.7, 130.211.0.1";
        assert_eq!(forwarded_client(header, 2), "203.0.113.7".parse().ok());
        assert_eq!(forwarded_client(header, 1), "130.211.0.1".parse().ok());
        assert_eq!(
            forwarded_client("203.0.113.7", 2),
            None,
            "fewer entries than hops"
        );
        assert_eq!(forwarded_client("garbage, 130.211.0.1", 2), None);
    }
}
