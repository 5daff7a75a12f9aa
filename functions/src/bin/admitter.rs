//! admitter: moves the head of each open event's queue into `waiting-queue` at the
//! event's rate (steps ③ ④).

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::config::{KafkaArgs, RedisArgs};
use dropgate_functions::{skeleton, telemetry};

/// admitter configuration.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "dropgate admitter: admit the head of the queue at a controlled rate"
)]
struct Config {
    /// Milliseconds between admission ticks.
    #[arg(long, env = "DROPGATE_TICK_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    tick_ms: u64,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
}

fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init();
    tracing::info!(?config, "admitter configured");
    skeleton::not_built_yet("admitter", "Redis queue head to Kafka waiting-queue")
}
