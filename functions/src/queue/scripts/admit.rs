//! `admit.lua`: move up to N users from the head of an event's line to the draw,
//! and carry the admission token bucket to the next tick, both fenced by the lease.

use anyhow::{Context, Result};
use dropgate_core::TokenBucket;
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("admit.lua");

/// What one admit call is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct AdmitRequest<'a> {
    /// The caller's lease value (`<instance>|<fencing token>`).
    pub lease_value: &'a str,
    /// Most users to admit.
    pub want: u64,
    /// Now (Unix s).
    pub now_s: u64,
    /// Waiting users not seen for longer than this are expired, not admitted (s).
    pub abandon_s: u64,
    /// Most users to look at (admitted and expired together).
    pub look_budget: u64,
    /// The token bucket after taking `want` tokens: (thousandths of tokens, refill
    /// time in Unix ms). Written with the tokens not used given back.
    pub bucket_after: (u64, u64),
    /// Tickets above this are not admitted yet: the highest ticket PostgreSQL has
    /// recorded as issued (`u64::MAX` for an event PostgreSQL does not know).
    pub highest_ticket: u64,
}

/// What the script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitReply {
    /// Users moved to admitting, and users expired on the way.
    Done {
        /// Users now in the admitting set.
        admitted: u64,
        /// Waiting users found abandoned and expired.
        expired: u64,
    },
    /// Another instance holds the lease (or this one's lapsed).
    NotLeader,
    /// The event does not admit ([`dropgate_core::EventState::admits`]).
    NotAdmitting,
}

/// The loaded script.
#[derive(Debug, Clone)]
pub struct AdmitScript(LuaScript);

impl Default for AdmitScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl AdmitScript {
    /// Runs one admission step for the event of `keys`.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        request: AdmitRequest<'_>,
    ) -> Result<AdmitReply> {
        let (status, admitted, expired): (String, u64, u64) = self
            .0
            .prepare()
            .key(keys.leader())
            .key(keys.meta())
            .key(keys.line())
            .key(keys.users())
            .key(keys.serving())
            .key(keys.admitting())
            .key(keys.stats())
            .key(keys.bucket())
            .key(keys.inflight())
            .key(keys.expiring())
            .key(keys.shuffle_plan())
            .arg(request.lease_value)
            .arg(request.want)
            .arg(request.now_s)
            .arg(request.abandon_s)
            .arg(request.look_budget)
            .arg(request.bucket_after.0)
            .arg(request.bucket_after.1)
            .arg(TokenBucket::THOUSANDTHS_PER_USER)
            .arg(request.highest_ticket)
            .invoke_async(redis)
            .await
            .context("The admit script failed")?;
        Ok(match status.as_str() {
            "ok" => AdmitReply::Done { admitted, expired },
            "not_leader" => AdmitReply::NotLeader,
            "not_admitting" => AdmitReply::NotAdmitting,
            other => anyhow::bail!("unexpected admit reply {other:?}"),
        })
    }
}
