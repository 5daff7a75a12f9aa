//! goods-worker: draws admitted users against the stock and publishes the results
//! (steps ⑤ ⑥ ⑦).

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::goods::{GoodsArgs, GoodsWorker};
use dropgate_functions::ops_server::{self, Readiness};
use dropgate_functions::{lifecycle, telemetry};
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init();
    let readiness = Readiness::default();
    let started = async {
        let address = ops_server::spawn(&config.goods.ops, readiness.clone()).await?;
        let worker = GoodsWorker::connect(&config.goods, readiness.clone()).await?;
        anyhow::Ok((address, worker))
    };
    let (address, worker) = match started.await {
        Ok(started) => started,
        Err(error) => {
            eprintln!("goods-worker: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(ops = %address, batch_size = config.goods.batch_size, "goods-worker running");
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        lifecycle::shutdown_signal().await;
        let _ = stop.send(true);
    });
    match worker.run(stopped).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("goods-worker: {error:#}");
            ExitCode::FAILURE
        }
    }
}
