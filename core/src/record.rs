//! The compact per-user record kept in Redis: one field of the event's users hash per
//! user, value `<state>|<ticket>|<last seen, s>[|<decision order>|<decided at, ms>]`.
//!
//! A Redis key per user costs about 100 bytes of overhead before any data; one hash
//! field with a ~20-byte value and the user's line entry come to 109 bytes per
//! waiting user at a million (`make bench DROP_USERS=1000000`), within the 150-byte
//! budget. The Lua scripts read and write the same format with the state
//! codes of [`UserState::code`]; this module is its single definition, and its tests
//! pin it.

use serde::Serialize;

use crate::state::UserState;

/// One user's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    /// Where the user stands.
    pub state: UserState,
    /// Place in the event's ticket order.
    pub ticket: u64,
    /// Last poll or stream refresh (Unix seconds); the admitter skips waiting users not
    /// seen for the event's abandon timeout.
    pub last_seen_s: u64,
    /// Set once decided: the outcome's place in the event's decision order and when.
    pub decided: Option<Decided>,
}

/// When and in which order a user's outcome was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decided {
    /// Place in the event's decision order.
    pub decision_order: u64,
    /// Commit time of the decision (Unix ms).
    pub decided_at_ms: u64,
}

/// A record that is not in the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed user record {0:?}")]
pub struct MalformedRecord(pub String);

impl UserRecord {
    /// A new waiting user.
    pub fn waiting(ticket: u64, now_s: u64) -> Self {
        Self {
            state: UserState::Waiting,
            ticket,
            last_seen_s: now_s,
            decided: None,
        }
    }

    /// Whether this user still holds the place in line taken with `ticket`: they
    /// wait, and with that very ticket. A line entry for any other ticket is stale:
    /// the user left the line another way (drawn, answered, given a new ticket).
    pub fn waits_with(&self, ticket: u64) -> bool {
        self.state == UserState::Waiting && self.ticket == ticket
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        let mut text = format!("{}|{}|{}", self.state.code(), self.ticket, self.last_seen_s);
        if let Some(decided) = self.decided {
            text.push_str(&format!(
                "|{}|{}",
                decided.decision_order, decided.decided_at_ms
            ));
        }
        text
    }

    /// Parses the stored form.
    pub fn decode(text: &str) -> Result<Self, MalformedRecord> {
        let bad = || MalformedRecord(text.to_owned());
        let mut parts = text.split('|');
        let state = parts
            .next()
            .and_then(UserState::from_code)
            .ok_or_else(bad)?;
        let mut number = || -> Result<u64, MalformedRecord> {
            parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)
        };
        let ticket = number()?;
        let last_seen_s = number()?;
        let decided = match (number(), number()) {
            (Ok(decision_order), Ok(decided_at_ms)) => Some(Decided {
                decision_order,
                decided_at_ms,
            }),
            _ => None,
        };
        Ok(Self {
            state,
            ticket,
            last_seen_s,
            decided,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_a_waiting_user_with_that_ticket_holds_the_place() {
        let waiting = UserRecord::waiting(7, 0);
        assert!(waiting.waits_with(7));
        assert!(
            !waiting.waits_with(8),
            "re-ticketed: the old entry is stale"
        );
        for state in UserState::ALL {
            let record = UserRecord { state, ..waiting };
            assert_eq!(record.waits_with(7), state == UserState::Waiting, "{state}");
        }
    }

    #[test]
    fn the_format_is_pinned() {
        assert_eq!(
            UserRecord::waiting(42, 1_700_000_000).encode(),
            "w|42|1700000000"
        );
        let won = UserRecord {
            state: UserState::Won,
            ticket: 42,
            last_seen_s: 1_700_000_001,
            decided: Some(Decided {
                decision_order: 7,
                decided_at_ms: 1_700_000_001_234,
            }),
        };
        assert_eq!(won.encode(), "W|42|1700000001|7|1700000001234");
        assert!(UserRecord::decode("q|1|2").is_err());
        assert!(UserRecord::decode("w|x|2").is_err());
        assert!(UserRecord::decode("").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(
            state in proptest::sample::select(UserState::ALL.to_vec()),
            ticket in any::<u64>(),
            last_seen_s in any::<u64>(),
            decided in proptest::option::of((any::<u64>(), any::<u64>())),
        ) {
            let record = UserRecord {
                state, ticket, last_seen_s,
                decided: decided.map(|(decision_order, decided_at_ms)| Decided { decision_order, decided_at_ms }),
            };
            prop_assert_eq!(UserRecord::decode(&record.encode()), Ok(record));
        }

        #[test]
        fn decoding_garbage_never_panics(text in ".{0,40}") {
            let _ = UserRecord::decode(&text);
        }
    }
}
