//! The four functions as local processes next to the stack: queue-api, admitter,
//! goods-workers and result-relay, each detached, logging to `<state>/logs/`, recorded
//! in `<state>/functions.json` so `down` (and fault tests) find them by pid.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::{StackEnv, process};

/// One running function instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionProcess {
    /// Instance name: `queue-api`, `admitter`, `goods-worker-1`, `result-relay`, ...
    pub name: String,
    /// Its binary.
    pub binary: String,
    /// Recorded right after spawning.
    pub pid: u32,
    /// queue-api's HTTP port, or the ops port of the others.
    pub port: u16,
    /// queue-api's ops port (health, readiness, metrics); the others serve them on
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_port: Option<u16>,
}

impl FunctionProcess {
    /// The port of its `/healthz`, `/readyz` and `/metrics`.
    pub fn health_port(&self) -> u16 {
        self.ops_port.unwrap_or(self.port)
    }
}

/// Where the binaries are and how many goods-workers to run.
#[derive(Debug, Clone)]
pub struct FunctionsOptions {
    /// The stack's state directory.
    pub state_dir: PathBuf,
    /// Directory holding the function binaries (the build's target dir).
    pub bin_dir: PathBuf,
    /// goods-worker instances.
    pub goods_workers: u32,
}

/// `<dir>/functions.json`.
fn state_file(dir: &Path) -> PathBuf {
    dir.join("functions.json")
}

/// The recorded function instances.
pub fn load(dir: &Path) -> Result<Vec<FunctionProcess>> {
    match std::fs::read(state_file(dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes).context("Failed to parse functions.json"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error).context("Failed to read functions.json"),
    }
}

fn save(dir: &Path, processes: &[FunctionProcess]) -> Result<()> {
    let path = state_file(dir);
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, serde_json::to_vec_pretty(processes)?)?;
    std::fs::rename(&temp, &path).context("Failed to write functions.json")
}

/// Whether an instance's recorded process still runs.
pub fn is_running(instance: &FunctionProcess) -> bool {
    process::is_running(instance.pid, &instance.binary)
}

/// The instances `up` runs: (name, binary).
fn plan(goods_workers: u32) -> Vec<(String, &'static str)> {
    let mut plan = vec![
        ("queue-api".to_owned(), "queue-api"),
        ("admitter".to_owned(), "admitter"),
    ];
    for n in 1..=goods_workers.max(1) {
        plan.push((format!("goods-worker-{n}"), "goods-worker"));
    }
    plan.push(("result-relay".to_owned(), "result-relay"));
    plan
}

/// The base URL of the running queue-api, if any.
pub fn api_url(dir: &Path) -> Option<String> {
    load(dir)
        .ok()?
        .into_iter()
        .find(|instance| instance.binary == "queue-api" && is_running(instance))
        .map(|instance| format!("http://127.0.0.1:{}", instance.port))
}

/// Starts every function instance that is not running (on its recorded port if it
/// had one) and waits until each answers `/readyz`.
pub async fn up(
    options: &FunctionsOptions,
    env: &StackEnv,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<FunctionProcess>> {
    let dir = &options.state_dir;
    let mut recorded = load(dir)?;
    for (name, binary) in plan(options.goods_workers) {
        let previous = recorded
            .iter()
            .find(|instance| instance.name == name)
            .cloned();
        if let Some(instance) = &previous
            && is_running(instance)
        {
            progress(&format!("{name} already runs (pid {})", instance.pid));
            continue;
        }
        let log = dir.join("logs").join(format!("{name}.log"));
        // A port found free may be taken by another process before the instance binds
        // it (tests start many stacks at once): then it exits at start-up, and a fresh
        // pair of ports is tried. A recorded port is kept: clients know it.
        let mut attempt = 0;
        let instance = loop {
            attempt += 1;
            let port = match &previous {
                Some(instance) => instance.port,
                None => process::free_port()?,
            };
            let ops_port = match (binary, &previous) {
                (
                    "queue-api",
                    Some(FunctionProcess {
                        ops_port: Some(ops),
                        ..
                    }),
                ) => Some(*ops),
                ("queue-api", _) => Some(process::free_port()?),
                _ => None,
            };
            let instance = start(options, env, &name, binary, port, ops_port)?;
            recorded.retain(|other| other.name != name);
            recorded.push(instance.clone());
            save(dir, &recorded)?;
            match wait_ready(&instance, &log).await {
                Ok(()) => break instance,
                Err(_)
                    if previous.is_none()
                        && attempt < 3
                        && !is_running(&instance)
                        && std::fs::read_to_string(&log)
                            .is_ok_and(|text| text.contains("Address already in use")) =>
                {
                    continue;
                }
                Err(error) => return Err(error),
            }
        };
        progress(&format!(
            "{name} ready (pid {}, port {})",
            instance.pid, instance.port
        ));
    }
    Ok(recorded)
}

fn start(
    options: &FunctionsOptions,
    env: &StackEnv,
    name: &str,
    binary: &str,
    port: u16,
    ops_port: Option<u16>,
) -> Result<FunctionProcess> {
    let path = options.bin_dir.join(binary);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace --release)",
        path.display()
    );
    let mut command = Command::new(&path);
    for (key, value) in env.vars() {
        command.env(key, value);
    }
    let address = format!("127.0.0.1:{port}");
    if binary == "queue-api" {
        // The simulated crowd comes from one loopback address: a per-address limit
        // would throttle the demo, not protect anything.
        command
            .env("DROPGATE_API_ADDR", &address)
            .env("DROPGATE_API_IP_RATE", "0");
        if let Some(ops) = ops_port {
            command.env("DROPGATE_HEALTH_ADDR", format!("127.0.0.1:{ops}"));
        }
    } else {
        command.env("DROPGATE_HEALTH_ADDR", &address);
        // A restarted instance takes its old place in its consumer group at once
        // (static membership) instead of waiting for the dead member to time out.
        command.env("DROPGATE_KAFKA_INSTANCE_ID", name);
    }
    command.env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
    );
    let log = options.state_dir.join("logs").join(format!("{name}.log"));
    let pid = process::spawn_detached(command, &log)?;
    Ok(FunctionProcess {
        name: name.to_owned(),
        binary: binary.to_owned(),
        pid,
        port,
        ops_port,
    })
}

async fn wait_ready(instance: &FunctionProcess, log: &Path) -> Result<()> {
    let url = format!("http://127.0.0.1:{}/readyz", instance.health_port());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Ready only if the answer is this instance's: a port it failed to bind may
        // be another process's, and binding fails early in start-up, so the instance
        // must still run a moment after answering.
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if is_running(instance) {
                return Ok(());
            }
        }
        if !is_running(instance) {
            anyhow::bail!(
                "{} exited during start-up; its log is {}",
                instance.name,
                log.display()
            );
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{} was not ready within 30 s; its log is {}",
                instance.name,
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops one instance: SIGTERM (drain) or SIGKILL (a crash). Returns whether it ran.
pub fn stop(dir: &Path, name: &str, crash: bool) -> Result<bool> {
    let Some(instance) = load(dir)?
        .into_iter()
        .find(|instance| instance.name == name)
    else {
        anyhow::bail!("no function instance {name} in {}", dir.display());
    };
    Ok(if crash {
        process::kill_hard(instance.pid, &instance.binary)
    } else {
        process::stop(
            instance.pid,
            &instance.binary,
            Signal::SIGTERM,
            Duration::from_secs(15),
        )
    })
}

/// Stops every recorded instance (SIGTERM, SIGKILL after 15 s) and forgets them.
pub fn down(dir: &Path) -> Result<Vec<String>> {
    let mut stopped = Vec::new();
    for instance in load(dir)? {
        if process::stop(
            instance.pid,
            &instance.binary,
            Signal::SIGTERM,
            Duration::from_secs(15),
        ) {
            stopped.push(instance.name);
        }
    }
    let _ = std::fs::remove_file(state_file(dir));
    Ok(stopped)
}
