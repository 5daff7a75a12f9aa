//! The broker's TLS terminator on a `--tls` stack: stunnel (Debian's `stunnel4`)
//! accepts TLS on the port clients use and forwards to tansu's internal plaintext
//! port, because tansu 0.6.0 does not terminate TLS itself. SASL passes through it
//! untouched, so authentication stays tansu's.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use dropgate_functions::kafka::security::KafkaSecurityArgs;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use super::certs::{StackCerts, write_private};
use super::process::{is_running, spawn_detached, wait_until};
use super::{Component, StackOptions};

/// Starts stunnel accepting TLS on `public_port` for tansu on `broker_port`.
pub(crate) fn start(
    options: &StackOptions,
    public_port: u16,
    broker_port: u16,
    certs: &StackCerts,
) -> Result<u32> {
    let dir = options.state_dir.join("broker");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("stunnel.conf");
    let text = format!(
        "; written by `dropgate stack up --tls`\n\
         foreground = yes\n\
         pid =\n\
         [kafka]\n\
         accept = 127.0.0.1:{public_port}\n\
         connect = 127.0.0.1:{broker_port}\n\
         cert = {}\n\
         key = {}\n",
        certs.server_cert.display(),
        certs.server_key.display()
    );
    write_private(&config, text.as_bytes())?;
    let mut command = Command::new(Component::BrokerTls.program());
    command.arg(&config);
    spawn_detached(command, &options.log_file("broker-tls"))
}

/// Waits until a client with `security` settings gets the cluster's metadata through
/// the terminator: TLS, the certificate, SASL and tansu behind it all work.
pub(crate) fn wait_ready(pid: u32, brokers: &str, security: &KafkaSecurityArgs) -> Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("reconnect.backoff.max.ms", "500")
        .set("log_level", "3");
    security.apply(&mut config)?;
    let client: BaseConsumer = config
        .create()
        .context("Failed to create the broker readiness client")?;
    let mut last_error = String::new();
    wait_until(
        "the broker behind stunnel",
        Duration::from_secs(60),
        || is_running(pid, Component::BrokerTls.program()),
        || match client.fetch_metadata(None, Duration::from_secs(2)) {
            Ok(metadata) => !metadata.brokers().is_empty(),
            Err(error) => {
                last_error = error.to_string();
                false
            }
        },
    )
    .with_context(|| format!("last answer: {last_error}"))
}
