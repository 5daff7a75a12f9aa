//! `dropgate bench`: the headline figures, each next to the raw limit of the part it
//! stands on, measured on the running local stack the same way every time.
//!
//! 1. enter: HTTP enters with distinct pre-signed RS256 tokens at 64 and 256
//!    connections, against `redis-benchmark -t zadd` on the same Redis;
//! 2. draw: preloaded `Admitted` messages through goods-workers, against a pgbench
//!    script doing the same batched writes and the broker's raw produce + consume;
//! 3. drop: a crowd entering as fast as it can, admission unthrottled;
//! 4. memory: Redis bytes per waiting user.

mod cpu;
mod draw;
mod enter;
mod http1;
mod machine;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use plotters::style::RGBColor;
use serde_json::{Value, json};

use crate::chart::{Chart, Series};
use crate::demo::{self, DemoArgs};
use crate::stack;

/// `dropgate bench` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The stack's state directory (run `dropgate local up` on it first).
    #[arg(long, env = "DROPGATE_STATE_DIR", default_value = ".dropgate")]
    pub state_dir: PathBuf,
    /// Where report.json, report.md and the plots go.
    #[arg(long, default_value = "target/bench")]
    pub report_dir: PathBuf,
    /// Enter requests per connection count.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u32,
    /// Admitted messages preloaded for the draw pipeline.
    #[arg(long, default_value_t = 200_000)]
    pub draw_messages: u32,
    /// Users of the drop run (`--drop-users 1000000` is the million-user drop).
    #[arg(long, default_value_t = 100_000)]
    pub drop_users: u32,
    /// Stock of the drop run.
    #[arg(long, default_value_t = 1_000)]
    pub drop_stock: u32,
    /// Waiting users for the memory figure.
    #[arg(long, default_value_t = 100_000)]
    pub memory_users: u32,
    /// Run only these sections (repeat or separate with commas); every one by default.
    /// The report leaves the others out.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Section>,
}

/// A section of `dropgate bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// HTTP enters at 64 and 256 connections, with the CPU per enter.
    Enter,
    /// The draw pipeline.
    Draw,
    /// A whole drop through the HTTP API.
    Drop,
    /// Redis bytes per waiting user.
    Memory,
}

impl BenchArgs {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

/// Runs every benchmark; exit 0 when all ran (targets missed are reported, not
/// failures).
pub fn main(args: BenchArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    eprintln!("bench: {line}");
}

async fn run(args: &BenchArgs) -> Result<()> {
    let env = stack::env(&args.state_dir)?;
    let api = env
        .api_url
        .clone()
        .context("queue-api does not run on this stack; run `dropgate local up` first")?;
    std::fs::create_dir_all(&args.report_dir)
        .with_context(|| format!("Failed to create {}", args.report_dir.display()))?;
    let machine = machine::describe();
    say(&format!("machine: {machine}"));

    let cpu = cpu::CpuParts::of_stack(&args.state_dir)?;
    let enter = if args.runs(Section::Enter) {
        say("enter: HTTP vs redis-benchmark ZADD");
        Some(enter::run(&env, &api, args.requests, &cpu).await?)
    } else {
        None
    };

    let draw = if args.runs(Section::Draw) {
        say("draw pipeline: goods-workers vs pgbench and the raw broker");
        Some(draw::run(&env, args.draw_messages, &cpu).await?)
    } else {
        None
    };

    let event = format!("bench-drop-{}", std::process::id());
    let drop = if args.runs(Section::Drop) {
        say("drop: a crowd entering as fast as it can, admission unthrottled");
        Some(drop_figures(args, &env, &api, &event, &cpu).await?)
    } else {
        None
    };

    let memory = if args.runs(Section::Memory) {
        say("memory: Redis bytes per waiting user");
        enter::memory(&env, args.memory_users).await?
    } else {
        Value::Null
    };

    let report = json!({
        "machine": machine.to_json(),
        "enter": enter.as_ref().map(|enter| enter.json.clone()),
        "draw": draw.as_ref().map(|draw| draw.json.clone()),
        // The million-user drop is a figure of its own, not the default drop's.
        drop_key(args.drop_users): drop,
        "memory": memory,
        "reproduce": "make bench  (or: dropgate local up && dropgate bench)",
    });
    let json_path = args.report_dir.join("report.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    let mut plots = Vec::new();
    if let Some(enter) = &enter {
        let cdf = Chart {
            title: "enter latency CDF",
            x_label: "latency (ms)",
            y_label: "share of requests (%)",
        }
        .render(&enter.cdf_series())?;
        let path = args.report_dir.join("enter-latency-cdf.svg");
        std::fs::write(&path, cdf)?;
        plots.push(path);
    }
    if let Some(draw) = &draw {
        let throughput = Chart {
            title: "draw pipeline throughput",
            x_label: "seconds since the workers started",
            y_label: "results per second",
        }
        .render(&[Series {
            name: "draws/s",
            colour: RGBColor(0x75, 0x70, 0xb3),
            points: draw.throughput.clone(),
        }])?;
        let path = args.report_dir.join("draw-throughput.svg");
        std::fs::write(&path, throughput)?;
        plots.push(path);
    }
    let markdown = markdown(&report);
    std::fs::write(args.report_dir.join("report.md"), &markdown)?;
    println!("{markdown}");
    println!("report: {}", json_path.display());
    for plot in plots {
        println!("plot:   {}", plot.display());
    }
    Ok(())
}

/// The report's key for a drop of `users`.
fn drop_key(users: u32) -> &'static str {
    if users >= 1_000_000 {
        "drop_1m"
    } else {
        "drop"
    }
}

/// A whole drop through the HTTP API with admission unthrottled.
async fn drop_figures(
    args: &BenchArgs,
    env: &stack::StackEnv,
    api: &str,
    event: &str,
    cpu: &cpu::CpuParts,
) -> Result<Value> {
    // Signing happens inside the run before its first enter; the window then covers
    // signing too, so its CPU is read per user over the whole run and reported
    // next to the signing time.
    let before = cpu.snapshot();
    let drop = demo::run(&DemoArgs {
        api_url: Some(api.to_owned()),
        database: dropgate_functions::config::DatabaseArgs::url(env.database_url.clone()),
        redis: env.redis(),
        seed_key: env.seed_key_args(),
        state_dir: env.state_dir.clone(),
        users: args.drop_users,
        stock: args.drop_stock,
        win_probability: 0.05,
        rate: 1_000_000,
        sse_share: 0.5,
        concurrency: 512,
        event: Some(event.to_owned()),
        report_dir: Some(args.report_dir.clone()),
        timeout: Duration::from_secs(600),
    })
    .await?;
    Ok(json!({
        "users": drop.users,
        "stock": drop.stock_total,
        "seconds_to_last_result": drop.seconds_to_last_result,
        "entered": drop.entered,
        "won": drop.won,
        "unfinished": drop.unfinished,
        "errors": drop.errors,
        "verify": format!("{:?}", drop.verify).to_lowercase(),
        "signing_s": drop.signing_s,
        "peak_rss_mib": cpu.peak_rss_mib(),
        "cpu": cpu.snapshot().since(&before, drop.users),
        "timeline_svg": args.report_dir.join(format!("{event}-timeline.svg")),
        "target_s": if args.drop_users >= 1_000_000 { 120 } else { 60 },
    }))
}

fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "n/a".to_owned(),
    }
}

/// The README table.
fn markdown(report: &Value) -> String {
    let machine = &report["machine"];
    let mut text = format!(
        "## Benchmarks\n\nMachine: {} cores, {} GiB, {}; {}.\nReproduce: `make bench`.\n\n",
        machine["cores"],
        machine["memory_gib"],
        machine["os"].as_str().unwrap_or("unknown OS"),
        machine["versions"].as_str().unwrap_or("unknown versions")
    );
    text.push_str(
        "| figure | measured | limit it stands on | ratio | target |\n|---|---|---|---|---|\n",
    );
    for connections in ["c64", "c256"] {
        let enter = &report["enter"][connections];
        if enter.is_null() {
            continue;
        }
        text.push_str(&format!(
            "| enter, {} connections | {} req/s, p50 {} ms, p99 {} ms, p999 {} ms, {} errors; the enter script held Redis {} µs per call ({} calls) | redis-benchmark ZADD {} req/s (the enter script alone: {} req/s, ratio {}; a script of one ZADD: {} req/s) | {} | ≥ 0.50{} |\n",
            &connections[1..],
            number(&enter["rps"]),
            number(&enter["p50_ms"]),
            number(&enter["p99_ms"]),
            number(&enter["p999_ms"]),
            enter["errors"],
            number(&enter["script_us_per_call"]),
            enter["script_calls"],
            number(&enter["zadd_rps"]),
            number(&enter["enter_script_rps"]),
            number(&enter["script_ratio"]),
            number(&enter["one_zadd_script_rps"]),
            number(&enter["ratio"]),
            if connections == "c256" { ", p99 < 25 ms" } else { "" },
        ));
    }
    let draw = &report["draw"];
    if !draw.is_null() {
        text.push_str(&format!(
        "| draw pipeline, {} messages | {} draws/s from the first consume ({} s before it joining the group and fetching; {} draws/s counting those) | pgbench batched {} draws/s; broker produce+consume {} msg/s | {} | ≥ 30,000/s and ≥ 0.5 |\n",
        draw["messages"],
        number(&draw["draws_per_s"]),
        number(&draw["startup_s"]),
        number(&draw["draws_per_s_from_start"]),
        number(&draw["pg_batched_draws_per_s"]),
        number(&draw["broker_msgs_per_s"]),
        number(&draw["ratio"]),
    ));
    }
    let drop = if report["drop"].is_null() {
        &report["drop_1m"]
    } else {
        &report["drop"]
    };
    if !drop.is_null() {
        let peaks = drop["peak_rss_mib"]
            .as_object()
            .map(|parts| {
                parts
                    .iter()
                    .map(|(name, mib)| format!("{name} {}", number(mib)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        text.push_str(&format!(
            "| drop, {} users, stock {} | {} s first enter to last result, verify {}, {} unfinished, {} errors (tokens signed before timing in {} s) | peak RSS, MiB: {} | | < {} s |\n",
            drop["users"],
            drop["stock"],
            number(&drop["seconds_to_last_result"]),
            drop["verify"].as_str().unwrap_or("n/a"),
            drop["unfinished"],
            drop["errors"],
            number(&drop["signing_s"]),
            peaks,
            drop["target_s"],
        ));
    }
    let memory = &report["memory"];
    if !memory.is_null() {
        text.push_str(&format!(
            "| memory, {} waiting users | {} bytes per user | | | ≤ {} |\n",
            memory["users"],
            number(&memory["bytes_per_user"]),
            memory["target"],
        ));
    }
    text.push_str(&cpu_table(report));
    text
}

/// Where the CPU went while each rate was measured: microseconds per request or draw
/// for each part, and the cores it kept busy.
fn cpu_table(report: &Value) -> String {
    let windows = [
        (
            "enter, 64 conns (per request)",
            &report["enter"]["c64"]["cpu"],
        ),
        (
            "enter, 256 conns (per request)",
            &report["enter"]["c256"]["cpu"],
        ),
        (
            "unrouted request, 64 conns: HTTP and middleware only",
            &report["enter"]["parts"]["unrouted"]["cpu"],
        ),
        (
            "enter again, 64 conns: cached token, place found",
            &report["enter"]["parts"]["enter_again"]["cpu"],
        ),
        ("draw pipeline (per draw)", &report["draw"]["cpu"]),
    ];
    let windows: Vec<_> = windows
        .into_iter()
        .filter(|(_, cpu)| cpu["us_per_unit"].is_object())
        .collect();
    let Some(parts) = windows
        .first()
        .and_then(|(_, cpu)| cpu["us_per_unit"].as_object())
    else {
        return String::new();
    };
    let names: Vec<&String> = parts.keys().collect();
    let mut text = String::from(
        "\nCPU per unit of work while it was measured, µs (cores busy on average); `dropgate bench` is the load generator, and in the draw figure also the goods-workers and the result reader:\n\n| window |",
    );
    for name in &names {
        text.push_str(&format!(" {name} |"));
    }
    text.push_str(" total |\n|---|");
    text.push_str(&"---|".repeat(names.len() + 1));
    text.push('\n');
    for (label, cpu) in windows {
        text.push_str(&format!("| {label} |"));
        for name in &names {
            text.push_str(&format!(
                " {} ({}) |",
                number(&cpu["us_per_unit"][name.as_str()]),
                number(&cpu["cores"][name.as_str()])
            ));
        }
        text.push_str(&format!(
            " {} ({}) |\n",
            number(&cpu["total_us_per_unit"]),
            number(&cpu["total_cores"])
        ));
    }
    text
}
