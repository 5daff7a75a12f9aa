//! `finished.lua`: whether an event needs no more admitter ticks.

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("finished.lua");

/// The loaded script.
#[derive(Debug, Clone)]
pub struct FinishedScript(LuaScript);

impl Default for FinishedScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl FinishedScript {
    /// True when no admitter tick can change anything for `keys`' event again.
    pub async fn call(&self, redis: &mut impl ConnectionLike, keys: &EventKeys) -> Result<bool> {
        let finished: i64 = self
            .0
            .prepare()
            .key(keys.meta())
            .key(keys.line())
            .key(keys.admitting())
            .key(keys.inflight())
            .key(keys.expiring())
            .invoke_async(redis)
            .await
            .context("Failed to check whether the event is finished")?;
        Ok(finished == 1)
    }
}
