//! PostgreSQL's side of an event's lifecycle, the authority Redis mirrors: which
//! events are live, the moves into closing and closed, and the users who reached a
//! final state without a draw. The operator commands and the admitter both go
//! through here, so every move is checked by [`EventState::step`] in one place.

use std::sync::LazyLock;

use anyhow::{Context, Result};
use dropgate_core::{
    DrawResult, EventId, EventState, MESSAGE_VERSION, PlatformId, UserKey, UserState,
};
use sqlx::{PgPool, Row};

use crate::seed_vault::{SeedKey, stored_seed};

/// The states an event may start closing from ([`EventState::step`]).
static MAY_START_CLOSING: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    EventState::ALL
        .into_iter()
        .filter(|state| state.step(EventState::Closing).is_ok())
        .map(EventState::as_str)
        .collect()
});

/// What the admitter reads of an event in PostgreSQL each tick.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// The authoritative state.
    pub state: EventState,
    /// `closes_at` has passed.
    pub close_due: bool,
    /// How long ago closing began (ms), while closing.
    pub closing_for_ms: Option<u64>,
    /// Admissions per second.
    pub admission_rate_per_s: u32,
    /// Most admitted users not yet decided.
    pub max_in_flight: u32,
    /// Waiting users not seen for this long are skipped (ms).
    pub abandon_timeout_ms: u64,
    /// Opening time (Unix ms).
    pub opens_at_ms: u64,
    /// Units not yet won.
    pub stock_left: u32,
    /// The highest ticket recorded as handed out.
    pub tickets_issued: u64,
    /// The beacon value the event names has been supplied (it is public from then).
    pub beacon_supplied: bool,
    /// The platforms whose users may enter; empty: every platform. The Redis mirror
    /// is rebuilt with it, so a Redis that lost its data never opens an event wider.
    pub allowed_platforms: Vec<PlatformId>,
    /// Once closed: how many users are decided or answered without a draw, which
    /// the published decision log must name.
    pub answered_after_close: Option<u64>,
}

/// The events not closed yet: the admitter ticks these even when the Redis mirror
/// lost them, so a close recorded only in PostgreSQL still completes.
pub async fn live_events(pool: &PgPool) -> Result<Vec<(String, EventState)>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("select event_id, state from events where state <> $1")
            .bind(EventState::Closed.as_str())
            .fetch_all(pool)
            .await
            .context("Failed to list live events")?;
    rows.into_iter()
        .map(|(id, state)| {
            let state = state
                .parse()
                .map_err(|e| anyhow::anyhow!("event {id} has a stored state: {e}"))?;
            Ok((id, state))
        })
        .collect()
}

/// The event's row, or None when PostgreSQL does not know it.
pub async fn read(pool: &PgPool, event: &EventId) -> Result<Option<EventRow>> {
    let row = sqlx::query(
        "select state, coalesce(closes_at <= now(), false) as close_due,
                (extract(epoch from (now() - closing_at)) * 1000)::bigint as closing_for_ms,
                admission_rate_per_s, max_in_flight, abandon_timeout_ms,
                (extract(epoch from opens_at) * 1000)::bigint as opens_at_ms, stock_left,
                tickets_issued, beacon_value is not null as beacon_supplied,
                coalesce(allowed_platforms, '{}') as allowed_platforms,
                case when state = $2 then decisions_made
                     + (select count(*) from final_states f where f.event_id = events.event_id)
                end as answered_after_close
           from events where event_id = $1",
    )
    .bind(event.as_str())
    .bind(EventState::Closed.as_str())
    .fetch_optional(pool)
    .await
    .context("Failed to read the event")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state: EventState = row
        .get::<&str, _>("state")
        .parse()
        .map_err(|e| anyhow::anyhow!("event {event} has a stored state: {e}"))?;
    let non_negative = |value: i64| u64::try_from(value).unwrap_or(0);
    Ok(Some(EventRow {
        state,
        close_due: row.get("close_due"),
        closing_for_ms: row
            .get::<Option<i64>, _>("closing_for_ms")
            .map(non_negative),
        admission_rate_per_s: u32::try_from(row.get::<i32, _>("admission_rate_per_s")).unwrap_or(1),
        max_in_flight: u32::try_from(row.get::<i32, _>("max_in_flight")).unwrap_or(1),
        abandon_timeout_ms: non_negative(row.get("abandon_timeout_ms")),
        opens_at_ms: non_negative(row.get("opens_at_ms")),
        stock_left: u32::try_from(row.get::<i32, _>("stock_left")).unwrap_or(0),
        tickets_issued: non_negative(row.get("tickets_issued")),
        beacon_supplied: row.get("beacon_supplied"),
        allowed_platforms: row
            .get::<Vec<String>, _>("allowed_platforms")
            .into_iter()
            .map(PlatformId::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("event {event} has a stored allowed platform: {e}"))?,
        answered_after_close: row
            .get::<Option<i64>, _>("answered_after_close")
            .map(non_negative),
    }))
}

/// Records that tickets up to `highest` have been handed out (it never goes down).
pub async fn record_tickets_issued(pool: &PgPool, event: &EventId, highest: u64) -> Result<()> {
    sqlx::query(
        "update events set tickets_issued = greatest(tickets_issued, $2) where event_id = $1",
    )
    .bind(event.as_str())
    .bind(i64::try_from(highest).unwrap_or(i64::MAX))
    .execute(pool)
    .await
    .context("Failed to record the tickets issued")?;
    Ok(())
}

/// Every final state PostgreSQL holds for the event, as results Redis can apply
/// again: the draws in decision order, then the users told a final state without a
/// draw (decision order 0).
pub async fn recorded_outcomes(pool: &PgPool, event: &EventId) -> Result<Vec<DrawResult>> {
    let rows: Vec<OutcomeRow> = sqlx::query_as(
        "select d.platform_id, d.user_id, d.ticket, d.outcome, d.decision_order,
                (extract(epoch from d.decided_at) * 1000)::bigint, e.stock_left
           from draws d join events e using (event_id)
          where d.event_id = $1
         union all
         select f.platform_id, f.user_id, f.ticket, f.state, 0,
                (extract(epoch from f.decided_at) * 1000)::bigint, e.stock_left
           from final_states f join events e using (event_id)
          where f.event_id = $1
         order by 5",
    )
    .bind(event.as_str())
    .fetch_all(pool)
    .await
    .context("Failed to read the recorded outcomes")?;
    rows.into_iter()
        .map(|row| recorded_result(event, row))
        .collect()
}

/// The event's public fairness record as PostgreSQL holds it: the seed only once it
/// is revealed. `None` when PostgreSQL does not know the event.
pub async fn public_fairness(
    db: impl sqlx::PgExecutor<'_>,
    event: &EventId,
) -> Result<Option<crate::queue::PublicFairness>> {
    /// commitment, stock, p, queue mode, the seed once revealed, and when, the beacon
    /// round and value, the draw rule.
    type FairnessRow = (
        String,
        i32,
        f64,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        String,
    );
    let row: Option<FairnessRow> = sqlx::query_as(
        "select seed_commitment, stock_total, win_probability, queue_mode,
                case when seed_revealed_at is not null then seed end,
                (extract(epoch from seed_revealed_at) * 1000)::bigint,
                beacon_round, beacon_value, draw_rule
           from events where event_id = $1",
    )
    .bind(event.as_str())
    .fetch_optional(db)
    .await
    .context("Failed to read the event's fairness record")?;
    let Some((
        commitment,
        stock_total,
        probability,
        queue_mode,
        seed,
        revealed_at_ms,
        beacon_round,
        beacon_value,
        rule,
    )) = row
    else {
        return Ok(None);
    };
    let mut fairness = crate::queue::PublicFairness::before_reveal(
        commitment,
        u32::try_from(stock_total).unwrap_or(0),
        probability,
        &queue_mode,
    )?;
    fairness.seed = seed.zip(revealed_at_ms.map(|ms| ms as u64));
    fairness.beacon = dropgate_core::Beacon::from_columns(beacon_round, beacon_value);
    fairness.rule = rule;
    Ok(Some(fairness))
}

/// Starts closing the event if its state allows; true when this call did it.
pub async fn begin_closing(pool: &PgPool, event: &EventId) -> Result<bool> {
    let moved = sqlx::query(
        "update events set state = $2, closing_at = coalesce(closing_at, now()), updated_at = now()
          where event_id = $1 and state = any($3::text[])",
    )
    .bind(event.as_str())
    .bind(EventState::Closing.as_str())
    .bind(&*MAY_START_CLOSING)
    .execute(pool)
    .await
    .context("Failed to start closing the event")?
    .rows_affected();
    Ok(moved == 1)
}

/// Closes a closing event and reveals its seed: the sealed seed is opened with
/// `seed_key` and written in the clear, the only place a seed leaves its seal. True
/// when this call did it. Taking the event row's lock, it waits for a draw batch in
/// progress to commit, and every batch after it sees the event closed and draws
/// nothing.
pub async fn finish_closing(pool: &PgPool, seed_key: &SeedKey, event: &EventId) -> Result<bool> {
    let mut tx = pool
        .begin()
        .await
        .context("Failed to begin a transaction")?;
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "select seed_sealed, seed from events where event_id = $1 and state = $2 for update",
    )
    .bind(event.as_str())
    .bind(EventState::Closing.as_str())
    .fetch_optional(&mut *tx)
    .await
    .context("Failed to lock the closing event")?;
    let Some((sealed, clear)) = row else {
        return Ok(false);
    };
    let seed = stored_seed(seed_key, event, sealed.as_deref(), clear.as_deref())?;
    sqlx::query(
        "update events set state = $2, seed = $3, seed_revealed_at = now(), updated_at = now()
          where event_id = $1",
    )
    .bind(event.as_str())
    .bind(EventState::Closed.as_str())
    .bind(seed.to_hex())
    .execute(&mut *tx)
    .await
    .context("Failed to close the event")?;
    tx.commit().await.context("Failed to close the event")?;
    Ok(true)
}

/// Records users who reached `state` without a draw at `decided_at_ms` (still in
/// line when the stock ran out or the event closed, away when their turn came, or
/// admitted after the seed was revealed), and returns PostgreSQL's answer for those it
/// did not record so: a user already drawn keeps the draw, and one recorded before
/// keeps their first state. The caller tells those users the answer returned, not
/// `state`, so no user hears something the database contradicts.
///
/// It holds the event row's lock, the lock a draw batch takes, so a user cannot be
/// drawn and recorded undrawn at once. Runs inside the caller's transaction (which
/// may hold the lock already) or in one of its own on a pool connection.
pub async fn record_final_states(
    conn: &mut sqlx::PgConnection,
    event: &EventId,
    users: &[(&UserKey, u64)],
    state: UserState,
    decided_at_ms: u64,
) -> Result<Vec<DrawResult>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let platforms: Vec<&str> = users.iter().map(|(u, _)| u.platform_id.as_str()).collect();
    let ids: Vec<&str> = users.iter().map(|(u, _)| u.user_id.as_str()).collect();
    let tickets: Vec<i64> = users
        .iter()
        .map(|(_, ticket)| i64::try_from(*ticket).unwrap_or(i64::MAX))
        .collect();
    let mut tx = sqlx::Connection::begin(conn).await?;
    let stock_left: Option<i32> =
        sqlx::query_scalar("select stock_left from events where event_id = $1 for update")
            .bind(event.as_str())
            .fetch_optional(&mut *tx)
            .await
            .context("Failed to lock the event")?;
    let Some(stock_left) = stock_left else {
        anyhow::bail!("no event {event} in PostgreSQL");
    };
    // The snapshot the select sees is taken before the insert, so it returns exactly
    // the users answered before this call.
    let answered: Vec<OutcomeRow> = sqlx::query_as(
        "with input as (
             select p, u, t from unnest($2::text[], $3::text[], $4::bigint[]) as x(p, u, t)
         ), recorded as (
             insert into final_states (event_id, platform_id, user_id, ticket, state, decided_at)
             select $1, p, u, t, $5, to_timestamp($6::double precision / 1000)
               from input
              where not exists (select 1 from draws d
                                 where d.event_id = $1 and d.platform_id = p and d.user_id = u)
             on conflict do nothing
         )
         select d.platform_id, d.user_id, d.ticket, d.outcome, d.decision_order,
                (extract(epoch from d.decided_at) * 1000)::bigint, $7::int
           from draws d join input on d.platform_id = input.p and d.user_id = input.u
          where d.event_id = $1
         union all
         select f.platform_id, f.user_id, f.ticket, f.state, 0,
                (extract(epoch from f.decided_at) * 1000)::bigint, $7::int
           from final_states f join input on f.platform_id = input.p and f.user_id = input.u
          where f.event_id = $1 and f.state <> $5",
    )
    .bind(event.as_str())
    .bind(&platforms)
    .bind(&ids)
    .bind(&tickets)
    .bind(state.as_str())
    .bind(decided_at_ms as f64)
    .bind(stock_left)
    .fetch_all(&mut *tx)
    .await
    .context("Failed to record final states")?;
    tx.commit().await.context("Failed to record final states")?;
    answered
        .into_iter()
        .map(|row| recorded_result(event, row))
        .collect()
}

/// A recorded answer as read: platform, user, ticket, outcome or state, decision
/// order (0 without a draw), decided at (Unix ms), the event's stock left.
type OutcomeRow = (String, String, i64, String, i64, i64, i32);

/// A recorded answer as the result message that tells it.
fn recorded_result(event: &EventId, row: OutcomeRow) -> Result<DrawResult> {
    let (platform, user, ticket, outcome, order, decided_at_ms, stock_left) = row;
    Ok(DrawResult {
        version: MESSAGE_VERSION,
        event_id: event.clone(),
        user: UserKey::parse(&platform, &user).context("a recorded outcome has an invalid user")?,
        ticket: u64::try_from(ticket).unwrap_or(0),
        outcome: outcome
            .parse()
            .map_err(|e| anyhow::anyhow!("a recorded outcome: {e}"))?,
        decision_order: u64::try_from(order).unwrap_or(0),
        stock_left: u64::try_from(stock_left).unwrap_or(0),
        decided_at_ms: u64::try_from(decided_at_ms).unwrap_or(0),
    })
}
