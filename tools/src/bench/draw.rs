//! The draw pipeline's throughput, next to what PostgreSQL takes of the same batched
//! writes (pgbench) and what the broker moves raw (produce, then consume).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use dropgate_core::{
    Admitted, EventConfig, EventId, EventSeed, EventState, MESSAGE_VERSION, Message as _, UserKey,
};
use dropgate_functions::config::TopicArgs;
use dropgate_functions::goods_worker::{GoodsArgs, GoodsWorker};
use dropgate_functions::kafka;
use dropgate_functions::ops_server::{OpsArgs, Readiness};
use futures_util::future::join_all;
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::cpu::CpuParts;
use crate::events;
use crate::stack::{self, StackEnv};
use dropgate_functions::seed_vault::SeedKey;

/// The draw figures.
pub(super) struct DrawFigures {
    /// For report.json.
    pub(super) json: Value,
    /// (seconds, results per second) every half second.
    pub(super) throughput: Vec<(f64, f64)>,
}

/// goods-workers run in the benchmark, as `make local` runs them.
const WORKERS: usize = 2;

async fn create_event(
    pool: &sqlx::PgPool,
    seed_key: &SeedKey,
    id: &str,
    stock: u32,
) -> Result<EventId> {
    let event = EventId::parse(id)?;
    let mut config = EventConfig::new(stock, 0);
    config.win_probability = 0.05;
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    events::create(
        pool,
        &event,
        &config,
        &EventSeed::from_bytes(seed),
        seed_key,
    )
    .await?;
    events::transition(pool, &event, EventState::Open).await?;
    Ok(event)
}

/// Runs the pipeline on `messages` preloaded admissions.
pub(super) async fn run(env: &StackEnv, messages: u32, cpu: &CpuParts) -> Result<DrawFigures> {
    let pool = sqlx::PgPool::connect(&env.database_url).await?;
    let tag = std::process::id();
    let event = create_event(
        &pool,
        &env.seed_key()?,
        &format!("bench-draw-{tag}"),
        10_000,
    )
    .await?;
    let waiting = format!("bench-{tag}-waiting-queue");
    let results = format!("bench-{tag}-result-notification");
    for topic in [&waiting, &results] {
        stack::create_topic(&env.state_dir, topic, 6)?;
    }
    let kafka_args = env.kafka();
    let topics = TopicArgs::new(waiting.clone(), results.clone());

    // Preload, timing the raw produce.
    let producer = kafka::producer(&kafka_args).await?;
    let started = Instant::now();
    for chunk_start in (0..messages).step_by(5_000) {
        let sends = (chunk_start..(chunk_start + 5_000).min(messages)).map(|n| {
            let message = Admitted {
                version: MESSAGE_VERSION,
                event_id: event.clone(),
                user: UserKey::parse("bench", &format!("d{n:07}")).expect("valid id"),
                ticket: u64::from(n) + 1,
                admitted_at_ms: 0,
            };
            // As the admitter keys admissions on Kafka: by event, so the event's
            // admissions are decided in ticket order on one partition.
            let (key, payload) = (event.to_string(), message.encode());
            let producer = &producer;
            let topic = &waiting;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&payload),
                        kafka::DELIVERY_TIMEOUT,
                    )
                    .await
                    .map_err(|(error, _)| anyhow::anyhow!("preload failed: {error}"))
            }
        });
        for sent in join_all(sends).await {
            sent?;
        }
    }
    let produce_s = started.elapsed().as_secs_f64();

    // Raw consume of the same messages.
    let reader = kafka::consumer(&kafka_args, &format!("bench-raw-{tag}"), &waiting).await?;
    let started = Instant::now();
    let mut read = 0u32;
    while read < messages {
        tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .context("the raw consume stalled")??;
        read += 1;
    }
    let consume_s = started.elapsed().as_secs_f64();
    drop(reader);
    let broker_msgs_per_s = f64::from(messages) / (produce_s + consume_s);
    eprintln!(
        "bench: broker raw: produce {produce_s:.1} s, consume {consume_s:.1} s for {messages} messages"
    );

    // The pipeline.
    let results_reader =
        kafka::consumer(&kafka_args, &format!("bench-results-{tag}"), &results).await?;
    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let args = GoodsArgs {
            database: env.database(),
            kafka: kafka_args.clone(),
            topics: topics.clone(),
            ops: OpsArgs {
                health_addr: "127.0.0.1:0".parse()?,
            },
            seed_key: env.seed_key_args(),
            group: format!("bench-goods-{tag}"),
            batch_size: 500,
            batch_wait_ms: 5,
            db_pool: 4,
        };
        let worker = GoodsWorker::connect(&args, Readiness::default()).await?;
        workers.push(tokio::spawn(worker.run(stopped.clone())));
    }
    let cpu_before = cpu.snapshot();
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut decided = 0u32;
    let mut throughput = Vec::new();
    let mut window_start = Instant::now();
    let mut window_count = 0u32;
    let mut last = Duration::ZERO;
    while decided < messages {
        tokio::time::timeout(Duration::from_secs(60), results_reader.recv())
            .await
            .context("the draw pipeline stalled")??;
        decided += 1;
        window_count += 1;
        last = started.elapsed();
        if window_start.elapsed() >= Duration::from_millis(500) {
            throughput.push((
                last.as_secs_f64(),
                f64::from(window_count) / window_start.elapsed().as_secs_f64(),
            ));
            window_start = Instant::now();
            window_count = 0;
        }
    }
    let cpu_used = cpu.snapshot().since(&cpu_before, u64::from(messages));
    let _ = stop.send(true);
    for worker in workers {
        let _ = worker.await;
    }
    // The clock runs from the first consume, as the figure is defined: the first
    // draw transaction starts within one batch wait of it. Joining the consumer group
    // and the first fetch come before and are reported on their own.
    let first_draw_s: f64 = sqlx::query_scalar(
        "select extract(epoch from min(decided_at))::float8 from draws where event_id = $1",
    )
    .bind(event.as_str())
    .fetch_one(&pool)
    .await
    .context("Failed to read the first draw's time")?;
    let started_s = started_wall.duration_since(UNIX_EPOCH)?.as_secs_f64();
    let startup_s = (first_draw_s - started_s).clamp(0.0, last.as_secs_f64());
    let seconds = last.as_secs_f64() - startup_s;
    let draws_per_s = f64::from(messages) / seconds;

    let pg_batched_draws_per_s = pgbench(env, &pool).await?;
    let limit = pg_batched_draws_per_s.min(broker_msgs_per_s);
    let figures = json!({
        "messages": messages, "workers": WORKERS, "batch_size": 500,
        "seconds": seconds, "draws_per_s": draws_per_s,
        "startup_s": startup_s, "seconds_from_start": last.as_secs_f64(),
        "draws_per_s_from_start": f64::from(messages) / last.as_secs_f64(),
        "cpu": cpu_used,
        "pg_batched_draws_per_s": pg_batched_draws_per_s,
        "broker_msgs_per_s": broker_msgs_per_s,
        "broker_produce_s": produce_s, "broker_consume_s": consume_s,
        "ratio": draws_per_s / limit,
        "target_draws_per_s": 30_000, "target_ratio": 0.5,
    });
    eprintln!("bench: draw pipeline: {figures}");
    Ok(DrawFigures {
        json: figures,
        throughput,
    })
}

/// Draws per second PostgreSQL takes when each transaction does what a goods-worker
/// batch does for 100 users: the guarded stock update and 100 draw inserts.
async fn pgbench(env: &StackEnv, pool: &sqlx::PgPool) -> Result<f64> {
    let tag = std::process::id();
    let event = create_event(pool, &env.seed_key()?, &format!("bench-pg-{tag}"), 1_000).await?;
    let sequence = format!("bench_draw_seq_{tag}");
    sqlx::query(&format!("create sequence if not exists {sequence}"))
        .execute(pool)
        .await?;
    let script = format!(
        "begin;\n\
         update events set stock_left = stock_left, decisions_made = decisions_made + 100 where event_id = '{event}' and stock_left >= 0;\n\
         insert into draws (event_id, platform_id, user_id, ticket, draw_value, outcome, decision_order, decided_at) \
         select '{event}', 'pg', 'u' || n, n, n, 'lost', n, now() from (select nextval('{sequence}') as n from generate_series(1, 100)) s;\n\
         commit;\n"
    );
    let dir = tempfile::tempdir()?;
    let script_path = dir.path().join("draws.sql");
    std::fs::write(&script_path, script)?;
    let url = &env.database_url;
    let (credentials, rest) = url
        .trim_start_matches("postgres://")
        .split_once('@')
        .context("unexpected DATABASE_URL")?;
    let (user, password) = credentials
        .split_once(':')
        .context("unexpected DATABASE_URL")?;
    let (host_port, database) = rest.split_once('/').context("unexpected DATABASE_URL")?;
    let (host, port) = host_port
        .split_once(':')
        .context("unexpected DATABASE_URL")?;
    let output = std::process::Command::new(stack::postgres_bin_dir()?.join("pgbench"))
        .args(["-n", "-c", "2", "-j", "2", "-T", "10", "-f"])
        .arg(&script_path)
        .args(["-h", host, "-p", port, "-U", user, database])
        .env("PGPASSWORD", password)
        .output()
        .context("Failed to run pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .with_context(|| {
            format!(
                "unexpected pgbench output: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    eprintln!("bench: pgbench: {tps:.0} transactions/s of 100 draws");
    Ok(tps * 100.0)
}
