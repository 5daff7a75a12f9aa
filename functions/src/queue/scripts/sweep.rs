//! `sweep.lua`: tell users at the head of a sold-out or closing event's line their
//! final state, the ones the caller has already recorded in PostgreSQL.

use anyhow::{Context, Result};
use dropgate_core::UserState;
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("sweep.lua");

/// What the script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepReply {
    /// This many of the given entries' users were moved (the others had left the
    /// line, or the line's head was no longer theirs).
    Swept(u64),
    /// Another instance holds the lease.
    NotLeader,
}

/// The loaded script.
#[derive(Debug, Clone)]
pub struct SweepScript(LuaScript);

impl Default for SweepScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl SweepScript {
    /// Moves the users of `head` (the first entries of `keys`' event line, as read) to
    /// `to`, which must be a state a waiting user may be told without a draw (sold
    /// out, closed), and takes those entries off the line.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        lease_value: &str,
        to: UserState,
        head: &[String],
    ) -> Result<SweepReply> {
        let swept: i64 = self
            .0
            .prepare()
            .key(keys.leader())
            .key(keys.line())
            .key(keys.users())
            .key(keys.serving())
            .key(keys.stats())
            .key(keys.shuffle_plan())
            .arg(lease_value)
            .arg(to.code().to_string())
            .arg(format!("swept_{to}"))
            .arg(head)
            .invoke_async(redis)
            .await
            .context("The sweep failed")?;
        Ok(u64::try_from(swept).map_or(SweepReply::NotLeader, SweepReply::Swept))
    }
}
