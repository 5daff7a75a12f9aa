//! `join_legacy_queue.lua`: merge the sorted-set queue of older releases into the line.

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("join_legacy_queue.lua");

/// The loaded script.
#[derive(Debug, Clone)]
pub struct JoinLegacyQueueScript(LuaScript);

impl Default for JoinLegacyQueueScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl JoinLegacyQueueScript {
    /// Moves every entry of `keys`' legacy queue into the line in ticket order;
    /// returns how many moved.
    pub async fn call(&self, redis: &mut impl ConnectionLike, keys: &EventKeys) -> Result<u64> {
        self.0
            .prepare()
            .key(keys.legacy_queue())
            .key(keys.line())
            .key(keys.shuffle_plan())
            .invoke_async(redis)
            .await
            .context("Failed to merge the legacy queue into the line")
    }
}
