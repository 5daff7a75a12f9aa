//! goods-worker: draws admitted users against the stock and publishes the results
//! (steps ⑤ ⑥ ⑦).

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::bus::{self, Transport, TransportArgs};
use dropgate_functions::goods::{GoodsArgs, GoodsPush, GoodsWorker};
use dropgate_functions::ops_server::{self, Readiness};
use dropgate_functions::{http, lifecycle, telemetry};
use tokio::sync::watch;

/// goods-worker configuration.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "dropgate goods-worker: waiting-queue to draws in PostgreSQL to result-notification"
)]
struct Config {
    #[command(flatten)]
    goods: GoodsArgs,
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
            eprintln!("goods-worker: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Kafka: a consumer-group member until SIGTERM.
async fn consume(config: &Config) -> anyhow::Result<()> {
    config.transport.require_brokers(&config.goods.kafka)?;
    let readiness = Readiness::default();
    let address = ops_server::spawn(&config.goods.ops, readiness.clone()).await?;
    let worker = GoodsWorker::connect(&config.goods, readiness.clone()).await?;
    tracing::info!(ops = %address, batch_size = config.goods.batch_size, "goods-worker running");
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        lifecycle::shutdown_signal().await;
        let _ = stop.send(true);
    });
    worker.run(stopped).await
}

/// Pub/Sub: the push endpoint (beside the ops routes) until SIGTERM.
async fn serve_push(config: &Config) -> anyhow::Result<()> {
    let kafka = &config.goods.kafka;
    let publisher = config
        .transport
        .publisher(kafka, &kafka.result_notification_topic)
        .await?;
    let auth = config.transport.push.auth().await?;
    let readiness = Readiness::default();
    let worker = GoodsPush::connect(&config.goods, publisher, auth, readiness).await?;
    let (stop, stopped) = watch::channel(false);
    let (address, server) = worker.start(config.goods.ops.health_addr, stopped).await?;
    tracing::info!(%address, batch_size = config.goods.batch_size, "goods-worker serving Pub/Sub pushes");
    tokio::spawn(async move {
        lifecycle::shutdown_signal().await;
        let _ = stop.send(true);
    });
    server.await?
}
