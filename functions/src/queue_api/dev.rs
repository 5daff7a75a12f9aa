//! `POST /dev/token`: the waiting room's local sign-in. It exists only when queue-api
//! is started with the local stack's private key (`--dev-token-key`), so a deployed
//! queue-api has no route that mints tokens; locally it does what `dropgate token`
//! does, for a browser that cannot run the CLI.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dropgate_core::UserKey;
use jwt_simple::prelude::RS256KeyPair;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, MAX_BODY_BYTES};
use crate::auth::dev::{LOCAL_KEY_ID, sign_with};

/// Lifetime of a dev token: long enough for a demo, short enough to exercise expiry.
const TTL: Duration = Duration::from_secs(3600);

/// Signs local tokens with the stack's own key.
pub struct DevSigner {
    pair: RS256KeyPair,
}

impl std::fmt::Debug for DevSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevSigner(..)")
    }
}

impl DevSigner {
    /// Reads the private key PEM that `dropgate stack up` writes; fails at start when
    /// it is missing, rather than at the first sign-in.
    pub fn load(path: &Path) -> Result<Self> {
        let pem = std::fs::read_to_string(path).with_context(|| {
            format!(
                "Failed to read the dev signing key {}; run `dropgate stack up` first",
                path.display()
            )
        })?;
        let pair = RS256KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not an RSA private key PEM", path.display()))?
            .with_key_id(LOCAL_KEY_ID);
        Ok(Self { pair })
    }
}

/// Who to sign in as.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    platform: String,
    user: String,
}

/// The route, bound to `signer`.
pub(crate) fn router(signer: Arc<DevSigner>) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/dev/token", post(token))
        .with_state(signer)
}

async fn token(
    State(signer): State<Arc<DevSigner>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge(MAX_BODY_BYTES)
        } else {
            ApiError::MalformedBody(rejection.body_text())
        }
    })?;
    let request: TokenRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::MalformedBody(format!(
            "expected {{\"platform\": ..., \"user\": ...}}: {e}"
        ))
    })?;
    let user = UserKey::parse(&request.platform, &request.user)
        .map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    let token = sign_with(
        &signer.pair,
        user.platform_id.as_str(),
        user.user_id.as_str(),
        TTL,
    )
    .map_err(ApiError::Internal)?;
    tracing::debug!(user = %user, "dev token issued");
    let mut response = Json(json!({"token": token, "expires_in_s": TTL.as_secs()})).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
