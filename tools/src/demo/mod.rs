//! `dropgate demo`: a whole drop on the local stack. Creates and opens an event, then
//! drives a simulated crowd through the real HTTP API with real signed tokens (each
//! user enters, then streams or polls until a final state), closes the event, replays
//! the draw with `verify`, and reports: a summary, a JSON report and an SVG timeline.
//!
//! The crowd only uses what a client of the public API has: the public routes, the
//! `Retry-After` and `poll_after_ms` hints, and (as a load balancer would add) an
//! address per user in `X-Forwarded-For`. The stores are touched only through the
//! event admin (`crate::events`), as an operator would.

mod drive;
mod prepare;
mod recheck;
mod report;
mod sse;
mod tally;
mod timeline;
mod user;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use dropgate_core::{EventConfig, EventId};
use dropgate_functions::auth::dev::{DevKeys, LOCAL_KEY_ID};
use dropgate_functions::config::{DatabaseArgs, RedisArgs};
use dropgate_functions::queue::QueueStore;
use dropgate_functions::seed_vault::SeedKeyArgs;
use indicatif::MultiProgress;
use jwt_simple::prelude::RS256KeyPair;

use self::drive::drive;
use self::prepare::{check_api, close_and_verify, identity, open_event, sign_tokens};
pub use self::recheck::Recheck;
use self::recheck::{Asked, recheck};
pub use self::report::{Report, UserFinal, Verdict};
use self::tally::Tally;
pub use self::tally::{Sample, percentile};
pub use self::timeline::render_svg;
use self::user::{Crowd, Slots};
use crate::events;

/// Tokens outlive the run by this much, so none expires before the users are asked
/// again after the close.
const TOKEN_SLACK: Duration = Duration::from_secs(15 * 60);

/// `dropgate demo` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// queue-api's base URL (`dropgate local up` writes it into the stack's env file).
    #[arg(long, env = "DROPGATE_API_URL")]
    pub api_url: Option<String>,
    /// PostgreSQL, where the event is created, closed and verified.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Redis, where the event is mirrored for queue-api and the admitter.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The key that seals the event's seed.
    #[command(flatten)]
    pub seed_key: SeedKeyArgs,
    /// The stack's state directory: its `auth/` holds the key that signs the tokens.
    #[arg(long, env = "DROPGATE_STATE_DIR", default_value = ".dropgate")]
    pub state_dir: PathBuf,
    /// Simulated users.
    #[arg(long, env = "DROPGATE_DEMO_USERS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub users: u32,
    /// Units for sale.
    #[arg(long, default_value_t = 100)]
    pub stock: u32,
    /// Chance that an admitted user wins while stock is left.
    #[arg(long, default_value_t = 0.05)]
    pub win_probability: f64,
    /// Admissions per second.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// Share of users following the SSE stream; the others poll.
    #[arg(long, default_value_t = 0.5)]
    pub sse_share: f64,
    /// Open HTTP connections at most: `sse-share` of them for streams, the rest split
    /// between entering and polling.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(3..=20_000))]
    pub concurrency: u32,
    /// Event id (default `demo-<unix time>`); must not exist yet.
    #[arg(long)]
    pub event: Option<String>,
    /// Where the JSON report and SVG timeline go (default `<state dir>/reports`).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Stop waiting for final states after this long (`300s`, `5m`).
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs the demo on its own runtime; Ctrl-C stops the crowd early but still closes,
/// verifies and reports. Exit 0 when verify passes and every user reached a final
/// state.
pub fn main(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping the crowd, then closing and verifying the event");
        } else {
            std::future::pending::<()>().await;
        }
    };
    match runtime.block_on(run_until(&args, interrupted)) {
        Ok(report) if report.succeeded() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the whole demo and returns its report (also written to disk and printed).
pub async fn run(args: &DemoArgs) -> Result<Report> {
    run_until(args, std::future::pending()).await
}

/// [`run`], stopping the crowd early when `interrupt` completes.
pub async fn run_until(args: &DemoArgs, interrupt: impl Future<Output = ()>) -> Result<Report> {
    let plan = Plan::check(args)?;
    let keys = DevKeys::in_state_dir(&args.state_dir);
    let pem = std::fs::read_to_string(&keys.private_key).with_context(|| {
        format!(
            "no local signing key at {}; start the stack with `dropgate stack up` or pass --state-dir",
            keys.private_key.display()
        )
    })?;
    let pair = RS256KeyPair::from_pem(&pem)
        .context("the local signing key is unreadable")?
        .with_key_id(LOCAL_KEY_ID);
    let pool = args.database.pool(2).await?;
    let store = QueueStore::connect(&args.redis).await?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(plan.concurrency)
        // queue-api closes connections idle past its header deadline (10 s by
        // default); give them up first rather than race its close.
        .pool_idle_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .context("Failed to build the HTTP client")?;
    check_api(&client, &plan.api_url).await?;

    let bars = MultiProgress::new();
    let ttl = args.timeout + TOKEN_SLACK;
    let signing = std::time::Instant::now();
    let users = sign_tokens(pair, args.users, plan.sse_share, ttl, &bars).await?;
    let signing_s = signing.elapsed().as_secs_f64();
    let tokens: Vec<Arc<str>> = users.iter().map(|user| user.token.clone()).collect();

    let config = EventConfig {
        win_probability: args.win_probability,
        admission_rate_per_s: args.rate,
        ..EventConfig::new(args.stock, now_ms())
    };
    let commitment =
        open_event(&pool, &store, &args.seed_key.load()?, &plan.event, &config).await?;
    println!(
        "event {} is open: stock {}, p {}, {} admissions/s",
        plan.event, args.stock, args.win_probability, args.rate
    );
    println!("seed commitment (SHA-256): {commitment}");

    let crowd = Arc::new(Crowd {
        client: client.clone(),
        queue_url: format!("{}/v1/events/{}/queue", plan.api_url, plan.event),
        slots: Slots::split(plan.concurrency, plan.sse_share),
        tally: Tally::default(),
    });
    let (timeline, timed_out) = drive(&crowd, users, args.timeout, interrupt, &bars).await;

    let (verify, verify_detail) = close_and_verify(&pool, &store, &plan.event).await;
    let record = events::load(&pool, &plan.event).await?;
    let database_outcomes = events::outcome_counts(&pool, &plan.event)
        .await?
        .into_iter()
        .collect();
    let mut report = build_report(&crowd.tally, &plan, args, timeline, timed_out);
    report.signing_s = signing_s;
    report.stock_total = record.stock_total;
    report.stock_left = record.stock_left;
    report.verify = verify;
    report.verify_detail = verify_detail;
    report.database_outcomes = database_outcomes;
    let seen: std::collections::HashMap<u32, &'static str> = crowd
        .tally
        .finals_by_user()
        .into_iter()
        .map(|(index, _, state)| (index, state.as_str()))
        .collect();
    let people = tokens
        .into_iter()
        .enumerate()
        .map(|(index, token)| {
            let index = index as u32;
            Asked {
                index,
                token,
                seen: seen.get(&index).copied(),
            }
        })
        .collect();
    let refused_at_the_door = report.sold_out_at_entry + report.closed_at_entry;
    report.recheck = recheck(
        &pool,
        &client,
        &crowd.queue_url,
        &plan.event,
        people,
        refused_at_the_door,
        &bars,
    )
    .await
    .unwrap_or_else(|error| Recheck::failed(report.users, &error));
    report.write(&plan.report_dir)?;
    println!("{}", report.summary());
    println!("report:   {}", report.json_path.display());
    println!("timeline: {}", report.svg_path.display());
    pool.close().await;
    Ok(report)
}

/// Settings checked and resolved before anything is created.
struct Plan {
    api_url: String,
    event: EventId,
    report_dir: PathBuf,
    concurrency: usize,
    sse_share: f64,
}

impl Plan {
    fn check(args: &DemoArgs) -> Result<Self> {
        let Some(api_url) = args.api_url.as_deref() else {
            bail!(
                "--api-url (DROPGATE_API_URL) is not set: start the functions with `dropgate local up` \
                 and load the stack's env file, or point it at a running queue-api"
            );
        };
        let parsed = reqwest::Url::parse(api_url)
            .with_context(|| format!("--api-url {api_url:?} is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--api-url {api_url:?} must be http:// or https://");
        }
        if !(0.0..=1.0).contains(&args.sse_share) {
            bail!(
                "--sse-share must be between 0 and 1, not {}",
                args.sse_share
            );
        }
        let event = match &args.event {
            Some(id) => id.clone(),
            None => format!("demo-{}", now_ms() / 1_000),
        };
        let event = EventId::parse(event.as_str()).map_err(|e| anyhow::anyhow!("--event: {e}"))?;
        Ok(Self {
            api_url: api_url.trim_end_matches('/').to_owned(),
            event,
            report_dir: args
                .report_dir
                .clone()
                .unwrap_or_else(|| args.state_dir.join("reports")),
            concurrency: args.concurrency.max(3) as usize,
            sse_share: args.sse_share,
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or_default()
}

fn build_report(
    tally: &Tally,
    plan: &Plan,
    args: &DemoArgs,
    timeline: Vec<Sample>,
    timed_out: bool,
) -> Report {
    let get = Tally::get;
    let latencies = tally.sorted_enter_latencies();
    let ms = |p| percentile(&latencies, p).map(|d| d.as_secs_f64() * 1_000.0);
    let finals = get(&tally.won)
        + get(&tally.lost)
        + get(&tally.sold_out)
        + get(&tally.expired)
        + get(&tally.closed);
    let users = u64::from(args.users);
    Report {
        event_id: plan.event.to_string(),
        users,
        entered: get(&tally.entered),
        admitted: get(&tally.admitted),
        won: get(&tally.won),
        lost: get(&tally.lost),
        sold_out: get(&tally.sold_out),
        sold_out_at_entry: get(&tally.sold_out_at_entry),
        closed_at_entry: get(&tally.closed_at_entry),
        expired: get(&tally.expired),
        closed: get(&tally.closed),
        errors: get(&tally.errors),
        unfinished: users.saturating_sub(finals + get(&tally.errors)),
        stock_total: args.stock,
        stock_left: args.stock,
        win_probability: args.win_probability,
        admission_rate_per_s: args.rate,
        seconds_to_last_result: tally.first_enter_to_last_result().map(|d| d.as_secs_f64()),
        signing_s: 0.0,
        enter_p50_ms: ms(50.0),
        enter_p99_ms: ms(99.0),
        verify: Verdict::Fail,
        verify_detail: String::new(),
        recheck: Recheck::failed(users, &anyhow::anyhow!("not asked yet")),
        database_outcomes: Default::default(),
        retries: get(&tally.retries),
        reconnects: get(&tally.reconnects),
        fell_back_to_polling: get(&tally.fell_back_to_polling),
        timed_out,
        error_samples: tally.error_samples(),
        timeline,
        user_finals: tally
            .finals_by_user()
            .into_iter()
            .map(|(index, streamed, state)| {
                let (platform, user) = identity(index);
                UserFinal {
                    platform: platform.to_owned(),
                    user,
                    streamed,
                    state: state.as_str(),
                }
            })
            .collect(),
        json_path: PathBuf::new(),
        svg_path: PathBuf::new(),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        demo: DemoArgs,
    }

    #[test]
    fn flags_are_consistent_and_default_as_documented() {
        Probe::command().debug_assert();
        let probe = Probe::try_parse_from([
            "probe",
            "--database-url",
            "postgres://u:secret@h/d",
            "--redis-url",
            "redis://h/0",
            "--seed-key-file",
            "seed.key",
        ])
        .expect("parses");
        let demo = probe.demo;
        assert_eq!(
            (demo.users, demo.stock, demo.rate, demo.concurrency),
            (20_000, 100, 2_000, 512)
        );
        assert_eq!((demo.win_probability, demo.sse_share), (0.05, 0.5));
        assert_eq!(demo.timeout, Duration::from_secs(300));
        assert!(!format!("{demo:?}").contains("secret"));
    }

    #[test]
    fn bad_settings_are_refused_before_anything_starts() {
        let args = |api: Option<&str>, share: f64, event: Option<&str>| DemoArgs {
            api_url: api.map(str::to_owned),
            database: DatabaseArgs::url(""),
            redis: RedisArgs::url(""),
            seed_key: SeedKeyArgs {
                seed_key_file: PathBuf::from("seed.key"),
            },
            state_dir: PathBuf::from(".dropgate"),
            users: 10,
            stock: 1,
            win_probability: 0.5,
            rate: 10,
            sse_share: share,
            concurrency: 8,
            event: event.map(str::to_owned),
            report_dir: None,
            timeout: Duration::from_secs(1),
        };
        let error = |args: DemoArgs| format!("{:#}", Plan::check(&args).err().expect("refused"));
        assert!(error(args(None, 0.5, None)).contains("DROPGATE_API_URL"));
        assert!(error(args(Some("ftp://h"), 0.5, None)).contains("http"));
        assert!(error(args(Some("http://h"), 1.5, None)).contains("--sse-share"));
        assert!(error(args(Some("http://h"), 0.5, Some("bad id"))).contains("--event"));
        let plan = Plan::check(&args(Some("http://h:1/"), 0.5, None)).expect("valid");
        assert_eq!(plan.api_url, "http://h:1");
        assert!(plan.event.as_str().starts_with("demo-"));
        assert_eq!(plan.report_dir, PathBuf::from(".dropgate/reports"));
    }
}
