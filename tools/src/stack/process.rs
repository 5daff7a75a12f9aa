//! Starting the stack's servers as detached processes and stopping them by recorded
//! pid, so `down` works from any later process, even after the launcher was killed.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

/// Starts `command` in its own process group (so a Ctrl-C aimed at the launcher's
/// terminal does not reach it and it outlives the launcher), with stdout and stderr
/// appended to `log`. Returns its pid.
pub(crate) fn spawn_detached(mut command: Command, log: &Path) -> Result<u32> {
    let out = open_log(log)?;
    let err = out
        .try_clone()
        .with_context(|| format!("Failed to reopen {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = command
        .spawn()
        .with_context(|| format!("Failed to start {:?}", command.get_program()))?;
    // The child is not waited for: it belongs to the stack, not to this process.
    Ok(child.id())
}

fn open_log(log: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("Failed to open log {}", log.display()))
}

/// Whether `pid` is a live (not zombie) process whose name is `program`. Checking the
/// name guards against a recycled pid: `down` must never kill somebody else's process.
pub(crate) fn is_running(pid: u32, program: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which may hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    // comm is truncated to 15 bytes by the kernel.
    let expected: String = program.chars().take(15).collect();
    comm.trim_end() == expected
}

/// Sends `signal`, waits up to `grace` for the process to go, then SIGKILLs it.
/// Returns false if it was not running in the first place.
pub(crate) fn stop(pid: u32, program: &str, signal: Signal, grace: Duration) -> bool {
    if !is_running(pid, program) {
        return false;
    }
    let target = Pid::from_raw(pid as i32);
    let _ = kill(target, signal);
    if wait_gone(pid, program, grace) {
        return true;
    }
    let _ = kill(target, Signal::SIGKILL);
    wait_gone(pid, program, Duration::from_secs(5));
    true
}

/// Kills the process at once, the way a crash would.
pub(crate) fn kill_hard(pid: u32, program: &str) -> bool {
    stop(pid, program, Signal::SIGKILL, Duration::from_secs(5))
}

fn wait_gone(pid: u32, program: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !is_running(pid, program) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !is_running(pid, program)
}

/// A TCP port on 127.0.0.1 that was free a moment ago. The OS picks it, so parallel
/// stacks never collide on a fixed number; the small window before the server binds
/// it is covered by the callers' retry.
pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("Failed to find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `ready` every 50 ms until it returns true, `alive` turns false (the server
/// died: no point waiting) or `timeout` passes.
pub(crate) fn wait_until(
    what: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if !alive() {
            anyhow::bail!("{what} exited during start-up");
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{what} did not become ready within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_pid_with_another_name_is_not_ours() {
        let me = std::process::id();
        assert!(!is_running(me, "redis-server"));
        assert!(!is_running(u32::MAX - 1, "redis-server"));
    }

    #[test]
    fn stops_a_detached_process_by_pid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("sleep");
        command.arg("30");
        let pid = spawn_detached(command, &dir.path().join("sleep.log")).expect("spawns");
        assert!(is_running(pid, "sleep"));
        assert!(stop(pid, "sleep", Signal::SIGTERM, Duration::from_secs(5)));
        assert!(!is_running(pid, "sleep"));
        assert!(!stop(pid, "sleep", Signal::SIGTERM, Duration::from_secs(1)));
    }
}
