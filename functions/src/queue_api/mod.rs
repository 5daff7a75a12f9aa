//! queue-api's HTTP service: routes, shared state, middleware, and the
//! `Application` that binds a port (0 in tests) before it serves.

mod dev;
mod error;
mod extract;
pub mod limits;
mod log;
mod ops;
mod page;
mod queue;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::routing::{get, post};
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use dev::DevSigner;
pub use error::ApiError;
pub use queue::{QueueView, ResultView};
pub use stream::StreamHub;

use crate::auth::{Algorithm, AuthPolicy, Authenticator, KeySource, KeySourceArgs};
use crate::config::RedisArgs;
use crate::ops_server::OpsArgs;
use crate::queue::QueueStore;
use limits::Limiter;

/// Largest request body accepted (enter takes an optional small JSON object).
pub const MAX_BODY_BYTES: usize = 1024;

/// queue-api settings, from flags or `DROPGATE_*` variables.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Address to listen on.
    #[arg(long, env = "DROPGATE_API_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics` live on a port of their own, which
    /// neither the Ingress nor the load balancer forwards: every event's queue length
    /// (unannounced drops included) is for the operator, not the internet.
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Where Redis is.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Where token keys come from.
    #[command(flatten)]
    pub keys: KeySourceArgs,
    /// Accepted token algorithms (comma-separated): RS256, ES256, EdDSA.
    #[arg(
        long,
        env = "DROPGATE_JWT_ALGORITHMS",
        value_enum,
        value_delimiter = ',',
        default_value = "RS256"
    )]
    pub jwt_algorithms: Vec<Algorithm>,
    /// Required `iss` claim.
    #[arg(long, env = "DROPGATE_JWT_ISSUER")]
    pub jwt_issuer: String,
    /// Required `aud` claim.
    #[arg(long, env = "DROPGATE_JWT_AUDIENCE")]
    pub jwt_audience: String,
    /// Longest validity a token may have, in seconds (`exp` minus `iat`, or minus now
    /// without `iat`); longer-lived tokens are refused with `token_lifetime_too_long`.
    #[arg(long, env = "DROPGATE_JWT_MAX_LIFETIME_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..))]
    pub jwt_max_lifetime_secs: u64,
    /// Browser origins allowed to call the API (comma-separated); none means no CORS.
    #[arg(long, env = "DROPGATE_API_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Most open result streams on this instance; beyond it clients are told to poll.
    #[arg(long, env = "DROPGATE_API_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Requests per second per user (0 disables).
    #[arg(long, env = "DROPGATE_API_USER_RATE", default_value_t = 5)]
    pub user_rate_per_s: u32,
    /// Burst per user.
    #[arg(long, env = "DROPGATE_API_USER_BURST", default_value_t = 20)]
    pub user_burst: u32,
    /// Requests per second per client address (0 disables). Venues and mobile
    /// carriers put many users behind one address, so this is generous.
    #[arg(long, env = "DROPGATE_API_IP_RATE", default_value_t = 500)]
    pub ip_rate_per_s: u32,
    /// Burst per client address.
    #[arg(long, env = "DROPGATE_API_IP_BURST", default_value_t = 1_000)]
    pub ip_burst: u32,
    /// Entries the trusted proxies in front append to `X-Forwarded-For` (0: ignore
    /// the header). The client address is the entry this many places from the right:
    /// Google's load balancers append `<client>, <load balancer>`, so 2 there. Entries
    /// further left come from the client and can be forged.
    #[arg(long, env = "DROPGATE_API_TRUSTED_PROXY_HOPS", default_value_t = 0)]
    pub trusted_proxy_hops: u8,
    /// Longest a client may take to send a request's headers, in ms, counted from
    /// when the connection is ready for a request; then it is closed (a client
    /// trickling its headers would hold it for ever), so an idle keep-alive connection
    /// is closed after this long too. Behind Google's load balancers, which keep idle
    /// backend connections for 600 s, set it above that (620000).
    #[arg(long, env = "DROPGATE_API_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub header_timeout_ms: u64,
    /// Longest a request may take from its headers to its answer's first byte, in ms
    /// (a slow body included); slower ones get 408 `request_timeout`. A stream's events
    /// come after its first byte, so streams stay open.
    #[arg(long, env = "DROPGATE_API_REQUEST_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub request_timeout_ms: u64,
    /// Verified tokens kept in memory.
    #[arg(long, env = "DROPGATE_API_TOKEN_CACHE", default_value_t = 200_000)]
    pub token_cache: usize,
    /// Threads serving the API, each with a runtime, a Redis connection and a
    /// listening socket of its own on the same port (the kernel spreads new
    /// connections across the sockets); 0 means one per CPU the process may use. A
    /// request runs start to end on its connection's thread: on one runtime shared by
    /// all cores, tasks woken on or stolen by another core cost 5.6-8.5 µs more CPU per
    /// enter (`dropgate bench --only enter`, two cores).
    #[arg(long, env = "DROPGATE_API_HTTP_THREADS", default_value_t = 0)]
    pub http_threads: usize,
    /// Local mode only: the local stack's private key PEM. Enables `POST /dev/token`,
    /// the waiting room's local sign-in; without it that route does not exist. Refused
    /// unless the API listens on a loopback address.
    #[arg(long, env = "DROPGATE_API_DEV_SIGNING_KEY")]
    pub dev_token_key: Option<PathBuf>,
}

/// Everything a handler needs, behind one `Arc`: extractors clone the state for
/// every request, and one reference count is cheaper than a clone of each part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`]. A clone shares every part: each serving thread's state
/// is a clone with its own Redis connection put in.
#[derive(Clone)]
pub struct AppParts {
    /// Redis side of the queue.
    pub store: QueueStore,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Per-user limits.
    pub user_limits: Arc<Limiter<String>>,
    /// Per-address limits.
    pub ip_limits: Arc<Limiter<std::net::IpAddr>>,
    /// Result streams.
    pub streams: StreamHub,
    /// How many `X-Forwarded-For` entries the trusted proxies append.
    pub trusted_proxy_hops: u8,
    /// Local mode's token signer; `None` (the deployed case) means no `/dev/token`.
    pub dev_tokens: Option<Arc<DevSigner>>,
    /// Decision logs as served, read from Redis and gzipped once per version.
    pub(crate) decision_logs: Arc<log::LogCache>,
}

impl AppState {
    /// The same state on another Redis connection: every serving thread has its own,
    /// so a script's reply wakes the request on the thread that sent it. Everything
    /// else (token cache, limits, streams, decision logs) is shared.
    fn on_connection(&self, store: QueueStore) -> Self {
        AppState(Arc::new(AppParts {
            store,
            ..AppParts::clone(&self.0)
        }))
    }
}

/// The router, without a socket (tests call it with `oneshot`); every request must be
/// answered within `request_timeout`.
pub fn app(state: AppState, cors_origins: &[String], request_timeout: Duration) -> Router {
    // Recorded metrics need the recorder, also where no service main installed it.
    crate::telemetry::prometheus();
    let api = Router::new()
        .route("/v1/events/{event_id}/queue", post(queue::enter))
        .route("/v1/events/{event_id}/queue/me", get(queue::status))
        .route("/v1/events/{event_id}/queue/me/stream", get(stream::stream))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::limit_by_address,
        ));
    let dev = state
        .dev_tokens
        .clone()
        .map(dev::router)
        .unwrap_or_default();
    let router = Router::new()
        .merge(api)
        .route(
            "/v1/events/{event_id}/fairness",
            get(queue::fairness).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                extract::limit_by_address,
            )),
        )
        .route(
            "/v1/events/{event_id}/fairness/log",
            get(log::decision_log).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                extract::limit_by_address,
            )),
        )
        .merge(page::router(cors_origins, state.dev_tokens.is_some()))
        .merge(dev)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    with_request_layers(router, cors_origins, request_timeout).with_state(state)
}

/// The layers every request of the public router passes, from the innermost: the
/// request deadline, the trace layer (only when `debug` lines are written), the body
/// limit, CORS (only with allowed origins), the panic catcher, and outermost the
/// metrics layer, which so also counts and logs the 500 a caught panic becomes.
fn with_request_layers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    cors_origins: &[String],
    request_timeout: Duration,
) -> Router<S> {
    let router = router.layer(axum::middleware::from_fn_with_state(
        request_timeout,
        request_deadline,
    ));
    let router = if crate::telemetry::requests_logged() {
        router.layer(crate::telemetry::request_spans())
    } else {
        router
    };
    let router = router.layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    // Without allowed origins the API is same-origin only, which browsers enforce
    // themselves; a CORS layer allowing nothing would only cost every request its
    // clone (the layer's lists are copied per request).
    let router = match cors(cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(axum::middleware::from_fn(ops::record_metrics))
}

/// The 500 a panicking handler is answered with; its message goes to the log.
fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    axum::response::IntoResponse::into_response(ApiError::Internal(anyhow::anyhow!(
        "handler panicked: {message}"
    )))
}

/// Answers 408 `request_timeout` when the handler has not produced its response head
/// in time; reading the body is part of that. A stream's events flow after its head, so
/// they are not cut.
async fn request_deadline(
    axum::extract::State(deadline): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::RequestTimeout),
    }
}

/// The ops port's router: health, readiness and metrics, never exposed publicly.
pub fn ops_app(state: AppState) -> Router {
    crate::telemetry::prometheus();
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// The CORS layer for `origins`, or `None` when no origin is allowed.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.trim()).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(600));
    Some(layer)
}

/// A bound, ready-to-serve queue-api.
pub struct Application {
    /// One socket per serving thread, all on the API's port.
    listeners: Vec<std::net::TcpListener>,
    /// What each serving thread builds its router from.
    serving: Serving,
    ops_listener: TcpListener,
    ops_router: Router,
    shutdown: watch::Sender<bool>,
    streams: StreamHub,
}

/// What a serving thread needs to build its router and serve.
#[derive(Clone)]
struct Serving {
    state: AppState,
    redis: RedisArgs,
    cors_origins: Vec<String>,
    request_timeout: Duration,
    header_timeout: Duration,
}

impl Application {
    /// Connects to Redis, loads token keys and binds the listener. Fails fast with a
    /// clear message when any of them is wrong.
    pub async fn build(args: &ApiArgs) -> Result<Self> {
        if args.dev_token_key.is_some() && !args.listen.ip().is_loopback() {
            anyhow::bail!(
                "DROPGATE_API_DEV_SIGNING_KEY lets anyone who reaches the server sign in as anyone: \
                 it is for the local stack only, and {} is not a loopback address (DROPGATE_API_ADDR)",
                args.listen
            );
        }
        let store = QueueStore::connect(&args.redis).await?;
        let keys = KeySource::load(&args.keys).await?;
        let policy = AuthPolicy {
            algorithms: args.jwt_algorithms.clone(),
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            max_lifetime_s: args.jwt_max_lifetime_secs,
        };
        let dev_tokens = match &args.dev_token_key {
            Some(path) => {
                tracing::warn!(
                    key = %path.display(),
                    "POST /dev/token is enabled: anyone reaching this server can sign in as anyone; local use only"
                );
                Some(Arc::new(DevSigner::load(path)?))
            }
            None => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let streams = StreamHub::new(
            store.clone(),
            args.redis.clone(),
            args.max_streams,
            shutdown_rx,
        );
        let state = AppState(Arc::new(AppParts {
            store,
            auth: Arc::new(Authenticator::new(policy, keys, args.token_cache)),
            user_limits: Arc::new(Limiter::new(args.user_rate_per_s, args.user_burst)),
            ip_limits: Arc::new(Limiter::new(args.ip_rate_per_s, args.ip_burst)),
            streams: streams.clone(),
            trusted_proxy_hops: args.trusted_proxy_hops,
            dev_tokens,
            decision_logs: Arc::new(log::cache()),
        }));
        let threads = match args.http_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            threads => threads,
        };
        let listeners = bind_shared(args.listen, threads)
            .with_context(|| format!("Failed to listen on {}", args.listen))?;
        let ops_listener = TcpListener::bind(args.ops.health_addr)
            .await
            .with_context(|| {
                format!(
                    "Failed to listen on {} (DROPGATE_HEALTH_ADDR, the ops port)",
                    args.ops.health_addr
                )
            })?;
        Ok(Self {
            listeners,
            serving: Serving {
                state: state.clone(),
                redis: args.redis.clone(),
                cors_origins: args.cors_origins.clone(),
                request_timeout: Duration::from_millis(args.request_timeout_ms),
                header_timeout: Duration::from_millis(args.header_timeout_ms),
            },
            ops_listener,
            ops_router: ops_app(state),
            shutdown,
            streams,
        })
    }

    /// The bound port (the real one when configured with port 0).
    pub fn port(&self) -> u16 {
        self.listeners
            .first()
            .and_then(|listener| listener.local_addr().ok())
            .map_or(0, |addr| addr.port())
    }

    /// The bound ops port (health, readiness, metrics).
    pub fn ops_port(&self) -> u16 {
        self.ops_listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or(0)
    }

    /// Serves until `stop` resolves, then stops accepting, tells open streams to
    /// reconnect elsewhere, and drains in-flight requests (bounded by 10 s). The ops
    /// port (readiness included) answers once every serving thread has its Redis
    /// connection. Fails when a serving thread cannot start or ends before `stop`.
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let shutdown = self.shutdown.clone();
        let streams = self.streams.clone();
        let mut starting = Vec::with_capacity(self.listeners.len());
        for (index, listener) in self.listeners.into_iter().enumerate() {
            starting.push(serve_on_thread(
                index,
                listener,
                self.serving.clone(),
                self.shutdown.subscribe(),
            )?);
        }
        let threads = starting.len();
        let mut serving = futures_util::stream::FuturesUnordered::new();
        let mut failed_start = None;
        for thread in starting {
            if thread.ready.await.is_err() && failed_start.is_none() {
                failed_start = Some(match thread.ended.await {
                    Ok(Err(error)) => error,
                    _ => anyhow::anyhow!("a serving thread stopped before it served"),
                });
            } else {
                serving.push(thread.ended);
            }
        }
        let drain = |serving: futures_util::stream::FuturesUnordered<_>| async move {
            let mut serving = serving;
            let drained = async { while serving.next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(10), drained)
                .await
                .is_err()
            {
                tracing::warn!("drain took longer than 10 s; exiting anyway");
            }
        };
        if let Some(error) = failed_start {
            let _ = shutdown.send(true);
            drain(serving).await;
            return Err(error);
        }
        // The ops port answers through the drain, so probes see the process until it
        // exits; it goes with the task.
        let ops = tokio::spawn(axum::serve(self.ops_listener, self.ops_router).into_future());
        let _stop_ops = AbortOnDrop(ops);
        tokio::pin!(stop);
        let early_end = tokio::select! {
            ended = serving.next() => Some(ended),
            () = &mut stop => None,
        };
        if early_end.is_none() {
            tracing::info!(
                open_streams = streams.open(),
                "shutting down: closing streams, draining requests"
            );
        }
        let _ = shutdown.send(true);
        drain(serving).await;
        match early_end {
            None => Ok(()),
            Some(Some(Ok(Err(error)))) => Err(error),
            Some(_) => Err(anyhow::anyhow!(
                "a serving thread of {threads} stopped unasked"
            )),
        }
    }
}

/// Binds `count` listening sockets on `address` with `SO_REUSEPORT`, so each serving
/// thread accepts on a socket of its own and the kernel spreads new connections across
/// them. With port 0 the first socket picks the port and the others share it.
///
/// `SO_REUSEPORT` would also let this process share a port another process of the same
/// user already listens on with it (a second queue-api started by mistake), so a fixed
/// port is first bound once without it: taken, it fails as any bind would. Where the
/// platform refuses `SO_REUSEPORT`, the threads accept on one socket between them.
fn bind_shared(address: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>> {
    let socket_for = |address: SocketAddr| {
        let socket = if address.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        anyhow::Ok(socket)
    };
    if address.port() != 0 {
        let probe = socket_for(address)?;
        probe.bind(address)?;
        probe.listen(1)?;
    }
    let mut address = address;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = socket_for(address)?;
        if let Err(error) = socket.set_reuseport(true) {
            tracing::warn!(%error, "SO_REUSEPORT refused: the serving threads share one socket");
            drop(listeners);
            return bind_one_for_all(address, count);
        }
        socket.bind(address)?;
        let listener = socket.listen(1024)?;
        address = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// One listening socket on `address`, duplicated for each of `count` serving threads:
/// each accepts from the same queue, the thread that wakes first taking a connection.
fn bind_one_for_all(address: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let mut listeners = Vec::with_capacity(count.max(1));
    for _ in 1..count.max(1) {
        listeners.push(listener.try_clone()?);
    }
    listeners.push(listener);
    Ok(listeners)
}

/// A serving thread as it starts: `ready` fires once it has its Redis connection
/// (dropped unfired if it never gets one), `ended` says how it ended.
struct ServingThread {
    ready: tokio::sync::oneshot::Receiver<()>,
    ended: tokio::sync::oneshot::Receiver<Result<()>>,
}

/// Starts a thread serving `listener` on a single-threaded runtime of its own, with its
/// own Redis connection, until `shutdown` turns true (or its sender is gone).
fn serve_on_thread(
    index: usize,
    listener: std::net::TcpListener,
    serving: Serving,
    mut shutdown: watch::Receiver<bool>,
) -> Result<ServingThread> {
    let (ready, ready_rx) = tokio::sync::oneshot::channel();
    let (ended, ended_rx) = tokio::sync::oneshot::channel();
    let run = move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener)?;
            let store = QueueStore::connect(&serving.redis)
                .await
                .context("a serving thread could not connect to Redis")?;
            let router = app(
                serving.state.on_connection(store),
                &serving.cors_origins,
                serving.request_timeout,
            );
            let _ = ready.send(());
            let stop = async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            };
            crate::http_server::serve(listener, router, serving.header_timeout, stop).await;
            Ok(())
        })
    };
    std::thread::Builder::new()
        .name(format!("api-http-{index}"))
        .spawn(move || {
            let _ = ended.send(run());
        })
        .context("Failed to start a serving thread")?;
    Ok(ServingThread {
        ready: ready_rx,
        ended: ended_rx,
    })
}

/// Aborts a background task when dropped, also on an early return.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The queue-api binary's settings.
#[derive(Debug, clap::Parser)]
#[command(
    name = "queue-api",
    version,
    about = "dropgate queue-api: enter the queue, read your place and result"
)]
pub struct ApiConfig {
    /// queue-api's settings.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Logs.
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
}

impl crate::service::Service for Application {
    const NAME: &'static str = "queue-api";
    type Config = ApiConfig;

    fn telemetry(config: &ApiConfig) -> &crate::telemetry::TelemetryArgs {
        &config.telemetry
    }

    async fn build(config: ApiConfig) -> Result<Self> {
        Application::build(&config.api).await
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let http = self.listeners.first().and_then(|l| l.local_addr().ok());
        let ops = self.ops_listener.local_addr().ok();
        [("http", http), ("ops", ops)]
            .into_iter()
            .filter_map(|(purpose, address)| Some((purpose, address?)))
            .collect()
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        self.run_until_stopped(async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Mutex;

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    /// Log output, kept for the assertions.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn panics() -> &'static str {
        panic!("boom")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn server_side_failures_and_panics_are_logged_once_with_method_route_and_cause() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let routes = Router::new()
            .route(
                "/v1/events/{event_id}/queue",
                post(|| async {
                    Err::<(), _>(ApiError::Internal(
                        anyhow::anyhow!("disk on fire").context("reading the record"),
                    ))
                }),
            )
            .route(
                "/v1/events/{event_id}/queue/me",
                get(|| async { Err::<(), _>(ApiError::Unavailable(anyhow::anyhow!("refused"))) }),
            )
            .route("/v1/events/{event_id}/fairness", get(panics))
            .route(
                "/v1/events/{event_id}/fairness/log",
                get(|| async { Err::<(), _>(ApiError::NotInQueue) }),
            );
        let router = with_request_layers(routes, &[], Duration::from_secs(15));
        for (method, path, status) in [
            (Method::POST, "/v1/events/e1/queue", 500),
            (Method::GET, "/v1/events/e1/queue/me", 503),
            (Method::GET, "/v1/events/e1/fairness", 500),
            (Method::GET, "/v1/events/e1/fairness/log", 404),
        ] {
            let request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .expect("request");
            let response = router.clone().oneshot(request).await.expect("answered");
            assert_eq!(response.status().as_u16(), status, "{path}");
        }
        let text = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect();
        let seen: Vec<(&str, &str, &str, u64, &str)> = lines
            .iter()
            .map(|line| {
                let fields = &line["fields"];
                (
                    line["level"].as_str().unwrap_or_default(),
                    fields["method"].as_str().unwrap_or_default(),
                    fields["route"].as_str().unwrap_or_default(),
                    fields["status"].as_u64().unwrap_or_default(),
                    fields["error"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "ERROR",
                    "POST",
                    "/v1/events/{event_id}/queue",
                    500,
                    "reading the record: disk on fire"
                ),
                (
                    "WARN",
                    "GET",
                    "/v1/events/{event_id}/queue/me",
                    503,
                    "refused"
                ),
                (
                    "ERROR",
                    "GET",
                    "/v1/events/{event_id}/fairness",
                    500,
                    "handler panicked: boom"
                ),
            ],
            "one line per server-side failure, none for the 404: {text}"
        );
    }

    /// Each listener accepts one connection to the common port and answers it with
    /// its own index; returns the answers the clients read.
    fn answers(listeners: Vec<std::net::TcpListener>, connections: usize) -> Vec<u8> {
        let address = listeners[0].local_addr().expect("bound");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acceptors: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(index, listener)| {
                let done = Arc::clone(&done);
                std::thread::spawn(move || {
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((mut stream, _)) => {
                                stream.set_nonblocking(false).expect("blocking stream");
                                let _ = stream.write_all(&[index as u8]);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(1)),
                        }
                    }
                })
            })
            .collect();
        let answers = (0..connections)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(address).expect("connect");
                let mut byte = [0u8];
                stream.read_exact(&mut byte).expect("an answer");
                byte[0]
            })
            .collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for acceptor in acceptors {
            acceptor.join().expect("acceptor");
        }
        answers
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_socket_on_the_shared_port_is_served_and_a_taken_port_is_refused() {
        let listeners = bind_shared(SocketAddr::from(([127, 0, 0, 1], 0)), 3).expect("bound");
        let port = listeners[0].local_addr().expect("bound").port();
        assert!(
            listeners
                .iter()
                .all(|listener| listener.local_addr().expect("bound").port() == port),
            "one port for all"
        );
        let taken = bind_shared(SocketAddr::from(([127, 0, 0, 1], port)), 2);
        assert!(
            taken.is_err(),
            "a port this process already listens on is refused"
        );
        // The kernel spreads connections by their addresses: of 60, each of three
        // sockets gets some, but for a chance of about 1 in 10^10.
        let mut served = answers(listeners, 60);
        served.sort_unstable();
        served.dedup();
        assert_eq!(served, [0, 1, 2], "every socket took connections");
    }

    #[test]
    fn threads_sharing_one_socket_answer_every_connection() {
        let listeners = bind_one_for_all(SocketAddr::from(([127, 0, 0, 1], 0)), 3).expect("bound");
        assert_eq!(listeners.len(), 3);
        let got = answers(listeners, 30);
        assert_eq!(got.len(), 30, "every connection answered");
    }
}
