//! The event settings an operator types on the command line (`dropgate event check`,
//! and `event create` later), turned into core's [`EventConfig`].
//!
//! Times accept `now`, a relative `+10m`, an RFC 3339 timestamp or Unix milliseconds,
//! because operators script drops in all four forms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dropgate_core::{EventConfig, PlatformId, QueueMode};

/// Event settings as flags. Defaults match [`EventConfig::new`].
#[derive(Debug, Clone, clap::Args)]
pub struct EventSettingsArgs {
    /// Units for sale.
    #[arg(long)]
    pub stock: u32,
    /// Chance that an admitted user wins while stock is left, in (0, 1].
    #[arg(long, default_value_t = EventConfig::DEFAULT_WIN_PROBABILITY)]
    pub win_probability: f64,
    /// Users admitted per second at most.
    #[arg(long, default_value_t = EventConfig::DEFAULT_ADMISSION_RATE_PER_S)]
    pub rate: u32,
    /// Admitted users without an outcome allowed at once.
    #[arg(long, default_value_t = EventConfig::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: u32,
    /// When admission starts: `now`, `+10m`, RFC 3339, or Unix ms.
    #[arg(long, default_value = "now")]
    pub opens_at: String,
    /// When the event ends (same forms); none means until sold out or closed.
    #[arg(long)]
    pub closes_at: Option<String>,
    /// `fifo` or `randomized_pre_queue`.
    #[arg(long, default_value = "fifo")]
    pub mode: String,
    /// Seconds without a poll or stream after which a waiting user is skipped.
    #[arg(long, default_value_t = EventConfig::DEFAULT_ABANDON_TIMEOUT_MS / 1_000)]
    pub abandon_timeout_s: u64,
    /// The platforms (token `platformId`s, comma-separated) whose users may enter;
    /// others are refused with 403 `platform_not_allowed`. None: every platform. Fixed
    /// at creation.
    #[arg(long, value_delimiter = ',')]
    pub allowed_platforms: Vec<String>,
}

/// Everything wrong with the flags, in one list (times and mode first, then the
/// settings core validates).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct SettingsErrors(pub Vec<String>);

impl EventSettingsArgs {
    /// Converts and validates, relative to `now`.
    pub fn to_config(&self, now: SystemTime) -> Result<EventConfig, SettingsErrors> {
        let mut errors = Vec::new();
        let opens_at_ms = parse_time(&self.opens_at, now)
            .map_err(|e| errors.push(format!("--opens-at: {e}")))
            .unwrap_or(0);
        let closes_at_ms = match &self.closes_at {
            None => None,
            Some(text) => parse_time(text, now)
                .map_err(|e| errors.push(format!("--closes-at: {e}")))
                .ok(),
        };
        let queue_mode = self
            .mode
            .parse::<QueueMode>()
            .map_err(|e| errors.push(format!("--mode: {e}")))
            .unwrap_or_default();
        let allowed_platforms = self
            .allowed_platforms
            .iter()
            .filter_map(|platform| {
                PlatformId::parse(platform.trim())
                    .map_err(|e| errors.push(format!("--allowed-platforms: {e}")))
                    .ok()
            })
            .collect();
        let config = EventConfig {
            stock: self.stock,
            win_probability: self.win_probability,
            admission_rate_per_s: self.rate,
            max_in_flight: self.max_in_flight,
            opens_at_ms,
            closes_at_ms,
            queue_mode,
            abandon_timeout_ms: self.abandon_timeout_s.saturating_mul(1_000),
            allowed_platforms,
        };
        if let Err(problems) = config.validate() {
            errors.extend(problems.0.iter().map(ToString::to_string));
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(SettingsErrors(errors))
        }
    }
}

/// Parses `now`, `+<duration>`, RFC 3339 or Unix milliseconds into Unix ms.
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, String> {
    let text = text.trim();
    let at = if text == "now" {
        now
    } else if let Some(relative) = text.strip_prefix('+') {
        let offset = humantime::parse_duration(relative)
            .map_err(|e| format!("{relative:?} is not a duration like 30s or 10m: {e}"))?;
        now + offset
    } else if let Ok(millis) = text.parse::<u64>() {
        UNIX_EPOCH + Duration::from_millis(millis)
    } else {
        humantime::parse_rfc3339_weak(text).map_err(|e| {
            format!("{text:?} is not now, +DURATION, an RFC 3339 time or Unix ms: {e}")
        })?
    };
    at.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .map_err(|_| format!("{text:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        settings: EventSettingsArgs,
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn times_in_every_form() {
        assert_eq!(parse_time("now", now()), Ok(1_700_000_000_000));
        assert_eq!(parse_time("+10m", now()), Ok(1_700_000_600_000));
        assert_eq!(parse_time("1700000000123", now()), Ok(1_700_000_000_123));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", now()),
            Ok(1_700_000_000_000)
        );
        assert!(parse_time("tomorrow", now()).is_err());
        assert!(parse_time("+soon", now()).is_err());
    }

    #[test]
    fn every_bad_flag_is_reported_at_once() {
        let probe = Probe::parse_from([
            "probe",
            "--stock",
            "0",
            "--win-probability",
            "2",
            "--mode",
            "lifo",
            "--opens-at",
            "later",
        ]);
        let errors = probe.settings.to_config(now()).expect_err("all wrong").0;
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("--opens-at"), "{errors:?}");
        assert!(errors[1].starts_with("--mode"), "{errors:?}");
    }

    #[test]
    fn allowed_platforms_are_ids_named_once() {
        let probe = Probe::parse_from(["probe", "--stock", "1", "--allowed-platforms", "shop,app"]);
        let config = probe.settings.to_config(now()).expect("valid");
        let names: Vec<&str> = config
            .allowed_platforms
            .iter()
            .map(|p| p.as_str())
            .collect();
        assert_eq!(names, ["shop", "app"]);
        for bad in ["shop,shop", "shop,a:b", "shop,"] {
            let probe = Probe::parse_from(["probe", "--stock", "1", "--allowed-platforms", bad]);
            let errors = probe.settings.to_config(now()).expect_err(bad).0;
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        }
    }

    #[test]
    fn defaults_give_a_valid_five_percent_fifo_event() {
        let probe = Probe::parse_from(["probe", "--stock", "100"]);
        let config = probe.settings.to_config(now()).expect("valid");
        assert_eq!(config, EventConfig::new(100, 1_700_000_000_000));
    }
}
