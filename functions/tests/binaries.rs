//! The function binaries as an operator meets them: clear messages and exit codes, no
//! panics.

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
fn functions_name_the_missing_setting() {
    let out = run(env!("CARGO_BIN_EXE_queue-api"), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--redis-url"), "{stderr}");
}

/// Each function, pointed at services that do not answer, exits 1 with a message that
/// names what it could not reach, and never prints a password it was given.
#[test]
fn functions_say_what_they_cannot_reach_without_leaking_the_password() {
    let jwks = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(jwks.path(), r#"{"keys":[]}"#).expect("write");
    let jwks_path = jwks.path().to_str().expect("utf-8 path");
    let redis = ("DROPGATE_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0");
    let database = ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/d");
    let kafka = ("DROPGATE_KAFKA_BROKERS", "127.0.0.1:1");
    let ops = ("DROPGATE_HEALTH_ADDR", "127.0.0.1:0");
    let key_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(key_file.path(), "42".repeat(32)).expect("write");
    let seed_key = (
        "DROPGATE_SEED_KEY_FILE",
        key_file.path().to_str().expect("utf-8 path"),
    );
    let no_seed_key = ("DROPGATE_SEED_KEY_FILE", "/nonexistent/seed.key");
    // (binary, environment, the service its message names)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 6] = [
        (
            env!("CARGO_BIN_EXE_queue-api"),
            vec![
                redis,
                ("DROPGATE_JWKS_FILE", jwks_path),
                ("DROPGATE_JWT_ISSUER", "https://issuer.example"),
                ("DROPGATE_JWT_AUDIENCE", "dropgate"),
            ],
            "Redis",
        ),
        (
            env!("CARGO_BIN_EXE_admitter"),
            vec![redis, database, kafka, ops, seed_key],
            "Redis",
        ),
        (
            env!("CARGO_BIN_EXE_admitter"),
            vec![redis, database, kafka, ops, no_seed_key],
            "DROPGATE_SEED_KEY_FILE",
        ),
        (
            env!("CARGO_BIN_EXE_goods-worker"),
            vec![database, kafka, ops, seed_key],
            "PostgreSQL",
        ),
        (
            env!("CARGO_BIN_EXE_goods-worker"),
            vec![database, kafka, ops, no_seed_key],
            "DROPGATE_SEED_KEY_FILE",
        ),
        (
            env!("CARGO_BIN_EXE_result-relay"),
            vec![redis, kafka, ops],
            "Redis",
        ),
    ];
    for (binary, env, names) in cases {
        let out = run(binary, &[], &env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{binary}: {stderr}");
        assert!(stderr.contains(names), "{binary}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "{binary} printed a secret: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{binary}: {stderr}");
    }
}

#[test]
fn help_never_shows_a_secret_taken_from_the_environment() {
    for binary in [
        env!("CARGO_BIN_EXE_queue-api"),
        env!("CARGO_BIN_EXE_admitter"),
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
