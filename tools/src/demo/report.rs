//! The demo's result: the summary printed at the end, and the JSON report and SVG
//! timeline written next to each other under the report directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::recheck::Recheck;
use super::tally::Sample;
use super::timeline::render_svg;

/// Whether the draw replayed from the revealed seed matched what was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every draw matches the seed and the rule.
    Pass,
    /// A mismatch, or the check could not run.
    Fail,
}

/// Everything a run measured. Counts are what the users' clients saw through the
/// API; `stock_*` and `database_outcomes` come from PostgreSQL, so the two views can
/// be compared.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The event the crowd queued for.
    pub event_id: String,
    /// Users simulated.
    pub users: u64,
    /// Users whose enter request was accepted.
    pub entered: u64,
    /// Users seen admitted to the draw.
    pub admitted: u64,
    /// Users who won.
    pub won: u64,
    /// Users who lost the draw.
    pub lost: u64,
    /// Users who ended sold out, including those refused at the door.
    pub sold_out: u64,
    /// Of `sold_out`: refused at entry because the stock was already gone.
    pub sold_out_at_entry: u64,
    /// Users expired as abandoned.
    pub expired: u64,
    /// Users still waiting when the event closed, including those refused at the
    /// door.
    pub closed: u64,
    /// Of `closed`: refused at entry because the event was closing or closed.
    pub closed_at_entry: u64,
    /// Users who gave up on an error before a final state.
    pub errors: u64,
    /// Users still without a final state when the run ended (timeout or Ctrl-C).
    pub unfinished: u64,
    /// Units for sale.
    pub stock_total: u32,
    /// Units not won, after the event closed.
    pub stock_left: u32,
    /// The event's win probability.
    pub win_probability: f64,
    /// The event's admission rate.
    pub admission_rate_per_s: u32,
    /// First enter request to the last final state a user saw (null if none).
    pub seconds_to_last_result: Option<f64>,
    /// How long signing every user's token took, before anyone entered.
    pub signing_s: f64,
    /// Median enter latency (null if nobody entered).
    pub enter_p50_ms: Option<f64>,
    /// 99th percentile enter latency.
    pub enter_p99_ms: Option<f64>,
    /// The `verify` verdict.
    pub verify: Verdict,
    /// What verify said, in a sentence.
    pub verify_detail: String,
    /// Every user asked again after the close, compared with PostgreSQL.
    pub recheck: Recheck,
    /// Draws recorded in PostgreSQL by outcome.
    pub database_outcomes: BTreeMap<String, i64>,
    /// 429/503 answers waited out.
    pub retries: u64,
    /// Streams reopened after a disconnect.
    pub reconnects: u64,
    /// Streaming users who polled instead (stream cap reached).
    pub fell_back_to_polling: u64,
    /// Whether the run hit its timeout or was interrupted.
    pub timed_out: bool,
    /// A few distinct errors users met.
    pub error_samples: Vec<String>,
    /// Counters every 250 ms.
    pub timeline: Vec<Sample>,
    /// Each user's final state as their client saw it (not in the JSON: it would
    /// dwarf the rest).
    #[serde(skip)]
    pub user_finals: Vec<UserFinal>,
    /// Where the JSON report was written.
    #[serde(skip)]
    pub json_path: PathBuf,
    /// Where the SVG timeline was written.
    #[serde(skip)]
    pub svg_path: PathBuf,
}

/// One user's final state as its client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFinal {
    /// The token's `platformId`.
    pub platform: String,
    /// The token's `userId`.
    pub user: String,
    /// Whether it followed the stream (else it polled).
    pub streamed: bool,
    /// won | lost | sold_out | expired.
    pub state: &'static str,
}

impl Report {
    /// Users with a final state.
    pub fn finals(&self) -> u64 {
        self.won + self.lost + self.sold_out + self.expired + self.closed
    }

    /// Verify passed, every user's client reached a final state, and asked again
    /// after the close every user still has one that PostgreSQL agrees with.
    pub fn succeeded(&self) -> bool {
        self.verify == Verdict::Pass && self.finals() == self.users && self.recheck.passed()
    }

    /// Writes `<dir>/<event>.json` and `<dir>/<event>-timeline.svg`.
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create the report dir {}", dir.display()))?;
        self.json_path = dir.join(format!("{}.json", self.event_id));
        self.svg_path = dir.join(format!("{}-timeline.svg", self.event_id));
        let json = serde_json::to_vec_pretty(self).context("Failed to encode the report")?;
        std::fs::write(&self.json_path, json)
            .with_context(|| format!("Failed to write {}", self.json_path.display()))?;
        let title = format!(
            "{}: {} users, stock {}",
            self.event_id, self.users, self.stock_total
        );
        std::fs::write(&self.svg_path, render_svg(&self.timeline, &title)?)
            .with_context(|| format!("Failed to write {}", self.svg_path.display()))?;
        Ok(())
    }

    /// The end-of-run summary.
    pub fn summary(&self) -> String {
        let ms = |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{v:.1} ms"));
        let mut text = String::new();
        // `write!` into a String cannot fail.
        let _ = writeln!(
            text,
            "{}: {} users, stock {}, p {}, {} admissions/s",
            self.event_id,
            self.users,
            self.stock_total,
            self.win_probability,
            self.admission_rate_per_s
        );
        let _ = writeln!(
            text,
            "  entered     {:>8}   ({} more found it sold out at the door)",
            self.entered, self.sold_out_at_entry
        );
        for (name, value) in [
            ("admitted", self.admitted),
            ("won", self.won),
            ("lost", self.lost),
            ("sold_out", self.sold_out),
            ("expired", self.expired),
            ("closed", self.closed),
        ] {
            let _ = writeln!(text, "  {name:<11} {value:>8}");
        }
        if self.errors > 0 || self.unfinished > 0 {
            let _ = writeln!(
                text,
                "  errors      {:>8}   unfinished {}{}",
                self.errors,
                self.unfinished,
                if self.timed_out {
                    " (stopped early)"
                } else {
                    ""
                }
            );
            for sample in &self.error_samples {
                let _ = writeln!(text, "    e.g. {sample}");
            }
        }
        let _ = writeln!(
            text,
            "  stock       {} total, {} left",
            self.stock_total, self.stock_left
        );
        let _ = writeln!(
            text,
            "  first enter to last result: {} (tokens signed before it, in {:.1} s)",
            self.seconds_to_last_result
                .map_or("n/a".to_owned(), |s| format!("{s:.1} s")),
            self.signing_s
        );
        let _ = writeln!(
            text,
            "  enter latency: p50 {}, p99 {}",
            ms(self.enter_p50_ms),
            ms(self.enter_p99_ms)
        );
        let _ = writeln!(
            text,
            "  retries (429/503) {}, stream reconnects {}, streams that fell back to polling {}",
            self.retries, self.reconnects, self.fell_back_to_polling
        );
        let verdict = match self.verify {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(text, "  verify: {verdict} ({})", self.verify_detail);
        let _ = write!(text, "  asked again: {}", self.recheck.describe());
        for sample in self.recheck.samples.iter().take(5) {
            let _ = write!(text, "\n    e.g. {sample}");
        }
        text
    }
}
