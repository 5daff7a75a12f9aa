//! `draw_limits.lua`: the in-flight cap and the stock left, lowered only.

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("draw_limits.lua");

/// The loaded script.
#[derive(Debug, Clone)]
pub struct DrawLimitsScript(LuaScript);

impl Default for DrawLimitsScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl DrawLimitsScript {
    /// Writes the cap and lowers the stock left to `stock_left` if that is smaller
    /// than what Redis holds; returns the stock left now stored.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        max_in_flight: u32,
        stock_left: u32,
    ) -> Result<u64> {
        self.0
            .prepare()
            .key(keys.meta())
            .arg(max_in_flight)
            .arg(stock_left)
            .invoke_async(redis)
            .await
            .context("Failed to write the draw limits")
    }
}
