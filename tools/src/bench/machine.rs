//! What the figures were measured on: they mean nothing without it.

use std::fmt;
use std::process::Command;

use serde_json::{Value, json};

/// The machine and the versions of the parts measured.
#[derive(Debug, Clone)]
pub(super) struct Machine {
    cores: usize,
    memory_gib: f64,
    os: String,
    versions: String,
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.lines().next().map(str::to_owned))
        .unwrap_or_else(|| format!("{program}: unknown"))
}

/// Reads cores, memory, OS and versions.
pub(super) fn describe() -> Machine {
    let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|name| name.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "unknown OS".to_owned());
    let versions = [
        format!("dropgate {}", env!("CARGO_PKG_VERSION")),
        first_line("redis-server", &["--version"]),
        crate::stack::postgres_version(),
        first_line("tansu", &["--version"]),
    ]
    .join("; ");
    Machine {
        cores: std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1),
        memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        os,
        versions,
    }
}

impl Machine {
    /// For report.json.
    pub(super) fn to_json(&self) -> Value {
        json!({"cores": self.cores, "memory_gib": self.memory_gib, "os": self.os, "versions": self.versions})
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cores, {} GiB, {}; {}",
            self.cores, self.memory_gib, self.os, self.versions
        )
    }
}
