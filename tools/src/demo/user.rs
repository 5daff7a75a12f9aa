//! One simulated user, through the public HTTP API only: enter, then either follow the
//! Server-Sent Events stream (reconnecting with `Last-Event-ID` when it breaks) or poll
//! at the `poll_after_ms` the server suggests, until a final state.
//!
//! Three semaphores share the connection cap. Streaming users hold a stream slot from
//! entering to their result, so the ones beyond the cap wait their turn to enter.
//! Pollers take an entry slot to enter and a poll slot per status request, giving it
//! back while they sleep, so thousands of waiting pollers share a few connections.
//! Entries and polls have separate slots because a crowd arriving all at once would
//! otherwise queue every poll behind thousands of entries, and the users already in
//! line would stop hearing about their place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dropgate_functions::queue_api::QueueView;
use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use tokio::sync::Semaphore;

use super::sse::SseReader;
use super::tally::{Final, Seen, Tally};

/// How a user follows their place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Poll,
    Stream,
}

/// One user of the crowd.
#[derive(Debug)]
pub(crate) struct User {
    pub(crate) index: u32,
    pub(crate) token: Arc<str>,
    pub(crate) mode: Mode,
}

/// Short requests (enter, status) give up after this long and are retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeats come every 15 s: a stream silent for longer is dead.
const STREAM_IDLE: Duration = Duration::from_secs(45);
/// Network failures in a row before a user gives up.
const MAX_FAILURES: u32 = 8;
/// Retry-After bounds: a missing header means 1 s; a huge one is capped so the crowd
/// stays inside its deadline.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The reconnect delay until the server sends `retry:`.
const DEFAULT_RECONNECT: Duration = Duration::from_secs(3);

/// How the connection cap is shared.
#[derive(Debug)]
pub(crate) struct Slots {
    pub(crate) entries: Semaphore,
    pub(crate) polls: Semaphore,
    pub(crate) streams: Semaphore,
}

impl Slots {
    /// Streams get `sse_share` of `concurrency` (at least 3); entries and polls split
    /// the rest. Each kind that can be needed gets at least one slot.
    pub(crate) fn split(concurrency: usize, sse_share: f64) -> Self {
        let concurrency = concurrency.max(3);
        let streams = if sse_share > 0.0 {
            ((concurrency as f64 * sse_share).round() as usize).clamp(1, concurrency - 2)
        } else {
            0
        };
        let polls = (concurrency - streams) / 2;
        Self {
            entries: Semaphore::new(concurrency - streams - polls),
            polls: Semaphore::new(polls),
            streams: Semaphore::new(streams),
        }
    }
}

/// What the users share.
#[derive(Debug)]
pub(crate) struct Crowd {
    pub(crate) client: Client,
    /// `<api>/v1/events/<event>/queue`.
    pub(crate) queue_url: String,
    pub(crate) slots: Slots,
    pub(crate) tally: Tally,
}

/// Which short request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Enter,
    Status,
}

/// A short request's answer.
enum Reply {
    View(QueueView),
    /// 410 `event_sold_out` at the door.
    SoldOutAtEntry,
    /// 410 `event_closed` at the door.
    ClosedAtEntry,
    /// 404 `not_in_queue` to a status request: the queue lost this user's entry (a
    /// Redis that lost data); a client enters again, as the page does.
    NotInQueue,
}

/// How a stream ended.
enum StreamEnd {
    Final(Final),
    /// The instance's stream cap is reached: poll instead, as the API asks.
    Poll,
}

impl Crowd {
    /// Runs one user to a final state (or an error) and counts it.
    pub(crate) async fn run_user(self: Arc<Self>, user: User) {
        let mut seen = Seen::default();
        let outcome = match user.mode {
            Mode::Poll => self.poller(&user, &mut seen).await,
            Mode::Stream => match self.streamer(&user, &mut seen).await {
                Ok(StreamEnd::Final(state)) => Ok(state),
                Ok(StreamEnd::Poll) => {
                    self.tally.fell_back_to_polling.fetch_add(1, ordering());
                    self.poll_until_final(&user, &mut seen, None).await
                }
                Err(error) => Err(error),
            },
        };
        self.tally
            .finish(Some((user.index, user.mode == Mode::Stream)), outcome);
    }

    async fn poller(&self, user: &User, seen: &mut Seen) -> Result<Final, String> {
        match self.ask(user, Ask::Enter, false).await? {
            Reply::SoldOutAtEntry => Ok(self.sold_out_at_entry()),
            Reply::ClosedAtEntry => Ok(self.closed_at_entry()),
            Reply::NotInQueue => Err("enter answered not_in_queue".into()),
            Reply::View(view) => self.poll_until_final(user, seen, Some(view)).await,
        }
    }

    fn sold_out_at_entry(&self) -> Final {
        self.tally.sold_out_at_entry.fetch_add(1, ordering());
        Final::SoldOut
    }

    fn closed_at_entry(&self) -> Final {
        self.tally.closed_at_entry.fetch_add(1, ordering());
        Final::Closed
    }

    /// Polls at the suggested interval until `poll_after_ms` is 0.
    async fn poll_until_final(
        &self,
        user: &User,
        seen: &mut Seen,
        mut view: Option<QueueView>,
    ) -> Result<Final, String> {
        loop {
            if let Some(view) = &view {
                let done = seen.observe(&self.tally, view);
                if view.poll_after_ms == 0 {
                    return done.ok_or_else(|| {
                        format!("poll_after_ms 0 in the non-final state {}", view.state)
                    });
                }
                tokio::time::sleep(Duration::from_millis(view.poll_after_ms)).await;
            }
            view = match self.ask(user, Ask::Status, false).await? {
                Reply::View(next) => Some(next),
                Reply::NotInQueue => {
                    self.tally.reentered.fetch_add(1, ordering());
                    match self.ask(user, Ask::Enter, false).await? {
                        Reply::View(next) => Some(next),
                        Reply::SoldOutAtEntry => return Ok(self.sold_out_at_entry()),
                        Reply::ClosedAtEntry => return Ok(self.closed_at_entry()),
                        Reply::NotInQueue => return Err("enter answered not_in_queue".into()),
                    }
                }
                Reply::SoldOutAtEntry | Reply::ClosedAtEntry => {
                    return Err("status answered 410 at the door".into());
                }
            };
        }
    }

    async fn streamer(&self, user: &User, seen: &mut Seen) -> Result<StreamEnd, String> {
        let _slot = self
            .slots
            .streams
            .acquire()
            .await
            .map_err(|_| "the crowd stopped".to_owned())?;
        let view = match self.ask(user, Ask::Enter, true).await? {
            Reply::SoldOutAtEntry => return Ok(StreamEnd::Final(self.sold_out_at_entry())),
            Reply::ClosedAtEntry => return Ok(StreamEnd::Final(self.closed_at_entry())),
            Reply::NotInQueue => return Err("enter answered not_in_queue".into()),
            Reply::View(view) => view,
        };
        if let Some(state) = seen.observe(&self.tally, &view) {
            return Ok(StreamEnd::Final(state));
        }
        let mut last_event_id: Option<String> = None;
        let mut reconnect_after = DEFAULT_RECONNECT;
        let mut failures = 0;
        loop {
            let mut request = self
                .client
                .get(format!("{}/me/stream", self.queue_url))
                .bearer_auth(&user.token)
                .header(ACCEPT, "text/event-stream");
            if let Some(id) = &last_event_id {
                request = request.header("last-event-id", id);
            }
            let response = match self.with_address(request, user).send().await {
                Ok(response) => response,
                Err(error) => {
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        return Err(format!("stream: {}", without_url(error)));
                    }
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            match response.status() {
                StatusCode::OK => {}
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    let wait = retry_after(&response);
                    if error_code(response).await.as_deref() == Some("too_many_streams") {
                        return Ok(StreamEnd::Poll);
                    }
                    self.tally.retries.fetch_add(1, ordering());
                    tokio::time::sleep(wait).await;
                    continue;
                }
                // The queue lost the event or this user's entry: polling re-enters.
                StatusCode::NOT_FOUND => return Ok(StreamEnd::Poll),
                status => return Err(refusal("stream", status, response).await),
            }
            let mut reader = SseReader::new(response);
            loop {
                let event = match tokio::time::timeout(STREAM_IDLE, reader.next()).await {
                    Ok(Ok(Some(event))) => event,
                    // Ended, broken or silent: reconnect as a browser would.
                    Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
                };
                if let Some(id) = event.id {
                    last_event_id = Some(id);
                }
                if let Some(retry) = event.retry {
                    reconnect_after = retry;
                }
                match event.name.as_str() {
                    "position" | "result" | "sold_out" | "closed" => {
                        failures = 0;
                        let view: QueueView = serde_json::from_str(&event.data)
                            .map_err(|e| format!("unreadable {} event: {e}", event.name))?;
                        if let Some(state) = seen.observe(&self.tally, &view) {
                            return Ok(StreamEnd::Final(state));
                        }
                        if event.name != "position" {
                            return Err(format!("{} event in state {}", event.name, view.state));
                        }
                    }
                    "reconnect" => break,
                    _ => {}
                }
            }
            self.tally.reconnects.fetch_add(1, ordering());
            failures += 1;
            if failures >= MAX_FAILURES {
                return Err("the stream kept breaking before a result".into());
            }
            tokio::time::sleep(reconnect_after).await;
        }
    }

    /// Sends one short request, waiting out 429/503 and retrying network failures.
    /// Without `holding` a slot already, an entry or poll slot is taken per attempt and
    /// given back before any wait.
    async fn ask(&self, user: &User, ask: Ask, holding: bool) -> Result<Reply, String> {
        let mut failures = 0;
        loop {
            let slot = if holding {
                None
            } else {
                let slots = match ask {
                    Ask::Enter => &self.slots.entries,
                    Ask::Status => &self.slots.polls,
                };
                Some(
                    slots
                        .acquire()
                        .await
                        .map_err(|_| "the crowd stopped".to_owned())?,
                )
            };
            let request = match ask {
                Ask::Enter => self.client.post(&self.queue_url),
                Ask::Status => self.client.get(format!("{}/me", self.queue_url)),
            }
            .bearer_auth(&user.token)
            .timeout(REQUEST_TIMEOUT);
            let started = Instant::now();
            if ask == Ask::Enter {
                self.tally.entering(started);
            }
            let response = match self.with_address(request, user).send().await {
                Ok(response) => response,
                Err(error) => {
                    drop(slot);
                    failures += 1;
                    if failures >= MAX_FAILURES {
                        return Err(format!("{ask:?}: {}", without_url(error)));
                    }
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            match response.status() {
                StatusCode::OK | StatusCode::CREATED => {
                    let body = response.bytes().await;
                    let latency = started.elapsed();
                    let body = match body {
                        Ok(body) => body,
                        Err(error) => {
                            drop(slot);
                            failures += 1;
                            if failures >= MAX_FAILURES {
                                return Err(format!("{ask:?}: {}", without_url(error)));
                            }
                            continue;
                        }
                    };
                    let view: QueueView = serde_json::from_slice(&body)
                        .map_err(|e| format!("{ask:?}: unreadable answer: {e}"))?;
                    if ask == Ask::Enter {
                        self.tally.entered(latency);
                    }
                    return Ok(Reply::View(view));
                }
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    let wait = retry_after(&response);
                    drop(response);
                    drop(slot);
                    self.tally.retries.fetch_add(1, ordering());
                    tokio::time::sleep(wait).await;
                }
                StatusCode::NOT_FOUND => {
                    match error_code(response).await.as_deref() {
                        Some("not_in_queue") if ask == Ask::Status => {
                            return Ok(Reply::NotInQueue);
                        }
                        // The queue side lost the event itself; the admitter mirrors it
                        // again from PostgreSQL within a tick.
                        Some("unknown_event") => {
                            drop(slot);
                            failures += 1;
                            if failures >= MAX_FAILURES {
                                return Err(format!("{ask:?}: the event stayed unknown"));
                            }
                            self.tally.retries.fetch_add(1, ordering());
                            tokio::time::sleep(backoff(failures)).await;
                        }
                        code => {
                            return Err(format!("{ask:?}: 404 {}", code.unwrap_or("?")));
                        }
                    }
                }
                StatusCode::GONE if ask == Ask::Enter => {
                    let status = response.status();
                    match error_code(response).await.as_deref() {
                        Some("event_sold_out") => return Ok(Reply::SoldOutAtEntry),
                        Some("event_closed") => return Ok(Reply::ClosedAtEntry),
                        code => return Err(format!("Enter: {status} {}", code.unwrap_or("?"))),
                    }
                }
                status => return Err(refusal(&format!("{ask:?}"), status, response).await),
            }
        }
    }

    /// Behind a load balancer every user has an address of their own; queue-api only
    /// believes this header when told to (`DROPGATE_TRUST_FORWARDED_FOR`), and then
    /// its per-address limit sees a crowd instead of one client.
    fn with_address(
        &self,
        request: reqwest::RequestBuilder,
        user: &User,
    ) -> reqwest::RequestBuilder {
        let [_, a, b, c] = user.index.to_be_bytes();
        match HeaderValue::from_str(&format!("10.{a}.{b}.{c}")) {
            Ok(address) => request.header("x-forwarded-for", address),
            Err(_) => request,
        }
    }
}

fn ordering() -> std::sync::atomic::Ordering {
    std::sync::atomic::Ordering::Relaxed
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.min(5))
}

/// `Retry-After` in seconds (the API sends whole seconds).
fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, |seconds| {
            Duration::from_secs(seconds).clamp(Duration::from_millis(100), MAX_RETRY_AFTER)
        })
}

/// The `error.code` of an API error body.
async fn error_code(response: reqwest::Response) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    Some(body.get("error")?.get("code")?.as_str()?.to_owned())
}

async fn refusal(what: &str, status: StatusCode, response: reqwest::Response) -> String {
    let code = error_code(response).await;
    format!(
        "{what}: {status} {}",
        code.as_deref().unwrap_or("(no error code)")
    )
}

/// reqwest errors name the URL, which is the same for everyone: keeps samples short.
fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(concurrency: usize, share: f64) -> [usize; 3] {
        let slots = Slots::split(concurrency, share);
        [
            slots.entries.available_permits(),
            slots.polls.available_permits(),
            slots.streams.available_permits(),
        ]
    }

    #[test]
    fn the_cap_is_shared_and_every_needed_kind_gets_a_slot() {
        assert_eq!(split(512, 0.5), [128, 128, 256]);
        assert_eq!(split(512, 0.0), [256, 256, 0]);
        assert_eq!(split(512, 1.0), [1, 1, 510]);
        assert_eq!(split(3, 0.01), [1, 1, 1]);
        assert_eq!(split(1, 0.5), [1, 1, 1], "raised to the minimum of 3");
        for concurrency in 3..40 {
            for share in [0.0, 0.1, 0.5, 0.9, 1.0] {
                assert_eq!(split(concurrency, share).iter().sum::<usize>(), concurrency);
            }
        }
    }
}
