//! admitter (steps ③④): every tick, for every open event whose lease this instance
//! holds, admit the head of the queue at the rate core's admission allows, publish
//! each admitted user to `waiting-queue`, and only then forget them.
//!
//! Nobody is lost between Redis and Kafka: the admit script moves users into the
//! event's `admitting` set, and a user leaves that set only after the broker
//! acknowledged their message. Whatever is in the set (after a crash, a failed
//! delivery or a new leader taking over) is published again on the next tick;
//! goods-worker ignores the duplicates.
//!
//! PostgreSQL is the authority on an event's lifecycle; Redis mirrors it. Each tick
//! the leader reads the event's row, corrects a mirror that disagrees (a close that
//! could not reach Redis), starts closing at `closes_at`, and finishes a close (the
//! seed revealed) once the line is told and every admitted user is decided. Users it
//! tells a final state without a draw (sold out, closed) are recorded in PostgreSQL
//! before Redis tells them.
//!
//! Redis is rebuildable. Tickets are admitted only up to the highest one recorded in
//! PostgreSQL as issued. A Redis whose ticket counter is below that record (it lost
//! recent writes: an asynchronous replica promoted, persistence behind), that lost
//! the event altogether, or whose process has not checked the event yet (its `run_id`
//! differs from the event's generation: a restart or failover) is repaired from
//! PostgreSQL: the counter raised, the event mirrored again and every recorded
//! outcome applied again. A user sent to the draw
//! whose result has not landed after a while is sent again (the goods worker
//! re-announces a recorded outcome and never draws twice).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use dropgate_core::{
    AdmissionLimits, Admitted, CloseNow, Closing, Downstream, EventId, EventState, MESSAGE_VERSION,
    TokenBucket, UserKey, UserState, admit,
};
use redis::AsyncCommands;
use tokio::sync::watch;

use crate::bus::Publisher;
use crate::config::{DatabaseArgs, KafkaArgs, RedisArgs, TopicArgs};
use crate::event_lifecycle::{self, EventRow};
use crate::failpoint;
use crate::ops_server::{OpsArgs, Readiness};
use crate::queue::scripts::admit::{AdmitReply, AdmitRequest, AdmitScript};
use crate::queue::scripts::apply_result::{Applied, ApplyResultScript};
use crate::queue::scripts::correct_state::{CorrectStateReply, CorrectStateScript};
use crate::queue::scripts::finished::FinishedScript;
use crate::queue::scripts::join_legacy_queue::JoinLegacyQueueScript;
use crate::queue::scripts::lease::{Lease, LeaseScript};
use crate::queue::scripts::mark_sold_out::{MarkSoldOutReply, MarkSoldOutScript};
use crate::queue::scripts::raise_seq::RaiseSeqScript;
use crate::queue::scripts::sweep::{SweepReply, SweepScript};
use crate::queue::{DecisionLog, EVENTS_KEY, EventKeys, EventMeta, Notice, QueueStore, RedisConn};
use crate::service::Runner;

/// admitter settings.
#[derive(Debug, Clone, clap::Args)]
pub struct AdmitterArgs {
    /// Where Redis is.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Where PostgreSQL is: the authority on each event's state.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Where Kafka is.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The topic admissions go to.
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Health and metrics port.
    #[command(flatten)]
    pub ops: OpsArgs,
    /// The key that opens each event's sealed seed, to reveal it at the close.
    #[command(flatten)]
    pub seed_key: crate::seed_vault::SeedKeyArgs,
    /// Milliseconds between ticks.
    #[arg(long, env = "DROPGATE_ADMITTER_TICK_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub tick_ms: u64,
    /// How long a lease lasts without renewal: the longest a dead leader's events go
    /// without admissions before another admitter takes over.
    #[arg(long, env = "DROPGATE_ADMITTER_LEASE_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(200..=60_000))]
    pub lease_ms: u64,
    /// Serve only these events (comma-separated ids); none means every event the
    /// queue side knows. Lets a big drop have admitters of its own.
    #[arg(long, env = "DROPGATE_ADMITTER_EVENTS", value_delimiter = ',')]
    pub events: Vec<String>,
    /// Most waiting users told sold_out or closed per tick once the stock is gone or
    /// the event is closing.
    #[arg(long, env = "DROPGATE_ADMITTER_SWEEP_BATCH", default_value_t = 5_000)]
    pub sweep_batch: u32,
    /// Longest a closing event waits for its admitted users to be decided before it
    /// is closed anyway (ms). Admissions that reach the draw after the close are
    /// recorded `closed`, never drawn: the seed is public by then.
    #[arg(long, env = "DROPGATE_ADMITTER_CLOSE_DRAIN_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub close_drain_ms: u64,
    /// A user sent to the draw whose result has not landed after this long (ms) is
    /// sent again: a result lost with a Redis failover, or an admission a goods-worker
    /// could not read during a rolling upgrade.
    #[arg(long, env = "DROPGATE_ADMITTER_REDELIVER_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    pub redeliver_ms: u64,
    /// Largest decision log (JSON bytes) the admitter publishes through Redis at the
    /// close for `GET /v1/events/{id}/fairness/log`: about 170 bytes per user decided
    /// or told without a draw, so the default keeps drops up to about 200,000 of them.
    /// A larger log is not copied into Redis; the operator publishes it instead.
    #[arg(long, env = "DROPGATE_ADMITTER_DECISION_LOG_MAX_BYTES", default_value_t = 32 << 20)]
    pub decision_log_max_bytes: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or_default()
}

/// About how many bytes of decision log JSON one user takes (a decision is 140 to 170
/// with short ids; longer ids take more, which the exact check after building
/// catches).
const DECISION_LOG_BYTES_PER_ENTRY: u64 = 130;

/// Most users one admit script looks at: keeps every script call short even when the
/// head of the queue is full of abandoned users.
const LOOK_BUDGET_EXTRA: u64 = 2_000;
/// Most admitting users re-published per tick.
const REPUBLISH_LIMIT: isize = 10_000;

/// The `run_id` of the Redis process that holds `KEYS[1]`: the server itself, or the
/// primary of the key's slot in a cluster.
const HOLDER_RUN_ID_SCRIPT: &str =
    "return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')";

/// What of the event's public fairness record Redis holds: the record, the revealed
/// seed, the beacon value. The admitter publishes it again from PostgreSQL when a
/// part PostgreSQL has is missing.
#[derive(Debug, Default, Clone, Copy)]
struct FairnessPublished {
    record: bool,
    seed: bool,
    beacon_value: bool,
    /// How many users the published decision log names.
    log_entries: Option<u64>,
}

/// What the admitter reads of an event each tick.
#[derive(Debug, Default)]
struct EventView {
    /// None when the event's metadata is missing or unreadable: nothing is admitted.
    state: Option<EventState>,
    rate_per_s: u32,
    max_in_flight: u32,
    abandon_ms: u64,
    stock_left: Option<u64>,
    /// Entries in line (stale ones included until the next pass drops them).
    waiting: u64,
    /// A pre-queue shuffle's plan is being applied.
    shuffling: bool,
    /// Older queue-api instances (a rolling upgrade) put users in the sorted-set
    /// queue of earlier releases.
    legacy_queue: bool,
    /// Users sent to the draw whose result has not been applied yet.
    in_flight: u64,
    /// The ticket counter.
    seq: u64,
    bucket: Option<(u64, u64)>,
    /// The `run_id` of the Redis process that last brought the event in line with
    /// PostgreSQL. Another value means the data may come from an older copy.
    generation: Option<String>,
    /// The `run_id` of the Redis process that holds the event now (in a cluster, the
    /// primary of the event's slot).
    holder_run: String,
    /// The public fairness record exists, and holds the revealed seed.
    fairness: FairnessPublished,
}

/// What PostgreSQL said of an event this tick.
#[derive(Debug)]
enum Authority {
    /// Its row (Redis now agrees with it).
    Known(EventRow),
    /// PostgreSQL has no such event: Redis alone runs it (nothing to record).
    Unknown,
    /// PostgreSQL could not be asked: admissions go on by Redis, but nobody is told a
    /// final state that could not be recorded first.
    Unreachable,
}

impl Authority {
    fn row(&self) -> Option<&EventRow> {
        match self {
            Authority::Known(row) => Some(row),
            Authority::Unknown | Authority::Unreachable => None,
        }
    }
}

/// One admitter instance.
pub struct Admitter {
    redis: RedisConn,
    store: QueueStore,
    pool: sqlx::PgPool,
    seed_key: crate::seed_vault::SeedKey,
    publisher: Publisher,
    instance: String,
    tick: Duration,
    lease_ms: u64,
    sweep_batch: u32,
    close_drain_ms: u64,
    redeliver_ms: u64,
    decision_log_max_bytes: u64,
    lease: LeaseScript,
    admit: AdmitScript,
    sweep: SweepScript,
    mark_sold_out: MarkSoldOutScript,
    correct_state: CorrectStateScript,
    raise_seq: RaiseSeqScript,
    apply_result: ApplyResultScript,
    finished: FinishedScript,
    join_legacy_queue: JoinLegacyQueueScript,
    /// Events that need no more ticks (see [`Admitter::retire_if_finished`]).
    retired: HashSet<EventId>,
    /// Fencing token per event this instance leads.
    leading: HashMap<EventId, u64>,
    /// The events to serve; empty serves all.
    only: HashSet<String>,
    /// Events whose sold-out notice this instance already published.
    announced_sold_out: HashSet<EventId>,
    /// The `run_id` of every Redis primary seen last tick: it changes when one
    /// restarts or fails over, which is when acknowledged writes can be lost.
    redis_run: String,
    readiness: Readiness,
}

impl Admitter {
    /// Connects to Redis and PostgreSQL and creates the Kafka producer.
    pub async fn connect(args: &AdmitterArgs, readiness: Readiness) -> Result<Self> {
        let publisher = Publisher::kafka(&args.kafka, &args.topics.waiting_queue).await?;
        Self::connect_with(args, publisher, readiness).await
    }

    /// Connects to Redis and PostgreSQL; admissions go out through `publisher` (a
    /// Pub/Sub one on Cloud Run).
    pub async fn connect_with(
        args: &AdmitterArgs,
        publisher: Publisher,
        readiness: Readiness,
    ) -> Result<Self> {
        let seed_key = args.seed_key.load()?;
        let store = QueueStore::connect(&args.redis).await?;
        let pool = args.database.pool(2).await?;
        let mut id = [0u8; 8];
        rand::fill(&mut id);
        Ok(Self {
            redis: store.connection(),
            store,
            pool,
            seed_key,
            publisher,
            instance: dropgate_core::hex::encode(&id),
            tick: Duration::from_millis(args.tick_ms),
            lease_ms: args.lease_ms,
            sweep_batch: args.sweep_batch.max(1),
            close_drain_ms: args.close_drain_ms,
            redeliver_ms: args.redeliver_ms,
            decision_log_max_bytes: args.decision_log_max_bytes,
            lease: LeaseScript::default(),
            admit: AdmitScript::default(),
            sweep: SweepScript::default(),
            mark_sold_out: MarkSoldOutScript::default(),
            correct_state: CorrectStateScript::default(),
            raise_seq: RaiseSeqScript::default(),
            apply_result: ApplyResultScript::default(),
            finished: FinishedScript::default(),
            join_legacy_queue: JoinLegacyQueueScript::default(),
            retired: HashSet::new(),
            leading: HashMap::new(),
            only: args
                .events
                .iter()
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty())
                .collect(),
            announced_sold_out: HashSet::new(),
            redis_run: String::new(),
            readiness,
        })
    }

    /// This instance's id (in lease values and logs).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Ticks until `shutdown` turns true; the tick in hand finishes first, then the
    /// leases are released so another admitter takes over at once.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        tracing::info!(instance = %self.instance, "admitter running");
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
            match self.tick_once().await {
                Ok(()) => self.readiness.set(true),
                Err(error) => {
                    self.readiness.set(false);
                    tracing::warn!(error = %format!("{error:#}"), "tick failed");
                }
            }
        }
        self.release_leases().await;
        tracing::info!(instance = %self.instance, "admitter stopped");
        Ok(())
    }

    /// One pass over every event this instance serves.
    pub async fn tick_once(&mut self) -> Result<()> {
        let run = self.redis.primary_run_ids().await?.join(",");
        if run != self.redis_run {
            if !self.redis_run.is_empty() {
                tracing::warn!(previous = %self.redis_run, now = %run, "Redis restarted or failed over: every event is checked against PostgreSQL");
            }
            // What this instance learnt from the Redis before may not hold for this
            // one: a finished event can be waiting again, a notice unheard.
            self.retired.clear();
            self.announced_sold_out.clear();
            self.redis_run = run;
        }
        let mut ids: Vec<String> = if self.only.is_empty() {
            self.redis
                .smembers(EVENTS_KEY)
                .await
                .context("Failed to list events")?
        } else {
            self.only.iter().cloned().collect()
        };
        // PostgreSQL's live events too: a Redis that lost the events set, or a close
        // recorded only in PostgreSQL, must still be served. A database outage only
        // narrows the list to what Redis knows.
        match event_lifecycle::live_events(&self.pool).await {
            Ok(live) => {
                for (id, state) in live {
                    if !self.only.is_empty() && !self.only.contains(&id) {
                        continue;
                    }
                    if state == EventState::Closing
                        && let Ok(event) = EventId::parse(id.as_str())
                    {
                        // Retired while sold out, now closing: it has work again.
                        self.retired.remove(&event);
                    }
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot list live events in PostgreSQL; serving those Redis knows")
            }
        }
        for id in ids {
            let Ok(event) = EventId::parse(id.as_str()) else {
                tracing::warn!(%id, "ignoring an invalid event id in the events set");
                continue;
            };
            if self.retired.contains(&event) {
                continue;
            }
            if let Err(error) = self.tick_event(&event).await {
                tracing::warn!(%event, error = %format!("{error:#}"), "event tick failed");
            }
        }
        Ok(())
    }

    async fn tick_event(&mut self, event: &EventId) -> Result<()> {
        let keys = EventKeys::new(event);
        let token = match self
            .lease
            .take(&mut self.redis, &keys, &self.instance, self.lease_ms)
            .await?
        {
            Lease::Held(token) => token,
            Lease::Elsewhere => {
                self.leading.remove(event);
                return Ok(());
            }
        };
        if self.leading.insert(event.clone(), token) != Some(token) {
            tracing::info!(%event, token, instance = %self.instance, "leading admissions");
        }
        let lease_value = Lease::value(&self.instance, token);
        let mut view = self.read(event).await?;
        if view.shuffling {
            // The operator's command applies the plan too, but may have stopped: the
            // plan is whole (written before any step is applied), so finishing it
            // needs no seed, and the line cannot move until it is finished.
            let moved = self.store.apply_shuffle_plan(event).await?;
            tracing::info!(%event, moved, "applied the rest of a pre-queue shuffle plan");
        }
        if view.legacy_queue {
            let moved = self.join_legacy_queue.call(&mut self.redis, &keys).await?;
            if moved > 0 {
                tracing::info!(%event, moved, "users an older queue-api queued joined the line");
                view.waiting += moved;
            }
        }
        // The leader's view of the line, every tick: what the operator watches during
        // a drop (waiting users, and admitted users the draw has not answered yet).
        let label = event.to_string();
        metrics::gauge!("dropgate_admitter_waiting", "event" => label.clone())
            .set(view.waiting as f64);
        metrics::gauge!("dropgate_admitter_in_flight", "event" => label.clone())
            .set(view.in_flight as f64);
        metrics::gauge!("dropgate_admitter_rate_per_s", "event" => label)
            .set(view.rate_per_s as f64);
        let authority = match self.authority(event, &keys, &lease_value, &mut view).await {
            Ok(Some(row)) => Authority::Known(row),
            Ok(None) => Authority::Unknown,
            Err(error) => {
                tracing::warn!(%event, error = %format!("{error:#}"), "cannot read the event in PostgreSQL; going by Redis");
                Authority::Unreachable
            }
        };
        if matches!(view.state, Some(EventState::Closing | EventState::Closed)) {
            return self
                .close_event(event, &keys, &lease_value, &view, &authority)
                .await;
        }
        let stock_gone = view.stock_left == Some(0);
        let mut state = view.state;
        if stock_gone && state.is_some_and(EventState::may_sell_out) {
            let reply = self
                .mark_sold_out
                .call(&mut self.redis, &keys, &lease_value)
                .await?;
            if reply == MarkSoldOutReply::NotLeader {
                self.leading.remove(event);
                return Ok(());
            }
            if reply == MarkSoldOutReply::Marked {
                state = Some(EventState::SoldOut);
            }
        }
        if stock_gone || state == Some(EventState::SoldOut) {
            self.announce_sold_out(event).await?;
            let swept = self
                .sweep_line(event, &keys, &lease_value, UserState::SoldOut, &authority)
                .await?;
            if swept > 0 {
                tracing::info!(%event, swept, "waiting users told the event is sold out");
            }
        } else if state.is_some_and(EventState::admits) {
            // Nobody is admitted past what PostgreSQL has recorded as issued, and
            // while PostgreSQL cannot record it, nobody is (nobody can be drawn then
            // anyway).
            let highest_ticket = match &authority {
                Authority::Known(row) => Some(row.tickets_issued),
                Authority::Unknown => Some(u64::MAX),
                Authority::Unreachable => None,
            };
            if let Some(highest_ticket) = highest_ticket {
                self.admit_event(event, &keys, &lease_value, &view, highest_ticket)
                    .await?;
            }
        }
        // Also for a paused or sold-out event: anyone admitted must reach the draw.
        self.publish_admitting(event, &keys).await?;
        self.redeliver_stale(event, &keys).await?;
        self.record_expired(event, &keys, &authority).await?;
        if stock_gone || state == Some(EventState::SoldOut) {
            self.retire_if_finished(event, &keys).await?;
        }
        Ok(())
    }

    /// Reads the event's row in PostgreSQL and makes Redis agree with it: starts
    /// closing when `closes_at` has passed, rebuilds a missing mirror, and writes the
    /// authoritative state over a different one. `view.state` is what Redis holds
    /// afterwards. None when PostgreSQL does not know the event (Redis alone runs it).
    async fn authority(
        &mut self,
        event: &EventId,
        keys: &EventKeys,
        lease_value: &str,
        view: &mut EventView,
    ) -> Result<Option<EventRow>> {
        let Some(mut row) = event_lifecycle::read(&self.pool, event).await? else {
            return Ok(None);
        };
        if row.close_due
            && row.state.step(EventState::Closing).is_ok()
            && event_lifecycle::begin_closing(&self.pool, event).await?
        {
            tracing::info!(%event, "closes_at reached: closing");
            row.state = EventState::Closing;
            row.closing_for_ms = Some(0);
        }
        let seq_found = view.seq;
        let lost_writes = if view.state.is_none() {
            Some("the event is missing")
        } else if view.seq < row.tickets_issued {
            Some("the ticket counter went back")
        } else if view.generation.as_deref() != Some(view.holder_run.as_str()) {
            // A restart from periodic persistence or a promoted asynchronous
            // replica can lose writes that leave no other trace (a result applied,
            // an admission), so a Redis process not yet checked is repaired anyway.
            Some("a Redis process not checked yet")
        } else {
            None
        };
        if lost_writes.is_some() {
            // Before the event is mirrored again: the mirror opens the door, and the
            // next entry must get a ticket nobody holds.
            let seq = self
                .raise_seq
                .call(&mut self.redis, keys, row.tickets_issued)
                .await?;
            view.seq = seq;
        }
        if view.state.is_none() {
            // The event itself is gone: mirrored again first, so queue-api knows it.
            self.mirror_state(event, keys, lease_value, view, &row)
                .await?;
        }
        if let Some(reason) = lost_writes {
            // Outcomes before the state: a restored copy's waiting users whom
            // PostgreSQL already decided must hold their answer before the event reads
            // sold out or closing, or a status read in between would tell them that
            // instead ([`UserState::as_told`]).
            self.repair(event, reason, seq_found, view.seq).await?;
            let _: () = self
                .redis
                .hset(keys.meta(), "generation", &view.holder_run)
                .await?;
            *view = self.read(event).await?;
        }
        self.mirror_state(event, keys, lease_value, view, &row)
            .await?;
        let published = view.fairness;
        let log_behind = row
            .answered_after_close
            .is_some_and(|entries| published.log_entries != Some(entries));
        if !published.record
            || (row.state == EventState::Closed && !published.seed)
            || (row.beacon_supplied && !published.beacon_value)
            || log_behind
        {
            // Public from creation, with the seed once revealed: queue-api serves it.
            if let Some(fairness) = event_lifecycle::public_fairness(&self.pool, event).await? {
                if let (Some(_), Some(entries)) = (&fairness.seed, row.answered_after_close) {
                    // Best effort: a log that cannot be published now is tried again
                    // next tick, and never holds up the close or the seed.
                    if let Err(error) = self.publish_decision_log(event, entries).await {
                        tracing::warn!(%event, error = %format!("{error:#}"), "decision log not published; retried next tick");
                    }
                }
                self.store.put_fairness(event, &fairness).await?;
                view.fairness = FairnessPublished {
                    record: true,
                    seed: fairness.seed.is_some(),
                    beacon_value: fairness.beacon.as_ref().is_some_and(|b| b.value.is_some()),
                    log_entries: view.fairness.log_entries,
                };
            }
        }
        if view.seq > row.tickets_issued {
            // Recorded before any of these tickets can be admitted.
            event_lifecycle::record_tickets_issued(&self.pool, event, view.seq).await?;
            row.tickets_issued = view.seq;
        }
        Ok(Some(row))
    }

    /// Publishes a closed event's decision log (docs/fairness.md) for queue-api to
    /// serve, unless it is larger than the Redis copy may be.
    ///
    /// `entries` (users decided or answered without a draw) sizes it before anything
    /// is loaded, so a drop of millions never builds a log it would not keep.
    async fn publish_decision_log(&mut self, event: &EventId, entries: u64) -> Result<()> {
        if entries.saturating_mul(DECISION_LOG_BYTES_PER_ENTRY) > self.decision_log_max_bytes {
            tracing::warn!(%event, entries, limit = self.decision_log_max_bytes,
                "decision log too large for Redis: publish `dropgate event fairness` output instead");
            return self.store.put_decision_log(event, None, entries).await;
        }
        let mut conn = self.pool.acquire().await?;
        let Some(data) = crate::fairness::public_data(&mut conn, event).await? else {
            return Ok(());
        };
        let text = serde_json::to_string(&data)?;
        if text.len() as u64 > self.decision_log_max_bytes {
            tracing::warn!(%event, bytes = text.len(), limit = self.decision_log_max_bytes,
                "decision log too large for Redis: publish `dropgate event fairness` output instead");
            return self.store.put_decision_log(event, None, entries).await;
        }
        self.store
            .put_decision_log(event, Some(&text), entries)
            .await?;
        tracing::info!(%event, bytes = text.len(), entries, "decision log published");
        Ok(())
    }

    /// Makes the Redis mirror of the event's state PostgreSQL's (see
    /// [`Admitter::authority`]).
    async fn mirror_state(
        &mut self,
        event: &EventId,
        keys: &EventKeys,
        lease_value: &str,
        view: &mut EventView,
        row: &EventRow,
    ) -> Result<()> {
        if view.state == Some(row.state) {
            return Ok(());
        }
        if view.state.is_none() {
            // The mirror is gone (a Redis that lost its data): rebuild it.
            self.store
                .put_event_meta(
                    event,
                    &EventMeta {
                        state: row.state,
                        rate_per_s: row.admission_rate_per_s,
                        abandon_timeout_ms: row.abandon_timeout_ms,
                        opens_at_ms: row.opens_at_ms,
                        allowed_platforms: row.allowed_platforms.clone(),
                    },
                )
                .await?;
            self.store
                .put_draw_limits(event, row.max_in_flight, row.stock_left)
                .await?;
            tracing::warn!(%event, state = %row.state, "event missing in Redis: mirrored again from PostgreSQL");
            metrics::counter!("dropgate_admitter_mirror_corrections_total", "event" => event.to_string())
                .increment(1);
            *view = self.read(event).await?;
            return Ok(());
        }
        let reply = self
            .correct_state
            .call(&mut self.redis, keys, lease_value, view.state, row.state)
            .await?;
        if reply == CorrectStateReply::Corrected {
            tracing::warn!(%event, redis = ?view.state, postgres = %row.state, "Redis disagreed with PostgreSQL on the event's state: corrected");
            metrics::counter!("dropgate_admitter_mirror_corrections_total", "event" => event.to_string())
                .increment(1);
            view.state = Some(row.state);
            if row.state == EventState::Closing {
                // Open streams re-read at once rather than at their next refresh.
                let _: () = self
                    .redis
                    .publish(keys.channel(), Notice::Closing.encode())
                    .await?;
            }
        }
        Ok(())
    }

    /// Brings a Redis that lost (or may have lost) writes back in line with
    /// PostgreSQL once its ticket counter is raised: every recorded outcome applied
    /// again (a repeat changes nothing; a lost one is written back).
    async fn repair(
        &mut self,
        event: &EventId,
        reason: &'static str,
        seq_found: u64,
        seq: u64,
    ) -> Result<()> {
        let outcomes = event_lifecycle::recorded_outcomes(&self.pool, event).await?;
        let mut written = 0u64;
        for chunk in outcomes.chunks(2_000) {
            let applied = self
                .apply_result
                .correct_all(&mut self.redis, chunk)
                .await?;
            written += applied
                .iter()
                .filter(|applied| matches!(applied, Applied::New { .. }))
                .count() as u64;
        }
        if written > 0 || seq > seq_found {
            tracing::warn!(
                %event,
                reason,
                seq_found,
                seq,
                outcomes = outcomes.len(),
                written,
                "Redis had lost writes for this event: repaired from PostgreSQL"
            );
        } else {
            tracing::info!(%event, reason, outcomes = outcomes.len(), "checked Redis against PostgreSQL: nothing lost");
        }
        metrics::counter!("dropgate_admitter_repairs_total", "event" => event.to_string(), "reason" => reason)
            .increment(1);
        metrics::counter!("dropgate_admitter_repaired_outcomes_total", "event" => event.to_string())
            .increment(written);
        Ok(())
    }

    /// A closing event: nobody new is admitted; everyone still in line is told
    /// `closed`; the admitted users still go to the draw. Once none is left undecided
    /// (or the drain timeout has passed) the event is closed and its seed revealed.
    /// A closed event is only swept (a line the close left behind) until finished.
    async fn close_event(
        &mut self,
        event: &EventId,
        keys: &EventKeys,
        lease_value: &str,
        view: &EventView,
        authority: &Authority,
    ) -> Result<()> {
        // What the line is already told: closed, or sold out if the stock went first.
        let told = UserState::without_a_draw(EventState::Closing, view.stock_left == Some(0))
            .unwrap_or(UserState::Closed);
        let swept = self
            .sweep_line(event, keys, lease_value, told, authority)
            .await?;
        if swept > 0 {
            tracing::info!(%event, swept, "waiting users told the event closed");
        }
        self.publish_admitting(event, keys).await?;
        self.redeliver_stale(event, keys).await?;
        self.record_expired(event, keys, authority).await?;
        if view.state == Some(EventState::Closed) {
            return self.retire_if_finished(event, keys).await;
        }
        let Some(row) = authority.row() else {
            // Only PostgreSQL can reveal the seed; without it the event stays closing.
            return Ok(());
        };
        // Users not yet published are in flight too (the admit script adds to both).
        let line: u64 = self.redis.llen(keys.line()).await?;
        let closing = Closing {
            waiting: line,
            in_flight: view.in_flight,
            for_ms: row.closing_for_ms.unwrap_or(0),
        };
        match closing.close_now(self.close_drain_ms) {
            None => return Ok(()),
            Some(CloseNow::Drained) => {}
            Some(CloseNow::TimedOut) => {
                tracing::warn!(%event, undecided = view.in_flight, line, "close drain timeout: closing with users undecided; their admissions are recorded closed");
            }
        }
        if event_lifecycle::finish_closing(&self.pool, &self.seed_key, event).await? {
            tracing::info!(%event, "closed: seed revealed");
        }
        let reply = self
            .correct_state
            .call(
                &mut self.redis,
                keys,
                lease_value,
                Some(EventState::Closing),
                EventState::Closed,
            )
            .await?;
        if reply == CorrectStateReply::Corrected {
            tracing::info!(%event, "Redis mirror closed");
        }
        Ok(())
    }

    /// Tells up to a sweep batch of users at the head of the line `to`: recorded in
    /// PostgreSQL first (when it knows the event), then in Redis. Returns how many
    /// were moved. While PostgreSQL cannot be reached nobody is swept: they are told
    /// the same on every read meanwhile ([`UserState::as_told`]).
    async fn sweep_line(
        &mut self,
        event: &EventId,
        keys: &EventKeys,
        lease_value: &str,
        to: UserState,
        authority: &Authority,
    ) -> Result<u64> {
        if matches!(authority, Authority::Unreachable) {
            return Ok(0);
        }
        let head: Vec<String> = self
            .redis
            .lrange(keys.line(), 0, self.sweep_batch as isize - 1)
            .await?;
        if head.is_empty() {
            return Ok(0);
        }
        // Only users still waiting are recorded; stale entries just leave the line.
        // Users PostgreSQL had already answered are told that answer here, so the
        // sweep finds them decided and leaves them be.
        let waiting: Vec<(String, u64)> = self
            .store
            .waiting_among(event, &head)
            .await?
            .into_iter()
            .map(|(_, entry)| (entry.member, entry.ticket))
            .collect();
        self.record_without_draw(event, &waiting, to, authority)
            .await?;
        match self
            .sweep
            .call(&mut self.redis, keys, lease_value, to, &head)
            .await?
        {
            SweepReply::Swept(swept) => {
                metrics::counter!("dropgate_admitter_swept_total", "event" => event.to_string(), "state" => to.as_str())
                    .increment(swept);
                Ok(swept)
            }
            SweepReply::NotLeader => {
                self.leading.remove(event);
                Ok(0)
            }
        }
    }

    /// Stops ticking an event nothing can happen to any more, so finished drops do
    /// not pile up in every tick (each costs a lease, a read and a publish pass, one
    /// event after another) and delay the live ones. It leaves the shared events set
    /// too, for the other admitters and the next start; a later change of the event
    /// through `dropgate event` writes it back.
    async fn retire_if_finished(&mut self, event: &EventId, keys: &EventKeys) -> Result<()> {
        if self.finished.call(&mut self.redis, keys).await? {
            let _: () = self.redis.srem(EVENTS_KEY, event.as_str()).await?;
            self.retired.insert(event.clone());
            tracing::info!(%event, "event finished: no more admitter ticks");
        }
        Ok(())
    }

    async fn read(&mut self, event: &EventId) -> Result<EventView> {
        let keys = EventKeys::new(event);
        type Meta = (
            Option<String>,
            Option<u32>,
            Option<u32>,
            Option<u64>,
            Option<u64>,
            Option<String>,
        );
        type Reads = (
            Meta,
            u64,
            u64,
            Option<u64>,
            (Option<u64>, Option<u64>),
            (Option<String>, Option<String>, Option<String>),
            (Option<u64>, Option<String>),
            bool,
            Option<String>,
            bool,
            bool,
        );
        let (
            meta,
            waiting,
            in_flight,
            seq,
            bucket,
            (rule, revealed, beacon),
            (log_entries, log_status),
            log_present,
            holder_run,
            shuffling,
            legacy_queue,
        ): Reads = redis::pipe()
            .hget(
                keys.meta(),
                &[
                    "state",
                    "rate",
                    "max_in_flight",
                    "abandon_ms",
                    "stock_left",
                    "generation",
                ],
            )
            .llen(keys.line())
            .zcard(keys.inflight())
            .get(keys.seq())
            .hget(keys.bucket(), &["milli", "at_ms"])
            // Presence only: every fairness record has its rule.
            .hget(keys.fairness(), &["rule", "seed", "beacon_value"])
            .hget(keys.fairness(), &["decision_log_entries", "decision_log"])
            .exists(keys.decision_log())
            // Keyed by the event, so a cluster runs it on the primary of its slot.
            .cmd("EVAL")
            .arg(HOLDER_RUN_ID_SCRIPT)
            .arg(1)
            .arg(keys.meta())
            .exists(keys.shuffle_plan())
            .exists(keys.legacy_queue())
            .query_async(&mut self.redis)
            .await
            .context("Failed to read the event")?;
        let (state, rate, max_in_flight, abandon_ms, stock_left, generation) = meta;
        Ok(EventView {
            state: state.and_then(|state| state.parse().ok()),
            rate_per_s: rate.unwrap_or(1).max(1),
            max_in_flight: max_in_flight
                .unwrap_or(dropgate_core::EventConfig::DEFAULT_MAX_IN_FLIGHT),
            abandon_ms: abandon_ms
                .unwrap_or(dropgate_core::EventConfig::DEFAULT_ABANDON_TIMEOUT_MS),
            stock_left,
            waiting,
            shuffling,
            legacy_queue,
            in_flight,
            seq: seq.unwrap_or(0),
            bucket: bucket.0.zip(bucket.1),
            generation,
            holder_run: holder_run.context("Redis' INFO has no run_id")?,
            fairness: FairnessPublished {
                record: rule.is_some(),
                seed: revealed.is_some(),
                beacon_value: beacon.is_some(),
                // A log the record says is served but Redis no longer holds (evicted,
                // deleted) counts as unpublished, so it is published again.
                log_entries: log_entries.filter(|_| {
                    log_present || log_status.as_deref() != Some(DecisionLog::Served.as_str())
                }),
            },
        })
    }

    async fn admit_event(
        &mut self,
        event: &EventId,
        keys: &EventKeys,
        lease_value: &str,
        view: &EventView,
        highest_ticket: u64,
    ) -> Result<()> {
        let now = now_ms();
        let limits = AdmissionLimits::for_tick(
            view.rate_per_s,
            view.max_in_flight,
            self.tick.as_millis() as u64,
        );
        let bucket = match view.bucket {
            Some((milli, at_ms)) => TokenBucket::from_parts(milli, at_ms),
            None => TokenBucket::full(&limits, now),
        };
        let downstream = Downstream {
            waiting: view.waiting,
            in_flight: view.in_flight,
            stock_left: view.stock_left.unwrap_or(u64::MAX),
        };
        let admission = admit(bucket, &limits, downstream, now);
        // Nothing to admit leaves the stored bucket as it was: refilling it later
        // from the older time gives the same tokens (the refill is linear up to the
        // burst), and only the lease holder writes it, inside the admit script.
        if admission.admit == 0 {
            return Ok(());
        }
        let request = AdmitRequest {
            lease_value,
            want: admission.admit,
            now_s: now / 1_000,
            abandon_s: view.abandon_ms / 1_000,
            look_budget: admission.admit + LOOK_BUDGET_EXTRA,
            bucket_after: admission.bucket.to_parts(),
            highest_ticket,
        };
        let (admitted, expired) = match self.admit.call(&mut self.redis, keys, request).await? {
            AdmitReply::Done { admitted, expired } => (admitted, expired),
            reply @ (AdmitReply::NotLeader | AdmitReply::NotAdmitting) => {
                tracing::debug!(%event, ?reply, "admission skipped");
                return Ok(());
            }
        };
        metrics::counter!("dropgate_admitter_admitted_total", "event" => event.to_string())
            .increment(admitted);
        metrics::counter!("dropgate_admitter_expired_total", "event" => event.to_string())
            .increment(expired);
        failpoint::hit("admitter_after_script_before_delivery");
        Ok(())
    }

    /// Publishes every user in `admitting` and removes those the broker acknowledged.
    async fn publish_admitting(&mut self, event: &EventId, keys: &EventKeys) -> Result<()> {
        let pending: Vec<(String, u64)> = self
            .redis
            .zrange_withscores(keys.admitting(), 0, REPUBLISH_LIMIT - 1)
            .await?;
        if pending.is_empty() {
            return Ok(());
        }
        let admitted_at_ms = now_ms();
        // In ticket order (the set's order), which is the order the draw decides in.
        let mut unreadable = Vec::new();
        let mut admissions = Vec::with_capacity(pending.len());
        let mut members = Vec::with_capacity(pending.len());
        for (member, ticket) in &pending {
            let user = match UserKey::from_member(member) {
                Ok(user) => user,
                Err(error) => {
                    tracing::error!(%member, %error, "dropping an unreadable admitting entry");
                    unreadable.push(member.clone());
                    continue;
                }
            };
            admissions.push(Admitted {
                version: MESSAGE_VERSION,
                event_id: event.clone(),
                user,
                ticket: *ticket,
                admitted_at_ms,
            });
            members.push(member.clone());
        }
        let results = self.publisher.publish_admissions(event, &admissions).await;
        let mut delivered = unreadable;
        for (member, result) in members.into_iter().zip(results) {
            match result {
                Ok(()) => delivered.push(member),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), %member, "admission not delivered; retried next tick");
                }
            }
        }
        if !delivered.is_empty() {
            let _: () = self.redis.zrem(keys.admitting(), &delivered).await?;
            metrics::counter!("dropgate_admitter_published_total")
                .increment(delivered.len() as u64);
        }
        Ok(())
    }

    /// Records in PostgreSQL the users the admit script marked expired, then lets go
    /// of them; until then they wait in `expiring` (a crash or a database outage only
    /// delays the record).
    async fn record_expired(
        &mut self,
        event: &EventId,
        keys: &EventKeys,
        authority: &Authority,
    ) -> Result<()> {
        if matches!(authority, Authority::Unreachable) {
            return Ok(());
        }
        let expiring: Vec<(String, u64)> = self
            .redis
            .zrange_withscores(keys.expiring(), 0, REPUBLISH_LIMIT - 1)
            .await?;
        if expiring.is_empty() {
            return Ok(());
        }
        self.record_without_draw(event, &expiring, UserState::Expired, authority)
            .await?;
        let members: Vec<&String> = expiring.iter().map(|(member, _)| member).collect();
        let _: () = self.redis.zrem(keys.expiring(), members).await?;
        Ok(())
    }

    /// Records `entries` (members and their tickets) in PostgreSQL as having reached
    /// `state` without a draw, when PostgreSQL knows the event. Users PostgreSQL had
    /// already answered (drawn, or recorded with another state: only after Redis
    /// lost writes) are told that answer instead, here, so their records are final
    /// and no sweep moves them.
    async fn record_without_draw(
        &mut self,
        event: &EventId,
        entries: &[(String, u64)],
        state: UserState,
        authority: &Authority,
    ) -> Result<()> {
        if !matches!(authority, Authority::Known(_)) {
            return Ok(());
        }
        let users: Vec<(UserKey, u64)> = entries
            .iter()
            .filter_map(|(member, ticket)| {
                UserKey::from_member(member)
                    .ok()
                    .map(|user| (user, *ticket))
            })
            .collect();
        let users: Vec<(&UserKey, u64)> = users.iter().map(|(user, t)| (user, *t)).collect();
        let mut conn = self.pool.acquire().await?;
        let answered =
            event_lifecycle::record_final_states(&mut conn, event, &users, state, now_ms()).await?;
        drop(conn);
        if answered.is_empty() {
            return Ok(());
        }
        tracing::warn!(%event, users = answered.len(), told = %state, "users PostgreSQL had already answered were about to be told otherwise (Redis had lost writes): told PostgreSQL's answer");
        metrics::counter!("dropgate_admitter_corrected_total", "event" => event.to_string())
            .increment(answered.len() as u64);
        self.apply_result
            .correct_all(&mut self.redis, &answered)
            .await?;
        Ok(())
    }

    /// Sends again the users whose result has not landed within the redelivery
    /// delay, and pushes their next attempt one delay further. A result lost with
    /// Redis' last writes, or an admission a goods-worker set aside as unreadable,
    /// thus still ends in a final state.
    async fn redeliver_stale(&mut self, event: &EventId, keys: &EventKeys) -> Result<()> {
        let now_s = now_ms() / 1_000;
        let due = now_s.saturating_sub(self.redeliver_ms / 1_000);
        let stale: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys.inflight())
            .arg("-inf")
            .arg(due)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(REPUBLISH_LIMIT)
            .query_async(&mut self.redis)
            .await?;
        if stale.is_empty() {
            return Ok(());
        }
        let records: Vec<Option<String>> = self.redis.hget(keys.users(), &stale).await?;
        let admitted_at_ms = now_ms();
        let mut again = Vec::with_capacity(stale.len());
        for (member, record) in stale.iter().zip(records) {
            let (Ok(user), Some(Ok(record))) = (
                UserKey::from_member(member),
                record.as_deref().map(dropgate_core::UserRecord::decode),
            ) else {
                tracing::warn!(%event, %member, "an in-flight user without a readable record: dropped");
                let _: () = self.redis.zrem(keys.inflight(), member).await?;
                continue;
            };
            again.push(Admitted {
                version: MESSAGE_VERSION,
                event_id: event.clone(),
                user,
                ticket: record.ticket,
                admitted_at_ms,
            });
        }
        // In ticket order, like first deliveries.
        again.sort_by_key(|admitted| admitted.ticket);
        let mut sent = Vec::with_capacity(again.len());
        for (admitted, result) in again
            .iter()
            .zip(self.publisher.publish_admissions(event, &again).await)
        {
            match result {
                Ok(()) => sent.push(admitted.user.member()),
                Err(error) => {
                    tracing::warn!(%event, error = %format!("{error:#}"), "redelivery failed; retried next tick");
                }
            }
        }
        if !sent.is_empty() {
            // XX: a result that landed meanwhile removed the user; do not add it back.
            let mut bump = redis::cmd("ZADD");
            bump.arg(keys.inflight()).arg("XX");
            for member in &sent {
                bump.arg(now_s).arg(member);
            }
            let _: () = bump.query_async(&mut self.redis).await?;
            tracing::warn!(%event, users = sent.len(), "users without a result after the redelivery delay: sent to the draw again");
            metrics::counter!("dropgate_admitter_redelivered_total", "event" => event.to_string())
                .increment(sent.len() as u64);
        }
        Ok(())
    }

    async fn announce_sold_out(&mut self, event: &EventId) -> Result<()> {
        if self.announced_sold_out.insert(event.clone()) {
            let _: () = self
                .redis
                .publish(EventKeys::new(event).channel(), Notice::SoldOut.encode())
                .await?;
            tracing::info!(%event, "sold out: admissions stopped, waiting users told");
        }
        Ok(())
    }

    /// Gives up every lease this instance holds (only if still its own).
    async fn release_leases(&mut self) {
        for (event, token) in std::mem::take(&mut self.leading) {
            let value = Lease::value(&self.instance, token);
            let keys = EventKeys::new(&event);
            if let Err(error) = self.lease.release(&mut self.redis, &keys, &value).await {
                tracing::warn!(%event, error = %format!("{error:#}"), "could not release the lease; it expires by itself");
            }
        }
    }
}

/// The admitter binary's settings.
#[derive(Debug, clap::Parser)]
#[command(
    name = "admitter",
    version,
    about = "dropgate admitter: queue head to waiting-queue at the event's rate"
)]
pub struct AdmitterConfig {
    /// The admitter's own settings.
    #[command(flatten)]
    pub admitter: AdmitterArgs,
    /// Kafka or Pub/Sub.
    #[command(flatten)]
    pub transport: crate::bus::TransportArgs,
    /// Logs.
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryArgs,
}

/// The admitter as a [`crate::service::Service`]: its tick loop and its ops port.
pub struct AdmitterService(Runner);

impl crate::service::Service for AdmitterService {
    const NAME: &'static str = "admitter";
    type Config = AdmitterConfig;

    fn telemetry(config: &AdmitterConfig) -> &crate::telemetry::TelemetryArgs {
        &config.telemetry
    }

    async fn build(config: AdmitterConfig) -> Result<Self> {
        let kafka = &config.admitter.kafka;
        config.transport.require_brokers(kafka)?;
        let publisher = config
            .transport
            .publisher(kafka, &config.admitter.topics.waiting_queue)
            .await?;
        let readiness = Readiness::default();
        let ops = crate::ops_server::spawn(&config.admitter.ops, readiness.clone()).await?;
        let work = Admitter::connect_with(&config.admitter, publisher, readiness).await?;
        Ok(Self(Runner::looping(ops, move |shutdown| {
            work.run(shutdown)
        })))
    }

    fn addresses(&self) -> Vec<(&'static str, std::net::SocketAddr)> {
        self.0.addresses()
    }

    async fn run(self, shutdown: watch::Receiver<bool>) -> Result<()> {
        self.0.run(shutdown).await
    }
}
