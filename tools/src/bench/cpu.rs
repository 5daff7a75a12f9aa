//! CPU time per part of the stack over a measured window, read from `/proc`: where a
//! figure's cost goes on the shared cores, in every run and without a profiler.
//!
//! On two cores the load generator, the functions and the servers all compete, so a
//! rate alone does not say which part to make cheaper; CPU microseconds per request
//! (or per draw) do.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Map, Value, json};

use crate::stack::{Component, StackState, functions};

/// How a part's processes are found.
#[derive(Debug, Clone)]
enum Processes {
    /// One process and its children, running or already waited for (PostgreSQL's
    /// backends, this process's redis-benchmark and pgbench runs).
    Tree(u32),
    /// Several processes of one kind (the goods-worker replicas).
    Each(Vec<u32>),
}

/// The parts of a local stack worth telling apart.
#[derive(Debug, Clone)]
pub(super) struct CpuParts {
    parts: Vec<(String, Processes)>,
}

/// CPU seconds per part at one moment.
#[derive(Debug, Clone)]
pub(super) struct CpuSnapshot {
    at: Instant,
    seconds: Vec<(String, f64)>,
}

impl CpuParts {
    /// The stack's servers, its functions and this process (the load generator,
    /// in-process goods-workers of the draw figure, and the redis-benchmark and
    /// pgbench children it waited for).
    pub(super) fn of_stack(state_dir: &Path) -> Result<Self> {
        let state = StackState::load(state_dir)?;
        let mut parts = Vec::new();
        for component in Component::ALL {
            if let Some(server) = state.server(component) {
                parts.push((component.program().to_owned(), Processes::Tree(server.pid)));
            }
        }
        let mut by_binary: Vec<(String, Vec<u32>)> = Vec::new();
        for instance in functions::load(state_dir)? {
            match by_binary
                .iter_mut()
                .find(|(name, _)| *name == instance.binary)
            {
                Some((_, pids)) => pids.push(instance.pid),
                None => by_binary.push((instance.binary, vec![instance.pid])),
            }
        }
        parts.extend(
            by_binary
                .into_iter()
                .map(|(name, pids)| (name, Processes::Each(pids))),
        );
        parts.push((
            "dropgate bench".to_owned(),
            Processes::Tree(std::process::id()),
        ));
        Ok(Self { parts })
    }

    /// Each part's peak resident memory so far in MiB (`VmHWM`): for a part of
    /// several processes of one kind the largest, for a tree its main process (a
    /// PostgreSQL backend's shared buffers would be counted once per backend).
    pub(super) fn peak_rss_mib(&self) -> Value {
        let peak = |pid: u32| -> Option<f64> {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let kib: f64 = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kib / 1024.0)
        };
        let mut parts = Map::new();
        for (name, processes) in &self.parts {
            let mib = match processes {
                Processes::Tree(pid) => peak(*pid),
                Processes::Each(pids) => pids.iter().filter_map(|pid| peak(*pid)).reduce(f64::max),
            };
            if let Some(mib) = mib {
                parts.insert(name.clone(), json!(mib));
            }
        }
        Value::Object(parts)
    }

    /// CPU seconds used so far by each part.
    pub(super) fn snapshot(&self) -> CpuSnapshot {
        let processes = ProcessTimes::read();
        let seconds = self
            .parts
            .iter()
            .map(|(name, processes_of_part)| {
                let ticks: u64 = match processes_of_part {
                    Processes::Tree(pid) => processes.tree(*pid),
                    Processes::Each(pids) => pids.iter().map(|pid| processes.own(*pid)).sum(),
                };
                (name.clone(), ticks as f64 / TICKS_PER_SECOND)
            })
            .collect();
        CpuSnapshot {
            at: Instant::now(),
            seconds,
        }
    }
}

impl CpuSnapshot {
    /// What each part used since `earlier`, per unit of work (`units` requests or
    /// draws) in microseconds and as cores busy on average.
    pub(super) fn since(&self, earlier: &CpuSnapshot, units: u64) -> Value {
        let wall_s = self.at.duration_since(earlier.at).as_secs_f64();
        let mut per_unit = Map::new();
        let mut cores = Map::new();
        let mut total = 0.0;
        for (name, now) in &self.seconds {
            let before = earlier
                .seconds
                .iter()
                .find(|(other, _)| other == name)
                .map_or(0.0, |(_, seconds)| *seconds);
            let used = (now - before).max(0.0);
            total += used;
            per_unit.insert(name.clone(), json!(used * 1e6 / units.max(1) as f64));
            cores.insert(name.clone(), json!(used / wall_s.max(1e-9)));
        }
        json!({
            "wall_s": wall_s,
            "units": units,
            "us_per_unit": per_unit,
            "cores": cores,
            "total_us_per_unit": total * 1e6 / units.max(1) as f64,
            "total_cores": total / wall_s.max(1e-9),
        })
    }
}

/// One process's line of `/proc/<pid>/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessTime {
    pid: u32,
    parent: u32,
    /// utime + stime.
    own: u64,
    /// cutime + cstime: the children it waited for.
    reaped_children: u64,
}

/// Every process's times, read in one pass over `/proc`.
struct ProcessTimes(Vec<ProcessTime>);

impl ProcessTimes {
    fn read() -> Self {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self(Vec::new());
        };
        Self(
            entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    ProcessTime::parse(pid, &stat)
                })
                .collect(),
        )
    }

    /// `pid`'s own time; 0 for a process that is gone.
    fn own(&self, pid: u32) -> u64 {
        self.0
            .iter()
            .find(|process| process.pid == pid)
            .map_or(0, |process| process.own)
    }

    /// `pid` and its children, running or already waited for.
    fn tree(&self, pid: u32) -> u64 {
        self.0
            .iter()
            .filter(|process| process.pid == pid || process.parent == pid)
            .map(|process| process.own + process.reaped_children)
            .sum()
    }
}

impl ProcessTime {
    /// Fields 4 (ppid) and 14-17 (utime, stime, cutime, cstime), counted after the
    /// command name, which may itself contain spaces and parentheses.
    fn parse(pid: u32, stat: &str) -> Option<Self> {
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // after_name starts at field 3 (state), so field n is at index n - 3.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            pid,
            parent: u32::try_from(field(4)?).ok()?,
            own: field(14)? + field(15)?,
            reaped_children: field(16)? + field(17)?,
        })
    }
}

/// The kernel reports these times in USER_HZ, which Linux fixes at 100 on every
/// architecture dropgate runs on (`getconf CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stat_line_whose_command_name_has_spaces() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    150 25 7 3 20 0 4 0 100 1000000 500 18446744073709551615";
        assert_eq!(
            ProcessTime::parse(4242, stat),
            Some(ProcessTime {
                pid: 4242,
                parent: 1,
                own: 175,
                reaped_children: 10,
            })
        );
        assert_eq!(ProcessTime::parse(1, "garbage"), None);
    }

    #[test]
    fn a_tree_holds_a_running_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let processes = ProcessTimes::read();
        let found = processes
            .0
            .iter()
            .any(|process| process.pid == child.id() && process.parent == std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }

    #[test]
    fn this_process_uses_cpu_and_a_missing_one_none() {
        let parts = CpuParts {
            parts: vec![
                ("me".to_owned(), Processes::Tree(std::process::id())),
                ("gone".to_owned(), Processes::Each(vec![u32::MAX])),
            ],
        };
        let before = parts.snapshot();
        let started = Instant::now();
        let mut spin = 0u64;
        while started.elapsed().as_millis() < 300 {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let used = parts.snapshot().since(&before, 1);
        assert!(used["us_per_unit"]["me"].as_f64().expect("number") > 50_000.0);
        assert_eq!(used["us_per_unit"]["gone"].as_f64(), Some(0.0));
    }
}
