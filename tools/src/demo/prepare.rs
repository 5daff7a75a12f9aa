//! Before and after the crowd: signing every user's token, creating and opening the
//! event, and at the end closing it and replaying its draw.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dropgate_core::{EventConfig, EventId, EventSeed, EventState};
use dropgate_functions::auth::dev::TokenSigner;
use dropgate_functions::queue::QueueStore;
use dropgate_functions::seed_vault::SeedKey;
use indicatif::MultiProgress;
use jwt_simple::prelude::RS256KeyPair;
use sqlx::PgPool;

use super::drive::bar;

/// How long the demo waits for the admitter to finish closing the event: the users
/// still in the draw are decided first.
const CLOSE_PATIENCE: Duration = Duration::from_secs(120);
use super::report::Verdict;
use super::user::{Mode, User};
use crate::events;

/// Fails early, with the fix in the message, when queue-api does not answer. Its
/// readiness route is on the ops port, which a deployment does not expose, so this
/// asks a public route that reads Redis: an unknown event's fairness record (404 when
/// Redis answers, 503 when it does not).
pub(super) async fn check_api(client: &reqwest::Client, api_url: &str) -> Result<()> {
    let url = format!("{api_url}/v1/events/dropgate-demo-probe/fairness");
    let response = client
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| {
            format!("queue-api at {api_url} does not answer; is it running (`dropgate local up`)?")
        })?;
    if !(response.status().is_success() || response.status() == reqwest::StatusCode::NOT_FOUND) {
        bail!(
            "queue-api at {api_url} is not ready ({}); is Redis up?",
            response.status()
        );
    }
    Ok(())
}

/// User `index`'s identity, alternating between two platforms: an identity is
/// (platform, user), and the demo should exercise both parts.
pub(super) fn identity(index: u32) -> (&'static str, String) {
    let platform = if index.is_multiple_of(2) {
        "web"
    } else {
        "app"
    };
    (platform, format!("crowd-{index:07}"))
}

/// Signs one token per user across every core (RSA signing costs about a
/// millisecond), and decides who streams: an even spread of `sse_share`.
pub(super) async fn sign_tokens(
    pair: RS256KeyPair,
    users: u32,
    sse_share: f64,
    ttl: Duration,
    bars: &MultiProgress,
) -> Result<Vec<User>> {
    let progress = bar(bars, u64::from(users), "signing tokens");
    let pair = Arc::new(TokenSigner::new(&pair)?);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let chunk = users.div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    for start in (0..users).step_by(chunk as usize) {
        let (pair, progress) = (pair.clone(), progress.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            (start..(start + chunk).min(users))
                .map(|index| {
                    let (platform, user) = identity(index);
                    let token = pair.sign(platform, &user, ttl)?.into();
                    progress.inc(1);
                    let streams = ((index + 1) as f64 * sse_share).floor()
                        > (index as f64 * sse_share).floor();
                    Ok(User {
                        index,
                        token,
                        mode: if streams { Mode::Stream } else { Mode::Poll },
                    })
                })
                .collect::<Result<Vec<User>>>()
        }));
    }
    let mut all = Vec::with_capacity(users as usize);
    for task in tasks {
        all.extend(task.await.context("a signing task failed")??);
    }
    progress.finish();
    Ok(all)
}

/// Creates the event with a fresh secret seed and opens it; returns the seed's
/// commitment.
pub(super) async fn open_event(
    pool: &PgPool,
    store: &QueueStore,
    seed_key: &SeedKey,
    event: &EventId,
    config: &EventConfig,
) -> Result<String> {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let commitment =
        events::create(pool, event, config, &EventSeed::from_bytes(seed), seed_key).await?;
    let record = events::transition(pool, event, EventState::Open).await?;
    events::mirror(store, &record)
        .await
        .context("Failed to mirror the event to Redis")?;
    Ok(commitment.to_string())
}

/// Closes the event, tells Redis, waits for the admitter to finish the close (the
/// seed revealed once every admitted user is decided) and replays the draw.
pub(super) async fn close_and_verify(
    pool: &PgPool,
    store: &QueueStore,
    event: &EventId,
) -> (Verdict, String) {
    // A store restarted during the drop may fail the first request on a connection it
    // broke: each step is retried, and closing twice is not an error.
    let verified = async {
        let record = retrying(|| async {
            let record = events::load(pool, event).await?;
            if matches!(record.state, EventState::Closing | EventState::Closed) {
                return Ok(record);
            }
            events::transition(pool, event, EventState::Closing).await
        })
        .await?;
        retrying(|| events::mirror(store, &record)).await?;
        let deadline = tokio::time::Instant::now() + CLOSE_PATIENCE;
        while retrying(|| events::load(pool, event)).await?.state != EventState::Closed {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the event is still closing after {} s: is the admitter running?",
                    CLOSE_PATIENCE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let report = retrying(|| events::verify_event(pool, event)).await?;
        let data = retrying(|| async {
            let mut conn = pool.acquire().await?;
            events::fairness_data(&mut conn, event).await
        })
        .await?;
        let independent = crate::independent::verify(&data);
        Ok((report, independent))
    }
    .await;
    match verified {
        Ok((report, Ok(independent))) if report.passed() && independent.passed => (
            Verdict::Pass,
            format!(
                "{} draws replayed from the revealed seed, {} winners, all match, all in ticket order; \
                 the independent verifier (Python) agrees from the public data",
                report.decisions, report.winners
            ),
        ),
        Ok((report, Ok(independent))) if report.passed() => (
            Verdict::Fail,
            format!(
                "verify passed but the independent verifier (Python) found {:?}",
                independent.kinds
            ),
        ),
        Ok((report, Err(error))) if report.passed() => (
            Verdict::Fail,
            format!("verify passed but the independent verifier could not run: {error:#}"),
        ),
        Ok((report, _)) => (
            Verdict::Fail,
            format!(
                "{} problems in {} draws ({} users decided before an earlier ticket); first: {}",
                report.findings.len(),
                report.decisions,
                report
                    .findings
                    .iter()
                    .filter(|finding| matches!(
                        finding,
                        dropgate_core::Finding::DecidedBeforeAnEarlierTicket { .. }
                    ))
                    .count(),
                report
                    .findings
                    .first()
                    .and_then(|finding| serde_json::to_string(finding).ok())
                    .unwrap_or_default()
            ),
        ),
        Err(error) => (Verdict::Fail, format!("could not verify: {error:#}")),
    }
}

/// Runs `step` until it succeeds, at most [`ATTEMPTS`] times, waiting a little longer
/// after each failure; the last error is returned.
async fn retrying<T, F, Fut>(mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt >= ATTEMPTS => return Err(error),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(250) * attempt).await;
                attempt += 1;
            }
        }
    }
}

/// Tries of each closing step.
const ATTEMPTS: u32 = 5;
