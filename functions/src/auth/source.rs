//! Where verification keys come from: a JWKS file, a JWKS URL, or one PEM file. The
//! keys are reloaded every `DROPGATE_JWKS_REFRESH_SECS` in the background, so a key the
//! identity provider withdrew stops verifying tokens (cached ones included) within
//! that interval; an unknown `kid` also triggers a reload (at most every 10 s, so
//! garbage tokens cannot turn into a flood of fetches), which picks up a new key at
//! once. A fetch never holds a lock: requests meanwhile see the keys they saw before.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::keys::{Algorithm, KeySet, PublicKey};

/// Shortest time between two reloads triggered by unknown key ids.
const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Largest JWKS document read: a real one holds a handful of keys (a few KiB); a
/// larger answer is a misconfigured or hostile endpoint, not keys.
pub(super) const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Key-source flags (exactly one of the three).
#[derive(Debug, Clone, clap::Args)]
pub struct KeySourceArgs {
    /// A JWKS document on disk.
    #[arg(long, env = "DROPGATE_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (an identity provider's `.../jwks.json`); `https://` only (plain
    /// `http://` is accepted for a loopback address alone). Redirects are not followed
    /// and the document may be at most 256 KiB.
    #[arg(long, env = "DROPGATE_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// One PEM public key (RSA, P-256 or Ed25519).
    #[arg(long, env = "DROPGATE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The `kid` tokens signed with the PEM key carry (optional).
    #[arg(long, env = "DROPGATE_JWT_KEY_ID")]
    pub jwt_key_id: Option<String>,
    /// How often the keys are reloaded, in seconds: a key removed from the set stops
    /// verifying tokens (already verified ones included) within this time.
    #[arg(long, env = "DROPGATE_JWKS_REFRESH_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub jwks_refresh_secs: u64,
}

impl KeySourceArgs {
    /// Keys from a JWKS file, reloaded at the default interval.
    pub fn jwks_file(path: PathBuf) -> Self {
        Self {
            jwks_file: Some(path),
            jwks_url: None,
            jwt_public_key_file: None,
            jwt_key_id: None,
            jwks_refresh_secs: 300,
        }
    }

    /// Keys from a JWKS URL, reloaded at the default interval.
    pub fn jwks_url(url: String) -> Self {
        Self {
            jwks_file: None,
            jwks_url: Some(url),
            jwt_public_key_file: None,
            jwt_key_id: None,
            jwks_refresh_secs: 300,
        }
    }
}

#[derive(Debug, Clone)]
enum Origin {
    JwksFile(PathBuf),
    JwksUrl(reqwest::Url),
    Pem(PathBuf, Option<String>),
}

/// Keys plus where to reload them from.
#[derive(Debug)]
pub struct KeySource {
    origin: Origin,
    keys: RwLock<KeySet>,
    last_reload: Mutex<Instant>,
    refresh_every: Duration,
}

impl KeySource {
    /// Loads the keys once; fails fast with a clear message at start-up.
    pub async fn load(args: &KeySourceArgs) -> Result<Self> {
        let origin = match (&args.jwks_file, &args.jwks_url, &args.jwt_public_key_file) {
            (Some(path), None, None) => Origin::JwksFile(path.clone()),
            (None, Some(url), None) => Origin::JwksUrl(checked_url(url)?),
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
            refresh_every: Duration::from_secs(args.jwks_refresh_secs.max(1)),
        })
    }

    /// Reloads the keys every refresh interval until `source` is dropped.
    pub fn spawn_refresh(source: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(source);
        let every = source.refresh_every;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(source) = weak.upgrade() else {
                    return;
                };
                *source.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                source.reload().await;
            }
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
        let due = {
            let mut last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.elapsed() >= RELOAD_INTERVAL;
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            self.reload().await;
        }
        self.lookup(key_id, algorithm)
    }

    /// Whether (`kid`, `alg`) still names a key: a cached token verified with a key
    /// that has since left the set is verified again (and refused).
    pub(crate) fn still_has(&self, key_id: Option<&str>, algorithm: Algorithm) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .find(key_id, algorithm)
            .is_some()
    }

    async fn reload(&self) {
        match fetch(&self.origin).await {
            Ok(keys) => {
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            }
            Err(e) => {
                // Keep the last good keys: an identity provider's outage must not
                // sign everyone out.
                tracing::warn!(error = %format!("{e:#}"), "reloading token keys failed; keeping the last ones")
            }
        }
    }

    fn lookup(&self, key_id: Option<&str>, algorithm: Algorithm) -> Option<PublicKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .find(key_id, algorithm)
            .cloned()
    }
}

/// A JWKS URL, refused unless it is `https://` (or `http://` to a loopback address,
/// for a local identity provider): keys fetched in the clear could be swapped by
/// anyone on the path, and then any token verifies.
fn checked_url(text: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(text)
        .with_context(|| format!("DROPGATE_JWKS_URL {text:?} is not a URL"))?;
    let loopback = url.host_str().is_some_and(|host| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_or(host == "localhost", |ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => bail!(
            "the JWKS URL {text} is not https://: keys fetched in the clear can be replaced on the way, and then any token verifies"
        ),
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
            let bytes = fetch_url(url)
                .await
                .with_context(|| format!("Failed to fetch JWKS from {url}"))?;
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

/// GETs `url` without following redirects (a redirect could lead anywhere, plain
/// http included) and reads at most [`MAX_JWKS_BYTES`].
async fn fetch_url(url: &reqwest::Url) -> Result<Vec<u8>> {
    let mut response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(url.clone())
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        bail!("answered {status}; redirects are not followed");
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
    {
        bail!("the document is larger than {MAX_JWKS_BYTES} bytes");
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > MAX_JWKS_BYTES {
            bail!("the document is larger than {MAX_JWKS_BYTES} bytes");
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_a_jwks_url() {
        for ok in [
            "https://idp.example/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://[::1]:8080/jwks.json",
            "http://localhost/jwks.json",
        ] {
            assert!(checked_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://idp.example/jwks.json",
            "http://10.0.0.1/jwks.json",
            "ftp://idp.example/jwks.json",
            "file:///etc/jwks.json",
            "not a url",
        ] {
            assert!(checked_url(refused).is_err(), "{refused}");
        }
    }

    /// A loopback server answering `/redirect` with a 302 to `/keys`, `/huge` with a
    /// body over the cap, and `/keys` with `jwks`.
    async fn server(jwks: String) -> (String, tokio::task::JoinHandle<()>) {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let router = axum::Router::new()
            .route("/keys", get(move || async move { jwks }))
            .route(
                "/redirect",
                get(|| async { axum::response::Redirect::temporary("/keys") }),
            )
            .route("/huge", get(|| async { " ".repeat(MAX_JWKS_BYTES + 1) }));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (base, task)
    }

    #[tokio::test]
    async fn a_jwks_url_is_read_without_redirects_and_within_the_cap() {
        let key = jwt_simple::prelude::RS256KeyPair::generate(2048)
            .expect("key")
            .with_key_id("k1");
        let (base, task) = server(super::super::dev::jwks_for(&key)).await;
        let url = |path: &str| checked_url(&format!("{base}{path}")).expect("loopback");
        let keys = fetch(&Origin::JwksUrl(url("/keys"))).await.expect("keys");
        assert_eq!(keys.keys.len(), 1);
        let redirected = fetch(&Origin::JwksUrl(url("/redirect")))
            .await
            .expect_err("a redirect is not followed");
        assert!(format!("{redirected:#}").contains("307"), "{redirected:#}");
        let huge = fetch(&Origin::JwksUrl(url("/huge")))
            .await
            .expect_err("over the cap");
        assert!(format!("{huge:#}").contains("larger than"), "{huge:#}");
        task.abort();
    }
}
