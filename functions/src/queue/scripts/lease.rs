//! `lease.lua` and `release.lua`: one admitter per event, fenced.

use anyhow::{Context, Result};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::EventKeys;

/// The lease script's text, without the prelude.
pub const BODY: &str = include_str!("lease.lua");
/// The release script's text, without the prelude.
pub const RELEASE_BODY: &str = include_str!("release.lua");

/// Who holds an event's lease after a take-or-renew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This instance, with this fencing token.
    Held(u64),
    /// Another instance.
    Elsewhere,
}

impl Lease {
    /// The value the other scripts check: `<instance>|<token>`.
    pub fn value(instance: &str, token: u64) -> String {
        format!("{instance}|{token}")
    }
}

/// The loaded lease and release scripts.
#[derive(Debug, Clone)]
pub struct LeaseScript {
    take: LuaScript,
    release: LuaScript,
}

impl Default for LeaseScript {
    fn default() -> Self {
        Self {
            take: LuaScript::new(BODY),
            release: LuaScript::new(RELEASE_BODY),
        }
    }
}

impl LeaseScript {
    /// Takes or renews the lease of `keys`' event for `lease_ms`.
    pub async fn take(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        instance: &str,
        lease_ms: u64,
    ) -> Result<Lease> {
        let token: u64 = self
            .take
            .prepare()
            .key(keys.leader())
            .key(keys.fence())
            .arg(instance)
            .arg(lease_ms)
            .invoke_async(redis)
            .await
            .context("Failed to take the lease")?;
        Ok(if token == 0 {
            Lease::Elsewhere
        } else {
            Lease::Held(token)
        })
    }

    /// Gives the lease up if `lease_value` still holds it; true when it did.
    pub async fn release(
        &self,
        redis: &mut impl ConnectionLike,
        keys: &EventKeys,
        lease_value: &str,
    ) -> Result<bool> {
        let released: i64 = self
            .release
            .prepare()
            .key(keys.leader())
            .arg(lease_value)
            .invoke_async(redis)
            .await
            .context("Failed to release the lease")?;
        Ok(released == 1)
    }
}
