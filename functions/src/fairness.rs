//! An event's public fairness data (docs/fairness.md), built from what PostgreSQL
//! recorded: what `dropgate event verify` checks, what `dropgate event fairness`
//! prints and what the admitter publishes for `GET /v1/events/{id}/fairness/log` at
//! the close. One loader serves all three, so they cannot read a drop differently.

use anyhow::{Context, Result};
use dropgate_core::{
    Beacon, EventId, EventSeed, Outcome, RecordedDecision, RecordedEvent, RecordedWithoutDraw,
    UserKey,
};
use sqlx::Row;

use crate::goods_worker::store::from_stored;
use crate::queue::PublicFairness;

/// What a drop recorded, as verify checks it and the fairness data publishes it.
pub struct DropRecords {
    /// The event's counters and times.
    pub facts: RecordedEvent,
    /// Every draw, in decision order.
    pub decisions: Vec<RecordedDecision>,
    /// Every answer given without a draw, in ticket order.
    pub without_a_draw: Vec<RecordedWithoutDraw>,
    /// The beacon round the event names, with its value once supplied.
    pub beacon: Option<Beacon>,
}

impl DropRecords {
    /// Reads them (on one connection, so inside a caller's transaction if it has one).
    pub async fn load(conn: &mut sqlx::PgConnection, event: &EventId) -> Result<Self> {
        let rows = sqlx::query(
            "select platform_id, user_id, ticket, draw_value, outcome, decision_order,
                    (extract(epoch from decided_at) * 1000)::bigint as decided_at_ms
               from draws where event_id = $1 order by decision_order",
        )
        .bind(event.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let mut decisions = Vec::with_capacity(rows.len());
        for row in rows {
            decisions.push(RecordedDecision {
                order: row.get::<i64, _>("decision_order") as u64,
                ticket: row.get::<i64, _>("ticket") as u64,
                user: UserKey::parse(row.get("platform_id"), row.get("user_id"))?,
                draw_value: from_stored(row.get("draw_value")),
                outcome: row
                    .get::<&str, _>("outcome")
                    .parse::<Outcome>()
                    .map_err(|e| anyhow::anyhow!("stored outcome: {e}"))?,
                decided_at_ms: row.get::<i64, _>("decided_at_ms") as u64,
            });
        }
        let rows = sqlx::query(
            "select platform_id, user_id, ticket, state,
                    (extract(epoch from decided_at) * 1000)::bigint as decided_at_ms
               from final_states where event_id = $1 order by ticket",
        )
        .bind(event.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let mut without_a_draw = Vec::with_capacity(rows.len());
        for row in rows {
            without_a_draw.push(RecordedWithoutDraw {
                user: UserKey::parse(row.get("platform_id"), row.get("user_id"))?,
                ticket: row.get::<i64, _>("ticket") as u64,
                state: row
                    .get::<&str, _>("state")
                    .parse()
                    .map_err(|e| anyhow::anyhow!("stored final state: {e}"))?,
                decided_at_ms: row.get::<i64, _>("decided_at_ms") as u64,
            });
        }
        /// stock_total, stock_left, decisions_made, closing_at, seed_revealed_at, the
        /// beacon round and value.
        type Facts = (
            i32,
            i32,
            i64,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let (
            stock_total,
            stock_left,
            decisions_made,
            closing_at_ms,
            seed_revealed_at_ms,
            beacon_round,
            beacon_value,
        ): Facts = sqlx::query_as(
            "select stock_total, stock_left, decisions_made,
                        (extract(epoch from closing_at) * 1000)::bigint,
                        (extract(epoch from seed_revealed_at) * 1000)::bigint,
                        beacon_round, beacon_value
                   from events where event_id = $1",
        )
        .bind(event.as_str())
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("Failed to read event {event}"))?;
        Ok(Self {
            facts: RecordedEvent {
                stock_total: u32::try_from(stock_total).unwrap_or(0),
                stock_left: u32::try_from(stock_left).unwrap_or(0),
                decisions_made: u64::try_from(decisions_made).unwrap_or(0),
                closing_at_ms: closing_at_ms.map(|ms| ms as u64),
                seed_revealed_at_ms: seed_revealed_at_ms.map(|ms| ms as u64),
            },
            decisions,
            without_a_draw,
            beacon: Beacon::from_columns(beacon_round, beacon_value),
        })
    }
}

/// The event's public fairness data: from creation the rule, the commitment and the
/// parameters the draw follows; once the seed is revealed, also the seed, every
/// decision and every answer given without a draw, each user named by their
/// pseudonym. `None` when PostgreSQL does not know the event.
pub async fn public_data(
    conn: &mut sqlx::PgConnection,
    event: &EventId,
) -> Result<Option<serde_json::Value>> {
    let Some(public) = crate::event_lifecycle::public_fairness(&mut *conn, event).await? else {
        return Ok(None);
    };
    let state: String = sqlx::query_scalar("select state from events where event_id = $1")
        .bind(event.as_str())
        .fetch_one(&mut *conn)
        .await
        .context("Failed to read the event's state")?;
    let revealed = match &public.seed {
        Some((seed, _)) => {
            let seed =
                EventSeed::from_hex(seed).map_err(|e| anyhow::anyhow!("stored seed: {e}"))?;
            Some((seed, DropRecords::load(conn, event).await?))
        }
        None => None,
    };
    Ok(Some(data(
        event,
        &state,
        &public,
        revealed.as_ref().map(|(seed, drop)| (seed, drop)),
    )))
}

/// The fairness data as JSON (docs/fairness.md), from the public record and, once the
/// seed is revealed, the drop's records: what the API serves, the CLI prints and the
/// verifiers read, built in this one place.
pub fn data(
    event: &EventId,
    state: &str,
    public: &PublicFairness,
    revealed: Option<(&EventSeed, &DropRecords)>,
) -> serde_json::Value {
    let mut data = serde_json::json!({
        "rule": public.rule,
        "event_id": event.as_str(),
        "state": state,
        "queue_mode": public.queue_mode,
        "stock_total": public.stock_total,
        "win_probability": public.win_probability,
        "threshold": public.threshold,
        "commitment": public.commitment,
    });
    data["beacon"] = serde_json::to_value(&public.beacon).unwrap_or_default();
    let Some((seed, drop)) = revealed else {
        return data;
    };
    // The seed stands for the key when a named beacon's value never came: nobody was
    // drawn then (the database refuses it), only answered without a draw.
    let key = seed
        .event_key(public.beacon.as_ref())
        .unwrap_or_else(|_| seed.clone());
    let name = |user: &UserKey| dropgate_core::pseudonym(&key, event, user);
    let decisions: Vec<serde_json::Value> = drop
        .decisions
        .iter()
        .map(|decision| {
            serde_json::json!({
                "decision_order": decision.order,
                "ticket": decision.ticket,
                "pseudonym": name(&decision.user),
                "draw_value": decision.draw_value.to_string(),
                "outcome": decision.outcome.as_str(),
                "decided_at_ms": decision.decided_at_ms,
            })
        })
        .collect();
    let without_a_draw: Vec<serde_json::Value> = drop
        .without_a_draw
        .iter()
        .map(|told| {
            serde_json::json!({
                "ticket": told.ticket,
                "pseudonym": name(&told.user),
                "state": told.state.as_str(),
                "decided_at_ms": told.decided_at_ms,
            })
        })
        .collect();
    data["seed"] = seed.to_hex().into();
    data["stock_left"] = drop.facts.stock_left.into();
    data["decisions_made"] = drop.facts.decisions_made.into();
    data["closing_at_ms"] = drop.facts.closing_at_ms.into();
    data["seed_revealed_at_ms"] = drop.facts.seed_revealed_at_ms.into();
    data["decisions"] = decisions.into();
    data["without_a_draw"] = without_a_draw.into();
    data
}
