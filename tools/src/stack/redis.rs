//! redis-server for the local stack: loopback only, AOF on, no RDB snapshots (the AOF
//! is what survives a crash mid-drop). On a `--tls` stack it listens on a TLS port
//! only (the plaintext port is off) and requires a password.
//!
//! `--redis-cluster N` starts N such servers with cluster mode on and joins them into
//! a Redis Cluster of N primaries (`redis-cli --cluster create`), each owning a third
//! (for three) of the slots. A primary that stops leaves its slots unserved until it
//! is back; the others keep serving theirs (`cluster-require-full-coverage no`),
//! which is what a drop on another event needs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use dropgate_functions::config::RedisArgs;

use super::certs::{StackCerts, write_private};
use super::process::{is_running, spawn_detached, wait_until};
use super::{AppendFsync, StackOptions};

/// How a `--tls` stack's Redis is reached.
#[derive(Debug, Clone)]
pub(crate) struct RedisTls {
    /// The server certificate and the CA clients trust.
    pub(crate) certs: StackCerts,
    /// The default user's password.
    pub(crate) password: String,
}

/// Which of the stack's redis-servers: the only one, or one node of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisNode {
    /// The stack's single Redis.
    Single,
    /// Node `index` (from 0) of a cluster.
    Cluster(usize),
}

impl RedisNode {
    /// Its data directory: `redis` (node 0 too, so a stack's first node is where a
    /// single Redis would be), `redis-node-<i>` for the others.
    pub(crate) fn dir(self, state_dir: &Path) -> std::path::PathBuf {
        match self {
            RedisNode::Single | RedisNode::Cluster(0) => state_dir.join("redis"),
            RedisNode::Cluster(index) => state_dir.join(format!("redis-node-{index}")),
        }
    }

    /// Its log file's name.
    pub(crate) fn log_name(self) -> String {
        match self {
            RedisNode::Single | RedisNode::Cluster(0) => "redis".to_owned(),
            RedisNode::Cluster(index) => format!("redis-node-{index}"),
        }
    }
}

/// Starts redis-server on `port` with its data in the node's directory: plaintext, or
/// TLS-only with a password.
pub(crate) fn start(
    options: &StackOptions,
    node: RedisNode,
    port: u16,
    tls: Option<&RedisTls>,
) -> Result<u32> {
    let dir = node.dir(&options.state_dir);
    std::fs::create_dir_all(&dir)?;
    let mut command = Command::new(&options.redis_server);
    if let Some(tls) = tls {
        // A config file, not flags, so the password never shows in `ps`.
        let config = dir.join("tls.conf");
        let text = format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\nrequirepass {}\n",
            tls.certs.server_cert.display(),
            tls.certs.server_key.display(),
            tls.certs.ca.display(),
            tls.password
        );
        write_private(&config, text.as_bytes())?;
        command.arg(&config);
    } else {
        command.args(["--port", &port.to_string()]);
    }
    command.args([
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.to_string_lossy(),
        "--appendonly",
        "yes",
        "--appendfsync",
        match options.redis_fsync {
            AppendFsync::Always => "always",
            AppendFsync::Everysec => "everysec",
        },
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--maxclients",
        "10000",
    ]);
    if let RedisNode::Cluster(_) = node {
        command.args([
            "--cluster-enabled",
            "yes",
            // Relative to --dir: each node keeps its own view of the cluster.
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--cluster-require-full-coverage",
            "no",
        ]);
    }
    spawn_detached(command, &options.log_file(&node.log_name()))
}

/// Joins the nodes on `ports` into one cluster of primaries (slots split evenly) and
/// waits until every node says the cluster is ok.
pub(crate) fn create_cluster(ports: &[u16]) -> Result<()> {
    let mut command = Command::new("redis-cli");
    command.args(["--cluster", "create"]);
    for port in ports {
        command.arg(format!("127.0.0.1:{port}"));
    }
    let output = command
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .context("Failed to run redis-cli (Debian package redis-tools)")?;
    anyhow::ensure!(
        output.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    wait_cluster_ok(ports)
}

/// Waits until every node on `ports` reports `cluster_state:ok` and knows all of
/// them (gossip takes a moment after a create or a restart).
pub(crate) fn wait_cluster_ok(ports: &[u16]) -> Result<()> {
    let ok = |port: u16| {
        let Ok(client) = ::redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
            return false;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(500))
        else {
            return false;
        };
        let info: String = ::redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut connection)
            .unwrap_or_default();
        info.contains("cluster_state:ok")
            && info.contains(&format!("cluster_known_nodes:{}", ports.len()))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if ports.iter().all(|&port| ok(port)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the Redis cluster on ports {ports:?} did not become ok within 30 s")
}

/// Waits until the server answers PING (over TLS, authenticated, on a `--tls` stack).
pub(crate) fn wait_ready(pid: u32, port: u16, tls: Option<&RedisTls>) -> Result<()> {
    wait_until(
        "redis-server",
        Duration::from_secs(20),
        || is_running(pid, "redis-server"),
        || match tls {
            Some(tls) => ping_tls(port, tls),
            None => ping(port),
        },
    )
}

/// The URL of a stack's Redis.
pub(crate) fn url(port: u16, tls: Option<&RedisTls>) -> String {
    match tls {
        Some(tls) => format!("rediss://:{}@127.0.0.1:{port}/0", tls.password),
        None => format!("redis://127.0.0.1:{port}/0"),
    }
}

fn ping_tls(port: u16, tls: &RedisTls) -> bool {
    let args = RedisArgs {
        ca_file: Some(tls.certs.ca.clone()),
        ..RedisArgs::url(url(port, Some(tls)))
    };
    let Ok(client) = args.client() else {
        return false;
    };
    client
        .get_connection_with_timeout(Duration::from_millis(500))
        .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
        .is_ok_and(|reply| reply == "PONG")
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// Whether `dir` holds an AOF (for status output).
pub(crate) fn has_aof(state_dir: &Path) -> bool {
    RedisNode::Single
        .dir(state_dir)
        .join("appendonlydir")
        .exists()
}
