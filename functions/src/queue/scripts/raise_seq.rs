//! `raise_seq.lua`: lift an event's ticket counter above every ticket PostgreSQL has
//! recorded as issued.

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("raise_seq.lua");

/// The loaded script.
#[derive(Debug, Clone)]
pub struct RaiseSeqScript(LuaScript);

impl Default for RaiseSeqScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl RaiseSeqScript {
    /// Raises the counter of `keys`' event to at least `floor`; returns its value.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        floor: u64,
    ) -> Result<u64> {
        self.0
            .prepare()
            .key(keys.seq())
            .arg(floor)
            .invoke_async(redis)
            .await
            .context("Failed to raise the ticket counter")
    }
}
