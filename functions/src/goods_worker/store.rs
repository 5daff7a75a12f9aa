//! The goods side's PostgreSQL: one transaction per batch that decides new users,
//! re-reads already-decided ones, moves the stock and fills the outbox; and the outbox
//! itself.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use anyhow::{Context, Result, bail};
use dropgate_core::{
    Admitted, BatchWinners, DrawResult, EventId, EventState, MESSAGE_VERSION, Message, Outcome,
    UserKey, WinProbability, decide_batch,
};
use sqlx::{PgPool, Row};

use crate::seed_vault::{SeedKey, stored_seed};

/// The event states that become sold out when a batch takes the last unit
/// ([`EventState::may_sell_out`]), so the SQL never lists them itself.
static MAY_SELL_OUT: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    EventState::ALL
        .into_iter()
        .filter(|state| state.may_sell_out())
        .map(EventState::as_str)
        .collect()
});

/// One message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Row id (marked sent after delivery).
    pub id: i64,
    /// Which topic it goes to.
    pub stream: OutboxStream,
    /// The message key: the user's member key for a result, the event id for winners.
    pub key: String,
    /// The encoded [`DrawResult`] or [`BatchWinners`].
    pub payload: Vec<u8>,
}

/// The topics the outbox feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStream {
    /// result-notification: one result per user.
    Results,
    /// winners: one message per batch with winners.
    Winners,
}

impl OutboxStream {
    /// The name stored in `outbox.stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStream::Results => "results",
            OutboxStream::Winners => "winners",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "results" => Ok(OutboxStream::Results),
            "winners" => Ok(OutboxStream::Winners),
            other => bail!("unknown outbox stream {other:?}"),
        }
    }
}

/// What one batch transaction did.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Results to publish (new decisions and re-announced old ones).
    pub outbox: Vec<OutboxRow>,
    /// Users decided now, by outcome.
    pub decided: HashMap<Outcome, u64>,
    /// Users that already had a recorded decision.
    pub reannounced: u64,
    /// Stock after the batch.
    pub stock_left: u64,
}

/// Why a batch for an event cannot be decided at all.
#[derive(Debug, thiserror::Error)]
pub enum BatchRefused {
    /// No such event in the database: nothing can be drawn for it.
    #[error("event {0} does not exist")]
    UnknownEvent(EventId),
}

/// Stored draw values are u64 bit-cast into bigint (see the draws migration).
pub fn to_stored(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// The inverse of [`to_stored`].
pub fn from_stored(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

/// Decides `admissions` (all of one event) in one transaction.
///
/// The event row is locked first (`FOR UPDATE`), so batches of the same event from
/// several workers take turns: the decision order stays gap-free, the stock guard is
/// a plain read, and a user redelivered to two workers at once is found by whichever
/// comes second. A user already in `draws` or `final_states` is never drawn again;
/// their recorded outcome is re-announced. Once the event is closed (its seed public,
/// read under the same lock) nobody is drawn: a late admission is recorded `closed`.
pub async fn record_batch(
    pool: &PgPool,
    seed_key: &SeedKey,
    event: &EventId,
    admissions: &[Admitted],
    decided_at_ms: u64,
    before_commit: impl FnOnce(),
) -> Result<Result<BatchOutcome, BatchRefused>> {
    let mut tx = pool
        .begin()
        .await
        .context("Failed to begin a transaction")?;
    let row = sqlx::query(
        "select state, stock_total, stock_left, win_probability, seed, seed_sealed, decisions_made,
                beacon_round, beacon_value, draw_rule
           from events where event_id = $1 for update",
    )
    .bind(event.as_str())
    .fetch_optional(&mut *tx)
    .await
    .context("Failed to lock the event")?;
    let Some(row) = row else {
        return Ok(Err(BatchRefused::UnknownEvent(event.clone())));
    };
    let stock_left: i32 = row.get("stock_left");
    let stock_total: i32 = row.get("stock_total");
    let probability = WinProbability::new(row.get("win_probability")).map_err(|problem| {
        anyhow::anyhow!("event {event} has an invalid win probability: {problem}")
    })?;
    let decisions_made: i64 = row.get("decisions_made");
    let event_state: EventState = row
        .get::<&str, _>("state")
        .parse()
        .map_err(|e| anyhow::anyhow!("event {event} has an unknown state: {e}"))?;

    // One entry per user, earliest ticket first (a user admitted twice keeps one).
    let mut by_user: HashMap<&UserKey, &Admitted> = HashMap::with_capacity(admissions.len());
    for admitted in admissions {
        by_user
            .entry(&admitted.user)
            .and_modify(|kept| {
                if admitted.ticket < kept.ticket {
                    *kept = admitted;
                }
            })
            .or_insert(admitted);
    }
    let platforms: Vec<&str> = by_user
        .keys()
        .map(|user| user.platform_id.as_str())
        .collect();
    let users: Vec<&str> = by_user.keys().map(|user| user.user_id.as_str()).collect();
    let existing = sqlx::query(
        "select d.platform_id, d.user_id, d.ticket, d.outcome, d.decision_order,
                (extract(epoch from d.decided_at) * 1000)::bigint as decided_at_ms
           from draws d
           join unnest($2::text[], $3::text[]) as b(platform_id, user_id)
             on d.platform_id = b.platform_id and d.user_id = b.user_id
          where d.event_id = $1
         union all
         select f.platform_id, f.user_id, f.ticket, f.state, 0,
                (extract(epoch from f.decided_at) * 1000)::bigint
           from final_states f
           join unnest($2::text[], $3::text[]) as b(platform_id, user_id)
             on f.platform_id = b.platform_id and f.user_id = b.user_id
          where f.event_id = $1",
    )
    .bind(event.as_str())
    .bind(&platforms)
    .bind(&users)
    .fetch_all(&mut *tx)
    .await
    .context("Failed to read earlier draws")?;

    let mut already: HashSet<UserKey> = HashSet::with_capacity(existing.len());
    let mut results: Vec<DrawResult> = Vec::with_capacity(by_user.len());
    for row in &existing {
        let user = UserKey::parse(
            row.get::<&str, _>("platform_id"),
            row.get::<&str, _>("user_id"),
        )
        .context("a stored draw has an invalid user")?;
        let outcome: Outcome = row
            .get::<&str, _>("outcome")
            .parse()
            .map_err(|e| anyhow::anyhow!("a stored draw has an unknown outcome: {e}"))?;
        results.push(DrawResult {
            version: MESSAGE_VERSION,
            event_id: event.clone(),
            ticket: row.get::<i64, _>("ticket") as u64,
            outcome,
            decision_order: row.get::<i64, _>("decision_order") as u64,
            stock_left: 0, // filled below with the stock after this batch
            decided_at_ms: row.get::<i64, _>("decided_at_ms") as u64,
            user: user.clone(),
        });
        already.insert(user);
    }
    let reannounced = results.len() as u64;

    let mut fresh: Vec<&Admitted> = by_user
        .values()
        .filter(|admitted| !already.contains(&admitted.user))
        .copied()
        .collect();
    fresh.sort_by(|a, b| a.ticket.cmp(&b.ticket).then_with(|| a.user.cmp(&b.user)));
    let mut decided: HashMap<Outcome, u64> = HashMap::new();
    if !event_state.draws() {
        record_closed(&mut tx, event, &fresh, decided_at_ms, &mut results).await?;
        if !fresh.is_empty() {
            decided.insert(Outcome::Closed, fresh.len() as u64);
        }
        fresh.clear();
    }
    // The key is opened only to draw: re-announcements and late admissions need
    // neither the seed key nor a beacon value.
    let decisions = if fresh.is_empty() {
        Vec::new()
    } else {
        let rule: &str = row.get("draw_rule");
        if rule != dropgate_core::DRAW_RULE {
            bail!(
                "event {event} follows draw rule {rule}; this release draws under {}: finish it with the release that created it",
                dropgate_core::DRAW_RULE
            );
        }
        let beacon =
            dropgate_core::Beacon::from_columns(row.get("beacon_round"), row.get("beacon_value"));
        let key = stored_seed(seed_key, event, row.get("seed_sealed"), row.get("seed"))?
            .event_key(beacon.as_ref())
            .map_err(|problem| anyhow::anyhow!("event {event} cannot draw: {problem}"))?;
        decide_batch(
            &key,
            event,
            probability,
            u32::try_from(stock_left).unwrap_or(0),
            fresh.iter().map(|admitted| &admitted.user),
        )
    };
    let new_stock_left = decisions
        .last()
        .map(|(_, decision)| decision.stock_left)
        .unwrap_or(u32::try_from(stock_left).unwrap_or(0));

    if !fresh.is_empty() {
        let mut platform_ids = Vec::with_capacity(fresh.len());
        let mut user_ids = Vec::with_capacity(fresh.len());
        let mut tickets = Vec::with_capacity(fresh.len());
        let mut values = Vec::with_capacity(fresh.len());
        let mut outcomes = Vec::with_capacity(fresh.len());
        let mut orders = Vec::with_capacity(fresh.len());
        for (index, (admitted, (value, decision))) in fresh.iter().zip(&decisions).enumerate() {
            let order = decisions_made as u64 + index as u64 + 1;
            platform_ids.push(admitted.user.platform_id.as_str());
            user_ids.push(admitted.user.user_id.as_str());
            tickets.push(admitted.ticket as i64);
            values.push(to_stored(*value));
            outcomes.push(decision.outcome.as_str());
            orders.push(order as i64);
            *decided.entry(decision.outcome).or_default() += 1;
            results.push(DrawResult {
                version: MESSAGE_VERSION,
                event_id: event.clone(),
                user: admitted.user.clone(),
                ticket: admitted.ticket,
                outcome: decision.outcome,
                decision_order: order,
                stock_left: 0,
                decided_at_ms,
            });
        }
        let inserted = sqlx::query(
            "insert into draws (event_id, platform_id, user_id, ticket, draw_value, outcome, decision_order, decided_at)
             select $1, p, u, t, v, o, d, to_timestamp($8::double precision / 1000)
               from unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[])
                    as x(p, u, t, v, o, d)
             on conflict do nothing",
        )
        .bind(event.as_str())
        .bind(&platform_ids)
        .bind(&user_ids)
        .bind(&tickets)
        .bind(&values)
        .bind(&outcomes)
        .bind(&orders)
        .bind(decided_at_ms as f64)
        .execute(&mut *tx)
        .await
        .context("Failed to record draws")?
        .rows_affected();
        if inserted != fresh.len() as u64 {
            // The event lock makes this impossible; if it ever happens, nothing of the
            // batch is kept and it is redone.
            bail!(
                "recorded {inserted} of {} draws for {event}; rolling back",
                fresh.len()
            );
        }
        sqlx::query(
            "update events
                set stock_left = $2,
                    decisions_made = decisions_made + $3,
                    state = case when $2 = 0 and state = any($4::text[]) then $5 else state end,
                    updated_at = now()
              where event_id = $1",
        )
        .bind(event.as_str())
        .bind(new_stock_left as i32)
        .bind(fresh.len() as i64)
        .bind(&*MAY_SELL_OUT)
        .bind(EventState::SoldOut.as_str())
        .execute(&mut *tx)
        .await
        .context("Failed to update the stock")?;
    }

    let mut streams = Vec::with_capacity(results.len() + 1);
    let mut keys = Vec::with_capacity(results.len() + 1);
    let mut payloads = Vec::with_capacity(results.len() + 1);
    for result in &mut results {
        result.stock_left = u64::from(new_stock_left);
        streams.push(OutboxStream::Results);
        keys.push(result.key());
        payloads.push(result.encode());
    }
    // Only this batch's new winners: re-announced ones were in an earlier message.
    let winners: Vec<dropgate_core::Winner> = results
        .iter()
        .filter(|result| {
            result.outcome == Outcome::Won && result.decision_order > decisions_made as u64
        })
        .map(|result| dropgate_core::Winner {
            user: result.user.clone(),
            ticket: result.ticket,
            decision_order: result.decision_order,
        })
        .collect();
    if !winners.is_empty() {
        let message = BatchWinners {
            version: MESSAGE_VERSION,
            event_id: event.clone(),
            winners,
            stock_total: u64::try_from(stock_total).unwrap_or(0),
            stock_left: u64::from(new_stock_left),
            decided_at_ms,
        };
        streams.push(OutboxStream::Winners);
        keys.push(message.key());
        payloads.push(message.encode());
    }
    let stream_names: Vec<&str> = streams.iter().map(|stream| stream.as_str()).collect();
    // Ids are drawn in insertion order, which is the arrays' order: sorted, they pair
    // with the rows whatever order RETURNING lists them in.
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "insert into outbox (event_id, stream, message_key, payload)
         select $1, s, k, p from unnest($2::text[], $3::text[], $4::bytea[]) with ordinality as x(s, k, p, n)
         order by n
         returning outbox_id",
    )
    .bind(event.as_str())
    .bind(&stream_names)
    .bind(&keys)
    .bind(&payloads)
    .fetch_all(&mut *tx)
    .await
    .context("Failed to write the outbox")?;
    ids.sort_unstable();

    before_commit();
    tx.commit().await.context("Failed to commit the batch")?;
    let outbox = ids
        .into_iter()
        .zip(streams)
        .zip(keys.into_iter().zip(payloads))
        .map(|((id, stream), (key, payload))| OutboxRow {
            id,
            stream,
            key,
            payload,
        })
        .collect();
    Ok(Ok(BatchOutcome {
        outbox,
        decided,
        reannounced,
        stock_left: u64::from(new_stock_left),
    }))
}

/// Records admissions that arrived after the event's seed was revealed as `closed`
/// (never drawn) and adds their results.
async fn record_closed(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    event: &EventId,
    late: &[&Admitted],
    decided_at_ms: u64,
    results: &mut Vec<DrawResult>,
) -> Result<()> {
    if late.is_empty() {
        return Ok(());
    }
    let users: Vec<(&UserKey, u64)> = late.iter().map(|a| (&a.user, a.ticket)).collect();
    // Users already answered were filtered out under this same lock, so nothing
    // comes back; if something did, its recorded answer is what is announced.
    let answered = crate::event_lifecycle::record_final_states(
        tx,
        event,
        &users,
        Outcome::Closed.user_state(),
        decided_at_ms,
    )
    .await
    .context("Failed to record admissions after the close")?;
    tracing::warn!(%event, users = late.len(), "admissions reached the draw after the event closed: recorded closed, not drawn");
    let answered_users: std::collections::HashSet<&UserKey> =
        answered.iter().map(|result| &result.user).collect();
    let closed = late
        .iter()
        .filter(|admitted| !answered_users.contains(&admitted.user));
    let closed = closed.map(|admitted| DrawResult {
        version: MESSAGE_VERSION,
        event_id: event.clone(),
        user: admitted.user.clone(),
        ticket: admitted.ticket,
        outcome: Outcome::Closed,
        decision_order: 0,
        stock_left: 0,
        decided_at_ms,
    });
    results.extend(closed);
    results.extend(answered);
    Ok(())
}

/// Marks delivered outbox rows sent.
pub async fn mark_sent(pool: &PgPool, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("update outbox set sent_at = now() where outbox_id = any($1) and sent_at is null")
        .bind(ids)
        .execute(pool)
        .await
        .context("Failed to mark results sent")?;
    Ok(())
}
