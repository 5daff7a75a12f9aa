//! queue-api: the public HTTP edge (steps ① ② ⑧): enter, status, result stream.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::config::RedisArgs;
use dropgate_functions::{skeleton, telemetry};

/// queue-api configuration.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "dropgate queue-api: enter the queue, read your place and result"
)]
struct Config {
    /// Address to listen on.
    #[arg(long, env = "DROPGATE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    redis: RedisArgs,
}

fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init();
    tracing::info!(?config, "queue-api configured");
    skeleton::not_built_yet("queue-api", "HTTP enter/status/stream on Redis")
}
