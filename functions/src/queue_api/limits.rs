//! Per-user and per-address request limits: governor's keyed GCRA limiter in this
//! instance's memory (each replica limits on its own; with N replicas behind a
//! balancer a client gets at most N times the rate, which is what these limits are
//! for: stopping a runaway client, not metering).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// Keys kept before the idle ones are dropped: governor keeps every key it has seen
/// until told to forget the idle ones, and a drop's crowd is mostly new keys.
const FORGET_IDLE_ABOVE: usize = 100_000;
/// How many checks pass between two looks at the key count.
const LOOK_EVERY: u64 = 4_096;

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A keyed limiter: `per_second` sustained, in bursts of up to `burst`.
pub struct Limiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    /// `None` when the rate is 0: no limit.
    limiter: Option<Keyed<K, C>>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone, C: Clock> std::fmt::Debug for Limiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.limiter.as_ref().map_or(0, Keyed::len);
        write!(f, "Limiter({keys} keys)")
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `per_second` sustained with bursts of `burst`; `per_second == 0` disables it.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> Limiter<K, C> {
    /// [`Limiter::new`] on `clock` (tests drive a fake one).
    pub fn with_clock(per_second: u32, burst: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::dashmap_with_clock(Quota::per_second(rate).allow_burst(burst), clock)
        });
        Self {
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request's allowance for `key`, or says how long until there is one.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(LOOK_EVERY)
            && limiter.len() > FORGET_IDLE_ABOVE
        {
            // The map keeps its capacity: the next crowd of new keys fills it again,
            // and shrinking it only to grow it back rehashes every key twice.
            limiter.retain_recent();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn allows_the_burst_then_refills_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(2, 3, clock.clone());
        for _ in 0..3 {
            assert!(limiter.check(&"u").is_ok());
        }
        let wait = limiter.check(&"u").expect_err("burst spent");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limiter.check(&"other").is_ok(), "keys are independent");
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check(&"u").is_ok(), "refilled at 2 per second");
        assert!(limiter.check(&"u").is_err(), "only one so far");
    }

    #[test]
    fn zero_rate_disables_the_limit() {
        let limiter = Limiter::new(0, 0);
        assert!((0..1_000).all(|_| limiter.check(&"u").is_ok()));
    }

    #[test]
    fn idle_keys_are_forgotten_past_the_bound() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(1_000, 1, clock.clone());
        for n in 0..=FORGET_IDLE_ABOVE as u64 {
            assert!(limiter.check(&n).is_ok());
        }
        clock.advance(Duration::from_secs(1));
        let mut n = FORGET_IDLE_ABOVE as u64 + 1;
        while !limiter
            .checks
            .load(Ordering::Relaxed)
            .is_multiple_of(LOOK_EVERY)
        {
            assert!(limiter.check(&n).is_ok());
            n += 1;
        }
        assert!(limiter.check(&n).is_ok());
        let checked_since = (n - FORGET_IDLE_ABOVE as u64) as usize;
        let keys = limiter.limiter.as_ref().map_or(0, Keyed::len);
        assert!(
            keys <= checked_since,
            "the {} idle keys are dropped: {keys} left, {checked_since} checked since",
            FORGET_IDLE_ABOVE + 1
        );
    }
}
