//! `retick.lua`: apply the pre-queue shuffle's plan, a slice at a time.

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The script text, without the prelude.
pub const BODY: &str = include_str!("retick.lua");
/// The text of the script that installs a staged plan.
pub const INSTALL_BODY: &str = include_str!("install_shuffle_plan.lua");

/// The loaded scripts.
#[derive(Debug, Clone)]
pub struct RetickScript {
    apply: LuaScript,
    install: LuaScript,
}

impl Default for RetickScript {
    fn default() -> Self {
        Self {
            apply: LuaScript::new(BODY),
            install: LuaScript::new(INSTALL_BODY),
        }
    }
}

/// What one call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reticked {
    /// Users given their new ticket (the others no longer wait).
    pub moved: u64,
    /// Steps still in the plan.
    pub left: u64,
}

impl RetickScript {
    /// Applies up to `steps` steps of `keys`' event shuffle plan. One call per slice:
    /// callers keep slices small so Redis never blocks long.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        steps: usize,
    ) -> Result<Reticked> {
        let (moved, left): (u64, u64) = self
            .apply
            .prepare()
            .key(keys.line())
            .key(keys.users())
            .key(keys.shuffle_plan())
            .key(keys.shuffled())
            .arg(steps)
            .invoke_async(redis)
            .await
            .context("The shuffle step failed")?;
        Ok(Reticked { moved, left })
    }

    /// Makes the plan staged in `staging` the plan of `keys`' event, unless one is
    /// being applied or the line was shuffled already; true when it did.
    pub async fn install(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        staging: &str,
    ) -> Result<bool> {
        self.install
            .prepare()
            .key(staging)
            .key(keys.shuffle_plan())
            .key(keys.shuffled())
            .invoke_async(redis)
            .await
            .context("Failed to install the shuffle plan")
    }
}
