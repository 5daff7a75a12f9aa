//! A waiting user's place in line, its ETA and when to ask again.
//!
//! Position is `ticket − serving`: the queue hands out ticket numbers in order and the
//! admitter advances one "now serving" counter, so a status poll reads two integers
//! instead of paying a ZRANK. Users skipped at the head (expired) still count until
//! they are passed, so the position is an upper bound that only ever falls.

use serde::Serialize;

/// Shortest suggested poll interval: a user at the head still waits this long.
pub const MIN_POLL_MS: u64 = 1_000;
/// Longest suggested poll interval: a user far back checks in at least this often.
/// An event's abandon timeout may be shorter, so the interval is also capped at half
/// of it ([`poll_after_ms`]): a client that polls when told is never expired for it.
pub const MAX_POLL_MS: u64 = 30_000;
/// Jitter spread: ±20 % of the interval, so a million pollers that arrived in the
/// same second drift apart instead of hitting the API in lockstep.
const JITTER_SPREAD: f64 = 0.2;

/// What a waiting user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// 1 is next in line; 0 means already passed by the serving counter.
    pub position: u64,
    /// Seconds until admission at the configured rate (rounded up).
    pub eta_s: u64,
    /// When the client should poll again.
    pub poll_after_ms: u64,
}

/// Place in line of `ticket` while tickets up to `serving` have been served.
pub fn position(ticket: u64, serving: u64) -> u64 {
    ticket.saturating_sub(serving)
}

/// Seconds until `position` is reached at `rate_per_s` admissions a second.
pub fn eta_s(position: u64, rate_per_s: u32) -> u64 {
    position.div_ceil(u64::from(rate_per_s.max(1)))
}

/// A poll interval that grows with the ETA (about a tenth of it), bounded by
/// [`MIN_POLL_MS`] and the smaller of [`MAX_POLL_MS`] and half the event's abandon
/// timeout, and jittered by `jitter` (a uniform value in [0, 1) the caller draws).
/// Half, not all of it: a poll that arrives late by a slow network still counts.
pub fn poll_after_ms(eta_s: u64, abandon_timeout_ms: u64, jitter: f64) -> u64 {
    let longest = (abandon_timeout_ms / 2).clamp(MIN_POLL_MS, MAX_POLL_MS);
    let base = eta_s.saturating_mul(100).clamp(MIN_POLL_MS, longest) as f64;
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 1.0 + JITTER_SPREAD * (2.0 * jitter - 1.0);
    ((base * factor).round() as u64).clamp(MIN_POLL_MS, longest)
}

/// Position, ETA and poll interval together.
pub fn standing(
    ticket: u64,
    serving: u64,
    rate_per_s: u32,
    abandon_timeout_ms: u64,
    jitter: f64,
) -> Standing {
    let position = position(ticket, serving);
    let eta_s = eta_s(position, rate_per_s);
    Standing {
        position,
        eta_s,
        poll_after_ms: poll_after_ms(eta_s, abandon_timeout_ms, jitter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn position_counts_from_the_serving_counter() {
        assert_eq!(position(10, 0), 10);
        assert_eq!(position(10, 9), 1);
        assert_eq!(position(10, 10), 0);
        assert_eq!(position(10, 50), 0);
    }

    #[test]
    fn eta_rounds_up_and_survives_zero_rate() {
        assert_eq!(eta_s(0, 100), 0);
        assert_eq!(eta_s(1, 100), 1);
        assert_eq!(eta_s(250, 100), 3);
        assert_eq!(eta_s(5, 0), 5);
    }

    const TWO_MINUTES: u64 = 120_000;

    #[test]
    fn poll_interval_grows_with_distance_and_stays_bounded() {
        assert_eq!(poll_after_ms(0, TWO_MINUTES, 0.5), MIN_POLL_MS);
        assert_eq!(poll_after_ms(100, TWO_MINUTES, 0.5), 10_000);
        assert_eq!(poll_after_ms(1_000_000, TWO_MINUTES, 0.5), MAX_POLL_MS);
        assert_eq!(poll_after_ms(100, TWO_MINUTES, 0.0), 8_000);
        assert_eq!(poll_after_ms(100, TWO_MINUTES, f64::NAN), 10_000);
    }

    #[test]
    fn a_short_abandon_timeout_shortens_the_interval() {
        // The shortest timeout an event may have: far back, the user is still told
        // to come back within half of it, jitter included.
        assert_eq!(poll_after_ms(1_000_000, 10_000, 0.5), 5_000);
        assert_eq!(poll_after_ms(1_000_000, 10_000, 0.999), 5_000);
        assert_eq!(poll_after_ms(40, 10_000, 0.5), 4_000);
    }

    proptest! {
        #[test]
        fn standing_is_bounded_and_monotonic(
            ticket in 0u64..10_000_000,
            serving in 0u64..10_000_000,
            step in 0u64..1_000,
            rate in 1u32..100_000,
            abandon in crate::EventConfig::MIN_ABANDON_TIMEOUT_MS..10_000_000,
            jitter in 0.0f64..1.0,
        ) {
            let now = standing(ticket, serving, rate, abandon, jitter);
            let later = standing(ticket, serving + step, rate, abandon, jitter);
            prop_assert!(later.position <= now.position);
            prop_assert!(later.eta_s <= now.eta_s);
            prop_assert!((MIN_POLL_MS..=MAX_POLL_MS).contains(&now.poll_after_ms));
            prop_assert!(
                now.poll_after_ms <= abandon / 2,
                "told to poll after {} ms with an abandon timeout of {abandon} ms",
                now.poll_after_ms
            );
        }
    }
}
