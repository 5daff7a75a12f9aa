//! result-relay: brings draw results back to Redis, where queue-api answers users
//! (step ⑧).

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::config::{KafkaArgs, RedisArgs};
use dropgate_functions::{skeleton, telemetry};

/// result-relay configuration.
#[derive(Debug, Parser)]
#[command(version, about = "dropgate result-relay: result-notification to Redis")]
struct Config {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
}

fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init();
    tracing::info!(?config, "result-relay configured");
    skeleton::not_built_yet("result-relay", "Kafka result-notification to Redis")
}
