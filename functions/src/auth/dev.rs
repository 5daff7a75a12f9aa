//! Local development tokens: an RS256 key pair kept in the local stack's state dir,
//! its public half published as a JWKS file that queue-api is pointed at, and
//! `dropgate token` to sign a token for any user. There is no unsigned-token mode:
//! local tokens go through the same verification as production ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{Claims as JwtClaims, RS256KeyPair, RSAKeyPairLike};

use super::Claims;

/// `iss` of local tokens.
pub const LOCAL_ISSUER: &str = "dropgate-local";
/// `aud` of local tokens (and queue-api's default audience locally).
pub const LOCAL_AUDIENCE: &str = "dropgate";
/// `kid` of the local key.
pub const LOCAL_KEY_ID: &str = "dropgate-local-1";

/// The local key pair's files.
#[derive(Debug, Clone)]
pub struct DevKeys {
    /// Private key (PEM, mode 0600).
    pub private_key: PathBuf,
    /// Public JWKS.
    pub jwks: PathBuf,
}

impl DevKeys {
    /// The files under `<state dir>/auth/`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        let dir = state_dir.join("auth");
        Self {
            private_key: dir.join("dev-private-key.pem"),
            jwks: dir.join("jwks.json"),
        }
    }

    /// Creates the key pair unless it exists.
    pub fn ensure(&self) -> Result<()> {
        if self.private_key.exists() && self.jwks.exists() {
            return Ok(());
        }
        if let Some(dir) = self.private_key.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let pair = RS256KeyPair::generate(2048)?.with_key_id(LOCAL_KEY_ID);
        write_private(&self.private_key, &pair.to_pem()?)?;
        std::fs::write(&self.jwks, jwks_for(&pair))?;
        Ok(())
    }

    /// Signs a token for (`platform`, `user`) valid for `ttl`.
    pub fn sign(&self, platform: &str, user: &str, ttl: Duration) -> Result<String> {
        let pem = std::fs::read_to_string(&self.private_key).with_context(|| {
            format!(
                "no local signing key at {}; run `dropgate stack up` first",
                self.private_key.display()
            )
        })?;
        let pair = RS256KeyPair::from_pem(&pem)?.with_key_id(LOCAL_KEY_ID);
        sign_with(&pair, platform, user, ttl)
    }
}

/// Signs a dropgate token with `pair` (also used by tests and the load generator).
pub fn sign_with(pair: &RS256KeyPair, platform: &str, user: &str, ttl: Duration) -> Result<String> {
    let claims = JwtClaims::with_custom_claims(
        Claims {
            user_id: Some(user.to_owned()),
            platform_id: Some(platform.to_owned()),
        },
        ttl.into(),
    )
    .with_issuer(LOCAL_ISSUER)
    .with_audience(LOCAL_AUDIENCE)
    .with_subject(format!("{platform}:{user}"));
    pair.sign(claims)
}

/// The JWKS document publishing `pair`'s public key.
pub fn jwks_for(pair: &RS256KeyPair) -> String {
    let components = pair.public_key().to_components();
    serde_json::json!({
        "keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": pair.key_id().clone().unwrap_or_else(|| LOCAL_KEY_ID.to_owned()),
            "n": URL_SAFE_NO_PAD.encode(components.n),
            "e": URL_SAFE_NO_PAD.encode(components.e),
        }]
    })
    .to_string()
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Failed to write {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}
