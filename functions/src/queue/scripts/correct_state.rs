//! `correct_state.lua`: the leader writes PostgreSQL's event state over a Redis mirror
//! that disagrees.

use anyhow::{Context, Result};
use dropgate_core::EventState;
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("correct_state.lua");

/// What the script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrectStateReply {
    /// The mirror now holds the state asked for.
    Corrected,
    /// The mirror changed since it was read; nothing written.
    Changed,
    /// Another instance holds the lease.
    NotLeader,
}

/// The loaded script.
#[derive(Debug, Clone)]
pub struct CorrectStateScript(LuaScript);

impl Default for CorrectStateScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl CorrectStateScript {
    /// Writes `to` if the mirror still holds `seen` (None: no state at all).
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        lease_value: &str,
        seen: Option<EventState>,
        to: EventState,
    ) -> Result<CorrectStateReply> {
        let reply: i64 = self
            .0
            .prepare()
            .key(keys.leader())
            .key(keys.meta())
            .arg(lease_value)
            .arg(seen.map_or("", EventState::as_str))
            .arg(to.as_str())
            .invoke_async(redis)
            .await
            .context("Failed to correct the event state in Redis")?;
        Ok(match reply {
            1 => CorrectStateReply::Corrected,
            0 => CorrectStateReply::Changed,
            _ => CorrectStateReply::NotLeader,
        })
    }
}
