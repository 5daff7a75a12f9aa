//! A user's life in one drop, and an event's life, as explicit state machines.
//!
//! Every writer obeys these tables: the Redis scripts that move users are generated
//! with [`UserState::step`]'s and [`UserState::record_outcome`]'s tables and the
//! record's state codes (see `queue/scripts` in dropgate-functions, whose tests run
//! every script against every pair of states), and the admitter and the database ask
//! [`EventState::step`]. An illegal move (a lost user "winning" on a late redelivery,
//! an expired user being admitted) is refused where it happens, never a silent
//! overwrite.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a user stands in one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// In the queue, holding a ticket.
    Waiting,
    /// Taken from the head of the queue and sent to the draw; no outcome yet.
    Admitted,
    /// Drew a winning value while stock was left: holds one unit.
    Won,
    /// Drew a losing value.
    Lost,
    /// Stock ran out before this user could win (in the draw, or still waiting).
    SoldOut,
    /// Left the queue: not seen for longer than the event's abandon timeout.
    Expired,
    /// The drop ended before this user's turn: never drawn.
    Closed,
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} user cannot become {to}")]
pub struct IllegalTransition {
    /// The state the user is in.
    pub from: UserState,
    /// The state that was asked for.
    pub to: UserState,
}

/// What a legal [`UserState::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The user moved to a new state: write it.
    Moved(UserState),
    /// The user already was in the requested final state (a redelivered result):
    /// nothing to write, nothing to announce twice.
    Repeated(UserState),
}

impl UserState {
    /// What a user in this state is told while the event is in `event` (with its
    /// stock gone or not): once the stock is gone nobody still waiting can win, so
    /// they hear `sold_out` at once instead of waiting for an admission that cannot
    /// help them; once the event is closing nobody still waiting will be admitted, so
    /// they hear `closed`, unless the stock was gone first: then `sold_out` stays
    /// their answer, before and after the close.
    pub fn as_told(self, event: EventState, stock_gone: bool) -> UserState {
        match (self, event) {
            (UserState::Waiting, EventState::SoldOut) => UserState::SoldOut,
            (UserState::Waiting, EventState::Closing | EventState::Closed) if stock_gone => {
                UserState::SoldOut
            }
            (UserState::Waiting, EventState::Closing | EventState::Closed) => UserState::Closed,
            (state, _) => state,
        }
    }

    /// The final state a user still in line is given when the event ends their wait
    /// without a draw: what [`UserState::as_told`] already tells them.
    pub fn without_a_draw(event: EventState, stock_gone: bool) -> Option<UserState> {
        Some(UserState::Waiting.as_told(event, stock_gone)).filter(|state| state.is_final())
    }

    /// All states, for exhaustive tests and metrics labels.
    pub const ALL: [UserState; 7] = [
        UserState::Waiting,
        UserState::Admitted,
        UserState::Won,
        UserState::Lost,
        UserState::SoldOut,
        UserState::Expired,
        UserState::Closed,
    ];

    /// A final state never changes again.
    pub fn is_final(self) -> bool {
        !matches!(self, UserState::Waiting | UserState::Admitted)
    }

    /// The one rule for moving a user: waiting → admitted → won | lost | sold_out,
    /// and waiting → sold_out (stock gone) | expired (abandoned) | closed (the event
    /// closed first). Asking a final state for itself again is [`Step::Repeated`]
    /// (results are delivered at least once); anything else is an
    /// [`IllegalTransition`].
    pub fn step(self, to: UserState) -> Result<Step, IllegalTransition> {
        use UserState::*;
        match (self, to) {
            (Waiting, Admitted | SoldOut | Expired | Closed) => Ok(Step::Moved(to)),
            (Admitted, Won | Lost | SoldOut) => Ok(Step::Moved(to)),
            (from, to) if from == to && from.is_final() => Ok(Step::Repeated(to)),
            (from, to) => Err(IllegalTransition { from, to }),
        }
    }

    /// How a draw result recorded in PostgreSQL lands on the user's Redis record. The
    /// draw is the authority: a record that is not final yet takes the outcome even
    /// when [`UserState::step`] would not lead there (a waiting record means Redis lost
    /// the admission, e.g. in a failover, after the draw had it). The same outcome
    /// again is [`Step::Repeated`]; another final state stands, and the result is an
    /// [`IllegalTransition`] (a conflict to report). Only final states PostgreSQL
    /// records may be: won, lost, sold out, closed (also for an admission that reached
    /// the draw after the event's seed was revealed: it is never drawn) and expired.
    pub fn record_outcome(self, outcome: UserState) -> Result<Step, IllegalTransition> {
        use UserState::*;
        match (self, outcome) {
            (Waiting | Admitted, Won | Lost | SoldOut | Closed | Expired) => {
                Ok(Step::Moved(outcome))
            }
            (from, to) if from == to && to.is_final() => Ok(Step::Repeated(to)),
            (from, to) => Err(IllegalTransition { from, to }),
        }
    }

    /// How an answer read back from PostgreSQL corrects the Redis record of a user
    /// whose Redis final state was written without being recorded first (an expiry
    /// the admit script wrote, which PostgreSQL then refused because the user had been
    /// drawn meanwhile). PostgreSQL is the authority, so any other state moves to the
    /// recorded one; the same one again is [`Step::Repeated`]. Only the admitter
    /// corrects, with answers it has just read back from PostgreSQL; results off the
    /// bus follow [`UserState::record_outcome`].
    pub fn correct_to(self, recorded: UserState) -> Result<Step, IllegalTransition> {
        match (self, recorded) {
            (_, to) if !to.is_final() => Err(IllegalTransition {
                from: self,
                to: recorded,
            }),
            (from, to) if from == to => Ok(Step::Repeated(to)),
            (_, to) => Ok(Step::Moved(to)),
        }
    }

    /// The one-letter code of the compact Redis record ([`crate::UserRecord`]); the
    /// Lua scripts get these from here, never spelled by hand.
    pub fn code(self) -> char {
        match self {
            UserState::Waiting => 'w',
            UserState::Admitted => 'a',
            UserState::Won => 'W',
            UserState::Lost => 'L',
            UserState::SoldOut => 'S',
            UserState::Expired => 'X',
            UserState::Closed => 'C',
        }
    }

    /// The state a record code stands for.
    pub fn from_code(code: &str) -> Option<UserState> {
        UserState::ALL
            .into_iter()
            .find(|state| code.len() == 1 && code.starts_with(state.code()))
    }

    /// The snake_case name used in Redis, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Waiting => "waiting",
            UserState::Admitted => "admitted",
            UserState::Won => "won",
            UserState::Lost => "lost",
            UserState::SoldOut => "sold_out",
            UserState::Expired => "expired",
            UserState::Closed => "closed",
        }
    }
}

impl fmt::Display for UserState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`UserState::ALL`] (or [`EventState`]'s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for UserState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        UserState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Where an event stands. Operators move it with `dropgate event open|pause|close`;
/// the draw moves it to sold out; the admitter moves it to closing at its `closes_at`
/// and from closing to closed once every admitted user is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Created, seed committed; users may pre-queue but nobody is admitted.
    Scheduled,
    /// Admitting users.
    Open,
    /// Admission stopped by an operator; entering still works, queue keeps its order.
    Paused,
    /// Every unit is won; remaining users are told so.
    SoldOut,
    /// Ending: nobody enters or is admitted any more and everyone still waiting is
    /// told `closed`, while the users already admitted are still drawn. The seed stays
    /// secret until that last draw.
    Closing,
    /// Over; the seed is revealed so anyone can verify the draw, and nothing is
    /// drawn any more.
    Closed,
}

impl EventState {
    /// All states.
    pub const ALL: [EventState; 6] = [
        EventState::Scheduled,
        EventState::Open,
        EventState::Paused,
        EventState::SoldOut,
        EventState::Closing,
        EventState::Closed,
    ];

    /// The legal operator and system moves. Closing may start from any state before
    /// it, and closed is reached only through closing: the seed is revealed only once
    /// the line is told and the admitted users are drawn. Nothing leaves closing or
    /// closed but forward.
    pub fn step(self, to: EventState) -> Result<EventState, IllegalEventTransition> {
        use EventState::*;
        match (self, to) {
            (Scheduled | Paused, Open)
            | (Open, Paused)
            | (Open | Paused, SoldOut)
            | (Scheduled | Open | Paused | SoldOut, Closing)
            | (Closing, Closed) => Ok(to),
            (from, to) => Err(IllegalEventTransition { from, to }),
        }
    }

    /// Whether the admitter moves users from the queue to the draw.
    pub fn admits(self) -> bool {
        self == EventState::Open
    }

    /// Whether the last unit going moves this event to sold out: the states
    /// [`EventState::step`] lets become [`EventState::SoldOut`].
    pub fn may_sell_out(self) -> bool {
        self.step(EventState::SoldOut).is_ok()
    }

    /// Whether an admitted user may still be drawn: until the seed is revealed.
    /// Afterwards anyone could pick identities whose draw value wins, so an admission
    /// that arrives late is recorded `closed` instead.
    pub fn draws(self) -> bool {
        self != EventState::Closed
    }

    /// Whether the seed is public.
    pub fn seed_revealed(self) -> bool {
        self == EventState::Closed
    }

    /// Whether new users may join the queue.
    pub fn accepts_entries(self) -> bool {
        matches!(
            self,
            EventState::Scheduled | EventState::Open | EventState::Paused
        )
    }

    /// The snake_case name used in PostgreSQL, Redis and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Scheduled => "scheduled",
            EventState::Open => "open",
            EventState::Paused => "paused",
            EventState::SoldOut => "sold_out",
            EventState::Closing => "closing",
            EventState::Closed => "closed",
        }
    }
}

impl fmt::Display for EventState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        EventState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Where a closing event stands, to decide whether it may be closed (its seed
/// revealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    /// Users still in line (not told their final state yet).
    pub waiting: u64,
    /// Users sent to the draw whose result has not landed.
    pub in_flight: u64,
    /// How long ago closing began (ms).
    pub for_ms: u64,
}

/// Why a closing event may be closed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseNow {
    /// Everyone has a final state: the seed may be revealed.
    Drained,
    /// Results did not all land within the drain timeout: closed anyway; late
    /// admissions are recorded `closed` (see [`EventState::draws`]).
    TimedOut,
}

impl Closing {
    /// The rule: close once nobody is in line or in flight, or once `drain_ms` has
    /// passed whatever is left; otherwise keep waiting (None).
    pub fn close_now(self, drain_ms: u64) -> Option<CloseNow> {
        if self.waiting == 0 && self.in_flight == 0 {
            Some(CloseNow::Drained)
        } else if self.for_ms >= drain_ms {
            Some(CloseNow::TimedOut)
        } else {
            None
        }
    }
}

/// An event move that is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} event cannot become {to}")]
pub struct IllegalEventTransition {
    /// The event's state.
    pub from: EventState,
    /// The state that was asked for.
    pub to: EventState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use UserState::*;

    #[test]
    fn the_whole_user_transition_table() {
        let legal = [
            (Waiting, Admitted),
            (Waiting, SoldOut),
            (Waiting, Expired),
            (Waiting, Closed),
            (Admitted, Won),
            (Admitted, Lost),
            (Admitted, SoldOut),
        ];
        for from in UserState::ALL {
            for to in UserState::ALL {
                let got = from.step(to);
                if legal.contains(&(from, to)) {
                    assert_eq!(got, Ok(Step::Moved(to)), "{from} -> {to}");
                } else if from == to && from.is_final() {
                    assert_eq!(got, Ok(Step::Repeated(to)), "{from} -> {to}");
                } else {
                    assert_eq!(got, Err(IllegalTransition { from, to }), "{from} -> {to}");
                }
            }
        }
    }

    #[test]
    fn a_recorded_outcome_overrides_only_records_not_yet_final() {
        let outcomes = [Won, Lost, SoldOut, Closed, Expired];
        for from in UserState::ALL {
            for to in UserState::ALL {
                let got = from.record_outcome(to);
                if !outcomes.contains(&to) {
                    assert!(got.is_err(), "{to} is no draw outcome");
                } else if !from.is_final() {
                    assert_eq!(got, Ok(Step::Moved(to)), "{from} -> {to}");
                } else if from == to {
                    assert_eq!(got, Ok(Step::Repeated(to)), "{from} -> {to}");
                } else {
                    assert_eq!(got, Err(IllegalTransition { from, to }), "{from} -> {to}");
                }
                // Wherever the ordinary rule allows the move, the recorded outcome
                // does the same thing.
                if outcomes.contains(&to) && from.step(to).is_ok() {
                    assert_eq!(got, from.step(to), "{from} -> {to}");
                }
            }
        }
    }

    #[test]
    fn a_correction_from_postgresql_always_lands_and_agrees_with_the_recorded_rule() {
        for from in UserState::ALL {
            for to in UserState::ALL {
                let got = from.correct_to(to);
                if !to.is_final() {
                    assert!(got.is_err(), "{to} is not an answer PostgreSQL records");
                    continue;
                }
                let expected = if from == to {
                    Step::Repeated(to)
                } else {
                    Step::Moved(to)
                };
                assert_eq!(got, Ok(expected), "{from} -> {to}");
                // Where an ordinary recorded result lands, a correction does the same.
                if let Ok(step) = from.record_outcome(to) {
                    assert_eq!(got, Ok(step), "{from} -> {to}");
                }
            }
        }
    }

    #[test]
    fn record_codes_are_distinct_and_round_trip() {
        for state in UserState::ALL {
            assert_eq!(UserState::from_code(&state.code().to_string()), Some(state));
        }
        assert_eq!(UserState::from_code("ww"), None);
        assert_eq!(UserState::from_code(""), None);
    }

    #[test]
    fn only_an_open_or_paused_event_may_sell_out() {
        for state in EventState::ALL {
            assert_eq!(
                state.may_sell_out(),
                matches!(state, EventState::Open | EventState::Paused),
                "{state}"
            );
        }
    }

    #[test]
    fn only_an_open_event_admits() {
        for state in EventState::ALL {
            assert_eq!(state.admits(), state == EventState::Open, "{state}");
        }
    }

    #[test]
    fn a_final_state_never_moves_to_another() {
        for from in UserState::ALL.into_iter().filter(|s| s.is_final()) {
            for to in UserState::ALL.into_iter().filter(|to| *to != from) {
                assert!(from.step(to).is_err(), "{from} -> {to} must be illegal");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for state in UserState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).expect("serializes"),
                format!("\"{state}\"")
            );
        }
        for state in EventState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert!("winning".parse::<UserState>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn once_decided_a_user_is_never_decided_again(
            requests in proptest::collection::vec(proptest::sample::select(UserState::ALL.to_vec()), 1..40)
        ) {
            let mut state = Waiting;
            let mut decided: Option<UserState> = None;
            for to in requests {
                if let Ok(Step::Moved(next)) = state.step(to) {
                    proptest::prop_assert!(decided.is_none(), "{state} moved to {next} after being decided");
                    state = next;
                    if next.is_final() {
                        decided = Some(next);
                    }
                }
            }
        }
    }

    #[test]
    fn a_closing_event_closes_once_drained_or_timed_out() {
        let closing = |waiting, in_flight, for_ms| Closing {
            waiting,
            in_flight,
            for_ms,
        };
        assert_eq!(closing(0, 0, 0).close_now(60_000), Some(CloseNow::Drained));
        assert_eq!(closing(0, 1, 59_999).close_now(60_000), None);
        assert_eq!(closing(5, 0, 1_000).close_now(60_000), None);
        assert_eq!(
            closing(5, 2, 60_000).close_now(60_000),
            Some(CloseNow::TimedOut)
        );
        assert_eq!(
            closing(0, 0, 90_000).close_now(60_000),
            Some(CloseNow::Drained)
        );
    }

    #[test]
    fn closed_events_stay_closed() {
        for to in EventState::ALL {
            assert!(EventState::Closed.step(to).is_err());
        }
        for from in EventState::ALL {
            assert_eq!(
                from.step(EventState::Closed).is_ok(),
                from == EventState::Closing,
                "{from} -> closed: the seed is revealed only after closing"
            );
            if !matches!(from, EventState::Closing | EventState::Closed) {
                assert!(EventState::Closing.step(from).is_err(), "closing -> {from}");
            }
        }
        for state in EventState::ALL {
            assert_eq!(state.draws(), !state.seed_revealed(), "{state}");
        }
        assert_eq!(
            EventState::Paused.step(EventState::Open),
            Ok(EventState::Open)
        );
        assert!(EventState::SoldOut.step(EventState::Open).is_err());
        assert!(!EventState::SoldOut.accepts_entries());
    }

    #[test]
    fn only_waiting_users_of_a_sold_out_or_closing_event_are_told_otherwise() {
        for state in UserState::ALL {
            for event in EventState::ALL {
                for stock_gone in [false, true] {
                    let told = state.as_told(event, stock_gone);
                    let ended = matches!(event, EventState::Closing | EventState::Closed);
                    if state == UserState::Waiting && event == EventState::SoldOut {
                        assert_eq!(told, UserState::SoldOut);
                    } else if state == UserState::Waiting && ended {
                        let expected = if stock_gone {
                            UserState::SoldOut
                        } else {
                            UserState::Closed
                        };
                        assert_eq!(told, expected, "closing, stock gone: {stock_gone}");
                    } else {
                        assert_eq!(told, state, "{state:?} in a {event:?} event");
                    }
                }
            }
        }
    }

    /// A waiting user told `sold_out` hears the same after the event closes: no
    /// answer given as final is ever taken back.
    #[test]
    fn a_final_answer_given_while_waiting_survives_the_close() {
        // A sold-out event's stock is gone by definition.
        let moments = [
            (EventState::Open, false),
            (EventState::Open, true),
            (EventState::Paused, false),
            (EventState::Paused, true),
            (EventState::SoldOut, true),
        ];
        for (event, stock_gone) in moments {
            let before = UserState::Waiting.as_told(event, stock_gone);
            for later in [EventState::Closing, EventState::Closed] {
                let after = UserState::Waiting.as_told(later, stock_gone);
                if before.is_final() {
                    assert_eq!(after, before, "{event} then {later}");
                }
                assert_eq!(UserState::without_a_draw(later, stock_gone), Some(after));
            }
        }
        assert_eq!(UserState::without_a_draw(EventState::Open, false), None);
    }
}
