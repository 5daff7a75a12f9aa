//! result-relay: brings draw results back to Redis, where queue-api answers users
//! (step ⑧).

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::bus::{self, Transport, TransportArgs};
use dropgate_functions::ops_server::{self, Readiness};
use dropgate_functions::relay::{Relay, RelayArgs, RelayPush};
use dropgate_functions::{http, lifecycle, telemetry};
use tokio::sync::watch;

/// result-relay configuration.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "dropgate result-relay: draw results from result-notification into users' Redis records"
)]
struct Config {
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    transport: TransportArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = bus::parse_config();
    telemetry::init();
    dropgate_functions::tls::install_crypto_provider();
    // The recorder must exist before the first metric, not at the first scrape.
    http::prometheus();
    let outcome = match config.transport.transport {
        Transport::Kafka => consume(&config).await,
        Transport::PubSub => serve_push(&config).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("result-relay: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Kafka: a consumer-group member until SIGTERM.
async fn consume(config: &Config) -> anyhow::Result<()> {
    config.transport.require_brokers(&config.relay.kafka)?;
    let readiness = Readiness::default();
    let relay = Relay::connect(&config.relay, readiness.clone()).await?;
    let ops = ops_server::spawn(&config.relay.ops, readiness).await?;
    tracing::info!(
        %ops,
        topic = %config.relay.kafka.result_notification_topic,
        group = %config.relay.group,
        "result-relay running"
    );
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        lifecycle::shutdown_signal().await;
        let _ = stop.send(true);
    });
    relay.run(stopped).await
}

/// Pub/Sub: the push endpoint (beside the ops routes) until SIGTERM.
async fn serve_push(config: &Config) -> anyhow::Result<()> {
    let auth = config.transport.push.auth().await?;
    let relay = RelayPush::connect(&config.relay, auth, Readiness::default()).await?;
    let (stop, stopped) = watch::channel(false);
    let (address, server) = relay.start(config.relay.ops.health_addr, stopped).await?;
    tracing::info!(%address, "result-relay serving Pub/Sub pushes");
    tokio::spawn(async move {
        lifecycle::shutdown_signal().await;
        let _ = stop.send(true);
    });
    server.await?
}
