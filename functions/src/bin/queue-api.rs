//! queue-api: the public HTTP edge (steps ① ② ⑧): enter, status, result stream.

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::queue_api::{ApiConfig, Application};
use dropgate_functions::service;

/// mimalloc: under load glibc malloc took a fifth of queue-api's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<Application>(ApiConfig::parse()).await
}
