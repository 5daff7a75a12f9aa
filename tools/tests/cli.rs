//! The `dropgate` CLI as an operator meets it: clear messages and exit codes, no panics.

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("running {binary}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn event_check_prints_valid_settings_as_json() {
    let out = run(
        env!("CARGO_BIN_EXE_dropgate"),
        &["event", "check", "--stock", "100"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(config["stock"], 100);
    assert_eq!(config["win_probability"], 0.05);
    assert_eq!(config["queue_mode"], "fifo");
}

#[test]
fn event_check_lists_every_problem_and_exits_2() {
    let out = run(
        env!("CARGO_BIN_EXE_dropgate"),
        &[
            "event",
            "check",
            "--stock",
            "0",
            "--win-probability",
            "0",
            "--rate",
            "0",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for expected in [
        "stock must be at least 1",
        "win probability",
        "admission rate",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}
