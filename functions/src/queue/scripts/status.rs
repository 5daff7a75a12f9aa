//! `status.lua`: a user's standing, refreshing their last-seen time.

use anyhow::Result;
use dropgate_core::UserKey;
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::{EventKeys, Lookup};

/// The script text, without the prelude.
pub const BODY: &str = include_str!("status.lua");

/// The loaded script.
#[derive(Debug, Clone)]
pub struct StatusScript(LuaScript);

impl Default for StatusScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl StatusScript {
    /// Reads `user`'s standing in `keys`' event; a waiting user's last-seen time
    /// becomes `now_s`.
    pub async fn call(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        user: &UserKey,
        now_s: u64,
    ) -> Result<Lookup> {
        let reply: Vec<String> = self
            .0
            .prepare()
            .key(keys.meta())
            .key(keys.users())
            .key(keys.serving())
            .arg(user.member())
            .arg(now_s)
            .invoke_async(redis)
            .await?;
        super::enter::lookup(reply)
    }
}
