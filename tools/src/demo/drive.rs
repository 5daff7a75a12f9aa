//! The crowd in motion: every user as a task, the timeline sampled every 250 ms into
//! the progress bars, and the stop when all are final or time is up.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::tally::Sample;
use super::user::{Crowd, User};

/// How often the timeline is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// A progress bar in the crowd's style.
pub(super) fn bar(bars: &MultiProgress, length: u64, prefix: &'static str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>14} [{bar:40.cyan/blue}] {pos:>7}/{len:7} {per_sec:>12} {elapsed:>4}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bars.add(
        ProgressBar::new(length)
            .with_style(style)
            .with_prefix(prefix),
    )
}

/// Runs every user until all have a final state, `timeout` passes or `interrupt`
/// completes; returns the timeline and whether the crowd was cut short.
pub(super) async fn drive(
    crowd: &Arc<Crowd>,
    users: Vec<User>,
    timeout: Duration,
    interrupt: impl Future<Output = ()>,
    bars: &MultiProgress,
) -> (Vec<Sample>, bool) {
    let total = users.len() as u64;
    let progress = [
        bar(bars, total, "entered"),
        bar(bars, total, "admitted seen"),
        bar(bars, total, "decided"),
    ];
    let started = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let sampler = tokio::spawn(sample(crowd.clone(), started, progress, stopped));
    let mut tasks = JoinSet::new();
    for user in users {
        tasks.spawn(crowd.clone().run_user(user));
    }
    let all_done = async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined
                && error.is_panic()
            {
                crowd
                    .tally
                    .finish(None, Err("a user task panicked".to_owned()));
            }
        }
    };
    let cut_short = tokio::select! {
        () = all_done => false,
        () = tokio::time::sleep(timeout) => true,
        () = interrupt => true,
    };
    tasks.shutdown().await;
    let _ = stop.send(true);
    let timeline = sampler.await.unwrap_or_default();
    (timeline, cut_short)
}

/// Samples the counters into the timeline and the progress bars until told to stop,
/// then once more for the final figures.
async fn sample(
    crowd: Arc<Crowd>,
    started: Instant,
    progress: [ProgressBar; 3],
    mut stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut timeline = Vec::new();
    let mut interval = tokio::time::interval(SAMPLE_EVERY);
    loop {
        let stopping = tokio::select! {
            _ = interval.tick() => false,
            _ = stop.wait_for(|stop| *stop) => true,
        };
        let point = crowd.tally.sample(started.elapsed().as_secs_f64());
        for (bar, value) in progress
            .iter()
            .zip([point.entered, point.admitted, point.decided])
        {
            bar.set_position(value);
        }
        timeline.push(point);
        if stopping {
            break;
        }
    }
    for bar in &progress {
        bar.finish();
    }
    timeline
}
