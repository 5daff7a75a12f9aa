//! `POST /v1/events/{event_id}/queue` (enter) and `GET .../queue/me` (status).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dropgate_core::{EventId, Outcome, UserState};
use serde::{Deserialize, Serialize};

use super::extract::{Caller, EmptyOrJsonObject, EventPath};
use super::{ApiError, AppState};
use crate::queue::{DecisionLog, Lookup, Standing};

/// What a client is told about its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    /// The event.
    pub event_id: String,
    /// The caller's ticket (re-entering returns the same one).
    pub ticket: u64,
    /// waiting | admitted | won | lost | sold_out | expired.
    pub state: UserState,
    /// 1 is next; 0 once admitted or decided.
    pub position: u64,
    /// Seconds until admission at the event's rate.
    pub eta_s: u64,
    /// When to poll again, in ms; 0 means the outcome is final: stop polling.
    pub poll_after_ms: u64,
    /// The outcome, once decided.
    pub result: Option<ResultView>,
}

/// A decided outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultView {
    /// won | lost | sold_out | closed.
    pub outcome: Outcome,
    /// Place in the event's decision order (for verification).
    pub decision_order: Option<u64>,
    /// When it was decided (Unix ms).
    pub decided_at_ms: Option<u64>,
}

/// Admitted users hear back within seconds: poll briskly.
const ADMITTED_POLL_MS: u64 = 1_000;

pub(crate) fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default()
}

impl QueueView {
    /// The view of `standing`, with a jitter drawn for this response.
    pub(crate) fn of(event: &EventId, standing: &Standing) -> Self {
        let mut record = standing.record;
        record.state = record
            .state
            .as_told(standing.event_state, standing.stock_gone);
        let result = match record.state {
            UserState::Won => Some(Outcome::Won),
            UserState::Lost => Some(Outcome::Lost),
            UserState::SoldOut => Some(Outcome::SoldOut),
            UserState::Closed => Some(Outcome::Closed),
            UserState::Waiting | UserState::Admitted | UserState::Expired => None,
        }
        .map(|outcome| ResultView {
            outcome,
            // Decision orders start at 1; a result recorded without a draw carries 0.
            decision_order: record
                .decided
                .map(|d| d.decision_order)
                .filter(|order| *order > 0),
            decided_at_ms: record.decided.map(|d| d.decided_at_ms),
        });
        let (position, eta_s, poll_after_ms) = match record.state {
            UserState::Waiting => {
                let standing = dropgate_core::standing(
                    record.ticket,
                    standing.serving,
                    standing.rate_per_s,
                    standing.abandon_timeout_ms,
                    rand::random::<f64>(),
                );
                (
                    standing.position.max(1),
                    standing.eta_s,
                    standing.poll_after_ms,
                )
            }
            UserState::Admitted => (0, 0, ADMITTED_POLL_MS),
            _ => (0, 0, 0),
        };
        Self {
            event_id: event.to_string(),
            ticket: record.ticket,
            state: record.state,
            position,
            eta_s,
            poll_after_ms,
            result,
        }
    }
}

/// Maps the script outcomes that are not a standing to errors.
pub(crate) fn found(lookup: Lookup) -> Result<Standing, ApiError> {
    match lookup {
        Lookup::Found(standing) => Ok(standing),
        Lookup::UnknownEvent => Err(ApiError::UnknownEvent),
        Lookup::PlatformNotAllowed => Err(ApiError::PlatformNotAllowed),
        Lookup::Closed => Err(ApiError::EventClosed),
        Lookup::SoldOut => Err(ApiError::EventSoldOut),
        Lookup::NotEntered => Err(ApiError::NotInQueue),
    }
}

/// Enter the queue: 201 with a new ticket, 200 with the existing one.
pub(crate) async fn enter(
    State(state): State<AppState>,
    EventPath(event): EventPath,
    Caller(user): Caller,
    _body: EmptyOrJsonObject,
) -> Result<(StatusCode, Json<QueueView>), ApiError> {
    let standing = found(state.store.enter(&event, &user, now_s()).await?)?;
    state.streams.remember(&event);
    let status = if standing.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(QueueView::of(&event, &standing))))
}

/// The caller's standing; refreshes their last-seen time.
pub(crate) async fn status(
    State(state): State<AppState>,
    EventPath(event): EventPath,
    Caller(user): Caller,
) -> Result<Json<QueueView>, ApiError> {
    let standing = found(state.store.status(&event, &user, now_s()).await?)?;
    state.streams.remember(&event);
    Ok(Json(QueueView::of(&event, &standing)))
}

/// `GET /v1/events/{event_id}/fairness`: the event's public fairness record
/// (docs/fairness.md), no token needed. Before the close: the rule, the commitment and
/// the parameters it binds; after: the revealed seed too, so anyone can check it
/// against the commitment and re-run the draw.
pub(crate) async fn fairness(
    State(state): State<AppState>,
    EventPath(event): EventPath,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;

    let record = public_record(&state, &event).await?;
    let (seed, seed_revealed_at_ms) = match record.seed {
        Some((seed, at)) => (Some(seed), Some(at)),
        None => (None, None),
    };
    let body = serde_json::json!({
        "event_id": event.as_str(),
        "rule": record.rule,
        "commitment": record.commitment,
        "stock_total": record.stock_total,
        "win_probability": record.win_probability,
        "threshold": record.threshold,
        "queue_mode": record.queue_mode,
        "seed": seed,
        "seed_revealed_at_ms": seed_revealed_at_ms,
        "beacon": record.beacon,
        "decision_log": match record.decision_log {
            Some(DecisionLog::Served) => Some(format!("/v1/events/{}/fairness/log", event.as_str())),
            _ => None,
        },
        "decision_log_status": record.decision_log,
    });
    // Before the close it gains the beacon's value and then the seed; after it only
    // the decision log's entry count can still change.
    let cache = if seed.is_some() {
        "public, max-age=60"
    } else {
        "public, max-age=5"
    };
    Ok(([(axum::http::header::CACHE_CONTROL, cache)], Json(body)).into_response())
}

/// The event's public fairness record as the admitter published it to Redis.
async fn public_record(
    state: &AppState,
    event: &EventId,
) -> Result<crate::queue::PublicFairness, ApiError> {
    state
        .store
        .fairness(event)
        .await
        .map_err(ApiError::Unavailable)?
        .ok_or(ApiError::UnknownEvent)
}
