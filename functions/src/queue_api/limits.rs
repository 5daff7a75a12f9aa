//! Per-user and per-address request limits: token buckets in this instance's memory
//! (each replica limits on its own; with N replicas behind a balancer a client gets at
//! most N times the rate, which is what these limits are for: stopping a runaway
//! client, not metering). Sharded so 100,000 users do not contend on one lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 32;
/// A shard this large is swept of idle buckets before growing further.
const SWEEP_AT: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// A keyed token-bucket limiter.
#[derive(Debug)]
pub struct Limiter {
    per_second: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
    hasher: RandomState,
}

impl Limiter {
    /// `per_second` sustained with bursts of `burst`; `per_second == 0` disables it.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut hasher = self.hasher.build_hasher();
        key.hash(&mut hasher);
        let shard = &self.shards[(std::hash::Hasher::finish(&hasher) as usize) % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT {
            let idle = Duration::from_secs_f64(self.burst / self.per_second + 1.0);
            buckets.retain(|_, bucket| now.duration_since(bucket.refilled) < idle);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refills_at_the_rate() {
        let limiter = Limiter::new(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("u", start).is_ok());
        }
        let wait = limiter.check("u", start).expect_err("burst spent");
        assert!(wait <= Duration::from_millis(500));
        assert!(
            limiter.check("other", start).is_ok(),
            "keys are independent"
        );
        assert!(
            limiter
                .check("u", start + Duration::from_millis(500))
                .is_ok()
        );
    }

    #[test]
    fn zero_rate_disables_the_limit() {
        let limiter = Limiter::new(0, 0);
        let now = Instant::now();
        assert!((0..1_000).all(|_| limiter.check("u", now).is_ok()));
    }
}
