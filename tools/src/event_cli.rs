//! `dropgate event create|open|pause|close|show|verify|export`: running a drop from the
//! command line. PostgreSQL holds the event; when `DROPGATE_REDIS_URL` is set, every
//! change is mirrored into Redis so queue-api sees it at once.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;
use dropgate_core::{EventId, EventSeed, EventState, QueueMode};
use dropgate_functions::config::{DatabaseArgs, RedisArgs, RedisMode, Secret, TlsVerify};
use dropgate_functions::queue::QueueStore;
use dropgate_functions::seed_vault::SeedKey;
use sqlx::PgPool;

use crate::event_settings::EventSettingsArgs;
use crate::events::{self, EventRecord};

/// Which event, and where its stores are.
#[derive(Debug, Clone, clap::Args)]
pub struct EventTarget {
    /// The event id (letters, digits, `-_.`).
    #[arg(long = "id")]
    pub id: String,
    /// PostgreSQL.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Redis, to mirror the event for queue-api (optional: without it only
    /// PostgreSQL changes).
    #[arg(long = "redis-url", env = "DROPGATE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret<String>>,
    /// `single` or `cluster` (then the URL names one or more of the cluster's nodes,
    /// comma-separated).
    #[arg(long = "redis-mode", env = "DROPGATE_REDIS_MODE", value_enum, default_value_t = RedisMode::Single)]
    pub redis_mode: RedisMode,
    /// PEM file of the CA that signed Redis' server certificate (with `rediss://`).
    #[arg(long = "redis-ca-file", env = "DROPGATE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// `full` or `ca`: whether the Redis certificate must also name the host.
    #[arg(long = "redis-tls-verify", env = "DROPGATE_REDIS_TLS_VERIFY", value_enum, default_value_t = TlsVerify::Full)]
    pub redis_tls_verify: TlsVerify,
    /// Refuse plaintext or unverified connections to Redis.
    #[arg(long = "redis-require-tls", env = dropgate_functions::tls::REQUIRE_TLS_ENV)]
    pub redis_require_tls: bool,
    /// The key that seals each event's seed in PostgreSQL (64 hex digits in a file):
    /// creating an event seals its seed, opening a randomized pre-queue shuffles with
    /// it.
    #[arg(long = "seed-key-file", env = "DROPGATE_SEED_KEY_FILE")]
    pub seed_key_file: Option<std::path::PathBuf>,
}

impl EventTarget {
    /// The seed key, for the commands that seal or open a seed.
    fn seed_key(&self) -> Result<SeedKey> {
        let Some(path) = &self.seed_key_file else {
            anyhow::bail!(
                "this command needs the seed key: set DROPGATE_SEED_KEY_FILE (or --seed-key-file)"
            );
        };
        SeedKey::read_file(path)
    }

    /// The Redis settings, when a Redis URL is given.
    pub(crate) fn redis(&self) -> Option<RedisArgs> {
        self.redis_url.as_ref().map(|url| RedisArgs {
            url: url.clone(),
            mode: self.redis_mode,
            ca_file: self.redis_ca_file.clone(),
            verify: self.redis_tls_verify,
            require_tls: self.redis_require_tls,
        })
    }
}

/// Winners export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// A JSON array.
    Json,
}

/// The event admin subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EventAdminCommand {
    /// Create an event with a fresh secret seed; prints the seed's SHA-256
    /// commitment, to publish before the drop.
    Create {
        /// Which event.
        #[command(flatten)]
        target: EventTarget,
        /// Its settings.
        #[command(flatten)]
        settings: EventSettingsArgs,
        /// A public randomness beacon round to mix into the draw, e.g.
        /// `drand-quicknet/12345678`: published with the commitment now, its value is
        /// given at `event open --beacon-value`. Pick a round due shortly before the
        /// opening: nobody, not even whoever holds the seed, knows an outcome before it.
        #[arg(long)]
        beacon_round: Option<String>,
    },
    /// Start admitting.
    Open {
        /// Which event.
        #[command(flatten)]
        target: EventTarget,
        /// The published value (lowercase hex) of the beacon round the event names;
        /// required to open such an event.
        #[arg(long)]
        beacon_value: Option<String>,
    },
    /// Stop admitting for now; the queue keeps its order.
    Pause {
        /// Which event.
        #[command(flatten)]
        target: EventTarget,
    },
    /// End the event (irreversible): entry and admission stop at once, everyone
    /// still in line is told `closed`, the users already admitted are still drawn,
    /// and then the admitter closes the event and reveals its seed.
    Close {
        /// Which event.
        #[command(flatten)]
        target: EventTarget,
        /// Wait until the event is closed and print the revealed seed (gives up after
        /// this many seconds; 0 returns once closing has begun).
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
    },
    /// A live view of the drop in the terminal: the line, admissions, draws and
    /// outcomes, stock, the admitter's leader, consumer lag and errors, with their last
    /// minutes as sparklines, refreshed every second; `p`, `r`, `c` pause, resume and
    /// close (each asks for a `y`), `q` quits.
    Watch {
        /// The event and where to read it.
        #[command(flatten)]
        watch: crate::watch::WatchArgs,
    },
    /// Settings, counters, commitment (and the seed once closed), the draws' outcomes
    /// and the users told a final state without a draw, as JSON.
    Show {
        /// Which event.
        #[command(flatten)]
        target: EventTarget,
    },
    /// Recompute every draw of a closed event from its revealed seed; exits 2 on any
    /// mismatch.
    Verify {
        /// Which event.
        #[command(flatten)]
        target: EventTarget,
    },
    /// Print the event's public fairness data as JSON (docs/fairness.md): the
    /// commitment and the draw's parameters; once closed, also the seed, every decision
    /// and every answer given without a draw, for `verifier/dropgate_verify.py`.
    Fairness {
        /// Which event.
        #[command(flatten)]
        target: EventTarget,
    },
    /// Print the winners in decision order.
    Export {
        /// Which event.
        #[command(flatten)]
        target: EventTarget,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
    },
}

async fn connect(target: &EventTarget) -> Result<(EventId, PgPool)> {
    let event = EventId::parse(target.id.as_str()).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
    Ok((event, target.database.pool(2).await?))
}

async fn mirror(target: &EventTarget, record: &EventRecord) -> Result<()> {
    match target.redis() {
        Some(redis) => {
            let store = QueueStore::connect(&redis).await?;
            events::mirror(&store, record).await?;
            eprintln!("queue side updated (Redis)");
        }
        None => {
            eprintln!("note: DROPGATE_REDIS_URL is not set; queue-api does not see this change yet")
        }
    }
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs one subcommand; the exit code says how it went.
pub async fn run(command: EventAdminCommand) -> Result<ExitCode> {
    match command {
        EventAdminCommand::Create {
            target,
            settings,
            beacon_round,
        } => {
            let config = settings
                .to_config(SystemTime::now())
                .map_err(|errors| anyhow::anyhow!("the event settings are not valid: {errors}"))?;
            let seed_key = target.seed_key()?;
            let (event, pool) = connect(&target).await?;
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let commitment = events::create_with_beacon(
                &pool,
                &event,
                &config,
                &EventSeed::from_bytes(bytes),
                &seed_key,
                beacon_round.as_deref(),
            )
            .await?;
            let record = events::load(&pool, &event).await?;
            mirror(&target, &record).await?;
            println!("created event {event} (scheduled)");
            println!("seed commitment (SHA-256, publish it now): {commitment}");
            if let Some(round) = beacon_round {
                println!(
                    "beacon round (publish it with the commitment; its value opens the event): {round}"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        EventAdminCommand::Open {
            target,
            beacon_value,
        } => {
            if let Some(value) = beacon_value {
                let (event, pool) = connect(&target).await?;
                events::supply_beacon(&pool, &event, &value).await?;
                println!("beacon value recorded: it is mixed into every draw of {event}");
            }
            change_state(target, EventState::Open).await
        }
        EventAdminCommand::Pause { target } => change_state(target, EventState::Paused).await,
        EventAdminCommand::Close { target, wait_secs } => {
            let (event, pool) = connect(&target).await?;
            let before = events::load(&pool, &event).await?;
            if !matches!(before.state, EventState::Closing | EventState::Closed) {
                change_state(target, EventState::Closing).await?;
                eprintln!(
                    "the line is told `closed`; the admitter closes the event and reveals the seed once every admitted user is decided"
                );
            }
            if wait_secs == 0 {
                return Ok(ExitCode::SUCCESS);
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
            loop {
                let record = events::load(&pool, &event).await?;
                if let (EventState::Closed, Some(seed)) = (record.state, &record.seed) {
                    println!("event {event} is closed");
                    println!("seed (revealed; anyone can now verify the draw): {seed}");
                    return Ok(ExitCode::SUCCESS);
                }
                if std::time::Instant::now() >= deadline {
                    eprintln!(
                        "event {event} is still {} after {wait_secs} s; is an admitter running?",
                        record.state
                    );
                    return Ok(ExitCode::from(3));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        EventAdminCommand::Watch { watch } => {
            crate::watch::run(watch).await?;
            Ok(ExitCode::SUCCESS)
        }
        EventAdminCommand::Show { target } => {
            let (event, pool) = connect(&target).await?;
            let record = events::load(&pool, &event).await?;
            let counts: serde_json::Map<String, serde_json::Value> =
                events::outcome_counts(&pool, &event)
                    .await?
                    .into_iter()
                    .map(|(outcome, count)| (outcome, count.into()))
                    .collect();
            let undrawn: serde_json::Map<String, serde_json::Value> =
                events::undrawn_counts(&pool, &event)
                    .await?
                    .into_iter()
                    .map(|(state, count)| (state, count.into()))
                    .collect();
            print_json(&serde_json::json!({
                "event": record,
                "outcomes": counts,
                "without_a_draw": undrawn,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        EventAdminCommand::Verify { target } => {
            let (event, pool) = connect(&target).await?;
            let report = events::verify_event(&pool, &event).await?;
            println!(
                "{event}: {} decisions replayed, {} winners, stock left {}",
                report.decisions, report.winners, report.stock_left
            );
            if report.passed() {
                println!("verified: every draw matches the revealed seed and the rule");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{} problems found:", report.findings.len());
                for finding in &report.findings {
                    println!("  {}", serde_json::to_string(finding)?);
                }
                Ok(ExitCode::from(2))
            }
        }
        EventAdminCommand::Fairness { target } => {
            let (event, pool) = connect(&target).await?;
            let mut conn = pool.acquire().await?;
            print_json(&events::fairness_data(&mut conn, &event).await?)?;
            Ok(ExitCode::SUCCESS)
        }
        EventAdminCommand::Export { target, format } => {
            let (event, pool) = connect(&target).await?;
            let winners = events::winners(&pool, &event).await?;
            match format {
                ExportFormat::Json => print_json(&winners)?,
                ExportFormat::Csv => {
                    println!("decision_order,platform_id,user_id,ticket,decided_at");
                    // Ids are restricted to letters, digits and `-_.@|+=`: no quoting needed.
                    for winner in winners {
                        println!(
                            "{},{},{},{},{}",
                            winner.decision_order,
                            winner.platform_id,
                            winner.user_id,
                            winner.ticket,
                            winner.decided_at
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn change_state(target: EventTarget, to: EventState) -> Result<ExitCode> {
    let (event, pool) = connect(&target).await?;
    let before = events::load(&pool, &event).await?;
    if to == EventState::Open
        && before.state == EventState::Scheduled
        && before.queue_mode == QueueMode::RandomizedPreQueue
    {
        // Shuffled while still scheduled, so nobody is admitted in the old order.
        let Some(redis) = target.redis() else {
            anyhow::bail!(
                "opening a randomized pre-queue needs DROPGATE_REDIS_URL: the queue is shuffled in Redis"
            );
        };
        let store = QueueStore::connect(&redis).await?;
        let moved = events::shuffle_pre_queue(&pool, &store, &target.seed_key()?, &event).await?;
        println!("pre-queue of {moved} users shuffled with the event's seed");
    }
    let record = events::transition(&pool, &event, to).await?;
    mirror(&target, &record).await?;
    println!("event {event} is {}", record.state.as_str());
    if let (EventState::Closed, Some(seed)) = (record.state, &record.seed) {
        println!("seed (revealed; anyone can now verify the draw): {seed}");
    }
    Ok(ExitCode::SUCCESS)
}
