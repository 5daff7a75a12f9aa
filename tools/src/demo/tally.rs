//! What the crowd saw, counted as it happens: lock-free counters that the progress
//! bars and the timeline sample, and each user's final state once their client knows
//! it. Everything here is the users' view through the public API, not the stores'.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dropgate_core::UserState;
use dropgate_functions::queue_api::QueueView;
use serde::Serialize;

/// A state a user's client ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Final {
    Won,
    Lost,
    SoldOut,
    Expired,
    Closed,
}

impl Final {
    /// The state's API name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Final::Won => "won",
            Final::Lost => "lost",
            Final::SoldOut => "sold_out",
            Final::Expired => "expired",
            Final::Closed => "closed",
        }
    }

    fn of(state: UserState) -> Option<Self> {
        match state {
            UserState::Won => Some(Final::Won),
            UserState::Lost => Some(Final::Lost),
            UserState::SoldOut => Some(Final::SoldOut),
            UserState::Expired => Some(Final::Expired),
            UserState::Closed => Some(Final::Closed),
            UserState::Waiting | UserState::Admitted => None,
        }
    }
}

/// Counters shared by every user task.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) entered: AtomicU64,
    /// Users whose client has seen them out of the waiting line (admitted or decided):
    /// the queue length is `entered` minus this.
    pub(crate) left_queue: AtomicU64,
    /// Users seen admitted to the draw (or with a drawn outcome).
    pub(crate) admitted: AtomicU64,
    pub(crate) decided: AtomicU64,
    pub(crate) won: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) sold_out: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) closed: AtomicU64,
    /// Users refused at the door because the stock was already gone (410
    /// `event_sold_out`): final, counted in `sold_out` too, but never entered.
    pub(crate) sold_out_at_entry: AtomicU64,
    /// Users refused at the door because the event was closing or closed (410
    /// `event_closed`): final, counted in `closed` too, but never entered.
    pub(crate) closed_at_entry: AtomicU64,
    /// Users who gave up without a final state.
    pub(crate) errors: AtomicU64,
    /// 429/503 answers waited out (`Retry-After`).
    pub(crate) retries: AtomicU64,
    /// Users who entered again after the queue lost their entry.
    pub(crate) reentered: AtomicU64,
    /// Streams opened again after a disconnect.
    pub(crate) reconnects: AtomicU64,
    /// Streaming users told `too_many_streams` who polled instead.
    pub(crate) fell_back_to_polling: AtomicU64,
    times: Mutex<Times>,
    enter_latencies: Mutex<Vec<Duration>>,
    /// A few distinct error messages, so a failed run says why.
    error_samples: Mutex<Vec<String>>,
    /// (user index, whether it streamed, final state): lets a test hold each user's
    /// answer against the database.
    finals_by_user: Mutex<Vec<(u32, bool, Final)>>,
}

#[derive(Debug, Default)]
struct Times {
    first_enter: Option<Instant>,
    last_result: Option<Instant>,
}

/// Most distinct error messages kept.
const ERROR_SAMPLES: usize = 5;

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Tally {
    /// An enter request is about to go out.
    pub(crate) fn entering(&self, at: Instant) {
        let mut times = self
            .times
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        times.first_enter.get_or_insert(at);
    }

    /// An enter request was answered 200/201 after `latency`.
    pub(crate) fn entered(&self, latency: Duration) {
        bump(&self.entered);
        self.enter_latencies
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(latency);
    }

    /// A user's task ended: with a final state, or with the reason it could not get
    /// one. `who` is the user's index and whether it streamed, when known.
    pub(crate) fn finish(&self, who: Option<(u32, bool)>, outcome: Result<Final, String>) {
        match outcome {
            Ok(state) => {
                if let Some((index, streamed)) = who {
                    self.finals_by_user
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .push((index, streamed, state));
                }
                bump(match state {
                    Final::Won => &self.won,
                    Final::Lost => &self.lost,
                    Final::SoldOut => &self.sold_out,
                    Final::Expired => &self.expired,
                    Final::Closed => &self.closed,
                });
                bump(&self.decided);
                let mut times = self
                    .times
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                times.last_result = Some(Instant::now());
            }
            Err(message) => {
                bump(&self.errors);
                let mut samples = self
                    .error_samples
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                if samples.len() < ERROR_SAMPLES && !samples.contains(&message) {
                    samples.push(message);
                }
            }
        }
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// First enter to last final state seen, if both happened.
    pub(crate) fn first_enter_to_last_result(&self) -> Option<Duration> {
        let times = self
            .times
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        Some(
            times
                .last_result?
                .saturating_duration_since(times.first_enter?),
        )
    }

    /// The enter latencies, sorted.
    pub(crate) fn sorted_enter_latencies(&self) -> Vec<Duration> {
        let mut latencies = self
            .enter_latencies
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        latencies.sort_unstable();
        latencies
    }

    pub(crate) fn finals_by_user(&self) -> Vec<(u32, bool, Final)> {
        let mut finals = self
            .finals_by_user
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        finals.sort_unstable_by_key(|(index, _, _)| *index);
        finals
    }

    pub(crate) fn error_samples(&self) -> Vec<String> {
        self.error_samples
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// The counters now, for the timeline.
    pub(crate) fn sample(&self, t_s: f64) -> Sample {
        let entered = Self::get(&self.entered);
        Sample {
            t_s,
            entered,
            queue: entered.saturating_sub(Self::get(&self.left_queue)),
            admitted: Self::get(&self.admitted),
            decided: Self::get(&self.decided),
        }
    }
}

/// One point of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the crowd started.
    pub t_s: f64,
    /// Users entered so far.
    pub entered: u64,
    /// Users entered and still seen waiting.
    pub queue: u64,
    /// Users seen admitted so far.
    pub admitted: u64,
    /// Users with a final state so far.
    pub decided: u64,
}

/// What one user's client has already counted, so each milestone counts once however
/// often a poll or stream repeats it.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    left_queue: bool,
    admitted: bool,
}

impl Seen {
    /// Counts what `view` shows; returns the final state if it is one.
    pub(crate) fn observe(&mut self, tally: &Tally, view: &QueueView) -> Option<Final> {
        if view.state != UserState::Waiting && !self.left_queue {
            self.left_queue = true;
            bump(&tally.left_queue);
        }
        // A sold-out user with a decision order was drawn, so was admitted first.
        let drawn = view
            .result
            .as_ref()
            .is_some_and(|result| result.decision_order.is_some());
        let admitted = matches!(
            view.state,
            UserState::Admitted | UserState::Won | UserState::Lost
        ) || drawn;
        if admitted && !self.admitted {
            self.admitted = true;
            bump(&tally.admitted);
        }
        Final::of(view.state)
    }
}

/// The `p`-th percentile (0–100) of sorted values by the nearest-rank method: the
/// smallest value with at least `p` % of the values at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&values, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&values, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&values, 0.0), Some(Duration::from_millis(1)));
        let few = ms(&[3, 7, 20]);
        assert_eq!(percentile(&few, 50.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&few, 99.0), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&ms(&[5]), 99.0), Some(Duration::from_millis(5)));
    }

    #[test]
    fn no_percentile_of_nothing_or_out_of_range() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&ms(&[1]), 101.0), None);
        assert_eq!(percentile(&ms(&[1]), f64::NAN), None);
    }

    #[test]
    fn milestones_count_once() {
        let tally = Tally::default();
        let mut seen = Seen::default();
        let view = |state: UserState| QueueView {
            event_id: "e".to_owned(),
            ticket: 1,
            state,
            position: 0,
            eta_s: 0,
            poll_after_ms: 0,
            result: None,
        };
        assert_eq!(seen.observe(&tally, &view(UserState::Waiting)), None);
        assert_eq!(seen.observe(&tally, &view(UserState::Admitted)), None);
        assert_eq!(seen.observe(&tally, &view(UserState::Admitted)), None);
        assert_eq!(
            seen.observe(&tally, &view(UserState::Won)),
            Some(Final::Won)
        );
        assert_eq!(Tally::get(&tally.left_queue), 1);
        assert_eq!(Tally::get(&tally.admitted), 1);
        assert_eq!(tally.sample(0.0).queue, 0);
    }
}
