//! Enter throughput and latency over HTTP, next to `redis-benchmark -t zadd` at the
//! same concurrency; and Redis memory per waiting user.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dropgate_core::{EventId, EventState, UserKey};
use dropgate_functions::auth::dev::{DevKeys, TokenSigner};
use dropgate_functions::queue::scripts::enter::EnterScript;
use dropgate_functions::queue::{EventMeta, QueueStore};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::style::RGBColor;
use serde_json::{Value, json};

use super::cpu::CpuParts;
use super::http1::{Connection, Target};
use crate::chart::Series;
use crate::demo::percentile;
use crate::stack::StackEnv;

/// Connection counts measured.
const CONNECTIONS: [usize; 2] = [64, 256];

/// The enter figures.
pub(super) struct EnterFigures {
    /// For report.json.
    pub(super) json: Value,
    /// Sorted latencies per connection count, for the CDF plot.
    latencies: Vec<(usize, Vec<Duration>)>,
}

impl EnterFigures {
    /// One CDF line per connection count.
    pub(super) fn cdf_series(&self) -> Vec<Series<'static>> {
        const COLOURS: [RGBColor; 2] = [RGBColor(0x1b, 0x9e, 0x77), RGBColor(0xd9, 0x5f, 0x02)];
        const NAMES: [&str; 2] = ["64 connections", "256 connections"];
        self.latencies
            .iter()
            .enumerate()
            .map(|(index, (_, sorted))| {
                let step = (sorted.len() / 200).max(1);
                let points = sorted
                    .iter()
                    .enumerate()
                    .step_by(step)
                    .map(|(rank, latency)| {
                        (
                            latency.as_secs_f64() * 1_000.0,
                            (rank + 1) as f64 * 100.0 / sorted.len() as f64,
                        )
                    })
                    .collect();
                Series {
                    name: NAMES[index % 2],
                    colour: COLOURS[index % 2],
                    points,
                }
            })
            .collect()
    }
}

fn bar(length: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Signs `count` tokens for distinct users on every core.
async fn sign_tokens(
    state_dir: &std::path::Path,
    prefix: &str,
    count: usize,
) -> Result<Vec<String>> {
    let keys = Arc::new(TokenSigner::local(&DevKeys::in_state_dir(state_dir))?);
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    let progress = bar(count as u64, "signing tokens");
    let chunk = count.div_ceil(workers);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let keys = keys.clone();
        let prefix = prefix.to_owned();
        let progress = progress.clone();
        tasks.push(tokio::task::spawn_blocking(
            move || -> Result<Vec<String>> {
                let range = (worker * chunk)..((worker + 1) * chunk).min(count);
                range
                    .map(|n| {
                        progress.inc(1);
                        keys.sign("bench", &format!("{prefix}{n}"), Duration::from_secs(3_600))
                    })
                    .collect()
            },
        ));
    }
    let mut tokens = Vec::with_capacity(count);
    for task in tasks {
        tokens.extend(task.await??);
    }
    progress.finish();
    Ok(tokens)
}

fn redis_port(url: &str) -> Option<u16> {
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|port| port.parse().ok())
}

/// `redis-benchmark -t zadd` requests per second.
fn zadd_rps(redis_url: &str, connections: usize, requests: u32) -> Result<f64> {
    redis_benchmark(redis_url, connections, requests, &["-t", "zadd"])
}

/// A script with the enter script's keys and arguments that does nothing but the ZADD:
/// the ceiling of any enter that is one atomic script, whatever it checks. Next to
/// plain ZADD it shows what calling a script costs Redis by itself.
const ONE_ZADD_SCRIPT: &str = "redis.call('ZADD', KEYS[3], 1, ARGV[1]) return 1";

/// A script's own ceiling: `redis-benchmark` calling it with EVALSHA for a distinct
/// random user each time, on an event of its own. Every HTTP enter runs the enter
/// script once, so no enter rate can pass its figure; next to ZADD it shows how much
/// of the gap is Redis doing the enter's work (six commands in one script) rather
/// than HTTP.
fn script_rps(redis_url: &str, connections: usize, requests: u32, script: &str) -> Result<f64> {
    let port = redis_port(redis_url).context("no port in the Redis URL")?;
    let cli = |args: &[&str]| -> Result<String> {
        let output = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .context("Failed to run redis-cli (apt package redis-tools)")?;
        anyhow::ensure!(
            output.status.success(),
            "redis-cli failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let sha = cli(&["SCRIPT", "LOAD", script])?;
    let event = EventId::parse(format!("bench-script-{}-{connections}", std::process::id()))?;
    let keys = dropgate_functions::queue::EventKeys::new(&event);
    cli(&[
        "HSET",
        &keys.meta(),
        "state",
        EventState::Open.as_str(),
        "rate",
        "1",
    ])?;
    let rps = redis_benchmark(
        redis_url,
        connections,
        requests,
        &[
            "-r",
            "100000000",
            "evalsha",
            &sha,
            "5",
            &keys.meta(),
            &keys.seq(),
            &keys.line(),
            &keys.users(),
            &keys.serving(),
            "bench:__rand_int__",
            "1700000000",
        ],
    )?;
    cli(&[
        "DEL",
        &keys.meta(),
        &keys.seq(),
        &keys.line(),
        &keys.users(),
    ])?;
    Ok(rps)
}

/// Runs `redis-benchmark` quietly and returns its requests per second.
fn redis_benchmark(
    redis_url: &str,
    connections: usize,
    requests: u32,
    what: &[&str],
) -> Result<f64> {
    let port = redis_port(redis_url).context("no port in the Redis URL")?;
    let output = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
        .args(["-c", &connections.to_string(), "-n", &requests.to_string()])
        .args(what)
        .output()
        .context("Failed to run redis-benchmark (apt package redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_rate(&text).with_context(|| format!("unexpected redis-benchmark output: {text}"))
}

/// The rate in `ZADD: 61349.69 requests per second, p50=0.551 msec` (or `evalsha
/// ...: 30000.00 requests per second`), which follows `\r`-separated progress lines.
fn parse_rate(text: &str) -> Option<f64> {
    text.split(['\r', '\n'])
        .filter_map(|line| line.split_once(" requests per second"))
        .filter_map(|(before, _)| before.rsplit(' ').next())
        .filter_map(|number| number.parse().ok())
        .next_back()
}

async fn open_event(store: &QueueStore, id: &str) -> Result<EventId> {
    let event = EventId::parse(id)?;
    let meta = EventMeta {
        state: EventState::Open,
        rate_per_s: 1,
        abandon_timeout_ms: 600_000,
        opens_at_ms: 0,
        allowed_platforms: Vec::new(),
    };
    store.put_event_meta(&event, &meta).await?;
    Ok(event)
}

/// Enters over HTTP at each connection count.
pub(super) async fn run(
    env: &StackEnv,
    api: &str,
    requests: u32,
    cpu: &CpuParts,
) -> Result<EnterFigures> {
    let store = QueueStore::connect(&env.redis()).await?;
    let mut figures = serde_json::Map::new();
    let mut all_latencies = Vec::new();
    for connections in CONNECTIONS {
        let id = format!("bench-enter-{}-{connections}", std::process::id());
        let event = open_event(&store, &id).await?;
        let tokens = Arc::new(
            sign_tokens(
                &env.state_dir,
                &format!("c{connections}-"),
                requests as usize,
            )
            .await?,
        );
        let target = Target::parse(&format!("{api}/v1/events/{event}/queue"))?;
        // Built before timing, like the tokens: the clock runs on the server's work.
        let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
            tokens
                .iter()
                .map(|token| target.post_with_token(token))
                .collect(),
        );
        let mut connections_open = Vec::with_capacity(connections);
        for _ in 0..connections {
            connections_open.push(Connection::open(target.clone()).await?);
        }
        let progress = bar(u64::from(requests), &format!("enter, {connections} conns"));
        let mut redis = store.connection();
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut redis)
            .await?;
        let cpu_before = cpu.snapshot();
        let started = Instant::now();
        let (mut latencies, errors, connections_open) =
            drive(connections_open, &bodies, progress.clone(), |status| {
                (200..300).contains(&status)
            })
            .await?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_used = cpu.snapshot().since(&cpu_before, u64::from(requests));
        let commandstats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut redis)
            .await?;
        let (script_calls, script_us_per_call) =
            script_time(&commandstats).context("no evalsha line in INFO commandstats")?;
        progress.finish();
        latencies.sort_unstable();
        let ms = |p: f64| percentile(&latencies, p).map(|d| d.as_secs_f64() * 1_000.0);
        let rps = latencies.len() as f64 / elapsed;
        let zadd = zadd_rps(&env.redis_url, connections, requests)?;
        let script = script_rps(
            &env.redis_url,
            connections,
            requests,
            EnterScript::default().source(),
        )?;
        let one_zadd_script = script_rps(&env.redis_url, connections, requests, ONE_ZADD_SCRIPT)?;
        let line = json!({
            "requests": requests, "connections": connections, "rps": rps,
            "p50_ms": ms(50.0), "p99_ms": ms(99.0), "p999_ms": ms(99.9), "errors": errors,
            "zadd_rps": zadd, "ratio": rps / zadd,
            "token_algorithm": "RS256 (2048-bit), pre-signed before timing",
            "enter_script_rps": script, "script_ratio": rps / script,
            "one_zadd_script_rps": one_zadd_script,
            "script_calls": script_calls,
            "script_us_per_call": script_us_per_call,
            "cpu": cpu_used,
            "load_generator": "dropgate bench: one keep-alive HTTP/1.1 connection per task, requests pre-built (bench/http1.rs)",
        });
        eprintln!("bench: enter at {connections} connections: {line}");
        figures.insert(format!("c{connections}"), line);
        all_latencies.push((connections, latencies));
        if connections == CONNECTIONS[0] {
            let parts =
                parts_of_an_enter(connections_open, &bodies, &target, &tokens, cpu, requests)
                    .await?;
            eprintln!("bench: the parts of an enter: {parts}");
            figures.insert("parts".to_owned(), parts);
        }
    }
    Ok(EnterFigures {
        json: Value::Object(figures),
        latencies: all_latencies,
    })
}

/// Sends `requests` over `connections`, each connection taking the next request
/// until none is left; an answer whose status `accepted` refuses counts as an error.
/// Returns the latencies of the accepted answers, the error count and the
/// connections, still open.
async fn drive(
    connections: Vec<Connection>,
    requests: &Arc<Vec<Vec<u8>>>,
    progress: ProgressBar,
    accepted: fn(u16) -> bool,
) -> Result<(Vec<Duration>, u64, Vec<Connection>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for mut connection in connections {
        let (requests, next, progress) =
            (Arc::clone(requests), Arc::clone(&next), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(index) else {
                    break;
                };
                match connection.send(request).await {
                    Ok(answer) if accepted(answer.status) => latencies.push(answer.latency),
                    _ => errors += 1,
                }
                progress.inc(1);
            }
            (latencies, errors, connection)
        }));
    }
    let mut latencies = Vec::with_capacity(requests.len());
    let mut errors = 0;
    let mut connections = Vec::new();
    for worker in workers {
        let (mine, failed, connection) = worker.await?;
        latencies.extend(mine);
        errors += failed;
        connections.push(connection);
    }
    Ok((latencies, errors, connections))
}

/// What an enter's parts cost queue-api, with the same connections and the same
/// requests as the 64-connection window: the bare HTTP round trip with every layer
/// (a path no route serves: answered 404 before any token or Redis work), and an
/// enter without the RSA verification (the same users again: their tokens are in
/// queue-api's verified-token cache and the script finds their place). The full
/// enter minus the second is the verification; the second minus the first is the
/// route's own work, Redis round trip included.
async fn parts_of_an_enter(
    connections: Vec<Connection>,
    enters: &Arc<Vec<Vec<u8>>>,
    target: &Target,
    tokens: &[String],
    cpu: &CpuParts,
    requests: u32,
) -> Result<Value> {
    let unrouted = Target {
        path: format!("{}/no-such-route", target.path),
        ..target.clone()
    };
    let bare: Arc<Vec<Vec<u8>>> = Arc::new(
        tokens
            .iter()
            .map(|token| unrouted.post_with_token(token))
            .collect(),
    );
    let mut figures = serde_json::Map::new();
    let mut connections = connections;
    for (name, batch, accepted) in [
        (
            "unrouted",
            &bare,
            (|status| status == 404) as fn(u16) -> bool,
        ),
        ("enter_again", enters, |status| status == 200),
    ] {
        let progress = bar(u64::from(requests), name);
        let before = cpu.snapshot();
        let (_, errors, open) = drive(connections, batch, progress.clone(), accepted).await?;
        progress.finish();
        connections = open;
        figures.insert(
            name.to_owned(),
            json!({"errors": errors, "cpu": cpu.snapshot().since(&before, u64::from(requests))}),
        );
    }
    Ok(Value::Object(figures))
}

/// Calls and Redis' own microseconds per call of every script run (`EVALSHA`) since
/// the last `CONFIG RESETSTAT`: the time the enter script holds Redis, without the
/// network work around it. The admitter's scripts in the same window are counted
/// too; `calls` next to the window's enters shows how few they are.
fn script_time(commandstats: &str) -> Option<(u64, f64)> {
    let line = commandstats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))?;
    let field = |name: &str| {
        line.split(',')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    };
    Some((
        field("calls")?.parse().ok()?,
        field("usec_per_call")?.parse().ok()?,
    ))
}

fn used_memory(info: &str) -> Option<u64> {
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
}

/// The most Redis may hold per waiting user (a user record and a line entry).
pub(super) const MEMORY_TARGET_BYTES: u32 = 150;

/// Redis `used_memory` growth per waiting user, entering through the same script
/// queue-api uses.
pub(super) async fn memory(env: &StackEnv, users: u32) -> Result<Value> {
    let store = QueueStore::connect(&env.redis()).await?;
    let event = open_event(&store, &format!("bench-memory-{}", std::process::id())).await?;
    let mut redis = store.connection();
    let info = |text: String| used_memory(&text).context("no used_memory in INFO");
    let before = info(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut redis)
            .await?,
    )?;
    let progress = bar(u64::from(users), "waiting users");
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..64 {
        let (store, event, next, progress) = (
            store.clone(),
            event.clone(),
            Arc::clone(&next),
            progress.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= users as usize {
                    return anyhow::Ok(());
                }
                let user = UserKey::parse("bench", &format!("user-{n:07}"))?;
                store.enter(&event, &user, 1).await?;
                progress.inc(1);
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    progress.finish();
    let after = info(
        redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut redis)
            .await?,
    )?;
    let bytes_per_user = after.saturating_sub(before) as f64 / f64::from(users.max(1));
    Ok(
        json!({"users": users, "used_memory_before": before, "used_memory_after": after,
              "bytes_per_user": bytes_per_user, "target": MEMORY_TARGET_BYTES}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tools_outputs() {
        let benchmark = "ZADD: rps=0.0 (overall: nan) avg_msec=nan\rZADD: 61349.69 requests per second, p50=0.551 msec\n";
        assert_eq!(parse_rate(benchmark), Some(61_349.69));
        assert_eq!(parse_rate("garbage"), None);
        assert_eq!(
            used_memory("# Memory\r\nused_memory:1048576\r\nused_memory_human:1M"),
            Some(1_048_576)
        );
        assert_eq!(redis_port("redis://127.0.0.1:34763/0"), Some(34_763));
    }

    #[test]
    fn script_time_is_read_from_the_evalsha_line() {
        let stats = "# Commandstats\r\ncmdstat_zadd:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\ncmdstat_evalsha:calls=60012,usec=433286,usec_per_call=7.22,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(script_time(stats), Some((60_012, 7.22)));
        assert_eq!(script_time("# Commandstats\r\n"), None);
    }
}
