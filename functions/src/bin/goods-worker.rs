//! goods-worker: draws admitted users against the stock and records each outcome in
//! PostgreSQL, then publishes it (steps ⑤ ⑥ ⑦).

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::config::{DatabaseArgs, KafkaArgs};
use dropgate_functions::{skeleton, telemetry};

/// goods-worker configuration.
#[derive(Debug, Parser)]
#[command(version, about = "dropgate goods-worker: draw, record, publish")]
struct Config {
    /// Most admitted users decided in one PostgreSQL transaction.
    #[arg(long, env = "DROPGATE_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
}

fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init();
    tracing::info!(?config, "goods-worker configured");
    skeleton::not_built_yet("goods-worker", "Kafka waiting-queue to PostgreSQL draws")
}
