//! `apply_result.lua` as a typed call: one [`DrawResult`] in, one [`Applied`] out. A
//! batch of results goes to Redis as one pipeline per event, so a batch costs one round
//! trip per event however many users it decides.

use anyhow::{Context, Result};
use dropgate_core::DrawResult;
use redis::Value;
use redis::aio::ConnectionLike;

use super::LuaScript;
use crate::queue::{EventKeys, Notice};

/// The script text, without the prelude.
pub const BODY: &str = include_str!("apply_result.lua");

/// What the script did with one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The record now holds the outcome; counters were bumped and streams told.
    New {
        /// The record before, if there was one (normally the admitted record).
        previous: Option<String>,
        /// This result brought the event's stock to 0.
        stock_emptied: bool,
    },
    /// The record already held this outcome: a redelivery, nothing changed.
    Duplicate {
        /// This result brought the event's stock to 0 (the earlier delivery's write of
        /// the stock may have come from another result).
        stock_emptied: bool,
    },
    /// The record holds another final state, which stands.
    Conflict {
        /// The record that was kept.
        previous: String,
        /// This result brought the event's stock to 0.
        stock_emptied: bool,
    },
}

/// The loaded script.
#[derive(Debug, Clone)]
pub struct ApplyResultScript(LuaScript);

impl Default for ApplyResultScript {
    fn default() -> Self {
        Self(LuaScript::new(BODY))
    }
}

impl ApplyResultScript {
    fn invocation(&self, result: &DrawResult, correction: bool) -> redis::Cmd {
        let keys = EventKeys::new(&result.event_id);
        let member = result.user.member();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.0.hash())
            .arg(4)
            .arg(keys.users())
            .arg(keys.stats())
            .arg(keys.meta())
            .arg(keys.inflight())
            .arg(&member)
            .arg(result.outcome.user_state().code().to_string())
            .arg(result.ticket)
            .arg(result.decided_at_ms / 1000)
            .arg(result.decision_order)
            .arg(result.decided_at_ms)
            .arg(result.outcome.as_str())
            .arg(result.stock_left)
            .arg(keys.channel())
            .arg(Notice::Result(member).encode())
            .arg(if correction { "1" } else { "0" });
        cmd
    }

    /// Applies `results` in order, in one pipeline. Either every result was applied
    /// (or found applied) and the answers come back in order, or the call failed and
    /// the whole batch may be retried: each script call is idempotent.
    pub async fn apply_all(
        &self,
        redis: &mut impl ConnectionLike,
        results: &[DrawResult],
    ) -> Result<Vec<Applied>> {
        self.run_all(redis, results, false).await
    }

    /// Tells users the answers just read back from PostgreSQL ([`UserState::correct_to`]):
    /// unlike [`ApplyResultScript::apply_all`], an answer replaces a different final
    /// state. For the admitter, which reads PostgreSQL's answers under the event's
    /// lock; results off the bus keep the rule that a final answer stands, and any
    /// disagreement they meet is the admitter's to settle.
    ///
    /// [`UserState::correct_to`]: dropgate_core::UserState::correct_to
    pub async fn correct_all(
        &self,
        redis: &mut impl ConnectionLike,
        results: &[DrawResult],
    ) -> Result<Vec<Applied>> {
        self.run_all(redis, results, true).await
    }

    async fn run_all(
        &self,
        redis: &mut impl ConnectionLike,
        results: &[DrawResult],
        correction: bool,
    ) -> Result<Vec<Applied>> {
        // One pipeline per event, in the order of the batch: an event's keys share one
        // slot, and a cluster takes a pipeline to one slot only.
        let mut events: Vec<&dropgate_core::EventId> = Vec::new();
        for result in results {
            if !events.contains(&&result.event_id) {
                events.push(&result.event_id);
            }
        }
        let mut applied: Vec<Option<Applied>> = vec![None; results.len()];
        for event in events {
            let positions: Vec<usize> = (0..results.len())
                .filter(|&at| &results[at].event_id == event)
                .collect();
            let mut pipe = redis::pipe();
            // Loading first, on the same connection (and the same primary), means a
            // Redis that restarted (and forgot its scripts) never answers NOSCRIPT to
            // the calls behind it.
            pipe.cmd("SCRIPT").arg("LOAD").arg(self.0.source()).ignore();
            for &at in &positions {
                pipe.add_command(self.invocation(&results[at], correction));
            }
            let replies: Vec<Value> = pipe
                .query_async(redis)
                .await
                .context("Failed to apply results in Redis")?;
            anyhow::ensure!(
                replies.len() == positions.len(),
                "Redis answered {} of {} results",
                replies.len(),
                positions.len()
            );
            for (at, reply) in positions.into_iter().zip(replies) {
                applied[at] = Some(parse(reply)?);
            }
        }
        Ok(applied.into_iter().flatten().collect())
    }
}

fn parse(reply: Value) -> Result<Applied> {
    let (outcome, previous, emptied): (String, String, i64) =
        redis::from_redis_value(&reply).context("unexpected apply_result reply")?;
    let stock_emptied = emptied == 1;
    Ok(match outcome.as_str() {
        "applied" => Applied::New {
            previous: Some(previous).filter(|text| !text.is_empty()),
            stock_emptied,
        },
        "duplicate" => Applied::Duplicate { stock_emptied },
        "conflict" => Applied::Conflict {
            previous,
            stock_emptied,
        },
        other => anyhow::bail!("unexpected apply_result outcome {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_strangers_are_errors() {
        let reply = |outcome: &str, previous: &str, emptied: i64| {
            Value::Array(vec![
                Value::BulkString(outcome.as_bytes().to_vec()),
                Value::BulkString(previous.as_bytes().to_vec()),
                Value::Int(emptied),
            ])
        };
        assert_eq!(
            parse(reply("applied", "", 1)).expect("parses"),
            Applied::New {
                previous: None,
                stock_emptied: true
            }
        );
        assert_eq!(
            parse(reply("conflict", "W|1|2|3|4", 0)).expect("parses"),
            Applied::Conflict {
                previous: "W|1|2|3|4".into(),
                stock_emptied: false
            }
        );
        assert!(parse(reply("maybe", "", 0)).is_err());
        assert!(parse(Value::Nil).is_err());
    }
}
