//! Verifying the OIDC token Pub/Sub attaches to every push request
//! (`Authorization: Bearer <JWT>`): an RS256 token signed by Google, issued by
//! `accounts.google.com`, whose audience is the one configured on the subscription
//! (the service's URL) and whose `email` is the push subscription's service account,
//! verified.
//!
//! Without this check anyone who can reach the service could push admissions and
//! results. Keys come from Google's JWKS (reloaded on an unknown `kid`, which is how
//! Google's key rotation is picked up), or from a file that tests sign for.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Result, bail};
use jwt_simple::prelude::{Token, VerificationOptions};
use serde::Deserialize;

use crate::auth::{
    Algorithm, AuthError, CLOCK_TOLERANCE, KeySource, KeySourceArgs, MAX_TOKEN_BYTES, PublicKey,
};

/// Google's OIDC signing keys.
pub const GOOGLE_CERTS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The issuers Google's tokens carry (both spellings occur).
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// The claims of a Google-signed token that matter here.
#[derive(Debug, Clone, Default, Deserialize)]
struct OidcClaims {
    #[serde(default)]
    email: Option<String>,
    /// Google sends a boolean; some tokens carry the string "true".
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

/// Why a push request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushAuthError {
    /// The token is missing, malformed, badly signed, expired, or for another
    /// issuer or audience (401).
    #[error(transparent)]
    Token(#[from] AuthError),
    /// The token's email is not marked verified (403).
    #[error("the push token's email is not verified")]
    EmailUnverified,
    /// The token belongs to another service account than the push subscription's
    /// (403).
    #[error("the push token was not issued to the configured push service account")]
    WrongServiceAccount,
}

impl PushAuthError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            PushAuthError::Token(error) => error.code(),
            PushAuthError::EmailUnverified => "email_unverified",
            PushAuthError::WrongServiceAccount => "wrong_service_account",
        }
    }
}

/// How push requests are authenticated.
#[derive(Debug)]
pub enum PushAuth {
    /// Every request must carry a valid Google OIDC token.
    Verify(Box<Verifier>),
    /// Nothing is checked. Only for the Pub/Sub emulator, which pushes without tokens;
    /// no flag or variable selects it, so a deployment cannot end up here.
    Unverified,
}

/// Checks tokens against keys, an audience and a service account.
#[derive(Debug)]
pub struct Verifier {
    keys: KeySource,
    audience: String,
    service_account: String,
}

impl PushAuth {
    /// Loads the keys (from a file or a URL) and fails at start-up, naming the
    /// variable, when the audience or the service account is missing.
    pub async fn load(
        jwks: &str,
        audience: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Self> {
        let Some(audience) = audience.filter(|value| !value.trim().is_empty()) else {
            bail!(
                "DROPGATE_PUSH_AUDIENCE is required with DROPGATE_TRANSPORT=pubsub (the service URL the subscription's token names)"
            );
        };
        let Some(service_account) = service_account.filter(|value| !value.trim().is_empty()) else {
            bail!(
                "DROPGATE_PUSH_SERVICE_ACCOUNT is required with DROPGATE_TRANSPORT=pubsub (the push subscription's service account email)"
            );
        };
        let source = if jwks.starts_with("https://") || jwks.starts_with("http://") {
            KeySourceArgs::jwks_url(jwks.to_owned())
        } else {
            KeySourceArgs::jwks_file(PathBuf::from(jwks))
        };
        let keys = KeySource::load(&source).await?;
        Ok(PushAuth::Verify(Box::new(Verifier {
            keys,
            audience: audience.trim().to_owned(),
            service_account: service_account.trim().to_ascii_lowercase(),
        })))
    }

    /// Checks an `Authorization` header value.
    pub async fn check(&self, authorization: Option<&str>) -> Result<(), PushAuthError> {
        match self {
            PushAuth::Unverified => Ok(()),
            PushAuth::Verify(verifier) => verifier.check(authorization).await,
        }
    }
}

impl Verifier {
    async fn check(&self, authorization: Option<&str>) -> Result<(), PushAuthError> {
        let header = authorization.ok_or(AuthError::MissingToken)?;
        if header.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
            return Err(AuthError::TokenTooLarge.into());
        }
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::MalformedToken)?;
        let metadata = Token::decode_metadata(token).map_err(|_| AuthError::MalformedToken)?;
        // Google signs with RS256 only; anything else (`none`, HS256 with the public
        // key as secret, ...) is refused before a key is looked at.
        if metadata.algorithm() != Algorithm::Rs256.name() {
            return Err(AuthError::WrongAlgorithm(metadata.algorithm().to_owned()).into());
        }
        let key_id = metadata.key_id().map(str::to_owned);
        let Some(PublicKey::Rs256(key)) = self.keys.find(key_id.as_deref(), Algorithm::Rs256).await
        else {
            return Err(AuthError::UnknownKeyId.into());
        };
        let options = VerificationOptions {
            allowed_issuers: Some(GOOGLE_ISSUERS.iter().map(|s| (*s).to_owned()).collect()),
            allowed_audiences: Some(HashSet::from([self.audience.clone()])),
            time_tolerance: Some(CLOCK_TOLERANCE.into()),
            max_token_length: Some(MAX_TOKEN_BYTES),
            required_key_id: key_id,
            accept_future: false,
            ..VerificationOptions::default()
        };
        let claims = key
            .verify::<OidcClaims>(token, &options)
            .map_err(crate::auth::classify)?;
        if claims.expires_at.is_none() {
            return Err(AuthError::MissingExpiry.into());
        }
        let verified = matches!(
            claims.custom.email_verified,
            Some(serde_json::Value::Bool(true))
        ) || matches!(&claims.custom.email_verified, Some(serde_json::Value::String(s)) if s == "true");
        if !verified {
            return Err(PushAuthError::EmailUnverified);
        }
        match claims.custom.email {
            Some(email) if email.to_ascii_lowercase() == self.service_account => Ok(()),
            _ => Err(PushAuthError::WrongServiceAccount),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_audience_and_the_service_account_are_required_by_name() {
        let missing_audience =
            PushAuth::load(GOOGLE_CERTS_URL, None, Some("sa@p.iam.gserviceaccount.com"))
                .await
                .expect_err("no audience");
        assert!(
            missing_audience
                .to_string()
                .contains("DROPGATE_PUSH_AUDIENCE"),
            "{missing_audience}"
        );
        let missing_account =
            PushAuth::load(GOOGLE_CERTS_URL, Some("https://svc.run.app"), Some(" "))
                .await
                .expect_err("no service account");
        assert!(
            missing_account
                .to_string()
                .contains("DROPGATE_PUSH_SERVICE_ACCOUNT"),
            "{missing_account}"
        );
    }

    #[tokio::test]
    async fn unverified_accepts_anything_and_verify_needs_a_token() {
        assert_eq!(PushAuth::Unverified.check(None).await, Ok(()));
        let dir = tempfile::tempdir().expect("dir");
        let jwks = dir.path().join("jwks.json");
        let pair = jwt_simple::prelude::RS256KeyPair::generate(2048)
            .expect("key")
            .with_key_id("k1");
        std::fs::write(&jwks, crate::auth::dev::jwks_for(&pair)).expect("write");
        let auth = PushAuth::load(
            jwks.to_str().expect("utf-8"),
            Some("https://svc.run.app"),
            Some("Push@P.iam.gserviceaccount.com"),
        )
        .await
        .expect("loads");
        assert_eq!(
            auth.check(None).await,
            Err(PushAuthError::Token(AuthError::MissingToken))
        );
        assert_eq!(
            auth.check(Some("Bearer ")).await,
            Err(PushAuthError::Token(AuthError::MalformedToken))
        );
    }
}
