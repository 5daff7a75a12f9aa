//! SASL/OAUTHBEARER tokens for Managed Kafka, minted from the workload's Google
//! credentials.
//!
//! The access token comes from the metadata server, which GKE (Workload Identity) and
//! Cloud Run both serve to a workload for its own service account. Managed Kafka does
//! not take the bare access token: it takes Google's documented wrapping of it, three
//! base64url parts joined by dots, a header `{"typ":"JWT","alg":"GOOG_OAUTH2_TOKEN"}`,
//! claims `{"exp","iat","scope":"kafka","sub":<service account e-mail>}`, and the
//! access token itself; the principal is the e-mail.
//!
//! librdkafka asks for a token from inside a consumer's poll, which runs on a tokio
//! worker, so the answer must not block: a background task keeps the current token
//! fresh (halfway to its expiry, well before librdkafka's own refresh at 80 %), and
//! the callback only reads it. The first token is fetched before any client is made,
//! so a workload without credentials fails at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rdkafka::client::OAuthToken;
use serde::Deserialize;

/// Where a GKE or Cloud Run workload reaches its metadata server.
pub const METADATA_URL: &str = "http://metadata.google.internal";

const SERVICE_ACCOUNT_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default";

/// The token Managed Kafka expects, for `access_token` of `principal` expiring at
/// `expires_at_s`, minted at `now_s` (both Unix seconds).
pub fn kafka_token(access_token: &str, principal: &str, expires_at_s: i64, now_s: i64) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"});
    let claims = serde_json::json!({
        "exp": expires_at_s,
        "iat": now_s,
        "scope": "kafka",
        "sub": principal,
    });
    [
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        access_token.as_bytes(),
    ]
    .map(|part| URL_SAFE_NO_PAD.encode(part))
    .join(".")
}

#[derive(Debug, Deserialize)]
struct AccessToken {
    access_token: String,
    expires_in: i64,
}

/// One minted token, ready for librdkafka.
#[derive(Clone)]
struct Minted {
    token: String,
    principal: String,
    expires_at_ms: i64,
}

/// A token kept fresh in the background; cheap to clone.
#[derive(Clone)]
pub struct GoogleTokens {
    current: Arc<RwLock<Minted>>,
}

impl std::fmt::Debug for GoogleTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GoogleTokens(***)")
    }
}

impl GoogleTokens {
    /// The process's token source for `metadata_url`, started on first use. Must be
    /// called inside the tokio runtime (it spawns the refresher).
    pub async fn shared(metadata_url: &str) -> Result<Self> {
        static SOURCES: Mutex<Option<HashMap<String, GoogleTokens>>> = Mutex::new(None);
        let known = |sources: &Mutex<Option<HashMap<String, GoogleTokens>>>| {
            sources
                .lock()
                .ok()
                .and_then(|guard| guard.as_ref()?.get(metadata_url).cloned())
        };
        if let Some(tokens) = known(&SOURCES) {
            return Ok(tokens);
        }
        let tokens = Self::start(metadata_url).await?;
        if let Ok(mut guard) = SOURCES.lock() {
            guard
                .get_or_insert_with(HashMap::new)
                .insert(metadata_url.to_owned(), tokens.clone());
        }
        Ok(tokens)
    }

    /// Fetches a first token from `metadata_url` and keeps it fresh from then on.
    pub async fn start(metadata_url: &str) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("Failed to build the metadata server client")?;
        let base = metadata_url.trim_end_matches('/').to_owned();
        let first = mint(&client, &base).await.with_context(|| {
            format!(
                "DROPGATE_KAFKA_SASL_MECHANISM=OAUTHBEARER: no Google access token from the \
                 metadata server at {base} (DROPGATE_GCP_METADATA_URL); the workload needs a \
                 service account"
            )
        })?;
        let tokens = Self {
            current: Arc::new(RwLock::new(first)),
        };
        tokio::spawn(refresh(client, base, Arc::clone(&tokens.current)));
        Ok(tokens)
    }

    /// The current token, in the form librdkafka's refresh callback returns.
    pub fn current(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let minted = self
            .current
            .read()
            .map_err(|_| "the token lock is poisoned")?
            .clone();
        Ok(OAuthToken {
            token: minted.token,
            principal_name: minted.principal,
            lifetime_ms: minted.expires_at_ms,
        })
    }
}

async fn mint(client: &reqwest::Client, base: &str) -> Result<Minted> {
    let get = |path: &str| {
        client
            .get(format!("{base}{SERVICE_ACCOUNT_PATH}/{path}"))
            .header("Metadata-Flavor", "Google")
    };
    let principal = get("email")
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?
        .trim()
        .to_owned();
    let access: AccessToken = get("token")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if principal.is_empty() || access.access_token.is_empty() || access.expires_in <= 0 {
        bail!("the metadata server answered without an e-mail, a token or an expiry");
    }
    let now_s = now_s();
    let expires_at_s = now_s + access.expires_in;
    Ok(Minted {
        token: kafka_token(&access.access_token, &principal, expires_at_s, now_s),
        principal,
        expires_at_ms: expires_at_s * 1000,
    })
}

/// Replaces the token halfway to its expiry, retrying every few seconds on failure
/// (the old token stays valid meanwhile).
async fn refresh(client: reqwest::Client, base: String, current: Arc<RwLock<Minted>>) {
    let mut wait = until_half_life(&current);
    loop {
        tokio::time::sleep(wait).await;
        match mint(&client, &base).await {
            Ok(minted) => {
                if let Ok(mut slot) = current.write() {
                    *slot = minted;
                }
                wait = until_half_life(&current);
                tracing::debug!(
                    wait_s = wait.as_secs(),
                    "refreshed the Kafka OAUTHBEARER token"
                );
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "could not refresh the Kafka OAUTHBEARER token; retrying");
                wait = Duration::from_secs(5);
            }
        }
    }
}

fn until_half_life(current: &RwLock<Minted>) -> Duration {
    let expires_at_ms = current
        .read()
        .map(|minted| minted.expires_at_ms)
        .unwrap_or(0);
    let left_ms = (expires_at_ms - now_s() * 1000).max(0);
    Duration::from_millis((left_ms / 2).max(5_000) as u64)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::get;

    fn decode(part: &str) -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part)?)?)
    }

    #[test]
    fn the_token_is_googles_wrapping_of_the_access_token() -> Result<()> {
        let token = kafka_token("ya29.secret", "drops@p.iam.gserviceaccount.com", 2000, 1000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0])?,
            serde_json::json!({"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"})
        );
        assert_eq!(
            decode(parts[1])?,
            serde_json::json!({"exp": 2000, "iat": 1000, "scope": "kafka",
                               "sub": "drops@p.iam.gserviceaccount.com"})
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2])?, b"ya29.secret");
        Ok(())
    }

    /// A metadata server that answers like GKE's, but only to requests carrying the
    /// `Metadata-Flavor: Google` header, as the real one does.
    async fn fake_metadata_server() -> Result<String> {
        fn flavoured(headers: &HeaderMap) -> bool {
            headers
                .get("metadata-flavor")
                .is_some_and(|v| v == "Google")
        }
        let app = Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/email",
                get(|headers: HeaderMap| async move {
                    if flavoured(&headers) {
                        Ok("drops@p.iam.gserviceaccount.com")
                    } else {
                        Err(axum::http::StatusCode::FORBIDDEN)
                    }
                }),
            )
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(|headers: HeaderMap| async move {
                    if flavoured(&headers) {
                        Ok(axum::Json(serde_json::json!({
                            "access_token": "ya29.fake", "expires_in": 3599, "token_type": "Bearer"
                        })))
                    } else {
                        Err(axum::http::StatusCode::FORBIDDEN)
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(format!("http://{address}"))
    }

    #[tokio::test]
    async fn a_token_is_minted_from_the_metadata_server() -> Result<()> {
        let url = fake_metadata_server().await?;
        let tokens = GoogleTokens::start(&url).await?;
        let token = tokens
            .current()
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        assert_eq!(token.principal_name, "drops@p.iam.gserviceaccount.com");
        let parts: Vec<&str> = token.token.split('.').collect();
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2])?, b"ya29.fake");
        let lifetime_s = token.lifetime_ms / 1000 - now_s();
        assert!((3500..=3599).contains(&lifetime_s), "{lifetime_s}");
        Ok(())
    }

    #[tokio::test]
    async fn no_metadata_server_fails_the_start_naming_the_setting() -> Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        drop(listener);
        let error = GoogleTokens::start(&url)
            .await
            .expect_err("nothing listens");
        let text = format!("{error:#}");
        assert!(text.contains("DROPGATE_GCP_METADATA_URL"), "{text}");
        assert!(!text.contains("ya29"), "{text}");
        Ok(())
    }
}
