//! Local development tokens: an RS256 key pair kept in the local stack's state dir,
//! its public half published as a JWKS file that queue-api is pointed at, and
//! `dropgate token` to sign a token for any user. There is no unsigned-token mode:
//! local tokens go through the same verification as production ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{Claims as JwtClaims, JWTClaims, RS256KeyPair, RSAKeyPairLike};

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
        TokenSigner::local(self)?.sign(platform, user, ttl)
    }
}

/// Signs many local tokens fast: the crowd of `make local` and the benchmarks sign
/// one per simulated user before timing. jwt-simple's pure-Rust RSA signs a 2048-bit
/// token in about 1,480 µs here; AWS-LC in about 300 µs (2,000 signatures in a loop,
/// release build), which is a million users' tokens in minutes rather than a quarter
/// of an hour. The tokens are the same as [`sign_with`]'s: same header, claims and
/// key, checked against jwt-simple's own verification in the tests.
pub struct TokenSigner {
    key: aws_lc_rs::signature::RsaKeyPair,
    header_b64: String,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// The signer of `pair`'s key; its tokens name `pair`'s key id or the local one.
    pub fn new(pair: &RS256KeyPair) -> Result<Self> {
        let der = pair.to_der()?;
        let key = aws_lc_rs::signature::RsaKeyPair::from_der(&der)
            .or_else(|_| aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der))
            .map_err(|error| anyhow::anyhow!("the RSA private key cannot sign: {error}"))?;
        let key_id = pair
            .key_id()
            .clone()
            .unwrap_or_else(|| LOCAL_KEY_ID.to_owned());
        let header = serde_json::json!({"alg": "RS256", "kid": key_id, "typ": "JWT"});
        Ok(Self {
            key,
            header_b64: URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            rng: aws_lc_rs::rand::SystemRandom::new(),
        })
    }

    /// The signer of the local key in `keys`.
    pub fn local(keys: &DevKeys) -> Result<Self> {
        let pem = std::fs::read_to_string(&keys.private_key).with_context(|| {
            format!(
                "no local signing key at {}; run `dropgate stack up` first",
                keys.private_key.display()
            )
        })?;
        Self::new(&RS256KeyPair::from_pem(&pem)?.with_key_id(LOCAL_KEY_ID))
    }

    /// A token for (`platform`, `user`) valid for `ttl`.
    pub fn sign(&self, platform: &str, user: &str, ttl: Duration) -> Result<String> {
        let claims = local_claims(platform, user, ttl);
        let mut token = self.header_b64.clone();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&claims)?, &mut token);
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &self.rng,
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

fn local_claims(platform: &str, user: &str, ttl: Duration) -> JWTClaims<Claims> {
    JwtClaims::with_custom_claims(
        Claims {
            user_id: Some(user.to_owned()),
            platform_id: Some(platform.to_owned()),
        },
        ttl.into(),
    )
    .with_issuer(LOCAL_ISSUER)
    .with_audience(LOCAL_AUDIENCE)
    .with_subject(format!("{platform}:{user}"))
}

/// Signs a dropgate token with `pair` (also used by tests and the load generator).
pub fn sign_with(pair: &RS256KeyPair, platform: &str, user: &str, ttl: Duration) -> Result<String> {
    pair.sign(local_claims(platform, user, ttl))
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

#[cfg(test)]
mod tests {
    use jwt_simple::prelude::{RSAPublicKeyLike, Token, VerificationOptions};

    use super::*;

    fn part(token: &str, index: usize) -> serde_json::Value {
        let text = token.split('.').nth(index).expect("three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).expect("base64url")).expect("JSON")
    }

    /// A fast signer's token is the token `sign_with` makes: the same header and
    /// claims, and both jwt-simple and queue-api's own RS256 path accept it.
    #[test]
    fn fast_tokens_are_the_tokens_jwt_simple_makes() -> Result<()> {
        let pair = RS256KeyPair::generate(2048)?.with_key_id(LOCAL_KEY_ID);
        let signer = TokenSigner::new(&pair)?;
        let ttl = Duration::from_secs(600);
        let fast = signer.sign("web", "u-1", ttl)?;
        let slow = sign_with(&pair, "web", "u-1", ttl)?;
        assert_eq!(part(&fast, 0), part(&slow, 0), "headers");
        let (mut fast_claims, mut slow_claims) = (part(&fast, 1), part(&slow, 1));
        for moment in ["iat", "exp", "nbf"] {
            let (a, b) = (&fast_claims[moment], &slow_claims[moment]);
            assert!(
                (a.as_u64().unwrap_or(0)).abs_diff(b.as_u64().unwrap_or(0)) <= 2,
                "{moment}: {a} vs {b}"
            );
            fast_claims[moment] = serde_json::Value::Null;
            slow_claims[moment] = serde_json::Value::Null;
        }
        assert_eq!(fast_claims, slow_claims, "claims");
        assert_eq!(Token::decode_metadata(&fast)?.key_id(), Some(LOCAL_KEY_ID));

        let options = VerificationOptions {
            allowed_issuers: Some([LOCAL_ISSUER.to_owned()].into()),
            allowed_audiences: Some([LOCAL_AUDIENCE.to_owned()].into()),
            ..VerificationOptions::default()
        };
        let public = pair.public_key();
        let theirs = public.verify_token::<Claims>(&fast, Some(options.clone()))?;
        assert_eq!(theirs.custom.user_id.as_deref(), Some("u-1"));
        let ours = crate::auth::Rs256Key::try_from(&public)?.verify::<Claims>(&fast, &options)?;
        assert_eq!(ours.custom.platform_id.as_deref(), Some("web"));

        let mut forged = fast.clone();
        forged.replace_range(fast.len() - 4.., "AAAA");
        assert!(
            public
                .verify_token::<Claims>(&forged, Some(options))
                .is_err()
        );
        Ok(())
    }
}
