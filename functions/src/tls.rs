//! Encrypted connections to the stores: the one rustls crypto provider of the process,
//! and the CA files that say which server certificates to trust.
//!
//! Each store's settings live with its connection settings (`config.rs`, `kafka.rs`);
//! this module holds what they share. The rule for all of them: a connection that
//! should be encrypted and is not, or whose server cannot be verified, fails at start
//! with a sentence naming the setting. Nothing falls back to plaintext.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The variable that makes every store connection require TLS with a verified
/// server certificate (deployments set it; the local stack without `--tls` does not).
pub const REQUIRE_TLS_ENV: &str = "DROPGATE_REQUIRE_TLS";

/// Makes ring the process-wide rustls provider. Redis' TLS client asks rustls for the
/// process default, which rustls cannot pick by itself when a build links more than
/// one provider (the Pub/Sub client brings aws-lc). Idempotent; every binary calls it
/// before connecting.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is all this wants.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a PEM CA bundle for the setting named `setting`, and checks it holds at least
/// one certificate, so a wrong path or an empty secret fails at start, not at the
/// first handshake.
pub fn read_ca_file(path: &Path, setting: &str) -> Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("{setting}: cannot read the CA file {}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            anyhow::anyhow!(
                "{setting}: {} is not a PEM certificate bundle: {error}",
                path.display()
            )
        })?;
    if certificates.is_empty() {
        bail!(
            "{setting}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n")?;
        let error = read_ca_file(&empty, "DROPGATE_REDIS_CA_FILE").expect_err("no certificate");
        assert!(
            format!("{error:#}").contains("DROPGATE_REDIS_CA_FILE"),
            "{error:#}"
        );

        let missing = read_ca_file(&dir.path().join("missing.pem"), "DROPGATE_KAFKA_CA_FILE")
            .expect_err("no file");
        assert!(
            format!("{missing:#}").contains("DROPGATE_KAFKA_CA_FILE: cannot read"),
            "{missing:#}"
        );

        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem())?;
        read_ca_file(&good, "DROPGATE_REDIS_CA_FILE")?;
        Ok(())
    }
}
