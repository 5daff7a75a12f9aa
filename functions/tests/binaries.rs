//! The binaries as an operator meets them: clear messages and exit codes, no panics.

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

#[test]
fn functions_name_the_missing_setting() {
    let out = run(env!("CARGO_BIN_EXE_queue-api"), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--redis-url"), "{stderr}");
}

#[test]
fn configured_skeletons_say_so_and_exit_non_zero() {
    let redis = ("DROPGATE_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0");
    let kafka = ("DROPGATE_KAFKA_BROKERS", "127.0.0.1:1");
    let cases: [(&str, Vec<(&str, &str)>); 1] =
        [(env!("CARGO_BIN_EXE_admitter"), vec![redis, kafka])];
    for (binary, env) in cases {
        let out = run(binary, &[], &env);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{binary}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(stderr.contains("configuration is valid"), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "{binary} printed a secret: {stderr}"
        );
    }
}

#[test]
fn queue_api_says_what_it_cannot_reach_without_leaking_the_password() {
    let jwks = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(jwks.path(), r#"{"keys":[]}"#).expect("write");
    let jwks_path = jwks.path().to_str().expect("utf-8 path");
    let out = run(
        env!("CARGO_BIN_EXE_queue-api"),
        &[],
        &[
            ("DROPGATE_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0"),
            ("DROPGATE_JWKS_FILE", jwks_path),
            ("DROPGATE_JWT_ISSUER", "https://issuer.example"),
            ("DROPGATE_JWT_AUDIENCE", "dropgate"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Redis"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "printed a secret: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn result_relay_says_what_it_cannot_reach_without_leaking_the_password() {
    let out = run(
        env!("CARGO_BIN_EXE_result-relay"),
        &[],
        &[
            ("DROPGATE_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0"),
            ("DROPGATE_KAFKA_BROKERS", "127.0.0.1:1"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Redis"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "printed a secret: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn goods_worker_says_what_it_cannot_reach_without_leaking_the_password() {
    let out = run(
        env!("CARGO_BIN_EXE_goods-worker"),
        &[],
        &[
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/d"),
            ("DROPGATE_KAFKA_BROKERS", "127.0.0.1:1"),
            ("DROPGATE_HEALTH_ADDR", "127.0.0.1:0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "printed a secret: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_never_shows_a_secret_taken_from_the_environment() {
    for binary in [
        env!("CARGO_BIN_EXE_queue-api"),
        env!("CARGO_BIN_EXE_goods-worker"),
        env!("CARGO_BIN_EXE_result-relay"),
    ] {
        let out = run(
            binary,
            &["--help"],
            &[
                ("DROPGATE_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0"),
                ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/d"),
            ],
        );
        assert!(out.status.success(), "{binary}");
        let stdout = text(&out.stdout);
        assert!(
            !stdout.contains("hunter2"),
            "{binary} --help printed a secret: {stdout}"
        );
    }
}
