//! How many users the admitter moves from the queue to the draw on one tick.
//!
//! A token bucket refilled at the event's admission rate caps the long-run rate; the
//! in-flight cap (admitted but not yet decided) caps what the draw may have on its
//! plate, so a slow database or a lagging consumer slows admission instead of piling
//! Kafka up; sold out admits nobody.
//! Tokens are counted in thousandths so that any rate and tick length refill exactly,
//! with no floating-point drift over a long drop.

use serde::{Deserialize, Serialize};

const MILLI: u64 = 1_000;

/// The bucket's state, carried from tick to tick (and across admitter failover, in
/// Redis, so a new leader does not start with a fresh burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    /// Tokens available, in thousandths of a user.
    milli_tokens: u64,
    /// When the bucket was last refilled (Unix ms).
    refilled_at_ms: u64,
}

impl TokenBucket {
    /// What one admitted user costs, in the bucket's thousandths of a token. An
    /// admission asks for a number of users before it knows how many are still there;
    /// each user it could not admit gives this much back (the admit script does, in
    /// the same atomic step that admits).
    pub const THOUSANDTHS_PER_USER: u64 = MILLI;

    /// A full bucket at `now_ms`: the first tick after opening may admit a burst.
    pub fn full(limits: &AdmissionLimits, now_ms: u64) -> Self {
        Self {
            milli_tokens: u64::from(limits.burst) * MILLI,
            refilled_at_ms: now_ms,
        }
    }

    /// Rebuilds a bucket from its stored parts.
    pub fn from_parts(milli_tokens: u64, refilled_at_ms: u64) -> Self {
        Self {
            milli_tokens,
            refilled_at_ms,
        }
    }

    /// The stored parts: (thousandths of tokens, last refill time).
    pub fn to_parts(self) -> (u64, u64) {
        (self.milli_tokens, self.refilled_at_ms)
    }

    /// Whole tokens available.
    pub fn tokens(self) -> u64 {
        self.milli_tokens / MILLI
    }

    fn refill(self, limits: &AdmissionLimits, now_ms: u64) -> Self {
        // A clock that went backwards (a new leader with a skewed clock) refills
        // nothing rather than minting tokens.
        let elapsed = now_ms.saturating_sub(self.refilled_at_ms);
        let added = elapsed.saturating_mul(u64::from(limits.rate_per_s));
        Self {
            milli_tokens: self
                .milli_tokens
                .saturating_add(added)
                .min(u64::from(limits.burst) * MILLI),
            refilled_at_ms: self.refilled_at_ms.max(now_ms),
        }
    }
}

/// The event's admission settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionLimits {
    /// Long-run users per second.
    pub rate_per_s: u32,
    /// Most users one tick may admit after a pause; at least one tick's worth, or the
    /// cap would throw away refills and the rate could never be reached.
    pub burst: u32,
    /// Admitted-but-undecided users allowed at once.
    pub max_in_flight: u32,
}

impl AdmissionLimits {
    /// Limits for an admitter ticking every `tick_ms`: the burst covers two ticks, so
    /// one late tick does not lose throughput.
    pub fn for_tick(rate_per_s: u32, max_in_flight: u32, tick_ms: u64) -> Self {
        let two_ticks = u64::from(rate_per_s).saturating_mul(tick_ms.saturating_mul(2)) / MILLI;
        Self {
            rate_per_s,
            burst: u32::try_from(two_ticks).unwrap_or(u32::MAX).max(1),
            max_in_flight,
        }
    }
}

/// What the admitter knows about the rest of the system this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Downstream {
    /// Users still waiting in the queue.
    pub waiting: u64,
    /// Admitted users without an outcome yet. This already holds the draw's backlog
    /// (messages not consumed yet are among them), so the consumer group's lag needs
    /// no cap of its own.
    pub in_flight: u64,
    /// Stock left as last reported by the draw.
    pub stock_left: u64,
}

/// This tick's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Users to admit now.
    pub admit: u64,
    /// The bucket to carry into the next tick.
    pub bucket: TokenBucket,
}

/// How many to admit at `now_ms`. Never more than the bucket holds (so never above
/// rate × time + burst), never more than are waiting or than the in-flight cap allows,
/// none when sold out.
pub fn admit(
    bucket: TokenBucket,
    limits: &AdmissionLimits,
    downstream: Downstream,
    now_ms: u64,
) -> Admission {
    let bucket = bucket.refill(limits, now_ms);
    if downstream.stock_left == 0 {
        return Admission { admit: 0, bucket };
    }
    let room = u64::from(limits.max_in_flight).saturating_sub(downstream.in_flight);
    let admit = bucket.tokens().min(room).min(downstream.waiting);
    Admission {
        admit,
        bucket: TokenBucket {
            milli_tokens: bucket.milli_tokens - admit * MILLI,
            refilled_at_ms: bucket.refilled_at_ms,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits::for_tick(1_000, 10_000, 100)
    }

    fn plenty() -> Downstream {
        Downstream {
            waiting: 1_000_000,
            in_flight: 0,
            stock_left: 100,
        }
    }

    #[test]
    fn steady_ticks_admit_the_rate() {
        let limits = limits();
        let mut bucket = TokenBucket::from_parts(0, 0);
        let mut total = 0;
        for tick in 1..=100 {
            let step = admit(bucket, &limits, plenty(), tick * 100);
            bucket = step.bucket;
            total += step.admit;
        }
        assert_eq!(total, 10_000, "10 s at 1,000/s");
    }

    #[test]
    fn sold_out_full_and_empty_queues_admit_nobody() {
        let limits = limits();
        let full = TokenBucket::full(&limits, 0);
        let cases = [
            Downstream {
                stock_left: 0,
                ..plenty()
            },
            Downstream {
                in_flight: 10_000,
                ..plenty()
            },
            Downstream {
                waiting: 0,
                ..plenty()
            },
        ];
        for downstream in cases {
            assert_eq!(
                admit(full, &limits, downstream, 100).admit,
                0,
                "{downstream:?}"
            );
        }
        assert_eq!(
            admit(
                full,
                &limits,
                Downstream {
                    waiting: 3,
                    ..plenty()
                },
                0
            )
            .admit,
            3
        );
    }

    #[test]
    fn undecided_users_take_the_room_of_new_admissions() {
        let limits = AdmissionLimits::for_tick(1_000, 250, 100);
        let full = TokenBucket::full(&limits, 0);
        assert_eq!(admit(full, &limits, plenty(), 0).admit, 200);
        let busy = Downstream {
            in_flight: 150,
            ..plenty()
        };
        assert_eq!(admit(full, &limits, busy, 0).admit, 100);
    }

    #[test]
    fn a_clock_going_backwards_mints_nothing() {
        let limits = limits();
        let bucket = TokenBucket::from_parts(0, 10_000);
        let step = admit(bucket, &limits, plenty(), 5_000);
        assert_eq!(step.admit, 0);
        assert_eq!(step.bucket.to_parts(), (0, 10_000));
    }

    proptest! {
        #[test]
        fn never_above_rate_times_elapsed_plus_burst(
            rate in 1u32..50_000,
            tick_ms in 1u64..2_000,
            gaps in prop::collection::vec(0u64..5_000, 1..60),
            in_flight in prop::collection::vec(0u64..10_000, 60),
            start_full in any::<bool>(),
        ) {
            let limits = AdmissionLimits::for_tick(rate, u32::MAX, tick_ms);
            let mut bucket = if start_full { TokenBucket::full(&limits, 0) } else { TokenBucket::from_parts(0, 0) };
            let (mut now, mut total) = (0u64, 0u64);
            for (gap, in_flight) in gaps.iter().zip(&in_flight) {
                now += gap;
                let step = admit(bucket, &limits, Downstream { in_flight: *in_flight, ..plenty() }, now);
                bucket = step.bucket;
                total += step.admit;
                let bound = u64::from(limits.burst) + u64::from(rate) * now / 1_000;
                prop_assert!(total <= bound, "{total} admitted by {now} ms, bound {bound}");
            }
        }

        #[test]
        fn more_in_flight_never_admits_more(in_flight in 0u64..100_000, extra in 0u64..100_000, rate in 1u32..100_000) {
            let limits = AdmissionLimits::for_tick(rate, 200_000, 100);
            let full = TokenBucket::full(&limits, 0);
            let less = admit(full, &limits, Downstream { in_flight, ..plenty() }, 0).admit;
            let more = admit(full, &limits, Downstream { in_flight: in_flight + extra, ..plenty() }, 0).admit;
            prop_assert!(more <= less);
            prop_assert!(more <= 200_000u64.saturating_sub(in_flight + extra));
        }
    }
}
