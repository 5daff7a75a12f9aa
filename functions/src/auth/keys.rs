//! Verification keys: parsed from a JWKS document (RSA, P-256 and Ed25519 keys) or a
//! single PEM public key, each tagged with its `kid` and algorithm.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{
    ECDSAP256PublicKeyLike, ES256PublicKey, Ed25519PublicKey, EdDSAPublicKeyLike, JWTClaims,
    RS256PublicKey, TokenMetadata, VerificationOptions,
};
use serde::Deserialize;

use super::Claims;
use super::rs256::Rs256Key;

/// An algorithm dropgate accepts. Symmetric algorithms are deliberately absent: a
/// shared secret would let every holder mint tokens for any user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Algorithm {
    /// RSA PKCS#1 v1.5 with SHA-256: what most identity providers issue, and the
    /// cheapest of the three to verify (through ring, see `rs256.rs`).
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256 (about 14 times costlier to verify than RS256).
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

impl Algorithm {
    /// The JOSE name (`alg` header).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE `alg` value; anything else (`none`, `HS256`, ...) is `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa]
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
    }
}

/// One public key.
#[derive(Clone)]
pub enum PublicKey {
    /// RS256, ready for ring.
    Rs256(Box<Rs256Key>),
    /// ES256.
    Es256(Box<ES256PublicKey>),
    /// EdDSA (Ed25519).
    EdDsa(Box<Ed25519PublicKey>),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.algorithm().name())
    }
}

impl PublicKey {
    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::Rs256(_) => Algorithm::Rs256,
            PublicKey::Es256(_) => Algorithm::Es256,
            PublicKey::EdDsa(_) => Algorithm::EdDsa,
        }
    }

    /// Verifies signature and claims with `options`; `header` is the token's, as
    /// already read to find this key.
    pub(crate) fn verify(
        &self,
        token: &str,
        header: &TokenMetadata,
        options: &VerificationOptions,
    ) -> Result<JWTClaims<Claims>, jwt_simple::Error> {
        match self {
            PublicKey::Rs256(key) => key.verify_with_header::<Claims>(token, header, options),
            PublicKey::Es256(key) => key.verify_token::<Claims>(token, Some(options.clone())),
            PublicKey::EdDsa(key) => key.verify_token::<Claims>(token, Some(options.clone())),
        }
    }
}

/// A key and the id tokens name it by.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// `kid`; `None` only for a single PEM key.
    pub key_id: Option<String>,
    /// The key.
    pub key: PublicKey,
}

/// All keys from one source.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// Keys in document order.
    pub keys: Vec<KeyEntry>,
}

impl KeySet {
    /// The key for a token's `kid` and `alg`: by id when the token names one; a token
    /// without `kid` is accepted only when exactly one key of its algorithm exists.
    pub fn find(&self, key_id: Option<&str>, algorithm: Algorithm) -> Option<&PublicKey> {
        let mut candidates = self
            .keys
            .iter()
            .filter(|entry| entry.key.algorithm() == algorithm);
        match key_id {
            Some(id) => candidates
                .find(|entry| entry.key_id.as_deref() == Some(id))
                .map(|entry| &entry.key),
            None => {
                let first = candidates.next()?;
                candidates.next().is_none().then_some(&first.key)
            }
        }
    }

    /// Parses a JWKS document. Keys of unsupported types are skipped (providers
    /// publish encryption keys too), but a document with no usable key is an error.
    pub fn from_jwks(json: &[u8]) -> Result<Self> {
        let document: Jwks = serde_json::from_slice(json).context("JWKS is not valid JSON")?;
        let mut keys = Vec::new();
        for jwk in document.keys {
            if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => {
                    let n = decode(jwk.n.as_deref(), "n")?;
                    let e = decode(jwk.e.as_deref(), "e")?;
                    let key = RS256PublicKey::from_components(&n, &e)?;
                    PublicKey::Rs256(Box::new(Rs256Key::try_from(&key)?))
                }
                ("EC", Some("P-256")) => {
                    let mut point = vec![0x04];
                    point.extend(decode(jwk.x.as_deref(), "x")?);
                    point.extend(decode(jwk.y.as_deref(), "y")?);
                    PublicKey::Es256(Box::new(ES256PublicKey::from_bytes(&point)?))
                }
                ("OKP", Some("Ed25519")) => {
                    let x = decode(jwk.x.as_deref(), "x")?;
                    PublicKey::EdDsa(Box::new(Ed25519PublicKey::from_bytes(&x)?))
                }
                _ => continue,
            };
            if let Some(alg) = jwk.alg.as_deref()
                && alg != key.algorithm().name()
            {
                continue;
            }
            let key_id = jwk.kid.context("every JWKS key needs a kid")?;
            keys.push(KeyEntry {
                key_id: Some(key_id),
                key,
            });
        }
        if keys.is_empty() {
            bail!("the JWKS has no RS256, ES256 or EdDSA signing key");
        }
        Ok(Self { keys })
    }

    /// Parses one PEM public key (RSA, P-256 or Ed25519), optionally with a `kid`.
    pub fn from_pem(pem: &str, key_id: Option<String>) -> Result<Self> {
        let key = if let Ok(key) = RS256PublicKey::from_pem(pem) {
            PublicKey::Rs256(Box::new(Rs256Key::try_from(&key)?))
        } else if let Ok(key) = ES256PublicKey::from_pem(pem) {
            PublicKey::Es256(Box::new(key))
        } else if let Ok(key) = Ed25519PublicKey::from_pem(pem) {
            PublicKey::EdDsa(Box::new(key))
        } else {
            bail!("the PEM file holds no RSA, P-256 or Ed25519 public key");
        };
        Ok(Self {
            keys: vec![KeyEntry { key_id, key }],
        })
    }
}

fn decode(value: Option<&str>, field: &str) -> Result<Vec<u8>> {
    let value = value.with_context(|| format!("JWK without {field}"))?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .with_context(|| format!("JWK {field} is not base64url"))
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jwt_simple::prelude::{RS256KeyPair, VerificationOptions};

    use super::*;
    use crate::auth::dev::jwks_for;

    /// A provider's JWKS may still list an old RSA key shorter than 2048 bits: the
    /// document loads with it (tokens signed by it fail verification, RS256 here
    /// takes 2048 to 8192 bits) and its other keys verify as before.
    #[test]
    fn a_short_rsa_key_does_not_stop_the_others() -> Result<()> {
        // A 1024-bit modulus (jwt-simple will not generate one).
        let old = serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "old", "e": "AQAB",
            "n": "vd8xKwboaTw1DZqYxgp1HRhdCMlOpyfyVIMb8n5mA_lIUm3TeeWHoR1e4_GM07pHmDT5PyoXlza_NNZWu7S3jRLC_Ww8ydWN5e8kZkBLzLwxCGUWAXWMszOfCKt6oJafejeoQK8dLbvxVIsAm_A37KcgNHyPE0_inrsuhmET86U",
        });
        let pair = RS256KeyPair::generate(2048)?.with_key_id("new");
        let new: serde_json::Value = serde_json::from_str(&jwks_for(&pair))?;
        let both = serde_json::json!({"keys": [old, new["keys"][0].clone()]});
        let set = KeySet::from_jwks(&serde_json::to_vec(&both)?)?;
        let Some(PublicKey::Rs256(key)) = set.find(Some("new"), Algorithm::Rs256) else {
            panic!("the 2048-bit key is in the set");
        };
        let token = crate::auth::dev::sign_with(&pair, "web", "u-1", Duration::from_secs(60))?;
        let options = VerificationOptions {
            allowed_issuers: Some([crate::auth::dev::LOCAL_ISSUER.to_owned()].into()),
            ..VerificationOptions::default()
        };
        assert!(key.verify::<crate::auth::Claims>(&token, &options).is_ok());
        Ok(())
    }
}
