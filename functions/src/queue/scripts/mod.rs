//! The queue's Lua scripts, each behind a typed wrapper (its keys, its arguments and a
//! reply enum) in the module of the same name.
//!
//! No script spells a state itself. Every script is loaded behind a prelude generated
//! from dropgate-core: the record's state codes ([`UserState::code`]) and the event
//! states as Lua constants, and, where a script uses them, core's transition tables
//! ([`UserState::step`] as `STEP`, [`UserState::record_outcome`] as `RECORD_OUTCOME`,
//! [`UserState::correct_to`] as `CORRECT_TO`)
//! and event predicates ([`EventState::accepts_entries`] as `ACCEPTS_ENTRIES`,
//! [`EventState::admits`] as `ADMITS`, [`EventState::may_sell_out`] as
//! `MAY_SELL_OUT`). A script moves a user only when the table says
//! `MOVED`, so the rule lives in core and the scripts only apply it; the tests in
//! `tests/tests/scripts.rs` run each script against real Redis for every pair of
//! states and compare with core.

pub mod admit;
pub mod apply_result;
pub mod correct_state;
pub mod draw_limits;
pub mod enter;
pub mod finished;
pub mod join_legacy_queue;
pub mod lease;
pub mod mark_sold_out;
pub mod raise_seq;
pub mod retick;
pub mod status;
pub mod sweep;

use std::fmt::Write as _;

use dropgate_core::{EventState, IllegalTransition, Step, UserState};
use redis::Script;

/// A script with core's prelude in front of it.
#[derive(Debug, Clone)]
pub struct LuaScript {
    script: Script,
    source: String,
}

impl LuaScript {
    /// Prepends the prelude `body` needs.
    pub fn new(body: &str) -> Self {
        let source = format!("{}{body}", prelude(body));
        Self {
            script: Script::new(&source),
            source,
        }
    }

    /// The whole text Redis runs (for `SCRIPT LOAD` and the benchmark).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The SHA-1 Redis knows the script by.
    pub fn hash(&self) -> &str {
        self.script.get_hash()
    }

    /// A call to fill with keys and arguments.
    pub fn prepare(&self) -> redis::ScriptInvocation<'_> {
        self.script.prepare_invoke()
    }
}

/// The Lua name of a user state's code constant (`WAITING`, `SOLD_OUT`, ...).
pub fn user_constant(state: UserState) -> String {
    state.as_str().to_uppercase()
}

/// The Lua name of an event state's constant (`EVENT_OPEN`, ...).
pub fn event_constant(state: EventState) -> String {
    format!("EVENT_{}", state.as_str().to_uppercase())
}

/// The prelude for `body`. The constants cost nothing at run time; a table is built on
/// every call of the script, so only the tables the body names are included (the enter
/// script, the hottest, needs one). Measured on the enter script with redis-benchmark
/// (32 connections, 200,000 new users, three runs each): 63,444 EVALSHA/s with the
/// prelude against 63,894/s for the hand-spelled script, within run-to-run noise.
fn prelude(body: &str) -> String {
    let mut text = String::from(
        "-- Generated from dropgate-core's state machines (functions/src/queue/scripts/mod.rs).\n",
    );
    let _ = writeln!(text, "local MOVED, REPEATED = 'moved', 'repeated'");
    for state in UserState::ALL {
        let _ = writeln!(text, "local {} = '{}'", user_constant(state), state.code());
    }
    for state in EventState::ALL {
        let _ = writeln!(
            text,
            "local {} = '{}'",
            event_constant(state),
            state.as_str()
        );
    }
    let tables = [
        ("STEP", transition_table(UserState::step)),
        (
            "RECORD_OUTCOME",
            transition_table(UserState::record_outcome),
        ),
        ("CORRECT_TO", transition_table(UserState::correct_to)),
        ("ACCEPTS_ENTRIES", event_set(EventState::accepts_entries)),
        ("ADMITS", event_set(EventState::admits)),
        ("MAY_SELL_OUT", event_set(EventState::may_sell_out)),
    ];
    for (name, table) in tables {
        if mentions(body, name) {
            let _ = writeln!(text, "local {name} = {table}");
        }
    }
    if mentions(body, "read_line_entry") {
        text.push_str(READ_LINE_ENTRY);
    }
    text
}

/// Reads one entry of an event's line (`<ticket>|<member>`, keys.rs' `LineEntry`)
/// and the member's record. The state code and last-seen time come back only while
/// the record still holds this ticket; otherwise the entry is stale (the user left
/// the line another way) and `code` is nil. The ticket half of core's
/// `UserRecord::waits_with`; the state is left to the caller's STEP table. An entry that is not in the format gives
/// nil ticket.
const READ_LINE_ENTRY: &str = r"local function read_line_entry(users, entry)
  local ticket, member = string.match(entry, '^(%d+)|(.+)$')
  if not ticket then
    return nil
  end
  local record = redis.call('HGET', users, member)
  local code, held, seen
  if record then
    code, held, seen = string.match(record, '^(%a)|(%d+)|(%d+)')
  end
  if held ~= ticket then
    code, seen = nil, nil
  end
  return tonumber(ticket), member, code, seen
end
";

/// Whether `body` uses the identifier `name` (not just a longer name containing it).
fn mentions(body: &str, name: &str) -> bool {
    body.match_indices(name).any(|(at, _)| {
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let before = body[..at].chars().next_back();
        let after = body[at + name.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// `{['wa'] = MOVED, ['WW'] = REPEATED, ...}`: keyed by the two codes, absent when
/// the move is illegal.
fn transition_table(rule: fn(UserState, UserState) -> Result<Step, IllegalTransition>) -> String {
    let mut entries = Vec::new();
    for from in UserState::ALL {
        for to in UserState::ALL {
            let value = match rule(from, to) {
                Ok(Step::Moved(_)) => "MOVED",
                Ok(Step::Repeated(_)) => "REPEATED",
                Err(_) => continue,
            };
            entries.push(format!("['{}{}'] = {value}", from.code(), to.code()));
        }
    }
    format!("{{{}}}", entries.join(", "))
}

/// `{open = true, ...}`: the event states for which `holds` is true.
fn event_set(holds: fn(EventState) -> bool) -> String {
    let entries: Vec<String> = EventState::ALL
        .into_iter()
        .filter(|state| holds(*state))
        .map(|state| format!("['{}'] = true", state.as_str()))
        .collect();
    format!("{{{}}}", entries.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_carries_core_codes_and_only_the_tables_a_script_names() {
        let text = prelude("if STEP[code .. ADMITTED] == MOVED then end");
        assert!(text.contains("local WAITING = 'w'"), "{text}");
        assert!(text.contains("local EVENT_SOLD_OUT = 'sold_out'"), "{text}");
        assert!(text.contains("['wa'] = MOVED"), "{text}");
        assert!(text.contains("['WW'] = REPEATED"), "{text}");
        assert!(!text.contains("['aw']"), "admitted never goes back: {text}");
        assert!(!text.contains("local RECORD_OUTCOME"), "{text}");
        assert!(!text.contains("local ADMITS"), "{text}");
        let text = prelude("if not ACCEPTS_ENTRIES[state] then end");
        assert!(
            text.contains(
                "local ACCEPTS_ENTRIES = {['scheduled'] = true, ['open'] = true, ['paused'] = true}"
            ),
            "{text}"
        );
        assert!(!text.contains("local STEP"), "{text}");
    }

    #[test]
    fn names_are_matched_whole() {
        assert!(mentions("x = STEP[a]", "STEP"));
        assert!(!mentions("x = STEPS[a]", "STEP"));
        assert!(!mentions("x = MY_STEP", "STEP"));
    }

    #[test]
    fn no_script_spells_a_state_code_or_event_state() {
        let bodies = [
            admit::BODY,
            apply_result::BODY,
            correct_state::BODY,
            draw_limits::BODY,
            enter::BODY,
            finished::BODY,
            join_legacy_queue::BODY,
            lease::BODY,
            lease::RELEASE_BODY,
            mark_sold_out::BODY,
            raise_seq::BODY,
            retick::BODY,
            retick::INSTALL_BODY,
            status::BODY,
            sweep::BODY,
        ];
        for body in bodies {
            for state in UserState::ALL {
                for quote in ['\'', '"'] {
                    let literal = format!("{quote}{}{quote}", state.code());
                    assert!(!body.contains(&literal), "{literal} spelled in:\n{body}");
                    let prefix = format!("{quote}{}|", state.code());
                    assert!(!body.contains(&prefix), "{prefix} spelled in:\n{body}");
                }
            }
            for state in EventState::ALL {
                for quote in ['\'', '"'] {
                    let literal = format!("{quote}{}{quote}", state.as_str());
                    // `'sold_out'` is also a stats counter and a notice name; those
                    // are passed in as arguments, so no script needs the literal.
                    assert!(!body.contains(&literal), "{literal} spelled in:\n{body}");
                }
            }
        }
    }
}
