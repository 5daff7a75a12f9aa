//! RS256 token verification with AWS-LC's RSA (aws-lc-rs), the same steps and errors
//! as jwt-simple's own `verify_token`, claims checked by the same rules.
//!
//! Why not jwt-simple's: its fast backend (BoringSSL) cannot share a binary with the
//! OpenSSL librdkafka needs for TLS, and its pure-Rust backend verifies an RS256
//! signature in about 330 µs of queue-api's CPU here (`make bench`: 394-406 µs per
//! enter against 62-71 µs with BoringSSL). AWS-LC's symbols are prefixed, so it links
//! next to OpenSSL. Why AWS-LC rather than ring: ring takes the key as components on
//! every call and rebuilds its Montgomery constants each time, while an AWS-LC key is
//! parsed once and keeps them: 14.0 µs per 2048-bit verification against ring's
//! 19.6 µs on the bench machine (a loop of 20,000 verifications of one token, release
//! build). Everything but the signature stays jwt-simple's: header parsing, the claims
//! types, the error kinds that `classify` maps. Queue-api's tokens and Pub/Sub's push
//! tokens both come through here; ES256 and EdDSA still verify through jwt-simple.

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{
    Clock, JWTClaims, RS256PublicKey, Token, TokenMetadata, VerificationOptions,
};
use jwt_simple::{Error, JWTError};
use serde::de::DeserializeOwned;

/// An RS256 public key parsed once, when it is loaded, rather than on every token.
#[derive(Clone)]
pub struct Rs256Key {
    key: ParsedPublicKey,
}

impl TryFrom<&RS256PublicKey> for Rs256Key {
    type Error = anyhow::Error;

    fn try_from(key: &RS256PublicKey) -> anyhow::Result<Self> {
        let der = key.to_der()?;
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map_err(|error| anyhow::anyhow!("the RSA key cannot verify RS256 tokens: {error}"))?;
        Ok(Self { key })
    }
}

impl Rs256Key {
    /// Verifies `token`'s RS256 signature and its claims with `options`.
    pub(crate) fn verify<CustomClaims: DeserializeOwned>(
        &self,
        token: &str,
        options: &VerificationOptions,
    ) -> Result<JWTClaims<CustomClaims>, Error> {
        verify(&self.key, token, None, options)
    }

    /// [`Rs256Key::verify`] for a caller that has already read the token's header
    /// (to pick the key), so it is not decoded twice.
    pub(crate) fn verify_with_header<CustomClaims: DeserializeOwned>(
        &self,
        token: &str,
        header: &TokenMetadata,
        options: &VerificationOptions,
    ) -> Result<JWTClaims<CustomClaims>, Error> {
        verify(&self.key, token, Some(header), options)
    }
}

fn verify<CustomClaims: DeserializeOwned>(
    key: &ParsedPublicKey,
    token: &str,
    header: Option<&TokenMetadata>,
    options: &VerificationOptions,
) -> Result<JWTClaims<CustomClaims>, Error> {
    if let Some(max) = options.max_token_length
        && token.len() > max
    {
        return Err(JWTError::TokenTooLong.into());
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JWTError::CompactEncodingError.into());
    };
    let decoded;
    let header = match header {
        Some(header) => header,
        None => {
            decoded = Token::decode_metadata(token)?;
            &decoded
        }
    };
    if header
        .critical()
        .is_some_and(|critical| !critical.is_empty())
    {
        return Err(JWTError::UnknownCriticalExtension.into());
    }
    if let Some(signature_type) = header.signature_type() {
        let upper = signature_type.to_uppercase();
        if upper != "JWT" && !upper.ends_with("+JWT") {
            return Err(JWTError::NotJWT.into());
        }
    }
    if header.algorithm() != "RS256" {
        return Err(JWTError::AlgorithmMismatch.into());
    }
    if let Some(required) = &options.required_key_id {
        match header.key_id() {
            Some(key_id) if key_id == required => {}
            Some(_) => return Err(JWTError::KeyIdentifierMismatch.into()),
            None => return Err(JWTError::MissingJWTKeyIdentifier.into()),
        }
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JWTError::InvalidSignature)?;
    let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
    key.verify_sig(signed.as_bytes(), &signature)
        .map_err(|_| JWTError::InvalidSignature)?;
    let claims: JWTClaims<CustomClaims> = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| JWTError::CompactEncodingError)?,
    )?;
    validate(&claims, options)?;
    Ok(claims)
}

/// jwt-simple's claim rules for the options dropgate sets (issuer, audience, clock
/// tolerance, no future-dated tokens); options dropgate never sets are refused
/// outright, so a later change cannot silently skip them.
fn validate<CustomClaims>(
    claims: &JWTClaims<CustomClaims>,
    options: &VerificationOptions,
) -> Result<(), Error> {
    if options.reject_before.is_some()
        || options.max_validity.is_some()
        || options.required_subject.is_some()
        || options.required_nonce.is_some()
        || options.accept_future
    {
        return Err(anyhow::anyhow!(
            "RS256 verification: unsupported verification option"
        ));
    }
    let now = options
        .artificial_time
        .unwrap_or_else(Clock::now_since_epoch);
    let tolerance = options.time_tolerance.unwrap_or_default();
    if let Some(issued_at) = claims.issued_at
        && issued_at > now + tolerance
    {
        return Err(JWTError::ClockDrift.into());
    }
    if let Some(invalid_before) = claims.invalid_before
        && now + tolerance < invalid_before
    {
        return Err(JWTError::TokenNotValidYet.into());
    }
    if let Some(expires_at) = claims.expires_at
        && !(now >= tolerance && now - tolerance <= expires_at)
    {
        return Err(JWTError::TokenHasExpired.into());
    }
    if let Some(allowed) = &options.allowed_issuers {
        match &claims.issuer {
            Some(issuer) if allowed.contains(issuer) => {}
            Some(_) => return Err(JWTError::RequiredIssuerMismatch.into()),
            None => return Err(JWTError::RequiredIssuerMissing.into()),
        }
    }
    if let Some(allowed) = &options.allowed_audiences {
        match &claims.audiences {
            Some(audiences) if audiences.contains(allowed) => {}
            Some(_) => return Err(JWTError::RequiredAudienceMismatch.into()),
            None => return Err(JWTError::RequiredAudienceMissing.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use jwt_simple::prelude::*;

    use super::*;

    /// The set jwt-simple's options take, from one value.
    fn one(value: &str) -> HashSet<String> {
        HashSet::from([value.to_owned()])
    }

    /// Every case judged the same way by this module and by jwt-simple itself.
    #[test]
    fn agrees_with_jwt_simple_on_every_case() -> Result<(), Error> {
        let pair = RS256KeyPair::generate(2048)?.with_key_id("k1");
        let other = RS256KeyPair::generate(2048)?.with_key_id("k1");
        let public = pair.public_key();
        let ours_key = Rs256Key::try_from(&public)?;
        let options = VerificationOptions {
            allowed_issuers: Some(one("iss")),
            allowed_audiences: Some(one("aud")),
            time_tolerance: Some(Duration::from_secs(30)),
            max_token_length: Some(4096),
            required_key_id: Some("k1".to_owned()),
            accept_future: false,
            ..VerificationOptions::default()
        };
        let claims = |valid: Duration| {
            Claims::create(valid)
                .with_issuer("iss")
                .with_audience("aud")
                .with_subject("u")
        };
        let expired = {
            let mut expired = claims(Duration::from_secs(60));
            expired.expires_at = Some(Clock::now_since_epoch() - Duration::from_secs(3600));
            expired
        };
        let future = claims(Duration::from_secs(60))
            .invalid_before(Clock::now_since_epoch() + Duration::from_secs(3600));
        let good = pair.sign(claims(Duration::from_secs(60)))?;
        let mut tampered = good.clone();
        tampered.push('A');
        let cases = [
            good.clone(),
            tampered,
            other.sign(claims(Duration::from_secs(60)))?,
            pair.sign(expired)?,
            pair.sign(future)?,
            pair.sign(claims(Duration::from_secs(60)).with_issuer("someone"))?,
            pair.sign(claims(Duration::from_secs(60)).with_audience("elsewhere"))?,
            pair.clone()
                .with_key_id("k2")
                .sign(claims(Duration::from_secs(60)))?,
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{good}{}", "A".repeat(5000)),
        ];
        for (n, token) in cases.iter().enumerate() {
            let ours = ours_key.verify::<NoCustomClaims>(token, &options);
            let theirs = public.verify_token::<NoCustomClaims>(token, Some(options.clone()));
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "case {n}: {ours:?} vs {theirs:?}"
            );
            if let (Err(ours), Err(theirs)) = (&ours, &theirs) {
                assert_eq!(
                    ours.downcast_ref::<JWTError>().map(ToString::to_string),
                    theirs.downcast_ref::<JWTError>().map(ToString::to_string),
                    "case {n}"
                );
            }
        }
        assert!(ours_key.verify::<NoCustomClaims>(&good, &options).is_ok());
        Ok(())
    }
}
