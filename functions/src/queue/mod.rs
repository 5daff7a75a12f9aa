//! The queue's Redis side as used by queue-api: entering, reading a user's standing,
//! and the event metadata the queue needs. Each multi-key step is one Lua script
//! (loaded once, run by EVALSHA, reloaded on NOSCRIPT by redis-rs), behind a typed
//! wrapper in [`scripts`].

pub mod conn;
pub mod keys;
pub mod scripts;

use std::collections::HashMap;

use anyhow::Result;
use dropgate_core::{EventId, EventState, PlatformId, UserKey, UserRecord};
use redis::AsyncCommands;

use crate::config::RedisArgs;
use scripts::draw_limits::DrawLimitsScript;
use scripts::enter::EnterScript;
use scripts::retick::RetickScript;
use scripts::status::StatusScript;

pub use conn::RedisConn;
pub use keys::{EVENTS_KEY, EventKeys, LineEntry, Notice};

/// What the queue side knows of an event (mirrored from PostgreSQL by the event admin
/// and the draw).
#[derive(Debug, Clone, PartialEq)]
pub struct EventMeta {
    /// Lifecycle state.
    pub state: EventState,
    /// Admissions per second (for ETAs).
    pub rate_per_s: u32,
    /// Waiting users not seen for this long are skipped.
    pub abandon_timeout_ms: u64,
    /// Opening time (Unix ms).
    pub opens_at_ms: u64,
    /// The platforms whose users may enter; empty: every platform.
    pub allowed_platforms: Vec<PlatformId>,
}

/// The answer of the enter and status scripts.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The event is not known to the queue.
    UnknownEvent,
    /// The event does not take users of the caller's platform.
    PlatformNotAllowed,
    /// The event no longer takes new users.
    Closed,
    /// The event's stock is gone.
    SoldOut,
    /// The user never entered this event.
    NotEntered,
    /// The user's standing.
    Found(Standing),
}

/// A user's record and what is needed to compute their position.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// True when this call created the entry.
    pub created: bool,
    /// The user's record.
    pub record: UserRecord,
    /// Highest ticket served.
    pub serving: u64,
    /// Event admission rate.
    pub rate_per_s: u32,
    /// Waiting users not seen for this long are skipped (ms): the poll interval
    /// stays well below it.
    pub abandon_timeout_ms: u64,
    /// Event state.
    pub event_state: EventState,
    /// The event's stock is known to be gone.
    pub stock_gone: bool,
}

/// What anyone may know of an event's draw (docs/fairness.md): from creation the
/// rule, the commitment and the parameters it binds; the seed once revealed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublicFairness {
    /// The draw's rule version, e.g. `dropgate/draw/v2`.
    pub rule: String,
    /// SHA-256 of the seed, 64 hex digits.
    pub commitment: String,
    /// Units for sale.
    pub stock_total: u32,
    /// The win probability.
    pub win_probability: f64,
    /// `floor(p · 2^64)`, a decimal string.
    pub threshold: String,
    /// `fifo` or `randomized_pre_queue`.
    pub queue_mode: String,
    /// The revealed seed (64 hex digits) and when it was revealed (Unix ms).
    pub seed: Option<(String, u64)>,
    /// Whether queue-api serves the decision log, once published at the close.
    pub decision_log: Option<DecisionLog>,
    /// How many entries the published log holds: its version (a republished log,
    /// with users answered after the close, holds more).
    pub decision_log_entries: Option<u64>,
    /// The beacon round the event names, from creation, and its value once supplied.
    pub beacon: Option<dropgate_core::Beacon>,
}

/// What became of an event's decision log at the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionLog {
    /// queue-api serves it at `GET /v1/events/{id}/fairness/log`.
    Served,
    /// Larger than the admitter's `DROPGATE_ADMITTER_DECISION_LOG_MAX_BYTES`: the
    /// operator publishes the file `dropgate event fairness` prints instead.
    TooLarge,
}

impl DecisionLog {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DecisionLog::Served => "served",
            DecisionLog::TooLarge => "too_large",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "served" => Some(DecisionLog::Served),
            "too_large" => Some(DecisionLog::TooLarge),
            _ => None,
        }
    }
}

impl PublicFairness {
    /// The record of an event whose seed is still secret: the rule, and the threshold
    /// core derives from `win_probability`.
    pub fn before_reveal(
        commitment: String,
        stock_total: u32,
        win_probability: f64,
        queue_mode: &str,
    ) -> Result<Self> {
        let threshold = dropgate_core::WinProbability::new(win_probability)
            .map_err(|e| anyhow::anyhow!("stored probability: {e}"))?
            .threshold();
        Ok(Self {
            rule: dropgate_core::DRAW_RULE.to_owned(),
            commitment,
            stock_total,
            win_probability,
            threshold: threshold.to_string(),
            queue_mode: queue_mode.to_owned(),
            seed: None,
            decision_log: None,
            decision_log_entries: None,
            beacon: None,
        })
    }
}

/// One user waiting in an event's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InLine {
    /// Index of the user's entry in the line (0 is the head).
    pub position: u64,
    /// The user's ticket.
    pub ticket: u64,
    /// `<platform>:<user>`.
    pub member: String,
}

/// queue-api's Redis access.
#[derive(Clone)]
pub struct QueueStore {
    redis: RedisConn,
    enter: EnterScript,
    status: StatusScript,
    retick: RetickScript,
    draw_limits: DrawLimitsScript,
}

impl std::fmt::Debug for QueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueStore")
    }
}

impl QueueStore {
    /// Connects to a single Redis or a cluster, as `args` says (see
    /// [`RedisConn::connect`]).
    pub async fn connect(args: &RedisArgs) -> Result<Self> {
        Ok(Self::new(RedisConn::connect(args).await?))
    }

    /// Wraps an existing connection.
    pub fn new(redis: impl Into<RedisConn>) -> Self {
        Self {
            redis: redis.into(),
            enter: EnterScript::default(),
            status: StatusScript::default(),
            retick: RetickScript::default(),
            draw_limits: DrawLimitsScript::default(),
        }
    }

    /// The connection, for callers that need plain commands.
    pub fn connection(&self) -> RedisConn {
        self.redis.clone()
    }

    /// Enters `user` into `event` (or returns the existing entry).
    pub async fn enter(&self, event: &EventId, user: &UserKey, now_s: u64) -> Result<Lookup> {
        let keys = EventKeys::new(event);
        self.enter
            .call(&mut self.redis.clone(), &keys, user, now_s)
            .await
    }

    /// Reads `user`'s standing in `event` and refreshes their last-seen time.
    pub async fn status(&self, event: &EventId, user: &UserKey, now_s: u64) -> Result<Lookup> {
        let keys = EventKeys::new(event);
        self.status
            .call(&mut self.redis.clone(), &keys, user, now_s)
            .await
    }

    /// The users waiting in `event`'s line, in ticket order, with the position of
    /// each one's entry. Stale entries are left out.
    pub async fn in_line(&self, event: &EventId) -> Result<Vec<InLine>> {
        const SLICE: usize = 10_000;
        let keys = EventKeys::new(event);
        let mut redis = self.redis.clone();
        let length: usize = redis.llen(keys.line()).await?;
        let mut found = Vec::new();
        for start in (0..length).step_by(SLICE) {
            let stop = (start + SLICE).min(length) - 1;
            let entries: Vec<String> = redis
                .lrange(keys.line(), start as isize, stop as isize)
                .await?;
            let waiting = self.waiting_among(event, &entries).await?;
            for (offset, entry) in waiting {
                found.push(InLine {
                    position: (start + offset) as u64,
                    ticket: entry.ticket,
                    member: entry.member,
                });
            }
        }
        Ok(found)
    }

    /// Of `entries` (line entries of `event` as read), the ones whose user still
    /// waits with that ticket, with their index in `entries`.
    pub async fn waiting_among(
        &self,
        event: &EventId,
        entries: &[String],
    ) -> Result<Vec<(usize, LineEntry)>> {
        let parsed: Vec<(usize, LineEntry)> = entries
            .iter()
            .enumerate()
            .filter_map(|(at, text)| LineEntry::decode(text).map(|entry| (at, entry)))
            .collect();
        if parsed.is_empty() {
            return Ok(Vec::new());
        }
        let members: Vec<&str> = parsed
            .iter()
            .map(|(_, entry)| entry.member.as_str())
            .collect();
        let records: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(EventKeys::new(event).users())
            .arg(&members)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(parsed
            .into_iter()
            .zip(records)
            .filter(|((_, entry), record)| {
                record
                    .as_deref()
                    .and_then(|text| UserRecord::decode(text).ok())
                    .is_some_and(|record| record.waits_with(entry.ticket))
            })
            .map(|(found, _)| found)
            .collect())
    }

    /// Reorders the users waiting in `event`'s line: `shuffle` permutes their members
    /// (given in ticket order) and the i-th member of the result takes the i-th
    /// ticket. The tickets stay the same set and users entering meanwhile keep
    /// theirs, behind everyone shuffled. The whole plan is written to Redis before
    /// the first step is applied, so a shuffle cut short is finished from the same
    /// plan (by the next call or by the admitter) rather than planned again from a
    /// half-shuffled line. Returns how many users were given a new ticket.
    pub async fn shuffle_line(
        &self,
        event: &EventId,
        shuffle: impl FnOnce(&mut [String]),
    ) -> Result<u64> {
        self.plan_shuffle(event, shuffle).await?;
        self.apply_shuffle_plan(event).await
    }

    /// Writes the plan of [`QueueStore::shuffle_line`] unless one is already there
    /// or the line was shuffled already (then `shuffle` is not called, or its plan is
    /// dropped when another one got in first). Until the plan is applied nobody is
    /// admitted or swept from the line.
    pub async fn plan_shuffle(
        &self,
        event: &EventId,
        shuffle: impl FnOnce(&mut [String]),
    ) -> Result<()> {
        let keys = EventKeys::new(event);
        let mut redis = self.redis.clone();
        let (planned, shuffled): (bool, bool) = redis::pipe()
            .exists(keys.shuffle_plan())
            .exists(keys.shuffled())
            .query_async(&mut redis)
            .await?;
        if !planned && !shuffled {
            let users = self.in_line(event).await?;
            if users.is_empty() {
                return Ok(());
            }
            let mut members: Vec<String> = users.iter().map(|user| user.member.clone()).collect();
            shuffle(&mut members);
            let steps: Vec<String> = users
                .iter()
                .zip(&members)
                .map(|(place, member)| format!("{}|{}|{member}", place.position, place.ticket))
                .collect();
            // Each writer stages under its own name; the first whole plan wins, and
            // none after the line was shuffled. A writer that stops while staging
            // leaves nothing for long: the staging key expires, and only a whole
            // plan loses its expiry.
            let staging = format!("{}:{:016x}", keys.shuffle_staging(), rand::random::<u64>());
            for slice in steps.chunks(10_000) {
                let _: () = redis::pipe()
                    .rpush(&staging, slice)
                    .expire(&staging, 3_600)
                    .query_async(&mut redis)
                    .await?;
            }
            self.retick.install(&mut redis, &keys, &staging).await?;
        }
        Ok(())
    }

    /// Applies what is left of `event`'s shuffle plan, in slices so Redis never
    /// blocks for long. Returns how many users were given a new ticket.
    pub async fn apply_shuffle_plan(&self, event: &EventId) -> Result<u64> {
        let keys = EventKeys::new(event);
        let mut moved = 0;
        loop {
            let step = self
                .retick
                .call(&mut self.redis.clone(), &keys, 5_000)
                .await?;
            moved += step.moved;
            if step.left == 0 {
                return Ok(moved);
            }
        }
    }

    /// Writes the event's metadata (event admin, tests).
    pub async fn put_event_meta(&self, event: &EventId, meta: &EventMeta) -> Result<()> {
        let fields = [
            ("state", meta.state.as_str().to_owned()),
            ("rate", meta.rate_per_s.to_string()),
            ("abandon_ms", meta.abandon_timeout_ms.to_string()),
            ("opens_at_ms", meta.opens_at_ms.to_string()),
        ];
        let keys = EventKeys::new(event);
        // One transaction: an enter between the fields and the platforms would find
        // the event open to every platform. The events set is another slot in a
        // cluster, so it is written after: an admitter that finds the event finds it
        // whole.
        let mut pipe = redis::pipe();
        pipe.atomic().hset_multiple(keys.meta(), &fields);
        if meta.allowed_platforms.is_empty() {
            pipe.hdel(keys.meta(), "platforms");
        } else {
            let platforms: Vec<&str> = meta.allowed_platforms.iter().map(|p| p.as_str()).collect();
            pipe.hset(keys.meta(), "platforms", platforms.join(","));
        }
        let _: () = pipe.query_async(&mut self.redis.clone()).await?;
        let _: () = self.redis.clone().sadd(EVENTS_KEY, event.as_str()).await?;
        Ok(())
    }

    /// Writes the event's public fairness record, which queue-api serves at
    /// `GET /v1/events/{id}/fairness`. The seed is written only once PostgreSQL has
    /// revealed it.
    pub async fn put_fairness(&self, event: &EventId, fairness: &PublicFairness) -> Result<()> {
        let mut fields = vec![
            ("rule", fairness.rule.clone()),
            ("commitment", fairness.commitment.clone()),
            ("stock_total", fairness.stock_total.to_string()),
            ("win_probability", fairness.win_probability.to_string()),
            ("threshold", fairness.threshold.clone()),
            ("queue_mode", fairness.queue_mode.clone()),
        ];
        if let Some((seed, revealed_at_ms)) = &fairness.seed {
            fields.push(("seed", seed.clone()));
            fields.push(("seed_revealed_at_ms", revealed_at_ms.to_string()));
        }
        if let Some(beacon) = &fairness.beacon {
            fields.push(("beacon_round", beacon.round.clone()));
            if let Some(value) = &beacon.value {
                fields.push(("beacon_value", value.clone()));
            }
        }
        let _: () = self
            .redis
            .clone()
            .hset_multiple(EventKeys::new(event).fairness(), &fields)
            .await?;
        Ok(())
    }

    /// The event's public fairness record; `None` when Redis has none.
    pub async fn fairness(&self, event: &EventId) -> Result<Option<PublicFairness>> {
        let fields: HashMap<String, String> = self
            .redis
            .clone()
            .hgetall(EventKeys::new(event).fairness())
            .await?;
        let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
        if fields.is_empty() {
            return Ok(None);
        }
        Ok(Some(PublicFairness {
            rule: get("rule"),
            commitment: get("commitment"),
            stock_total: get("stock_total").parse().unwrap_or(0),
            win_probability: get("win_probability").parse().unwrap_or(0.0),
            threshold: get("threshold"),
            queue_mode: get("queue_mode"),
            seed: fields.get("seed").map(|seed| {
                (
                    seed.clone(),
                    get("seed_revealed_at_ms").parse().unwrap_or(0),
                )
            }),
            decision_log: fields
                .get("decision_log")
                .and_then(|text| DecisionLog::parse(text)),
            decision_log_entries: fields
                .get("decision_log_entries")
                .and_then(|text| text.parse().ok()),
            beacon: dropgate_core::Beacon::from_columns(
                fields.get("beacon_round").cloned(),
                fields.get("beacon_value").cloned(),
            ),
        }))
    }

    /// Publishes the event's decision log (JSON) for queue-api to serve, or records
    /// that it was too large to keep in Redis (`None`). Written before the seed enters
    /// the fairness record, so a record with the seed always says where its log is.
    /// `entries` is how many users it names, so the admitter publishes it again when
    /// users are answered after the close (late admissions recorded `closed`).
    pub async fn put_decision_log(
        &self,
        event: &EventId,
        log: Option<&str>,
        entries: u64,
    ) -> Result<()> {
        let keys = EventKeys::new(event);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let state = match log {
            Some(text) => {
                pipe.set(keys.decision_log(), text).ignore();
                DecisionLog::Served
            }
            None => {
                pipe.del(keys.decision_log()).ignore();
                DecisionLog::TooLarge
            }
        };
        pipe.hset(keys.fairness(), "decision_log", state.as_str())
            .ignore();
        pipe.hset(keys.fairness(), "decision_log_entries", entries)
            .ignore();
        let _: () = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// The event's decision log as published at the close; `None` before.
    pub async fn decision_log(&self, event: &EventId) -> Result<Option<String>> {
        Ok(self
            .redis
            .clone()
            .get(EventKeys::new(event).decision_log())
            .await?)
    }

    /// Writes what the admitter needs from the draw side: the in-flight cap, and the
    /// stock left (lowered only, in one script: result-relay may already know a
    /// smaller figure).
    pub async fn put_draw_limits(
        &self,
        event: &EventId,
        max_in_flight: u32,
        stock_left: u32,
    ) -> Result<()> {
        self.draw_limits
            .call(
                &mut self.redis.clone(),
                &EventKeys::new(event),
                max_in_flight,
                stock_left,
            )
            .await?;
        Ok(())
    }

    /// Queue length and serving counter (for metrics).
    pub async fn queue_gauges(&self, event: &EventId) -> Result<(u64, u64)> {
        let keys = EventKeys::new(event);
        let (length, serving): (u64, Option<u64>) = redis::pipe()
            .llen(keys.line())
            .get(keys.serving())
            .query_async(&mut self.redis.clone())
            .await?;
        Ok((length, serving.unwrap_or(0)))
    }

    /// Whether Redis answers (in a cluster, at least one primary).
    pub async fn ping(&self) -> bool {
        self.redis.clone().ping().await
    }

    /// The event's counters (entered, admitted, won, ...). `entered` is the ticket
    /// sequence, absent before the first entry.
    pub async fn stats(&self, event: &EventId) -> Result<HashMap<String, u64>> {
        let keys = EventKeys::new(event);
        let (mut stats, entered): (HashMap<String, u64>, Option<u64>) = redis::pipe()
            .hgetall(keys.stats())
            .get(keys.seq())
            .query_async(&mut self.redis.clone())
            .await?;
        if let Some(entered) = entered {
            stats.insert("entered".to_owned(), entered);
        }
        Ok(stats)
    }
}
