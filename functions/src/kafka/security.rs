//! How a Kafka client is encrypted and authenticated: the `DROPGATE_KAFKA_*` security
//! settings, checked for contradictions at start, then written into librdkafka's
//! configuration.
//!
//! Managed Kafka takes SASL/OAUTHBEARER over TLS with tokens minted from the
//! workload's Google credentials ([`super::google_token`]); other brokers take
//! SASL/PLAIN or SCRAM with a user name and password. Plaintext stays the default, for
//! the local stack.

use std::path::PathBuf;

use anyhow::{Result, bail};
use rdkafka::ClientConfig;

use crate::config::Secret;
use crate::tls::{REQUIRE_TLS_ENV, read_ca_file};

/// The transport between client and broker (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SecurityProtocol {
    /// No encryption, no authentication: the local stack.
    #[default]
    Plaintext,
    /// TLS, no SASL.
    Ssl,
    /// SASL without TLS: the password or token crosses the network in the clear.
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    /// SASL over TLS: what Managed Kafka takes.
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn encrypted(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// The SASL mechanism (librdkafka's `sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    /// User name and password, sent as they are (so only over TLS).
    #[value(name = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
    /// Google access tokens of the workload's service account, refreshed before they
    /// expire (Managed Kafka).
    #[value(name = "OAUTHBEARER")]
    OAuthBearer,
}

impl SaslMechanism {
    fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// The Kafka connection's security settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaSecurityArgs {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (Managed Kafka).
    #[arg(
        id = "kafka_security_protocol",
        long = "kafka-security-protocol",
        env = "DROPGATE_KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value_t = SecurityProtocol::Plaintext
    )]
    pub protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER` (Managed Kafka, with
    /// tokens from the workload's Google credentials); needed with a `sasl_*` protocol.
    #[arg(
        id = "kafka_sasl_mechanism",
        long = "kafka-sasl-mechanism",
        env = "DROPGATE_KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true
    )]
    pub mechanism: Option<SaslMechanism>,
    /// SASL user name (PLAIN and SCRAM).
    #[arg(
        id = "kafka_sasl_username",
        long = "kafka-sasl-username",
        env = "DROPGATE_KAFKA_SASL_USERNAME"
    )]
    pub username: Option<String>,
    /// SASL password (PLAIN and SCRAM).
    #[arg(
        id = "kafka_sasl_password",
        long = "kafka-sasl-password",
        env = "DROPGATE_KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<Secret<String>>,
    /// PEM file of the CA that signed the brokers' certificates, for a private CA;
    /// without it the system's trusted roots are used (enough for Managed Kafka).
    #[arg(
        id = "kafka_ca_file",
        long = "kafka-ca-file",
        env = "DROPGATE_KAFKA_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// Refuse to start unless the brokers are reached over TLS (`DROPGATE_REQUIRE_TLS`
    /// covers Redis, PostgreSQL and Kafka at once).
    #[arg(id = "kafka_require_tls",
        long = "kafka-require-tls", env = REQUIRE_TLS_ENV)]
    pub require_tls: bool,
    /// Base URL of the metadata server that mints OAUTHBEARER tokens (a test points it
    /// at a fake).
    #[arg(
        id = "gcp_metadata_url",
        long = "gcp-metadata-url",
        env = "DROPGATE_GCP_METADATA_URL",
        default_value = super::google_token::METADATA_URL
    )]
    pub metadata_url: String,
}

impl KafkaSecurityArgs {
    /// Checks the settings agree with each other and with `DROPGATE_REQUIRE_TLS`, and
    /// writes them into `config`. Never logs the password.
    pub fn apply(&self, config: &mut ClientConfig) -> Result<()> {
        let protocol = self.protocol;
        if self.require_tls && !protocol.encrypted() {
            bail!(
                "{REQUIRE_TLS_ENV} is set but DROPGATE_KAFKA_SECURITY_PROTOCOL is {}; use \
                 sasl_ssl (or ssl)",
                protocol.name()
            );
        }
        if let Some(path) = &self.ca_file {
            if !protocol.encrypted() {
                bail!(
                    "DROPGATE_KAFKA_CA_FILE is set but DROPGATE_KAFKA_SECURITY_PROTOCOL is \
                     {}, which does not use TLS; use sasl_ssl or ssl",
                    protocol.name()
                );
            }
            read_ca_file(path, "DROPGATE_KAFKA_CA_FILE")?;
            config.set("ssl.ca.location", path.to_string_lossy());
        }
        config.set("security.protocol", protocol.name());
        if protocol.encrypted() {
            // librdkafka's default since 2.0; set so no older default can turn it off.
            config.set("ssl.endpoint.identification.algorithm", "https");
        }
        match (protocol.sasl(), self.mechanism) {
            (false, None) => Ok(()),
            (false, Some(mechanism)) => bail!(
                "DROPGATE_KAFKA_SASL_MECHANISM is {} but DROPGATE_KAFKA_SECURITY_PROTOCOL is \
                 {}; SASL needs sasl_ssl",
                mechanism.name(),
                protocol.name()
            ),
            (true, None) => bail!(
                "DROPGATE_KAFKA_SECURITY_PROTOCOL is {} but DROPGATE_KAFKA_SASL_MECHANISM is \
                 not set (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)",
                protocol.name()
            ),
            (true, Some(mechanism)) => {
                config.set("sasl.mechanism", mechanism.name());
                self.apply_credentials(mechanism, config)
            }
        }
    }

    fn apply_credentials(&self, mechanism: SaslMechanism, config: &mut ClientConfig) -> Result<()> {
        if mechanism == SaslMechanism::OAuthBearer {
            if self.username.is_some() || self.password.is_some() {
                bail!(
                    "DROPGATE_KAFKA_SASL_USERNAME/PASSWORD are set but OAUTHBEARER takes \
                     tokens from the workload's Google credentials; unset them"
                );
            }
            return Ok(());
        }
        let (Some(username), Some(password)) = (&self.username, &self.password) else {
            bail!(
                "DROPGATE_KAFKA_SASL_MECHANISM={} needs DROPGATE_KAFKA_SASL_USERNAME and \
                 DROPGATE_KAFKA_SASL_PASSWORD",
                mechanism.name()
            );
        };
        config
            .set("sasl.username", username)
            .set("sasl.password", password.expose());
        Ok(())
    }

    /// Whether clients need Google tokens.
    pub fn uses_google_tokens(&self) -> bool {
        self.protocol.sasl() && self.mechanism == Some(SaslMechanism::OAuthBearer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        security: KafkaSecurityArgs,
    }

    fn apply(args: &[&str]) -> Result<ClientConfig> {
        let probe = Probe::try_parse_from(std::iter::once("probe").chain(args.iter().copied()))?;
        let mut config = ClientConfig::new();
        probe.security.apply(&mut config)?;
        Ok(config)
    }

    fn refusal(args: &[&str]) -> String {
        match apply(args) {
            Ok(config) => panic!("{args:?} was accepted: {config:?}"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn plaintext_is_the_default_and_refused_when_tls_is_required() -> Result<()> {
        let config = apply(&[])?;
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        let refused = refusal(&["--kafka-require-tls"]);
        assert!(refused.contains("DROPGATE_REQUIRE_TLS"), "{refused}");
        let refused = refusal(&[
            "--kafka-require-tls",
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-mechanism",
            "OAUTHBEARER",
        ]);
        assert!(refused.contains("sasl_plaintext"), "{refused}");
        Ok(())
    }

    #[test]
    fn scram_over_tls_sets_every_librdkafka_key() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        std::fs::write(&ca, cert.cert.pem())?;
        let config = apply(&[
            "--kafka-require-tls",
            "--kafka-security-protocol",
            "SASL_SSL",
            "--kafka-sasl-mechanism",
            "scram-sha-512",
            "--kafka-sasl-username",
            "dropgate",
            "--kafka-sasl-password",
            "hunter2",
            "--kafka-ca-file",
            &ca.to_string_lossy(),
        ])?;
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("dropgate"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert_eq!(config.get("ssl.ca.location"), Some(&*ca.to_string_lossy()));
        assert_eq!(
            config.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        Ok(())
    }

    #[test]
    fn contradictions_are_refused_naming_the_setting() {
        for (args, named) in [
            (
                &["--kafka-security-protocol", "sasl_ssl"][..],
                "DROPGATE_KAFKA_SASL_MECHANISM",
            ),
            (
                &["--kafka-sasl-mechanism", "PLAIN"][..],
                "DROPGATE_KAFKA_SECURITY_PROTOCOL",
            ),
            (
                &[
                    "--kafka-security-protocol",
                    "sasl_ssl",
                    "--kafka-sasl-mechanism",
                    "PLAIN",
                ][..],
                "DROPGATE_KAFKA_SASL_PASSWORD",
            ),
            (
                &[
                    "--kafka-security-protocol",
                    "sasl_ssl",
                    "--kafka-sasl-mechanism",
                    "OAUTHBEARER",
                    "--kafka-sasl-username",
                    "someone",
                ][..],
                "OAUTHBEARER",
            ),
            (
                &["--kafka-ca-file", "/nonexistent.pem"][..],
                "DROPGATE_KAFKA_CA_FILE",
            ),
        ] {
            let refused = refusal(args);
            assert!(refused.contains(named), "{args:?}: {refused}");
        }
    }

    #[test]
    fn the_password_never_prints() -> Result<()> {
        let probe = Probe::try_parse_from(["probe", "--kafka-sasl-password", "hunter2"])?;
        assert!(!format!("{probe:?}").contains("hunter2"));
        Ok(())
    }
}
