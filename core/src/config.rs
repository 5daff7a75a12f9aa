//! An event's settings and their validation.
//!
//! Validation collects every problem at once, so an operator fixing a `dropgate event
//! create` command line sees all of them in one go instead of one per attempt.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::draw::WinProbability;
use crate::identity::PlatformId;

/// How the queue orders people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueMode {
    /// First come, first served, from the first second.
    #[default]
    Fifo,
    /// Everyone who arrives before the opening time gets a random place (a seeded,
    /// verifiable shuffle at opening), so refreshing at 09:59:59.9 buys nothing;
    /// everyone after opening queues FIFO behind them.
    RandomizedPreQueue,
}

impl QueueMode {
    /// The snake_case name used in PostgreSQL and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueMode::Fifo => "fifo",
            QueueMode::RandomizedPreQueue => "randomized_pre_queue",
        }
    }
}

impl std::str::FromStr for QueueMode {
    type Err = ConfigProblem;
    fn from_str(s: &str) -> Result<Self, ConfigProblem> {
        match s {
            "fifo" => Ok(QueueMode::Fifo),
            "randomized_pre_queue" | "randomized" => Ok(QueueMode::RandomizedPreQueue),
            other => Err(ConfigProblem::UnknownQueueMode(other.to_owned())),
        }
    }
}

/// Settings of one drop. Times are Unix milliseconds, passed in by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventConfig {
    /// Units for sale; winners never exceed it.
    pub stock: u32,
    /// Chance that one admitted user wins while stock is left.
    pub win_probability: f64,
    /// Users admitted per second at most (the token bucket's refill rate).
    pub admission_rate_per_s: u32,
    /// Admitted but not yet decided users allowed at once; bounds the draw's backlog.
    pub max_in_flight: u32,
    /// When admission starts.
    pub opens_at_ms: u64,
    /// When the event stops admitting and users still waiting expire; `None` runs until
    /// sold out or closed by an operator.
    pub closes_at_ms: Option<u64>,
    /// FIFO or randomized pre-queue.
    pub queue_mode: QueueMode,
    /// A waiting user not seen (no poll, no open stream) for this long is skipped at
    /// the head of the queue and ends expired, so no-shows cannot stall the line.
    pub abandon_timeout_ms: u64,
    /// The platforms whose users may enter; empty lets every platform's users in. A
    /// person with accounts on two platforms is two users to dropgate (it cannot link
    /// them), so a drop meant as "one chance per person" names the platforms whose
    /// identities are one per person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_platforms: Vec<PlatformId>,
}

impl EventConfig {
    /// The default chance of winning: 5 %.
    pub const DEFAULT_WIN_PROBABILITY: f64 = 0.05;
    /// Default admission rate.
    pub const DEFAULT_ADMISSION_RATE_PER_S: u32 = 1_000;
    /// Default in-flight cap.
    pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10_000;
    /// Default abandon timeout: two minutes without a poll or a stream.
    pub const DEFAULT_ABANDON_TIMEOUT_MS: u64 = 120_000;
    /// Stock cap: keeps `stock` comfortably inside PostgreSQL's `integer`.
    pub const MAX_STOCK: u32 = 1_000_000_000;
    /// Shortest abandon timeout: below this a client on a slow phone would expire
    /// between two polls.
    pub const MIN_ABANDON_TIMEOUT_MS: u64 = 10_000;
    /// Most platforms one event may name: the list is checked on every enter.
    pub const MAX_ALLOWED_PLATFORMS: usize = 64;

    /// A config with every optional setting at its default.
    pub fn new(stock: u32, opens_at_ms: u64) -> Self {
        Self {
            stock,
            win_probability: Self::DEFAULT_WIN_PROBABILITY,
            admission_rate_per_s: Self::DEFAULT_ADMISSION_RATE_PER_S,
            max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT,
            opens_at_ms,
            closes_at_ms: None,
            queue_mode: QueueMode::Fifo,
            abandon_timeout_ms: Self::DEFAULT_ABANDON_TIMEOUT_MS,
            allowed_platforms: Vec::new(),
        }
    }

    /// Checks every setting and returns all problems found.
    pub fn validate(&self) -> Result<ValidatedEvent, ConfigProblems> {
        let mut problems = Vec::new();
        if self.stock == 0 {
            problems.push(ConfigProblem::NoStock);
        }
        if self.stock > Self::MAX_STOCK {
            problems.push(ConfigProblem::StockTooLarge(self.stock));
        }
        let win_probability = WinProbability::new(self.win_probability);
        if let Err(problem) = &win_probability {
            problems.push(problem.clone());
        }
        if self.admission_rate_per_s == 0 {
            problems.push(ConfigProblem::ZeroAdmissionRate);
        }
        if self.max_in_flight == 0 {
            problems.push(ConfigProblem::ZeroMaxInFlight);
        }
        if let Some(closes) = self.closes_at_ms
            && closes <= self.opens_at_ms
        {
            problems.push(ConfigProblem::ClosesBeforeOpening {
                opens_at_ms: self.opens_at_ms,
                closes_at_ms: closes,
            });
        }
        if self.abandon_timeout_ms < Self::MIN_ABANDON_TIMEOUT_MS {
            problems.push(ConfigProblem::AbandonTimeoutTooShort(
                self.abandon_timeout_ms,
            ));
        }
        if self.allowed_platforms.len() > Self::MAX_ALLOWED_PLATFORMS {
            problems.push(ConfigProblem::TooManyPlatforms(
                self.allowed_platforms.len(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for platform in &self.allowed_platforms {
            if !seen.insert(platform) {
                problems.push(ConfigProblem::PlatformTwice(platform.to_string()));
            }
        }
        match win_probability {
            Ok(win_probability) if problems.is_empty() => Ok(ValidatedEvent {
                config: self.clone(),
                win_probability,
            }),
            _ => Err(ConfigProblems(problems)),
        }
    }
}

/// An [`EventConfig`] that passed validation, with its probability in the form the
/// draw uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedEvent {
    config: EventConfig,
    win_probability: WinProbability,
}

impl ValidatedEvent {
    /// The settings.
    pub fn config(&self) -> &EventConfig {
        &self.config
    }

    /// The draw's threshold form of `win_probability`.
    pub fn win_probability(&self) -> WinProbability {
        self.win_probability
    }
}

/// One thing wrong with an [`EventConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigProblem {
    /// Stock must be at least one unit.
    #[error("stock must be at least 1")]
    NoStock,
    /// Stock above [`EventConfig::MAX_STOCK`].
    #[error("stock {0} is above the limit of {max}", max = EventConfig::MAX_STOCK)]
    StockTooLarge(u32),
    /// The probability is not in (0, 1].
    #[error("win probability must be greater than 0 and at most 1, got {0}")]
    WinProbabilityOutOfRange(f64),
    /// Nobody would ever be admitted.
    #[error("admission rate must be at least 1 user per second")]
    ZeroAdmissionRate,
    /// Nobody could ever be in flight.
    #[error("max in flight must be at least 1")]
    ZeroMaxInFlight,
    /// The closing time is not after the opening time.
    #[error("closing time {closes_at_ms} is not after opening time {opens_at_ms}")]
    ClosesBeforeOpening {
        /// Opening time, Unix ms.
        opens_at_ms: u64,
        /// Closing time, Unix ms.
        closes_at_ms: u64,
    },
    /// The abandon timeout is too short for real clients.
    #[error(
        "abandon timeout {0} ms is below the minimum of {min} ms",
        min = EventConfig::MIN_ABANDON_TIMEOUT_MS
    )]
    AbandonTimeoutTooShort(u64),
    /// Not a queue mode name.
    #[error("unknown queue mode {0:?}; use fifo or randomized_pre_queue")]
    UnknownQueueMode(String),
    /// More allowed platforms than [`EventConfig::MAX_ALLOWED_PLATFORMS`].
    #[error(
        "{0} allowed platforms; at most {max} may be named",
        max = EventConfig::MAX_ALLOWED_PLATFORMS
    )]
    TooManyPlatforms(usize),
    /// A platform named twice among the allowed ones.
    #[error("platform {0:?} is named twice among the allowed platforms")]
    PlatformTwice(String),
}

/// Every problem of one config, in field order.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) with the event settings", self.0.len())?;
        for problem in &self.0 {
            write!(f, "; {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_win_five_percent() {
        let event = EventConfig::new(100, 1_000)
            .validate()
            .expect("defaults are valid");
        assert_eq!(event.config().win_probability, 0.05);
        assert_eq!(event.config().queue_mode, QueueMode::Fifo);
    }

    #[test]
    fn reports_every_problem_not_just_the_first() {
        let config = EventConfig {
            stock: 0,
            win_probability: 1.5,
            admission_rate_per_s: 0,
            max_in_flight: 0,
            opens_at_ms: 2_000,
            closes_at_ms: Some(1_000),
            queue_mode: QueueMode::Fifo,
            abandon_timeout_ms: 5,
            allowed_platforms: vec![PlatformId::parse("shop").expect("id"); 2],
        };
        let problems = config.validate().expect_err("everything is wrong").0;
        assert_eq!(
            problems,
            vec![
                ConfigProblem::NoStock,
                ConfigProblem::WinProbabilityOutOfRange(1.5),
                ConfigProblem::ZeroAdmissionRate,
                ConfigProblem::ZeroMaxInFlight,
                ConfigProblem::ClosesBeforeOpening {
                    opens_at_ms: 2_000,
                    closes_at_ms: 1_000
                },
                ConfigProblem::AbandonTimeoutTooShort(5),
                ConfigProblem::PlatformTwice("shop".to_owned()),
            ]
        );
        let text = ConfigProblems(problems).to_string();
        assert!(text.starts_with("7 problem(s)"), "{text}");
    }

    #[test]
    fn allowed_platforms_are_bounded() {
        let platforms = |n: usize| {
            (0..n)
                .map(|i| PlatformId::parse(format!("p{i}")).expect("id"))
                .collect::<Vec<_>>()
        };
        let at_limit = EventConfig {
            allowed_platforms: platforms(EventConfig::MAX_ALLOWED_PLATFORMS),
            ..EventConfig::new(1, 0)
        };
        assert!(at_limit.validate().is_ok());
        let over = EventConfig {
            allowed_platforms: platforms(EventConfig::MAX_ALLOWED_PLATFORMS + 1),
            ..EventConfig::new(1, 0)
        };
        assert_eq!(
            over.validate().expect_err("too many").0,
            vec![ConfigProblem::TooManyPlatforms(
                EventConfig::MAX_ALLOWED_PLATFORMS + 1
            )]
        );
    }

    #[test]
    fn probability_bounds() {
        for p in [0.0, -0.1, 1.000_001, f64::NAN, f64::INFINITY] {
            let config = EventConfig {
                win_probability: p,
                ..EventConfig::new(1, 0)
            };
            assert!(config.validate().is_err(), "p = {p} must be refused");
        }
        for p in [f64::MIN_POSITIVE, 0.05, 1.0] {
            let config = EventConfig {
                win_probability: p,
                ..EventConfig::new(1, 0)
            };
            assert!(config.validate().is_ok(), "p = {p} must be accepted");
        }
    }

    #[test]
    fn queue_mode_names() {
        assert_eq!("fifo".parse(), Ok(QueueMode::Fifo));
        assert_eq!(
            QueueMode::RandomizedPreQueue.as_str().parse(),
            Ok(QueueMode::RandomizedPreQueue)
        );
        assert!("lifo".parse::<QueueMode>().is_err());
    }
}
