//! `enter.lua`: join an event's line (or find the place already held).

use anyhow::Result;
use dropgate_core::{EventState, UserKey, UserRecord};
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::{EventKeys, Lookup, Standing};

/// The script text, without the prelude.
pub const BODY: &str = include_str!("enter.lua");

/// The loaded script.
#[derive(Debug, Clone)]
pub struct EnterScript(LuaScript);

impl Default for EnterScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl EnterScript {
    /// The text Redis runs, prelude included (the benchmark measures it alone).
    pub fn source(&self) -> &str {
        self.0.source()
    }

    /// Enters `user` into `keys`' event at `now_s`, or returns their existing entry.
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
            .key(keys.seq())
            .key(keys.line())
            .key(keys.users())
            .key(keys.serving())
            .arg(user.member())
            .arg(now_s)
            .arg(user.platform_id.as_str())
            .invoke_async(redis)
            .await?;
        lookup(reply)
    }
}

/// The reply shared by the enter and status scripts: `{outcome, record, serving,
/// rate, event state, abandon timeout, stock left}`.
pub(super) fn lookup(reply: Vec<String>) -> Result<Lookup> {
    let [outcome, record, serving, rate, state, abandon, stock] = <[String; 7]>::try_from(reply)
        .map_err(|reply| anyhow::anyhow!("unexpected script reply {reply:?}"))?;
    let event_state = || -> Result<EventState> {
        state
            .parse()
            .map_err(|error| anyhow::anyhow!("the event's state in Redis: {error}"))
    };
    let standing = |created| -> Result<Lookup> {
        Ok(Lookup::Found(Standing {
            created,
            record: UserRecord::decode(&record)?,
            serving: serving.parse().unwrap_or(0),
            rate_per_s: rate.parse().unwrap_or(1),
            abandon_timeout_ms: abandon
                .parse()
                .unwrap_or(dropgate_core::EventConfig::DEFAULT_ABANDON_TIMEOUT_MS),
            event_state: event_state()?,
            stock_gone: stock == "0",
        }))
    };
    match outcome.as_str() {
        "unknown_event" => Ok(Lookup::UnknownEvent),
        "platform_not_allowed" => Ok(Lookup::PlatformNotAllowed),
        "not_entered" => Ok(Lookup::NotEntered),
        "not_accepting" => match event_state()? {
            EventState::SoldOut => Ok(Lookup::SoldOut),
            EventState::Closing | EventState::Closed => Ok(Lookup::Closed),
            other => anyhow::bail!("enter refused by a {other} event, which accepts entries"),
        },
        "new" => standing(true),
        "existing" | "found" => standing(false),
        other => anyhow::bail!("unexpected script outcome {other:?}"),
    }
}
