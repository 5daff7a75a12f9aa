//! The throwaway certificate authority of a `--tls` stack: one CA, and one server
//! certificate it signed for `127.0.0.1` and `localhost` that Redis, PostgreSQL and
//! the broker's TLS terminator all present. Made once per state directory, in
//! `<state>/tls/`, readable by its owner only; the CA's own key is not kept, so
//! nothing else can ever be signed by it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Where a stack's certificates are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackCerts {
    /// The CA certificate clients trust (PEM).
    pub ca: PathBuf,
    /// The servers' certificate (PEM).
    pub server_cert: PathBuf,
    /// The servers' private key (PEM, mode 0600).
    pub server_key: PathBuf,
}

impl StackCerts {
    /// The files of the stack at `state_dir` (made or not).
    pub fn in_state_dir(state_dir: &Path) -> Self {
        let dir = state_dir.join("tls");
        Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }

    /// Makes the CA and the server certificate unless they exist.
    pub fn ensure(&self) -> Result<()> {
        if self.ca.exists() && self.server_cert.exists() && self.server_key.exists() {
            return Ok(());
        }
        let (ca, cert, key) = generate("dropgate local stack CA")?;
        let dir = self.ca.parent().context("the CA file has no directory")?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        write_private(&self.server_key, key.as_bytes())?;
        std::fs::write(&self.server_cert, cert)?;
        std::fs::write(&self.ca, ca)?;
        Ok(())
    }
}

/// A fresh CA named `ca_name` and a server certificate it signed for the loopback
/// address: (CA PEM, server certificate PEM, server key PEM). Tests use it to make a
/// second, untrusted CA.
pub fn generate(ca_name: &str) -> Result<(String, String, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
    server_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    server_params
        .distinguished_name
        .push(DnType::CommonName, "dropgate local stack");
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca)?;
    Ok((ca.pem(), server.pem(), server_key.serialize_pem()))
}

/// Writes `bytes` to `path`, readable by the owner alone from the first byte.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("Failed to write {}", path.display()))
}
