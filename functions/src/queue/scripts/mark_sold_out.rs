//! `mark_sold_out.lua`: the leader records that an event's stock is gone.

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("mark_sold_out.lua");

/// What the script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkSoldOutReply {
    /// The event is sold out now.
    Marked,
    /// Its state may not become sold out (already sold out, closed, scheduled).
    NotAllowed,
    /// The caller does not hold the lease.
    NotLeader,
}

/// The loaded script.
#[derive(Debug, Clone)]
pub struct MarkSoldOutScript(LuaScript);

impl Default for MarkSoldOutScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl MarkSoldOutScript {
    /// Marks `keys`' event sold out if `lease_value` holds its lease and its state
    /// allows it.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        lease_value: &str,
    ) -> Result<MarkSoldOutReply> {
        let reply: i64 = self
            .0
            .prepare()
            .key(keys.leader())
            .key(keys.meta())
            .arg(lease_value)
            .invoke_async(redis)
            .await
            .context("Failed to mark the event sold out")?;
        Ok(match reply {
            1 => MarkSoldOutReply::Marked,
            0 => MarkSoldOutReply::NotAllowed,
            _ => MarkSoldOutReply::NotLeader,
        })
    }
}
