//! The one shape every service binary has: build (connect to every store and bind
//! every port, so a wrong setting fails the start with one sentence), then run until
//! SIGTERM or Ctrl-C, then drain. Telemetry (logs and the Prometheus recorder) is
//! installed before anything else, so no early log line or counter is lost.
//!
//! Each binary is `service::main::<TheService>(config)`; its settings are one clap
//! struct in the service's module.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use futures_util::future::LocalBoxFuture;
use tokio::sync::watch;

use crate::{lifecycle, telemetry, tls};

/// A service binary's behaviour.
pub trait Service: Sized {
    /// The binary's name, in logs and start-up errors.
    const NAME: &'static str;
    /// Its settings.
    type Config;

    /// The telemetry part of the settings.
    fn telemetry(config: &Self::Config) -> &telemetry::TelemetryArgs;

    /// Connects to everything and binds every port.
    fn build(config: Self::Config) -> impl Future<Output = Result<Self>>;

    /// The bound addresses, by purpose (e.g. `("ops", 127.0.0.1:9090)`), for the
    /// start-up log line.
    fn addresses(&self) -> Vec<(&'static str, SocketAddr)>;

    /// Serves until `shutdown` turns true, then finishes the work in hand.
    fn run(self, shutdown: watch::Receiver<bool>) -> impl Future<Output = Result<()>>;
}

/// Installs telemetry, builds `S`, runs it until a shutdown signal. A failure to start
/// or a failed run is printed as one sentence and the exit code says so.
pub async fn main<S: Service>(config: S::Config) -> ExitCode {
    telemetry::init(S::telemetry(&config));
    tls::install_crypto_provider();
    let service = match S::build(config).await {
        Ok(service) => service,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "{} failed to start", S::NAME);
            eprintln!("{}: {error:#}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    for (purpose, address) in service.addresses() {
        tracing::info!(service = S::NAME, purpose, %address, "listening");
    }
    tracing::info!(
        service = S::NAME,
        version = env!("CARGO_PKG_VERSION"),
        "running"
    );
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        lifecycle::shutdown_signal().await;
        let _ = stop.send(true);
    });
    match service.run(stopped).await {
        Ok(()) => {
            tracing::info!(service = S::NAME, "stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "{} failed", S::NAME);
            eprintln!("{}: {error:#}", S::NAME);
            ExitCode::FAILURE
        }
    }
}

/// What the admitter, goods-worker and result-relay run once built: their loop with
/// the ops port beside it, or, on the Pub/Sub transport, a push endpoint that serves
/// the ops routes on its own port.
pub enum Runner {
    /// The loop (run until shutdown) and the address of its ops port.
    Loop {
        /// Starts the loop with the shutdown signal.
        work: Box<dyn FnOnce(watch::Receiver<bool>) -> LocalBoxFuture<'static, Result<()>>>,
        /// Its ops port.
        ops: SocketAddr,
    },
    /// The push server, already bound and serving.
    Push(crate::pubsub::push::PushServer),
}

impl Runner {
    /// A loop that `run` starts, with its ops port at `ops`.
    pub fn looping<F, Fut>(ops: SocketAddr, run: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        Self::Loop {
            work: Box::new(move |shutdown| Box::pin(run(shutdown))),
            ops,
        }
    }

    /// The bound addresses, for [`Service::addresses`].
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        match self {
            Self::Loop { ops, .. } => vec![("ops", *ops)],
            Self::Push(server) => vec![("push and ops", server.address())],
        }
    }

    /// Runs the loop or serves pushes until `shutdown`, for [`Service::run`].
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<()> {
        match self {
            Self::Loop { work, .. } => work(shutdown).await,
            Self::Push(server) => server.run(shutdown).await,
        }
    }
}
