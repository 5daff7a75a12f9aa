//! The independent verifier (`verifier/dropgate_verify.py`, Python's standard library
//! alone) run on a drop's public fairness data. The script is compiled into the binary
//! and fed to `python3` on its standard input, so the check runs wherever `dropgate`
//! does, not only in a checkout of the repository.

use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The verifier's source, as published in the repository.
const SCRIPT: &str = include_str!("../../verifier/dropgate_verify.py");

/// What the independent verifier concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndependentVerdict {
    /// It found nothing wrong.
    pub passed: bool,
    /// The kinds of finding it reported (the same names `dropgate event verify` uses).
    pub kinds: Vec<String>,
}

/// Runs the verifier on `data` (the JSON `dropgate event fairness` prints). Fails when
/// `python3` cannot be run or the verifier could not read the data.
pub fn verify(data: &serde_json::Value) -> Result<IndependentVerdict> {
    let file = tempfile::NamedTempFile::new().context("Failed to create a temporary file")?;
    std::fs::write(file.path(), serde_json::to_vec(data)?)
        .context("Failed to write the fairness data")?;
    let mut child = Command::new("python3")
        .args(["-", "drop"])
        .arg(file.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("Failed to run python3 (the independent verifier needs it; scripts/setup.sh installs it)")?;
    child
        .stdin
        .take()
        .context("python3 has no standard input")?
        .write_all(SCRIPT.as_bytes())
        .context("Failed to hand the verifier to python3")?;
    let output = child
        .wait_with_output()
        .context("Failed to wait for python3")?;
    let report: serde_json::Value = match serde_json::from_slice(&output.stdout) {
        Ok(report) => report,
        Err(_) => bail!(
            "the independent verifier gave no report (exit {:?}): {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    };
    let kinds = report["findings"]
        .as_array()
        .map(|findings| {
            findings
                .iter()
                .filter_map(|finding| finding["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let passed = output.status.code() == Some(0);
    if passed != (report["passed"] == true) {
        bail!("the independent verifier's exit code and report disagree");
    }
    Ok(IndependentVerdict { passed, kinds })
}
