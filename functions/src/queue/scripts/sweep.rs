//! `sweep.lua`: tell users still in line of a sold-out or closing event their final
//! state, the ones the caller has already recorded in PostgreSQL.

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
    /// This many of the given users were moved (the others had left the line).
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
    /// Moves `members` (queue members of `keys`' event) to `to`, which must be a state
    /// a waiting user may be told without a draw (sold out, closed).
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        lease_value: &str,
        to: UserState,
        members: &[String],
    ) -> Result<SweepReply> {
        let swept: i64 = self
            .0
            .prepare()
            .key(keys.leader())
            .key(keys.queue())
            .key(keys.users())
            .key(keys.serving())
            .key(keys.stats())
            .arg(lease_value)
            .arg(to.code().to_string())
            .arg(format!("swept_{to}"))
            .arg(members)
            .invoke_async(redis)
            .await
            .context("The sweep failed")?;
        Ok(u64::try_from(swept).map_or(SweepReply::NotLeader, SweepReply::Swept))
    }
}
