//! `retick.lua`: new tickets for the users still waiting (the pre-queue's shuffle).

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("retick.lua");

/// The loaded script.
#[derive(Debug, Clone)]
pub struct RetickScript(LuaScript);

impl Default for RetickScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl RetickScript {
    /// Gives each listed member its new ticket if still waiting; returns how many
    /// moved. One call per slice: callers keep slices small so Redis never blocks long.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        assignments: &[(String, u64)],
    ) -> Result<u64> {
        let mut call = self.0.prepare();
        call.key(keys.queue()).key(keys.users());
        for (member, ticket) in assignments {
            call.arg(member).arg(*ticket);
        }
        call.invoke_async(redis)
            .await
            .context("The retick script failed")
    }
}
