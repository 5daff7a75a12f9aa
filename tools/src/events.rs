//! Event administration: the `events` row in PostgreSQL (the source of truth) and its
//! mirror in Redis that the queue side reads. Used by `dropgate event ...`.

use anyhow::{Context, Result, bail};
use dropgate_core::{
    Beacon, EventConfig, EventId, EventSeed, EventState, PlatformId, QueueMode, SeedCommitment,
    VerifyReport, WinProbability, audit, verify,
};
use dropgate_functions::fairness::DropRecords;
use dropgate_functions::queue::{EventMeta, PublicFairness, QueueStore};
use dropgate_functions::seed_vault::{SeedKey, stored_seed};
use serde::Serialize;
use sqlx::{PgPool, Row};

/// An event as stored.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// The id.
    pub event_id: String,
    /// Lifecycle state.
    pub state: EventState,
    /// Units for sale.
    pub stock_total: u32,
    /// Units not yet won.
    pub stock_left: u32,
    /// Chance of winning while stock is left.
    pub win_probability: f64,
    /// Admissions per second.
    pub admission_rate_per_s: u32,
    /// Admitted-but-undecided cap.
    pub max_in_flight: u32,
    /// Opening time (Unix ms).
    pub opens_at_ms: u64,
    /// Closing time (Unix ms), if any.
    pub closes_at_ms: Option<u64>,
    /// Queue mode.
    pub queue_mode: QueueMode,
    /// Abandon timeout (ms).
    pub abandon_timeout_ms: u64,
    /// SHA-256 of the seed, public from creation.
    pub seed_commitment: String,
    /// The seed, only once the event is closed.
    pub seed: Option<String>,
    /// Users decided so far.
    pub decisions_made: u64,
    /// The beacon round the event names, with its value once supplied.
    pub beacon: Option<Beacon>,
    /// The draw rule the event follows (docs/fairness.md).
    pub draw_rule: String,
    /// The platforms whose users may enter; empty: every platform.
    pub allowed_platforms: Vec<PlatformId>,
}

const SELECT_EVENT: &str = "select event_id, state, stock_total, stock_left, win_probability, admission_rate_per_s,
        max_in_flight, (extract(epoch from opens_at) * 1000)::bigint as opens_at_ms,
        (extract(epoch from closes_at) * 1000)::bigint as closes_at_ms, queue_mode, abandon_timeout_ms,
        seed_commitment, case when seed_revealed_at is not null then seed end as seed, decisions_made,
        beacon_round, beacon_value, draw_rule, coalesce(allowed_platforms, '{}') as allowed_platforms
   from events where event_id = $1";

fn record_of(row: &sqlx::postgres::PgRow) -> Result<EventRecord> {
    Ok(EventRecord {
        event_id: row.get("event_id"),
        state: row
            .get::<&str, _>("state")
            .parse()
            .map_err(|e| anyhow::anyhow!("stored event state: {e}"))?,
        stock_total: row.get::<i32, _>("stock_total") as u32,
        stock_left: row.get::<i32, _>("stock_left") as u32,
        win_probability: row.get("win_probability"),
        admission_rate_per_s: row.get::<i32, _>("admission_rate_per_s") as u32,
        max_in_flight: row.get::<i32, _>("max_in_flight") as u32,
        opens_at_ms: row.get::<i64, _>("opens_at_ms") as u64,
        closes_at_ms: row
            .get::<Option<i64>, _>("closes_at_ms")
            .map(|ms| ms as u64),
        queue_mode: row
            .get::<&str, _>("queue_mode")
            .parse()
            .map_err(|e| anyhow::anyhow!("stored queue mode: {e}"))?,
        abandon_timeout_ms: row.get::<i64, _>("abandon_timeout_ms") as u64,
        seed_commitment: row.get("seed_commitment"),
        seed: row.get("seed"),
        decisions_made: row.get::<i64, _>("decisions_made") as u64,
        beacon: Beacon::from_columns(row.get("beacon_round"), row.get("beacon_value")),
        draw_rule: row.get("draw_rule"),
        allowed_platforms: row
            .get::<Vec<String>, _>("allowed_platforms")
            .into_iter()
            .map(PlatformId::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("stored allowed platform: {e}"))?,
    })
}

/// Reads an event; a clear error when it does not exist.
pub async fn load(pool: impl sqlx::PgExecutor<'_>, event: &EventId) -> Result<EventRecord> {
    let row = sqlx::query(SELECT_EVENT)
        .bind(event.as_str())
        .fetch_optional(pool)
        .await
        .context("Failed to read the event")?;
    match row {
        Some(row) => record_of(&row),
        None => bail!("no event {event}"),
    }
}

/// Creates an event with a fresh seed; returns the seed's public commitment. The
/// database holds the seed sealed under `seed_key` until the admitter reveals it at
/// the close.
pub async fn create(
    pool: &PgPool,
    event: &EventId,
    config: &EventConfig,
    seed: &EventSeed,
    seed_key: &SeedKey,
) -> Result<SeedCommitment> {
    create_with_beacon(pool, event, config, seed, seed_key, None).await
}

/// [`create`], naming the public randomness beacon round (docs/fairness.md) whose
/// value [`supply_beacon`] must give before the event can open; it is published with
/// the commitment, so nobody can pick the round afterwards.
pub async fn create_with_beacon(
    pool: &PgPool,
    event: &EventId,
    config: &EventConfig,
    seed: &EventSeed,
    seed_key: &SeedKey,
    beacon_round: Option<&str>,
) -> Result<SeedCommitment> {
    config
        .validate()
        .map_err(|problems| anyhow::anyhow!("invalid event settings: {problems}"))?;
    if let Some(round) = beacon_round {
        Beacon::check_round(round)
            .map_err(|problem| anyhow::anyhow!("--beacon-round: {problem}"))?;
    }
    let commitment = seed.commitment();
    let inserted = sqlx::query(
        "insert into events (event_id, stock_total, stock_left, win_probability, admission_rate_per_s, max_in_flight,
                             opens_at, closes_at, queue_mode, abandon_timeout_ms, seed_sealed, seed_commitment,
                             beacon_round, allowed_platforms)
         values ($1, $2, $2, $3, $4, $5, to_timestamp($6::double precision / 1000),
                 to_timestamp($7::double precision / 1000), $8, $9, $10, $11, $12, $13)
         on conflict (event_id) do nothing",
    )
    .bind(event.as_str())
    .bind(config.stock as i32)
    .bind(config.win_probability)
    .bind(config.admission_rate_per_s as i32)
    .bind(config.max_in_flight as i32)
    .bind(config.opens_at_ms as f64)
    .bind(config.closes_at_ms.map(|ms| ms as f64))
    .bind(config.queue_mode.as_str())
    .bind(config.abandon_timeout_ms as i64)
    .bind(seed_key.seal(event, seed))
    .bind(commitment.to_hex())
    .bind(beacon_round)
    .bind(
        (!config.allowed_platforms.is_empty()).then(|| {
            config
                .allowed_platforms
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect::<Vec<_>>()
        }),
    )
    .execute(pool)
    .await
    .context("Failed to create the event")?
    .rows_affected();
    if inserted == 0 {
        bail!("event {event} already exists; pick another id");
    }
    Ok(commitment)
}

/// Records the value of the beacon round `event` names (the round's published
/// randomness, lowercase hex), while the event is still scheduled: from then it is
/// mixed into every draw. Giving the same value again changes nothing; another value
/// is refused.
pub async fn supply_beacon(pool: &PgPool, event: &EventId, value: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select state, beacon_round, beacon_value from events where event_id = $1 for update",
    )
    .bind(event.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((state, round, stored)) = row else {
        bail!("no event {event}");
    };
    let state: EventState = state
        .parse()
        .map_err(|e| anyhow::anyhow!("stored event state: {e}"))?;
    let beacon = Beacon::from_columns(round, stored);
    if !Beacon::accept_value(beacon.as_ref(), state, value)
        .map_err(|problem| anyhow::anyhow!("--beacon-value for event {event}: {problem}"))?
    {
        return Ok(());
    }
    sqlx::query("update events set beacon_value = $2, updated_at = now() where event_id = $1")
        .bind(event.as_str())
        .bind(value)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Moves an event to `to` if the lifecycle allows it. Closing records when it began.
/// Closed is the admitter's alone: it closes a closing event once drained, and only it
/// reveals the seed ([`dropgate_functions::event_lifecycle::finish_closing`]).
pub async fn transition(pool: &PgPool, event: &EventId, to: EventState) -> Result<EventRecord> {
    if to == EventState::Closed {
        bail!(
            "only the admitter closes an event (it reveals the seed once the drop is drained); start closing instead"
        );
    }
    let mut tx = pool.begin().await?;
    let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select state, beacon_round, beacon_value from events where event_id = $1 for update",
    )
    .bind(event.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((state, beacon_round, beacon_value)) = row else {
        bail!("no event {event}");
    };
    if to == EventState::Open {
        Beacon::ready_to_open(Beacon::from_columns(beacon_round, beacon_value).as_ref()).map_err(
            |problem| {
                anyhow::anyhow!("event {event} cannot open: {problem}; give it with --beacon-value")
            },
        )?;
    }
    let from: EventState = state
        .parse()
        .map_err(|e| anyhow::anyhow!("stored event state: {e}"))?;
    from.step(to)
        .map_err(|illegal| anyhow::anyhow!("{illegal}"))?;
    sqlx::query(
        "update events set state = $2, updated_at = now(),
                closing_at = case when $2 = $3 then coalesce(closing_at, now()) else closing_at end
          where event_id = $1",
    )
    .bind(event.as_str())
    .bind(to.as_str())
    .bind(EventState::Closing.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    load(pool, event).await
}

/// The randomized pre-queue: everyone who entered before the event opened is put in
/// an order drawn from the event's seed (core's shuffle), so arriving early in the
/// pre-queue window buys nothing and the order can be re-derived once the seed is
/// revealed. The tickets themselves stay the same set; only who holds which changes.
/// Returns how many users were reordered.
pub async fn shuffle_pre_queue(
    pool: &PgPool,
    store: &QueueStore,
    seed_key: &SeedKey,
    event: &EventId,
) -> Result<u64> {
    type Seeds = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let (sealed, clear, beacon_round, beacon_value): Seeds = sqlx::query_as(
        "select seed_sealed, seed, beacon_round, beacon_value from events where event_id = $1",
    )
    .bind(event.as_str())
    .fetch_optional(pool)
    .await?
    .with_context(|| format!("no event {event}"))?;
    let beacon = Beacon::from_columns(beacon_round, beacon_value);
    let seed = stored_seed(seed_key, event, sealed.as_deref(), clear.as_deref())?
        .event_key(beacon.as_ref())
        .map_err(|problem| anyhow::anyhow!("{problem}: give it with --beacon-value"))?;
    store
        .shuffle_line(event, |members| {
            dropgate_core::shuffle_pre_queue(&seed, event, members)
        })
        .await
}

/// Writes what the queue side needs to know of `record` into Redis.
pub async fn mirror(store: &QueueStore, record: &EventRecord) -> Result<()> {
    let event = EventId::parse(record.event_id.as_str())?;
    store
        .put_event_meta(
            &event,
            &EventMeta {
                state: record.state,
                rate_per_s: record.admission_rate_per_s,
                abandon_timeout_ms: record.abandon_timeout_ms,
                opens_at_ms: record.opens_at_ms,
                allowed_platforms: record.allowed_platforms.clone(),
            },
        )
        .await?;
    store
        .put_draw_limits(&event, record.max_in_flight, record.stock_left)
        .await?;
    // The seed is added by the admitter once PostgreSQL has revealed it.
    let mut fairness = PublicFairness::before_reveal(
        record.seed_commitment.clone(),
        record.stock_total,
        record.win_probability,
        record.queue_mode.as_str(),
    )?;
    fairness.beacon = record.beacon.clone();
    fairness.rule = record.draw_rule.clone();
    store.put_fairness(&event, &fairness).await
}

/// Counts of the users who reached a final state without a draw, by state.
pub async fn undrawn_counts(pool: &PgPool, event: &EventId) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "select state, count(*) from final_states where event_id = $1 group by state order by state",
    )
    .bind(event.as_str())
    .fetch_all(pool)
    .await?)
}

/// Outcome counts of an event's draws.
pub async fn outcome_counts(pool: &PgPool, event: &EventId) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "select outcome, count(*) from draws where event_id = $1 group by outcome order by outcome",
    )
    .bind(event.as_str())
    .fetch_all(pool)
    .await?)
}

/// Replays every recorded draw of a closed event from its revealed seed and checks
/// the rules around it ([`dropgate_core::audit`]): one report with every finding.
pub async fn verify_event(pool: &PgPool, event: &EventId) -> Result<VerifyReport> {
    let mut conn = pool.acquire().await?;
    verify_event_on(&mut conn, event).await
}

/// [`verify_event`] on one connection, so it can read inside a transaction (the tests
/// tamper with a finished drop's records in one and roll it back).
pub async fn verify_event_on(
    conn: &mut sqlx::PgConnection,
    event: &EventId,
) -> Result<VerifyReport> {
    let record = load(&mut *conn, event).await?;
    if record.draw_rule != dropgate_core::DRAW_RULE {
        bail!(
            "event {event} was drawn under rule {}; this release verifies {} (the release that drew it verifies it)",
            record.draw_rule,
            dropgate_core::DRAW_RULE
        );
    }
    let Some(seed) = record.seed.as_deref() else {
        bail!(
            "event {event} is {}; its seed is revealed (and the draw verifiable) once it is closed",
            record.state.as_str()
        );
    };
    let seed = EventSeed::from_hex(seed).map_err(|e| anyhow::anyhow!("stored seed: {e}"))?;
    let commitment = SeedCommitment::from_hex(&record.seed_commitment)
        .map_err(|e| anyhow::anyhow!("stored commitment: {e}"))?;
    let probability = WinProbability::new(record.win_probability)
        .map_err(|e| anyhow::anyhow!("stored probability: {e}"))?;
    let drop = DropRecords::load(conn, event).await?;
    let mut report = verify(
        &seed,
        drop.beacon.as_ref(),
        &commitment,
        event,
        probability,
        record.stock_total,
        &drop.decisions,
    );
    report
        .findings
        .extend(audit(&drop.facts, &drop.decisions, &drop.without_a_draw));
    Ok(report)
}

/// The event's public fairness data (docs/fairness.md): from creation the commitment
/// and the parameters the draw follows; once the seed is revealed, the seed, every
/// decision and every answer given without a draw, so anyone can re-run the drop
/// (`verifier/dropgate_verify.py`). Users appear by their pseudonyms, never by their
/// ids.
pub async fn fairness_data(
    conn: &mut sqlx::PgConnection,
    event: &EventId,
) -> Result<serde_json::Value> {
    dropgate_functions::fairness::public_data(conn, event)
        .await?
        .with_context(|| format!("no event {event}"))
}

/// One winner, for export.
#[derive(Debug, Clone, Serialize)]
pub struct Winner {
    /// Place in the decision order.
    pub decision_order: u64,
    /// Platform.
    pub platform_id: String,
    /// User.
    pub user_id: String,
    /// Queue ticket.
    pub ticket: u64,
    /// When (RFC 3339, UTC).
    pub decided_at: String,
}

/// Winners in decision order.
pub async fn winners(pool: &PgPool, event: &EventId) -> Result<Vec<Winner>> {
    load(pool, event).await?;
    let rows = sqlx::query(
        "select decision_order, platform_id, user_id, ticket,
                to_char(decided_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') as decided_at
           from draws where event_id = $1 and outcome = 'won' order by decision_order",
    )
    .bind(event.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| Winner {
            decision_order: row.get::<i64, _>("decision_order") as u64,
            platform_id: row.get("platform_id"),
            user_id: row.get("user_id"),
            ticket: row.get::<i64, _>("ticket") as u64,
            decided_at: row.get("decided_at"),
        })
        .collect())
}
