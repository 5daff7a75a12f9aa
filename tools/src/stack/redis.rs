//! redis-server for the local stack: loopback only, AOF on, no RDB snapshots (the AOF
//! is what survives a crash mid-drop). On a `--tls` stack it listens on a TLS port
//! only (the plaintext port is off) and requires a password.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
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

/// Starts redis-server on `port` with its data in `<state>/redis`: plaintext, or
/// TLS-only with a password.
pub(crate) fn start(options: &StackOptions, port: u16, tls: Option<&RedisTls>) -> Result<u32> {
    let dir = options.state_dir.join("redis");
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
    spawn_detached(command, &options.log_file("redis"))
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
    state_dir.join("redis").join("appendonlydir").exists()
}
