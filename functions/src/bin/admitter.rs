//! admitter: moves the head of each open event's queue to the draw at a controlled
//! rate (steps ③ ④).

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::admitter::{Admitter, AdmitterArgs};
use dropgate_functions::bus::{self, TransportArgs};
use dropgate_functions::ops_server::{self, Readiness};
use dropgate_functions::{lifecycle, telemetry};
use tokio::sync::watch;

/// admitter configuration.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "dropgate admitter: queue head to waiting-queue at the event's rate"
)]
struct Config {
    #[command(flatten)]
    admitter: AdmitterArgs,
    #[command(flatten)]
    transport: TransportArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = bus::parse_config();
    telemetry::init();
    dropgate_functions::tls::install_crypto_provider();
    let readiness = Readiness::default();
    let started = async {
        let kafka = &config.admitter.kafka;
        config.transport.require_brokers(kafka)?;
        let publisher = config
            .transport
            .publisher(kafka, &kafka.waiting_queue_topic)
            .await?;
        let address = ops_server::spawn(&config.admitter.ops, readiness.clone()).await?;
        let admitter =
            Admitter::connect_with(&config.admitter, publisher, readiness.clone()).await?;
        anyhow::Ok((address, admitter))
    };
    let (address, admitter) = match started.await {
        Ok(started) => started,
        Err(error) => {
            eprintln!("admitter: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        ops = %address,
        tick_ms = config.admitter.tick_ms,
        transport = ?config.transport.transport,
        "admitter running"
    );
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        lifecycle::shutdown_signal().await;
        let _ = stop.send(true);
    });
    match admitter.run(stopped).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("admitter: {error:#}");
            ExitCode::FAILURE
        }
    }
}
