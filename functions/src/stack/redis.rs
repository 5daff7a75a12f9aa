//! redis-server for the local stack: loopback only, AOF on, no RDB snapshots (the AOF
//! is what survives a crash mid-drop).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use super::process::{is_running, spawn_detached, wait_until};
use super::{AppendFsync, StackOptions};

/// Starts redis-server on `port` with its data in `<state>/redis`.
pub(crate) fn start(options: &StackOptions, port: u16) -> Result<u32> {
    let dir = options.state_dir.join("redis");
    std::fs::create_dir_all(&dir)?;
    let mut command = Command::new(&options.redis_server);
    command.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
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

/// Waits until the server answers PING.
pub(crate) fn wait_ready(pid: u32, port: u16) -> Result<()> {
    wait_until(
        "redis-server",
        Duration::from_secs(20),
        || is_running(pid, "redis-server"),
        || ping(port),
    )
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
