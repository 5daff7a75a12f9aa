//! queue-api: the public HTTP edge (steps ① ② ⑧): enter, status, result stream.

use std::process::ExitCode;

use clap::Parser;
use dropgate_functions::http::{ApiArgs, Application};
use dropgate_functions::{lifecycle, telemetry};

/// mimalloc: under load glibc malloc took a fifth of queue-api's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// queue-api configuration.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "dropgate queue-api: enter the queue, read your place and result"
)]
struct Config {
    #[command(flatten)]
    api: ApiArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init();
    dropgate_functions::tls::install_crypto_provider();
    let application = match Application::build(&config.api).await {
        Ok(application) => application,
        Err(error) => {
            eprintln!("queue-api: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        port = application.port(),
        listen = %config.api.listen,
        "queue-api listening"
    );
    match application
        .run_until_stopped(lifecycle::shutdown_signal())
        .await
    {
        Ok(()) => {
            tracing::info!("queue-api stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("queue-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}
