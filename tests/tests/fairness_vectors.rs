//! The independent verifier (`verifier/dropgate_verify.py`, Python's standard library
//! only) reproduces every published test vector of docs/fairness.md: commitments, the
//! draw's bytes and values, the thresholds, a whole drop and the pre-queue shuffle.
//! The Rust side checks the same file in `core/tests/fairness_vectors.rs`.

use std::path::Path;
use std::process::Command;

#[test]
fn the_independent_verifier_reproduces_every_test_vector() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("python3")
        .arg(root.join("verifier/dropgate_verify.py"))
        .arg("vectors")
        .arg(root.join("docs/fairness-vectors.json"))
        .output()
        .expect("python3 runs the verifier");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("pass: test vectors"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_independent_verifier_refuses_a_changed_vector() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let published =
        std::fs::read_to_string(root.join("docs/fairness-vectors.json")).expect("vectors");
    let mut vectors: serde_json::Value = serde_json::from_str(&published).expect("json");
    // One draw value off by one: the verifier must notice.
    let value: u64 = vectors["draw_values"][0]["draw_value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a draw value");
    vectors["draw_values"][0]["draw_value"] = (value ^ 1).to_string().into();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), vectors.to_string()).expect("write");
    let output = Command::new("python3")
        .arg(root.join("verifier/dropgate_verify.py"))
        .arg("vectors")
        .arg(file.path())
        .output()
        .expect("python3 runs the verifier");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stdout).contains("draw value"));
}
