//! `GET /v1/events/{event_id}/queue/me/stream`: Server-Sent Events.
//!
//! Tens of thousands of streams share two Redis consumers per instance instead of one
//! poll each:
//! - one pattern subscription to every event's `{ev:<id>}:notify` channel, on which
//!   result-relay publishes `r|<member>` when a user's outcome is written and
//!   `sold_out` when the stock is gone. A message wakes exactly the streams of that
//!   member (or every stream of the event for `sold_out`);
//! - one ticker that reads each watched event's serving counter and state once a
//!   second into a watch channel, from which every waiting stream computes its own
//!   position without touching Redis.
//!
//! Each stream still re-reads its own record through the status script every few
//! seconds: that refreshes the user's last-seen time (an open stream keeps a user from
//! being expired as abandoned) and catches any notification lost while the
//! subscription reconnected after a Redis restart.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dropgate_core::{EventId, EventState, UserKey, UserState};
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::extract::{Caller, EventPath};
use super::queue::{QueueView, found, now_s};
use super::{ApiError, AppState};
use crate::config::RedisArgs;
use crate::queue::{EventKeys, Notice, QueueStore, Standing};

/// Comment heartbeat interval: below the 30–60 s idle timeouts of common proxies.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often the shared ticker reads serving counters.
const PULSE: Duration = Duration::from_secs(1);
/// Upper bound between two status refreshes of one stream.
const MAX_REFRESH: Duration = Duration::from_secs(20);
/// Lower bound between two status refreshes of one stream.
const MIN_REFRESH: Duration = Duration::from_secs(2);
/// How long a client waits before reconnecting after the stream ends or breaks.
const RETRY_MS: u64 = 3_000;
/// An event nobody has entered, read or streamed through this instance for this long
/// is forgotten: no more ticker reads, no more metric series (Prometheus drops a gauge
/// not set for as long, see `telemetry`).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Most events one instance remembers; past it, the one idle longest (with no open
/// stream) is forgotten first. Real drops are a handful at a time.
const MAX_REMEMBERED_EVENTS: usize = 1_000;
/// Pattern matching every event's notify channel.
const NOTIFY_PATTERN: &str = "{ev:*}:notify";

/// What the ticker knows of an event, refreshed every second.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pulse {
    serving: u64,
    rate_per_s: u32,
    state: EventState,
    abandon_timeout_ms: u64,
}

type Waiters = HashMap<String, Vec<Waiter>>;

/// One open stream, as the notifications find it.
struct Waiter {
    id: u64,
    notify: Arc<Notify>,
    /// Set when a newer stream of the same user to the same event took over.
    replaced: Arc<AtomicBool>,
}

struct EventWatch {
    pulse: watch::Sender<Option<Pulse>>,
    /// Streams of this event by member.
    waiters: Waiters,
    /// The event exists: someone entered it or read their standing in it here. Until
    /// then the watch lives only as long as its streams, so a stream to an event that
    /// does not exist leaves nothing behind (no ticker reads, no metric series).
    confirmed: bool,
    /// When someone last entered, read or streamed it here.
    last_used: Instant,
}

struct Inner {
    store: QueueStore,
    redis_args: RedisArgs,
    max_streams: usize,
    open: AtomicUsize,
    next_stream_id: AtomicU64,
    events: Mutex<HashMap<EventId, EventWatch>>,
    shutdown: watch::Receiver<bool>,
    /// Wakes the ticker early (an event sold out).
    tick_now: Notify,
}

/// Shared state of every open stream of this instance.
#[derive(Clone)]
pub struct StreamHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHub")
            .field("open", &self.open())
            .finish()
    }
}

/// Counts a stream as open until dropped.
struct OpenSlot(Arc<Inner>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a new stream gets from [`StreamHub::register`].
struct Registered {
    registration: Registration,
    notify: Arc<Notify>,
    replaced: Arc<AtomicBool>,
    pulse: watch::Receiver<Option<Pulse>>,
}

/// A stream's registration for its member's notifications; removed when dropped.
struct Registration {
    inner: Arc<Inner>,
    event: EventId,
    member: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut events = self.inner.lock_events();
        if let Some(watch) = events.get_mut(&self.event) {
            if let Some(list) = watch.waiters.get_mut(&self.member) {
                list.retain(|waiter| waiter.id != self.id);
                if list.is_empty() {
                    watch.waiters.remove(&self.member);
                }
            }
            if !watch.confirmed && watch.waiters.is_empty() {
                events.remove(&self.event);
            }
        }
    }
}

impl Inner {
    fn lock_events(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, EventWatch>> {
        // A panic while holding the lock cannot leave the map inconsistent in a way
        // that matters (worst case a stale waiter), so keep serving.
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn notify_member(&self, event: &EventId, member: &str) {
        if let Some(watch) = self.lock_events().get(event)
            && let Some(list) = watch.waiters.get(member)
        {
            for waiter in list {
                waiter.notify.notify_one();
            }
        }
    }

    fn notify_event(&self, event: &EventId) {
        if let Some(watch) = self.lock_events().get(event) {
            for list in watch.waiters.values() {
                for waiter in list {
                    waiter.notify.notify_one();
                }
            }
        }
        self.tick_now.notify_one();
    }
}

impl StreamHub {
    /// Starts the subscription and the ticker (they run until `shutdown` turns true).
    pub fn new(
        store: QueueStore,
        redis_args: RedisArgs,
        max_streams: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let hub = Self {
            inner: Arc::new(Inner {
                store,
                redis_args,
                max_streams,
                open: AtomicUsize::new(0),
                next_stream_id: AtomicU64::new(0),
                events: Mutex::new(HashMap::new()),
                shutdown,
                tick_now: Notify::new(),
            }),
        };
        tokio::spawn(subscribe(Arc::clone(&hub.inner)));
        tokio::spawn(tick(Arc::clone(&hub.inner)));
        hub
    }

    /// Streams open on this instance.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Starts watching `event`, which Redis has just shown to exist (its serving
    /// counter feeds positions and metrics).
    pub fn remember(&self, event: &EventId) {
        let mut events = self.inner.lock_events();
        // Every enter and status read lands here: a known event costs a lookup only.
        if let Some(watch) = events.get_mut(event) {
            watch.confirmed = true;
            watch.last_used = Instant::now();
            return;
        }
        if events.len() >= MAX_REMEMBERED_EVENTS {
            let idlest = events
                .iter()
                .filter(|(_, watch)| watch.waiters.is_empty())
                .min_by_key(|(_, watch)| watch.last_used)
                .map(|(event, _)| event.clone());
            if let Some(idlest) = idlest {
                events.remove(&idlest);
            }
        }
        let watch = events.entry(event.clone()).or_insert_with(EventWatch::new);
        watch.confirmed = true;
        watch.last_used = Instant::now();
    }

    /// Events this instance has served.
    pub fn known_events(&self) -> Vec<EventId> {
        self.inner
            .lock_events()
            .iter()
            .filter(|(_, watch)| watch.confirmed)
            .map(|(event, _)| event.clone())
            .collect()
    }

    fn reserve(&self) -> Option<OpenSlot> {
        let previous = self.inner.open.fetch_add(1, Ordering::AcqRel);
        let slot = OpenSlot(Arc::clone(&self.inner));
        (previous < self.inner.max_streams).then_some(slot)
    }

    /// Registers a stream of `user` to `event`. A user holds one stream per event and
    /// instance: one already open is told it was replaced and ends, so reloads (or a
    /// script) cannot pile streams up and push other users to `too_many_streams`.
    fn register(&self, event: &EventId, user: &UserKey) -> Registered {
        let member = user.member();
        let id = self.inner.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let replaced = Arc::new(AtomicBool::new(false));
        let mut events = self.inner.lock_events();
        let watch = events.entry(event.clone()).or_insert_with(EventWatch::new);
        watch.last_used = Instant::now();
        let waiters = watch.waiters.entry(member.clone()).or_default();
        for older in waiters.iter() {
            older.replaced.store(true, Ordering::Release);
            older.notify.notify_one();
        }
        waiters.push(Waiter {
            id,
            notify: Arc::clone(&notify),
            replaced: Arc::clone(&replaced),
        });
        let pulse = watch.pulse.subscribe();
        drop(events);
        Registered {
            registration: Registration {
                inner: Arc::clone(&self.inner),
                event: event.clone(),
                member,
                id,
            },
            notify,
            replaced,
            pulse,
        }
    }
}

impl EventWatch {
    fn new() -> Self {
        Self {
            pulse: watch::channel(None).0,
            waiters: HashMap::new(),
            confirmed: false,
            last_used: Instant::now(),
        }
    }
}

/// Parses a notify channel name back into its event.
fn event_of_channel(channel: &str) -> Option<EventId> {
    let id = channel.strip_prefix("{ev:")?.strip_suffix("}:notify")?;
    EventId::parse(id).ok()
}

/// Keeps one pattern subscription alive, reconnecting with backoff (in a cluster, to
/// the next primary: the one it was on may be the one that went away).
async fn subscribe(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        let session = async {
            let client = inner
                .store
                .connection()
                .subscriber_client(&inner.redis_args, attempt)
                .await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(NOTIFY_PATTERN).await?;
            tracing::debug!("result notifications subscribed");
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(event) = event_of_channel(message.get_channel_name()) else {
                    continue;
                };
                let payload: String = message.get_payload().unwrap_or_default();
                match Notice::decode(&payload) {
                    Some(Notice::Result(member)) => inner.notify_member(&event, &member),
                    Some(Notice::SoldOut | Notice::Closing) => inner.notify_event(&event),
                    None => tracing::debug!(%payload, "unknown notification ignored"),
                }
            }
            anyhow::Ok(())
        };
        tokio::select! {
            result = session => {
                if let Err(error) = result {
                    tracing::warn!(error = %format!("{error:#}"), "result subscription lost; reconnecting");
                }
            }
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Reads serving counters and states of watched events once a second.
async fn tick(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    let redis = inner.store.connection();
    loop {
        // Only streams use the pulse; an event without one is read at /metrics.
        let events: Vec<EventId> = {
            let mut events = inner.lock_events();
            events.retain(|_, watch| {
                !watch.waiters.is_empty() || watch.last_used.elapsed() < FORGET_AFTER
            });
            events
                .iter()
                .filter(|(_, watch)| !watch.waiters.is_empty())
                .map(|(event, _)| event.clone())
                .collect()
        };
        if !events.is_empty() {
            // One small pipeline per event, all sent at once: in a cluster each event
            // lives on its own primary, and a pipeline may only name one slot.
            let reads = events.iter().map(|event| {
                let keys = EventKeys::new(event);
                let mut redis = redis.clone();
                async move {
                    redis::pipe()
                        .get(keys.serving())
                        .hget(keys.meta(), &["state", "rate", "abandon_ms"])
                        .query_async::<PulseReply>(&mut redis)
                        .await
                }
            });
            let replies = futures_util::future::join_all(reads).await;
            let events_map = inner.lock_events();
            for (event, reply) in events.iter().zip(replies) {
                let (serving, (state, rate, abandon)) = match reply {
                    Ok(reply) => reply,
                    Err(error) => {
                        tracing::warn!(%event, %error, "could not read the serving counter");
                        continue;
                    }
                };
                let pulse = state
                    .and_then(|state| state.parse().ok())
                    .map(|state| Pulse {
                        serving: serving.unwrap_or(0),
                        rate_per_s: rate.unwrap_or(1).max(1),
                        state,
                        abandon_timeout_ms: abandon.unwrap_or(120_000),
                    });
                if let Some(watch) = events_map.get(event) {
                    watch.pulse.send_if_modified(|current| {
                        let changed = *current != pulse;
                        *current = pulse;
                        changed
                    });
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PULSE) => {}
            _ = inner.tick_now.notified() => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// An event's serving counter and the meta fields a stream needs.
type PulseReply = (Option<u64>, (Option<String>, Option<u32>, Option<u64>));

/// What a stream tells its client.
enum Told {
    /// A place in line (or admitted, waiting for the draw).
    Position(QueueView),
    /// The user's final outcome.
    Result(QueueView),
    /// The stock is gone before the user was admitted.
    SoldOut(QueueView),
    /// The drop ended before the user's turn.
    Closed(QueueView),
}

impl Told {
    fn of(view: QueueView) -> Self {
        match view.state {
            UserState::Waiting | UserState::Admitted => Told::Position(view),
            UserState::Closed => Told::Closed(view),
            // Never drawn: the stock ran out while the user was still in line.
            UserState::SoldOut
                if view
                    .result
                    .as_ref()
                    .is_none_or(|r| r.decision_order.is_none()) =>
            {
                Told::SoldOut(view)
            }
            _ => Told::Result(view),
        }
    }

    fn is_final(&self) -> bool {
        !matches!(self, Told::Position(_))
    }

    fn event(&self) -> Event {
        let (name, id, view) = match self {
            Told::Position(view) => (
                "position",
                format!("position-{}-{}", view.state.as_str(), view.position),
                view,
            ),
            Told::Result(view) => ("result", "result".to_owned(), view),
            Told::SoldOut(view) => ("sold_out", "sold_out".to_owned(), view),
            Told::Closed(view) => ("closed", "closed".to_owned(), view),
        };
        let data = serde_json::to_string(view).unwrap_or_else(|_| "{}".to_owned());
        Event::default().event(name).id(id).data(data)
    }
}

/// Opens a stream. The first event is the caller's current standing; a decided user
/// gets `result` at once (also on a reconnect with `Last-Event-ID`), so a result is
/// never lost to a dropped connection.
pub(crate) async fn stream(
    State(state): State<AppState>,
    EventPath(event): EventPath,
    Caller(user): Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let slot = state.streams.reserve().ok_or(ApiError::TooManyStreams)?;
    let Registered {
        registration,
        notify,
        replaced,
        pulse,
    } = state.streams.register(&event, &user);
    // Registered before the first read: a result written in between still wakes us.
    let standing = found(state.store.status(&event, &user, now_s()).await?)?;
    state.streams.remember(&event);
    let resumed_from = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    tracing::debug!(%event, resumed_from = ?resumed_from, "stream opened");

    let (sender, receiver) = mpsc::channel::<Event>(4);
    let session = Session {
        store: state.store.clone(),
        event,
        user,
        standing,
        notify,
        replaced,
        pulse,
        shutdown: state.streams.inner.shutdown.clone(),
        sender,
    };
    tokio::spawn(async move {
        let _slot = slot;
        let _registration = registration;
        session.run().await;
    });
    let events = ReceiverStream::new(receiver).map(Ok::<_, Infallible>);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response();
    // Tells nginx-style proxies not to buffer the stream.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// Why a stream woke up.
enum Wake {
    /// Its member's result was published.
    Notified,
    /// The event's serving counter or state moved.
    Pulse,
    /// Time to refresh last-seen and re-read the record.
    Refresh,
    /// The server is stopping.
    Shutdown,
}

/// One open stream.
struct Session {
    store: QueueStore,
    event: EventId,
    user: UserKey,
    standing: Standing,
    notify: Arc<Notify>,
    replaced: Arc<AtomicBool>,
    pulse: watch::Receiver<Option<Pulse>>,
    shutdown: watch::Receiver<bool>,
    sender: mpsc::Sender<Event>,
}

impl Session {
    async fn run(mut self) {
        let retry = Event::default().retry(Duration::from_millis(RETRY_MS));
        if self.sender.send(retry).await.is_err() {
            return;
        }
        let mut last_sent: Option<String> = None;
        let mut last_position_at = tokio::time::Instant::now() - Duration::from_secs(1);
        let mut next_refresh = tokio::time::Instant::now() + self.refresh_interval();
        loop {
            let told = Told::of(QueueView::of(&self.event, &self.standing));
            let final_answer = told.is_final();
            let event = told.event();
            let key = format!("{:?}", told_key(&told));
            if last_sent.as_deref() != Some(key.as_str()) {
                // Positions at most once a second; outcomes at once.
                if !final_answer {
                    tokio::time::sleep_until(last_position_at + Duration::from_secs(1)).await;
                    last_position_at = tokio::time::Instant::now();
                }
                if self.sender.send(event).await.is_err() {
                    return;
                }
                last_sent = Some(key);
            }
            if final_answer {
                return;
            }
            let wake = tokio::select! {
                _ = self.notify.notified() => Wake::Notified,
                changed = self.pulse.changed() => match changed {
                    Ok(()) => Wake::Pulse,
                    Err(_) => return,
                },
                _ = tokio::time::sleep_until(next_refresh) => Wake::Refresh,
                _ = self.shutdown.wait_for(|stopping| *stopping) => Wake::Shutdown,
                _ = self.sender.closed() => return,
            };
            let known = match wake {
                Wake::Notified if self.replaced.load(Ordering::Acquire) => {
                    // Not `reconnect`: the client that opened the newer stream follows
                    // the user; this one should stop (and poll, if it is still open).
                    let goodbye = Event::default()
                        .event("replaced")
                        .data(r#"{"reason":"a newer stream of yours to this event took over"}"#);
                    let _ = self.sender.send(goodbye).await;
                    return;
                }
                Wake::Notified => self.refresh().await,
                Wake::Pulse => {
                    self.apply_pulse();
                    // The pulse carries the event, not this user's record: once the
                    // line reaches the user or the event sells out, the cached
                    // "waiting" may be stale (admitted, even decided), and telling
                    // "sold_out" from it would misinform a winner. Re-read first.
                    let record = &self.standing.record;
                    if record.state == UserState::Waiting
                        && (self.standing.serving >= record.ticket
                            || !self.standing.event_state.accepts_entries())
                    {
                        self.refresh().await
                    } else {
                        true
                    }
                }
                Wake::Refresh => {
                    next_refresh = tokio::time::Instant::now() + self.refresh_interval();
                    self.refresh().await
                }
                Wake::Shutdown => {
                    let goodbye = Event::default()
                        .event("reconnect")
                        .data(r#"{"reason":"server shutting down; reconnect"}"#);
                    let _ = self.sender.send(goodbye).await;
                    return;
                }
            };
            if !known {
                // The queue no longer knows this user (a Redis that lost data): the
                // reconnect is answered 404, and the client enters again.
                let goodbye = Event::default()
                    .event("reconnect")
                    .data(r#"{"reason":"the queue lost this entry; reconnect"}"#);
                let _ = self.sender.send(goodbye).await;
                return;
            }
        }
    }

    /// Status refreshes come often enough that an open stream never looks abandoned.
    fn refresh_interval(&self) -> Duration {
        let abandon = self
            .pulse
            .borrow()
            .map(|pulse| pulse.abandon_timeout_ms)
            .unwrap_or(120_000);
        Duration::from_millis(abandon / 4).clamp(MIN_REFRESH, MAX_REFRESH)
    }

    fn apply_pulse(&mut self) {
        if let Some(pulse) = *self.pulse.borrow_and_update() {
            self.standing.serving = pulse.serving.max(self.standing.serving);
            self.standing.rate_per_s = pulse.rate_per_s;
            self.standing.event_state = pulse.state;
        }
    }

    /// Re-reads the user's standing; false when the queue no longer knows the user
    /// or the event (a failed read keeps the last standing and counts as known).
    async fn refresh(&mut self) -> bool {
        match self.store.status(&self.event, &self.user, now_s()).await {
            Ok(lookup) => match found(lookup) {
                Ok(standing) => {
                    self.standing = standing;
                    true
                }
                Err(error) => {
                    tracing::debug!(code = error.code(), "stream refresh found no standing");
                    false
                }
            },
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "stream refresh failed");
                true
            }
        }
    }
}

/// What distinguishes two messages worth sending (jittered fields excluded).
fn told_key(told: &Told) -> (&'static str, u64, UserState) {
    match told {
        Told::Position(view) => ("position", view.position, view.state),
        Told::Result(view) => ("result", 0, view.state),
        Told::SoldOut(view) => ("sold_out", 0, view.state),
        Told::Closed(view) => ("closed", 0, view.state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_map_back_to_events() {
        let event = EventId::parse("drop-7").expect("valid");
        assert_eq!(
            event_of_channel(&EventKeys::new(&event).channel()),
            Some(event)
        );
        assert_eq!(event_of_channel("{ev:bad id}:notify"), None);
        assert_eq!(event_of_channel("other"), None);
    }
}
