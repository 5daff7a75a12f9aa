//! The `apply_result` script as a typed call: one [`DrawResult`] in, one [`Applied`]
//! out. A batch of results goes to Redis as one pipeline, so a batch costs one round
//! trip however many users it decides.

use anyhow::{Context, Result};
use dropgate_core::{DrawResult, Outcome};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::queue::{EventKeys, Notice};

/// What the script did with one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Applied {
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

/// The loaded `apply_result.lua`.
pub(super) struct ApplyScript {
    script: Script,
    /// The script text, sent with `SCRIPT LOAD` at the head of every batch.
    source: &'static str,
}

/// The record format's state code for an outcome (pinned against
/// [`dropgate_core::UserRecord::encode`] by a test).
fn state_code(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Won => "W",
        Outcome::Lost => "L",
        Outcome::SoldOut => "S",
    }
}

impl ApplyScript {
    pub(super) fn new() -> Self {
        let source = include_str!("../queue/scripts/apply_result.lua");
        Self {
            script: Script::new(source),
            source,
        }
    }

    fn invocation(&self, result: &DrawResult) -> redis::Cmd {
        let keys = EventKeys::new(&result.event_id);
        let member = result.user.member();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(4)
            .arg(keys.users())
            .arg(keys.stats())
            .arg(keys.meta())
            .arg(keys.queue())
            .arg(&member)
            .arg(state_code(result.outcome))
            .arg(result.ticket)
            .arg(result.decided_at_ms / 1000)
            .arg(result.decision_order)
            .arg(result.decided_at_ms)
            .arg(result.outcome.as_str())
            .arg(result.stock_left)
            .arg(keys.channel())
            .arg(Notice::Result(member).encode());
        cmd
    }

    /// Applies `results` in order, in one pipeline. Either every result was applied
    /// (or found applied) and the answers come back in order, or the call failed and
    /// the whole batch may be retried: each script call is idempotent.
    pub(super) async fn apply_all(
        &self,
        redis: &mut ConnectionManager,
        results: &[DrawResult],
    ) -> Result<Vec<Applied>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        // Loading first, on the same connection, means a Redis that restarted (and
        // forgot its scripts) never answers NOSCRIPT to the calls behind it.
        pipe.cmd("SCRIPT").arg("LOAD").arg(self.source).ignore();
        for result in results {
            pipe.add_command(self.invocation(result));
        }
        let replies: Vec<Value> = pipe
            .query_async(redis)
            .await
            .context("Failed to apply results in Redis")?;
        anyhow::ensure!(
            replies.len() == results.len(),
            "Redis answered {} of {} results",
            replies.len(),
            results.len()
        );
        replies.into_iter().map(parse).collect()
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
    use dropgate_core::{Decided, UserRecord};

    /// The state code `record` starts with.
    fn code_of(record: &UserRecord) -> String {
        record.encode().chars().take(1).collect()
    }

    #[test]
    fn state_codes_match_the_record_format() {
        for outcome in [Outcome::Won, Outcome::Lost, Outcome::SoldOut] {
            let record = UserRecord {
                state: outcome.user_state(),
                ticket: 1,
                last_seen_s: 2,
                decided: Some(Decided {
                    decision_order: 3,
                    decided_at_ms: 4,
                }),
            };
            assert_eq!(code_of(&record), state_code(outcome), "{outcome}");
        }
    }

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
