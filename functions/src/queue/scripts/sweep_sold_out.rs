//! `sweep_sold_out.lua`: tell the users still waiting in a sold-out event.

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("sweep_sold_out.lua");

/// What the script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepReply {
    /// This many waiting users were told (0 when the queue was empty).
    Swept(u64),
    /// Another instance holds the lease.
    NotLeader,
}

/// The loaded script.
#[derive(Debug, Clone)]
pub struct SweepSoldOutScript(LuaScript);

impl Default for SweepSoldOutScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl SweepSoldOutScript {
    /// Sweeps up to `batch` users from the head of the queue of `keys`' event.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        lease_value: &str,
        batch: u32,
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
            .arg(batch.max(1))
            .invoke_async(redis)
            .await
            .context("The sold-out sweep failed")?;
        Ok(u64::try_from(swept).map_or(SweepReply::NotLeader, SweepReply::Swept))
    }
}
