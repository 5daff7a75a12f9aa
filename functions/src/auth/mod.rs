//! Authentication: the `Authorization: Bearer <JWT>` of every queue request turned
//! into a [`UserKey`], or a precise, client-facing error.
//!
//! jwt-simple's defaults are loose (15-minute clock tolerance, `exp` optional, 1 MB
//! tokens, header `kid` unchecked), so every option is set here: 30 s tolerance,
//! `exp` required, 8 KiB cap checked before any parsing, `iss` and `aud` required to
//! match, the `kid` must name a configured key, and only asymmetric algorithms from
//! the configured list are accepted, never `none` or HS*. Verified tokens are cached
//! (by SHA-256 of the token, until `exp`) so polls and stream reconnects do not pay for
//! a signature check again.

mod cache;
pub mod dev;
mod keys;
mod rs256;
mod source;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dropgate_core::UserKey;
use jwt_simple::JWTError;
use jwt_simple::prelude::{Token, VerificationOptions};
use serde::{Deserialize, Serialize};

pub use keys::{Algorithm, KeySet, PublicKey};
pub use rs256::Rs256Key;
pub use source::{KeySource, KeySourceArgs};

/// Longest token accepted; anything longer is refused before it is parsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(30);

/// The custom claims dropgate reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id on its platform.
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The platform the user signed in through.
    #[serde(
        rename = "platformId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub platform_id: Option<String>,
}

/// Why a request was not authenticated. Each has a stable code for clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No Authorization header.
    #[error("the request has no Authorization header; send `Authorization: Bearer <token>`")]
    MissingToken,
    /// Not `Bearer <token>`, or not a JWT.
    #[error("the access token is not a well-formed JWT")]
    MalformedToken,
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("the access token is larger than {MAX_TOKEN_BYTES} bytes")]
    TokenTooLarge,
    /// `alg` is not one of the configured asymmetric algorithms.
    #[error("the token's algorithm {0:?} is not accepted")]
    WrongAlgorithm(String),
    /// No configured key has the token's `kid`.
    #[error("no signing key matches the token's key id")]
    UnknownKeyId,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    InvalidSignature,
    /// Past `exp`.
    #[error("the access token has expired")]
    Expired,
    /// Before `nbf` (or issued in the future).
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// No `exp` claim.
    #[error("the access token has no expiry (exp) claim")]
    MissingExpiry,
    /// `iss` differs from the configured issuer.
    #[error("the token was issued by an issuer this service does not trust")]
    WrongIssuer,
    /// `aud` does not name this service.
    #[error("the token is not meant for this service (audience)")]
    WrongAudience,
    /// `userId`/`platformId` missing or invalid.
    #[error("the token's identity claims are invalid: {0}")]
    InvalidIdentity(String),
    /// Valid for longer than the policy allows (from `iat`, or from now without one).
    #[error(
        "the access token is valid for longer than this service accepts (at most {0} s); issue shorter-lived tokens"
    )]
    LifetimeTooLong(u64),
}

impl AuthError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::MalformedToken => "malformed_token",
            AuthError::TokenTooLarge => "token_too_large",
            AuthError::WrongAlgorithm(_) => "wrong_algorithm",
            AuthError::UnknownKeyId => "unknown_key_id",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::MissingExpiry => "token_missing_expiry",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::InvalidIdentity(_) => "invalid_identity_claims",
            AuthError::LifetimeTooLong(_) => "token_lifetime_too_long",
        }
    }
}

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Longest a token may be valid, `exp` minus `iat` (or minus now without `iat`):
    /// a leaked long-lived token would otherwise hold a place in every drop for years.
    pub max_lifetime_s: u64,
}

/// Verifies tokens against a key source and a policy.
#[derive(Debug)]
pub struct Authenticator {
    policy: AuthPolicy,
    /// The claim rules of `policy`, built once rather than on every token.
    options: VerificationOptions,
    keys: Arc<KeySource>,
    cache: cache::TokenCache,
    refresh: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        if let Some(refresh) = &self.refresh {
            refresh.abort();
        }
    }
}

impl Authenticator {
    /// An authenticator with a cache of up to `cache_capacity` verified tokens. Inside
    /// a Tokio runtime it reloads the keys in the background at the source's interval.
    pub fn new(policy: AuthPolicy, keys: KeySource, cache_capacity: usize) -> Self {
        let keys = Arc::new(keys);
        let refresh = tokio::runtime::Handle::try_current()
            .is_ok()
            .then(|| KeySource::spawn_refresh(&keys));
        // No required key id: the key is the one the token's own `kid` names, so
        // requiring that `kid` again could not fail.
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from([policy.issuer.clone()])),
            allowed_audiences: Some(HashSet::from([policy.audience.clone()])),
            time_tolerance: Some(CLOCK_TOLERANCE.into()),
            max_token_length: Some(MAX_TOKEN_BYTES),
            accept_future: false,
            ..VerificationOptions::default()
        };
        Self {
            policy,
            options,
            keys,
            cache: cache::TokenCache::new(cache_capacity),
            refresh,
        }
    }

    /// Authenticates an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<UserKey, AuthError> {
        let header = authorization.ok_or(AuthError::MissingToken)?;
        if header.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
            return Err(AuthError::TokenTooLarge);
        }
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::MalformedToken)?;
        let cached = cache::TokenHash::of(token);
        if let Some(verified) = self.cache.get(&cached, now_s()) {
            if self
                .keys
                .still_has(verified.key_id.as_deref(), verified.algorithm)
            {
                return Ok(verified.user);
            }
            // Its key was withdrawn: verify again, which refuses it.
            self.cache.forget(&cached);
        }
        let verified = self.verify(token).await?;
        let user = verified.user.clone();
        self.cache.insert(cached, verified);
        Ok(user)
    }

    async fn verify(&self, token: &str) -> Result<cache::Verified, AuthError> {
        let metadata = Token::decode_metadata(token).map_err(|_| AuthError::MalformedToken)?;
        let algorithm = Algorithm::from_name(metadata.algorithm())
            .filter(|algorithm| self.policy.algorithms.contains(algorithm))
            .ok_or_else(|| AuthError::WrongAlgorithm(metadata.algorithm().to_owned()))?;
        let key_id = metadata.key_id().map(str::to_owned);
        let key = self
            .keys
            .find(key_id.as_deref(), algorithm)
            .await
            .ok_or(AuthError::UnknownKeyId)?;
        let claims = key
            .verify(token, &metadata, &self.options)
            .map_err(classify)?;
        let expires_at = claims.expires_at.ok_or(AuthError::MissingExpiry)?.as_secs();
        let issued_at = claims
            .issued_at
            .map(|at| at.as_secs())
            .unwrap_or_else(now_s);
        let tolerance = CLOCK_TOLERANCE.as_secs();
        if expires_at.saturating_sub(issued_at) > self.policy.max_lifetime_s + tolerance {
            return Err(AuthError::LifetimeTooLong(self.policy.max_lifetime_s));
        }
        let custom = claims.custom;
        let user = UserKey::parse(
            custom.platform_id.as_deref().unwrap_or_default(),
            custom.user_id.as_deref().unwrap_or_default(),
        )
        .map_err(|e| AuthError::InvalidIdentity(e.to_string()))?;
        Ok(cache::Verified {
            user,
            expires_at,
            key_id: key_id.map(Arc::from),
            algorithm,
        })
    }
}

/// Maps jwt-simple's errors onto dropgate's codes (queue-api's tokens and Pub/Sub's
/// push tokens alike).
pub(crate) fn classify(error: jwt_simple::Error) -> AuthError {
    match error.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => AuthError::Expired,
        Some(JWTError::TokenNotValidYet | JWTError::ClockDrift) => AuthError::NotYetValid,
        Some(JWTError::InvalidSignature) => AuthError::InvalidSignature,
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
            AuthError::WrongIssuer
        }
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
            AuthError::WrongAudience
        }
        Some(JWTError::AlgorithmMismatch) => AuthError::WrongAlgorithm("mismatch".into()),
        Some(JWTError::RequiredKeyIdMismatch | JWTError::KeyIdentifierMismatch) => {
            AuthError::UnknownKeyId
        }
        Some(JWTError::TokenTooLong) => AuthError::TokenTooLarge,
        _ => AuthError::MalformedToken,
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default()
}
