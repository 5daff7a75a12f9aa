//! Where verification keys come from: a JWKS file, a JWKS URL, or one PEM file. An
//! unknown `kid` triggers a reload (at most every 10 s, so garbage tokens cannot turn
//! into a flood of fetches), which is how identity providers' key rotation is picked up.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::Mutex;

use super::keys::{Algorithm, KeySet, PublicKey};

/// Shortest time between two reloads triggered by unknown key ids.
const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Key-source flags (exactly one of the three).
#[derive(Debug, Clone, clap::Args)]
pub struct KeySourceArgs {
    /// A JWKS document on disk.
    #[arg(long, env = "DROPGATE_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (an identity provider's `.../jwks.json`).
    #[arg(long, env = "DROPGATE_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// One PEM public key (RSA, P-256 or Ed25519).
    #[arg(long, env = "DROPGATE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The `kid` tokens signed with the PEM key carry (optional).
    #[arg(long, env = "DROPGATE_JWT_KEY_ID")]
    pub jwt_key_id: Option<String>,
}

#[derive(Debug, Clone)]
enum Origin {
    JwksFile(PathBuf),
    JwksUrl(String),
    Pem(PathBuf, Option<String>),
}

/// Keys plus where to reload them from.
#[derive(Debug)]
pub struct KeySource {
    origin: Origin,
    keys: RwLock<KeySet>,
    last_reload: Mutex<Instant>,
}

impl KeySource {
    /// Loads the keys once; fails fast with a clear message at start-up.
    pub async fn load(args: &KeySourceArgs) -> Result<Self> {
        let origin = match (&args.jwks_file, &args.jwks_url, &args.jwt_public_key_file) {
            (Some(path), None, None) => Origin::JwksFile(path.clone()),
            (None, Some(url), None) => Origin::JwksUrl(url.clone()),
            (None, None, Some(path)) => Origin::Pem(path.clone(), args.jwt_key_id.clone()),
            _ => bail!(
                "configure exactly one token key source: --jwks-file, --jwks-url or --jwt-public-key-file"
            ),
        };
        let keys = fetch(&origin).await?;
        Ok(Self {
            origin,
            keys: RwLock::new(keys),
            last_reload: Mutex::new(Instant::now()),
        })
    }

    /// The key for (`kid`, `alg`), reloading once if it is unknown.
    pub(crate) async fn find(
        &self,
        key_id: Option<&str>,
        algorithm: Algorithm,
    ) -> Option<PublicKey> {
        if let Some(key) = self.lookup(key_id, algorithm) {
            return Some(key);
        }
        {
            let mut last = self.last_reload.lock().await;
            if last.elapsed() >= RELOAD_INTERVAL {
                *last = Instant::now();
                match fetch(&self.origin).await {
                    Ok(keys) => {
                        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "reloading token keys failed")
                    }
                }
            }
        }
        self.lookup(key_id, algorithm)
    }

    fn lookup(&self, key_id: Option<&str>, algorithm: Algorithm) -> Option<PublicKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .find(key_id, algorithm)
            .cloned()
    }
}

async fn fetch(origin: &Origin) -> Result<KeySet> {
    match origin {
        Origin::JwksFile(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("Failed to read JWKS {}", path.display()))?;
            KeySet::from_jwks(&bytes).with_context(|| format!("in {}", path.display()))
        }
        Origin::JwksUrl(url) => {
            let bytes = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("Failed to fetch JWKS from {url}"))?
                .bytes()
                .await?;
            KeySet::from_jwks(&bytes).with_context(|| format!("in JWKS from {url}"))
        }
        Origin::Pem(path, key_id) => {
            let pem = tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("Failed to read {}", path.display()))?;
            KeySet::from_pem(&pem, key_id.clone()).with_context(|| format!("in {}", path.display()))
        }
    }
}
