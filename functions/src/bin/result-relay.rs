//! result-relay: brings draw results back to Redis, where queue-api answers users
//! (step ⑧).

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::ops_server::{self, Readiness};
use dropgate_functions::relay::{Relay, RelayArgs};
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init();
    // The recorder must exist before the first metric, not at the first scrape.
    http::prometheus();
    let readiness = Readiness::default();
    let relay = match Relay::connect(&config.relay, readiness.clone()).await {
        Ok(relay) => relay,
        Err(error) => {
            eprintln!("result-relay: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let ops = match ops_server::spawn(&config.relay.ops, readiness).await {
        Ok(address) => address,
        Err(error) => {
            eprintln!("result-relay: {error:#}");
            return ExitCode::FAILURE;
        }
    };
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
    match relay.run(stopped).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("result-relay: {error:#}");
            ExitCode::FAILURE
        }
    }
}
