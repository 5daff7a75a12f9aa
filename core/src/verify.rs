//! Re-running an event's draw from its revealed seed.
//!
//! The goods worker records, for every user, their ticket, the draw value, the outcome
//! and the position in the event's decision order. Because outcomes are a function of
//! (seed, user, stock left when decided), replaying the recorded order from the full
//! stock recomputes every outcome; any edited row, reordered decision, duplicated user
//! or oversold unit shows up as a [`Finding`]. Fairness also needs the order itself to
//! be the line's: nobody may be decided before a user with an earlier ticket, since
//! the stock they draw against depends on who went first.

use serde::Serialize;

use crate::draw::{Beacon, EventSeed, Outcome, SeedCommitment, WinProbability, decide, draw_value};
use crate::identity::{EventId, UserKey};

/// One recorded decision, as exported from the `draws` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedDecision {
    /// The event-wide decision order (1, 2, 3, ...).
    pub order: u64,
    /// The user's place in line: the ticket they were admitted with.
    pub ticket: u64,
    /// Who was decided.
    pub user: UserKey,
    /// The draw value the worker stored.
    pub draw_value: u64,
    /// The outcome the worker stored.
    pub outcome: Outcome,
    /// When it was decided (Unix ms, the worker's clock).
    pub decided_at_ms: u64,
}

/// A user recorded as told a final state without a draw (`final_states`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedWithoutDraw {
    /// Who.
    pub user: UserKey,
    /// Their ticket.
    pub ticket: u64,
    /// What they were told: sold out, closed or expired.
    pub state: crate::UserState,
    /// When (Unix ms, the recording service's clock).
    pub decided_at_ms: u64,
}

/// What the event row says, against which the rules are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Units for sale.
    pub stock_total: u32,
    /// Units the row says are left.
    pub stock_left: u32,
    /// The row's count of decisions.
    pub decisions_made: u64,
    /// When closing began (Unix ms), if it did.
    pub closing_at_ms: Option<u64>,
    /// When the seed was revealed (Unix ms), if it was.
    pub seed_revealed_at_ms: Option<u64>,
}

/// How far apart the services' clocks may be when a rule compares times they wrote
/// (the draw's, the admitter's and PostgreSQL's). Rules that can be checked without a
/// clock (the order of tickets) are checked exactly.
pub const CLOCK_TOLERANCE_MS: u64 = 1_000;

/// Something verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The event names a beacon round whose value was never supplied, yet it drew.
    BeaconMissing {
        /// The round named at creation.
        round: String,
    },
    /// The revealed seed does not hash to the published commitment.
    CommitmentMismatch {
        /// What was published at creation.
        published: String,
        /// SHA-256 of the revealed seed.
        revealed_seed_hashes_to: String,
    },
    /// The stored draw value is not the one the seed gives.
    WrongDrawValue {
        /// Decision order of the row.
        order: u64,
        /// Who.
        user: String,
        /// Stored.
        recorded: u64,
        /// Recomputed.
        expected: u64,
    },
    /// The stored outcome is not the one the rule gives at that point of the order.
    WrongOutcome {
        /// Decision order of the row.
        order: u64,
        /// Who.
        user: String,
        /// Stored.
        recorded: Outcome,
        /// Recomputed.
        expected: Outcome,
    },
    /// A user decided more than once.
    DuplicateUser {
        /// Decision order of the second decision.
        order: u64,
        /// Who.
        user: String,
    },
    /// Decision orders are not strictly increasing.
    OutOfOrder {
        /// The offending order.
        order: u64,
        /// The order before it.
        previous: u64,
    },
    /// A user decided before someone ahead of them in line: the earlier ticket was
    /// decided later, against less stock than its place entitled it to.
    DecidedBeforeAnEarlierTicket {
        /// Decision order of the user who went first.
        order: u64,
        /// Their ticket.
        ticket: u64,
        /// Who.
        user: String,
        /// The earlier ticket decided after them (the latest such).
        earlier_ticket: u64,
        /// Its decision order.
        earlier_order: u64,
    },
    /// Two users hold the same ticket, among the drawn and the users told an answer
    /// without a draw.
    DuplicateTicket {
        /// The ticket.
        ticket: u64,
        /// Decision order of the second holder; 0 when it was told without a draw.
        order: u64,
    },
    /// The decision orders are not exactly 1, 2, ..., n.
    DecisionOrderGap {
        /// The order expected at this place.
        expected: u64,
        /// The order found there.
        found: u64,
    },
    /// The event row counts another number of decisions than there are draws.
    DecisionCountMismatch {
        /// `decisions_made` in the event row.
        recorded: u64,
        /// Draws found.
        draws: u64,
    },
    /// The stock the event row says is left is not the stock minus the winners.
    StockMismatch {
        /// Units for sale.
        stock_total: u32,
        /// Units the row says are left.
        stock_left: u32,
        /// Winners recorded.
        winners: u64,
    },
    /// A draw decided after the seed was public.
    DrawnAfterTheReveal {
        /// Decision order.
        order: u64,
        /// Who.
        user: String,
        /// When it was decided (Unix ms).
        decided_at_ms: u64,
        /// When the seed was revealed (Unix ms).
        revealed_at_ms: u64,
    },
    /// A user both drawn and recorded as told something without a draw.
    DrawnAndUndrawn {
        /// Who.
        user: String,
    },
    /// A user told sold out or closed while waiting although someone behind them in
    /// line was drawn: the line was not served in order.
    SweptAheadOfADraw {
        /// Who was told.
        user: String,
        /// Their ticket.
        ticket: u64,
        /// What they were told.
        state: String,
        /// The highest ticket drawn.
        drawn_ticket: u64,
    },
    /// A user told sold out before the stock ran out, or closed before closing began.
    ToldTooEarly {
        /// Who.
        user: String,
        /// What they were told.
        state: String,
        /// When (Unix ms).
        told_at_ms: u64,
        /// The earliest it could be true (Unix ms), or none: never.
        true_from_ms: Option<u64>,
    },
    /// More recorded winners than units of stock.
    Oversold {
        /// Recorded winners.
        winners: u64,
        /// Stock.
        stock: u32,
    },
}

/// Verification summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Decisions replayed.
    pub decisions: u64,
    /// Winners recorded.
    pub winners: u64,
    /// Stock left after replaying every decision with the rule.
    pub stock_left: u32,
    /// Everything wrong, in decision order (empty when the draw checks out).
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// True when nothing was found wrong.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Replays `decisions` (any order; they are sorted by `order`) against the revealed
/// seed and the published commitment.
pub fn verify(
    seed: &EventSeed,
    beacon: Option<&Beacon>,
    published: &SeedCommitment,
    event: &EventId,
    probability: WinProbability,
    stock: u32,
    decisions: &[RecordedDecision],
) -> VerifyReport {
    let mut findings = Vec::new();
    if seed.commitment() != *published {
        findings.push(Finding::CommitmentMismatch {
            published: published.to_hex(),
            revealed_seed_hashes_to: seed.commitment().to_hex(),
        });
    }
    // Without a named beacon's value no draw value can be recomputed: those checks
    // are skipped, every other one is made.
    let key = seed.event_key(beacon).ok();
    if key.is_none() && !decisions.is_empty() {
        findings.push(Finding::BeaconMissing {
            round: beacon.map(|b| b.round.clone()).unwrap_or_default(),
        });
    }
    let mut sorted: Vec<&RecordedDecision> = decisions.iter().collect();
    sorted.sort_by_key(|decision| decision.order);

    let mut seen = std::collections::HashSet::with_capacity(sorted.len());
    let mut previous: Option<u64> = None;
    let mut stock_left = stock;
    let mut winners = 0u64;
    for recorded in sorted {
        let user = recorded.user.member();
        if let Some(previous) = previous
            && recorded.order == previous
        {
            findings.push(Finding::OutOfOrder {
                order: recorded.order,
                previous,
            });
        }
        previous = Some(recorded.order);
        if !seen.insert(&recorded.user) {
            findings.push(Finding::DuplicateUser {
                order: recorded.order,
                user,
            });
            continue;
        }
        if let Some(key) = &key {
            let expected_value = draw_value(key, event, &recorded.user);
            if expected_value != recorded.draw_value {
                findings.push(Finding::WrongDrawValue {
                    order: recorded.order,
                    user: user.clone(),
                    recorded: recorded.draw_value,
                    expected: expected_value,
                });
            }
            let expected = decide(expected_value, probability, stock_left);
            stock_left = expected.stock_left;
            if expected.outcome != recorded.outcome {
                findings.push(Finding::WrongOutcome {
                    order: recorded.order,
                    user,
                    recorded: recorded.outcome,
                    expected: expected.outcome,
                });
            }
        }
        if recorded.outcome == Outcome::Won {
            winners += 1;
        }
    }
    if winners > u64::from(stock) {
        findings.push(Finding::Oversold { winners, stock });
    }
    findings.extend(ticket_order_findings(decisions));
    VerifyReport {
        decisions: decisions.len() as u64,
        winners,
        stock_left,
        findings,
    }
}

/// Checks the rules a fair drop keeps beyond the draw's arithmetic, against the event
/// row and the users told an answer without a draw:
/// - decision orders are exactly 1..=n, and n is the row's `decisions_made`;
/// - the row's stock left is the stock minus the winners;
/// - nothing was drawn after the seed was revealed;
/// - no user is both drawn and recorded undrawn, and no ticket is held twice;
/// - everyone told sold out or closed while waiting stood behind every user drawn
///   (checked by ticket, exactly), and was told after the stock ran out or closing
///   began (by time, within [`CLOCK_TOLERANCE_MS`]). Admissions that reached the draw
///   after the reveal are recorded closed without a draw; they are late, not swept,
///   and only need to be after the reveal.
pub fn audit(
    event: &RecordedEvent,
    decisions: &[RecordedDecision],
    without_a_draw: &[RecordedWithoutDraw],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut orders: Vec<u64> = decisions.iter().map(|d| d.order).collect();
    orders.sort_unstable();
    if let Some((expected, found)) = orders
        .iter()
        .enumerate()
        .map(|(i, order)| (i as u64 + 1, *order))
        .find(|(expected, found)| expected != found)
    {
        findings.push(Finding::DecisionOrderGap { expected, found });
    }
    if event.decisions_made != decisions.len() as u64 {
        findings.push(Finding::DecisionCountMismatch {
            recorded: event.decisions_made,
            draws: decisions.len() as u64,
        });
    }
    let winners = decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Won)
        .count() as u64;
    if u64::from(event.stock_total.saturating_sub(event.stock_left)) != winners
        || event.stock_left > event.stock_total
    {
        findings.push(Finding::StockMismatch {
            stock_total: event.stock_total,
            stock_left: event.stock_left,
            winners,
        });
    }
    if let Some(revealed_at_ms) = event.seed_revealed_at_ms {
        for decision in decisions {
            if decision.decided_at_ms > revealed_at_ms + CLOCK_TOLERANCE_MS {
                findings.push(Finding::DrawnAfterTheReveal {
                    order: decision.order,
                    user: decision.user.member(),
                    decided_at_ms: decision.decided_at_ms,
                    revealed_at_ms,
                });
            }
        }
    }
    let drawn: std::collections::HashSet<&UserKey> = decisions.iter().map(|d| &d.user).collect();
    let mut tickets: std::collections::HashSet<u64> = decisions.iter().map(|d| d.ticket).collect();
    for told in without_a_draw {
        if drawn.contains(&told.user) {
            findings.push(Finding::DrawnAndUndrawn {
                user: told.user.member(),
            });
        }
        if !tickets.insert(told.ticket) {
            findings.push(Finding::DuplicateTicket {
                ticket: told.ticket,
                order: 0,
            });
        }
    }
    // When the stock ran out: the draw that took the last unit.
    let sold_out_at_ms = (event.stock_total > 0 && winners >= u64::from(event.stock_total))
        .then(|| {
            let mut won: Vec<&RecordedDecision> = decisions
                .iter()
                .filter(|d| d.outcome == Outcome::Won)
                .collect();
            won.sort_by_key(|d| d.order);
            won.get(event.stock_total as usize - 1)
                .map(|d| d.decided_at_ms)
        })
        .flatten()
        .or_else(|| (event.stock_total == 0).then_some(0));
    let highest_drawn = decisions.iter().map(|d| d.ticket).max();
    for told in without_a_draw {
        let late_admission = told.state == crate::UserState::Closed
            && event
                .seed_revealed_at_ms
                .is_some_and(|revealed| told.decided_at_ms >= revealed);
        let true_from_ms = match told.state {
            crate::UserState::SoldOut => sold_out_at_ms,
            crate::UserState::Closed => event.closing_at_ms,
            _ => continue,
        };
        if late_admission {
            continue;
        }
        if let Some(drawn_ticket) = highest_drawn
            && told.ticket < drawn_ticket
        {
            findings.push(Finding::SweptAheadOfADraw {
                user: told.user.member(),
                ticket: told.ticket,
                state: told.state.as_str().to_owned(),
                drawn_ticket,
            });
        }
        if true_from_ms.is_none_or(|from| told.decided_at_ms + CLOCK_TOLERANCE_MS < from) {
            findings.push(Finding::ToldTooEarly {
                user: told.user.member(),
                state: told.state.as_str().to_owned(),
                told_at_ms: told.decided_at_ms,
                true_from_ms,
            });
        }
    }
    findings
}

/// Where the decision order departs from the ticket order: every user decided
/// before someone with an earlier ticket, and every ticket decided twice.
fn ticket_order_findings(decisions: &[RecordedDecision]) -> Vec<Finding> {
    let mut by_ticket: Vec<&RecordedDecision> = decisions.iter().collect();
    by_ticket.sort_by_key(|decision| (decision.ticket, decision.order));
    let mut findings = Vec::new();
    // The lower ticket decided last so far: (its order, its ticket).
    let mut latest_ahead: Option<(u64, u64)> = None;
    let mut previous_ticket: Option<u64> = None;
    for decision in by_ticket {
        if previous_ticket == Some(decision.ticket) {
            findings.push(Finding::DuplicateTicket {
                ticket: decision.ticket,
                order: decision.order,
            });
        }
        if let Some((earlier_order, earlier_ticket)) = latest_ahead
            && earlier_order > decision.order
            && earlier_ticket < decision.ticket
        {
            findings.push(Finding::DecidedBeforeAnEarlierTicket {
                order: decision.order,
                ticket: decision.ticket,
                user: decision.user.member(),
                earlier_ticket,
                earlier_order,
            });
        }
        if latest_ahead.is_none_or(|(order, _)| decision.order > order) {
            latest_ahead = Some((decision.order, decision.ticket));
        }
        previous_ticket = Some(decision.ticket);
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::BeaconProblem;
    use crate::draw::decide_batch;
    use proptest::prelude::*;

    fn recorded_event(
        seed: &EventSeed,
        probability: WinProbability,
        stock: u32,
        users: u64,
    ) -> Vec<RecordedDecision> {
        let event = EventId::parse("ev").expect("valid");
        let keys: Vec<_> = (0..users)
            .map(|n| UserKey::parse("p", &format!("u{n}")).expect("valid"))
            .collect();
        decide_batch(seed, &event, probability, stock, &keys)
            .into_iter()
            .zip(keys)
            .enumerate()
            .map(|(i, ((value, decision), user))| RecordedDecision {
                order: i as u64 + 1,
                ticket: i as u64 * 2 + 1,
                decided_at_ms: 1_000 + i as u64,
                user,
                draw_value: value,
                outcome: decision.outcome,
            })
            .collect()
    }

    fn check(
        seed: &EventSeed,
        p: WinProbability,
        stock: u32,
        rows: &[RecordedDecision],
    ) -> VerifyReport {
        let event = EventId::parse("ev").expect("valid");
        verify(seed, None, &seed.commitment(), &event, p, stock, rows)
    }

    #[test]
    fn an_honest_draw_passes() {
        let seed = EventSeed::from_bytes([3; 32]);
        let p = WinProbability::new(0.2).expect("valid");
        let rows = recorded_event(&seed, p, 10, 300);
        let report = check(&seed, p, 10, &rows);
        assert!(report.passed(), "{:?}", report.findings);
        assert_eq!(report.decisions, 300);
        assert_eq!(u64::from(10 - report.stock_left), report.winners);
    }

    #[test]
    fn a_user_decided_before_an_earlier_ticket_is_found_even_when_the_arithmetic_holds() {
        let seed = EventSeed::from_bytes([3; 32]);
        let p = WinProbability::new(0.2).expect("valid");
        let mut rows = recorded_event(&seed, p, 10, 50);
        // Tickets 7 and 31 (orders 4 and 16) swap places in line: every value and
        // outcome still replays, since the decision order is untouched.
        let (a, b) = (3, 15);
        let ticket = rows[a].ticket;
        rows[a].ticket = rows[b].ticket;
        rows[b].ticket = ticket;
        let findings = check(&seed, p, 10, &rows).findings;
        assert!(!findings.is_empty());
        for finding in &findings {
            let Finding::DecidedBeforeAnEarlierTicket {
                order,
                earlier_order,
                earlier_ticket,
                ticket,
                ..
            } = finding
            else {
                panic!("only the order is wrong: {finding:?}");
            };
            assert!(
                earlier_order > order && earlier_ticket < ticket,
                "{finding:?}"
            );
        }
        // Orders 5..=16 were decided before ticket 7 (now at order 16).
        assert_eq!(findings.len(), 12, "{findings:?}");

        let mut twice = recorded_event(&seed, p, 10, 5);
        twice[4].ticket = twice[3].ticket;
        let findings = check(&seed, p, 10, &twice).findings;
        assert!(
            findings
                .iter()
                .any(|f| matches!(f, Finding::DuplicateTicket { order: 5, .. })),
            "{findings:?}"
        );
    }

    /// An honest closed drop: 40 drawn (stock 10 runs out), the rest of the line
    /// swept sold out after, one user expired, and the event row to match.
    fn honest_drop() -> (
        RecordedEvent,
        Vec<RecordedDecision>,
        Vec<RecordedWithoutDraw>,
    ) {
        let seed = EventSeed::from_bytes([8; 32]);
        let p = WinProbability::new(0.5).expect("valid");
        let decisions = recorded_event(&seed, p, 10, 40);
        let winners = decisions
            .iter()
            .filter(|d| d.outcome == Outcome::Won)
            .count();
        let last = decisions.last().map(|d| d.decided_at_ms).unwrap_or(0);
        let user = |n: u64| UserKey::parse("p", &format!("w{n}")).expect("valid");
        let mut told: Vec<RecordedWithoutDraw> = (0..5)
            .map(|n| RecordedWithoutDraw {
                user: user(n),
                ticket: 1_000 + n,
                state: crate::UserState::SoldOut,
                decided_at_ms: last + 10,
            })
            .collect();
        told.push(RecordedWithoutDraw {
            user: user(99),
            ticket: 2,
            state: crate::UserState::Expired,
            decided_at_ms: 1_500,
        });
        let event = RecordedEvent {
            stock_total: 10,
            stock_left: 10 - winners as u32,
            decisions_made: decisions.len() as u64,
            closing_at_ms: Some(last + 100),
            seed_revealed_at_ms: Some(last + 200),
        };
        (event, decisions, told)
    }

    #[test]
    fn an_honest_drop_passes_the_audit_and_each_broken_rule_is_named() {
        let (event, decisions, told) = honest_drop();
        assert_eq!(event.stock_left, 0, "the honest drop sells out");
        assert!(audit(&event, &decisions, &told).is_empty());
        type Tamper =
            fn(&mut RecordedEvent, &mut Vec<RecordedDecision>, &mut Vec<RecordedWithoutDraw>);
        type Named = fn(&Finding) -> bool;
        let cases: Vec<(&str, Tamper, Named)> = vec![
            (
                "a removed draw",
                |_, d, _| {
                    d.remove(5);
                },
                |f| {
                    matches!(
                        f,
                        Finding::DecisionOrderGap {
                            expected: 6,
                            found: 7
                        }
                    )
                },
            ),
            (
                "a count that disagrees",
                |e, _, _| e.decisions_made += 1,
                |f| matches!(f, Finding::DecisionCountMismatch { .. }),
            ),
            (
                "stock that does not add up",
                |e, _, _| e.stock_left = 1,
                |f| matches!(f, Finding::StockMismatch { .. }),
            ),
            (
                "a draw after the reveal",
                |e, d, _| d[3].decided_at_ms = e.seed_revealed_at_ms.unwrap_or(0) + 5_000,
                |f| matches!(f, Finding::DrawnAfterTheReveal { order: 4, .. }),
            ),
            (
                "a drawn user also recorded undrawn",
                |_, d, t| t[0].user = d[0].user.clone(),
                |f| matches!(f, Finding::DrawnAndUndrawn { .. }),
            ),
            (
                "a ticket held by a drawn and an undrawn user",
                |_, d, t| t[1].ticket = d[2].ticket,
                |f| matches!(f, Finding::DuplicateTicket { .. }),
            ),
            (
                "a user swept ahead of someone drawn",
                |_, _, t| t[2].ticket = 3,
                |f| matches!(f, Finding::SweptAheadOfADraw { ticket: 3, .. }),
            ),
            (
                "sold out told before the stock ran out",
                |_, _, t| t[3].decided_at_ms = 0,
                |f| matches!(f, Finding::ToldTooEarly { told_at_ms: 0, .. }),
            ),
            (
                "closed told before closing began",
                |_, _, t| {
                    t[4].state = crate::UserState::Closed;
                    t[4].decided_at_ms = 5;
                },
                |f| matches!(f, Finding::ToldTooEarly { told_at_ms: 5, .. }),
            ),
        ];
        for (what, tamper, expected) in cases {
            let (mut event, mut decisions, mut told) = honest_drop();
            tamper(&mut event, &mut decisions, &mut told);
            let findings = audit(&event, &decisions, &told);
            assert!(
                findings.iter().any(expected),
                "{what} was not named: {findings:?}"
            );
        }
        // A late admission recorded closed after the reveal is not a sweep.
        let (event, decisions, mut told) = honest_drop();
        told[0].state = crate::UserState::Closed;
        told[0].ticket = 1;
        told[0].decided_at_ms = event.seed_revealed_at_ms.unwrap_or(0) + 50;
        // Ticket 1 is drawn already in the honest drop: give it a free one.
        told[0].ticket = 4;
        assert!(audit(&event, &decisions, &told).is_empty());
    }

    #[test]
    fn a_beacon_drop_verifies_only_with_its_value() {
        let seed = EventSeed::from_bytes([3; 32]);
        let p = WinProbability::new(0.3).expect("valid");
        let event = EventId::parse("ev").expect("valid");
        let beacon = Beacon {
            round: "drand-quicknet/1000".into(),
            value: Some("ab".repeat(32)),
        };
        let key = seed.event_key(Some(&beacon)).expect("key");
        assert_ne!(key, seed, "the beacon changes every draw");
        let rows = recorded_event(&key, p, 3, 20);
        let honest = verify(
            &seed,
            Some(&beacon),
            &seed.commitment(),
            &event,
            p,
            3,
            &rows,
        );
        assert!(honest.passed(), "{:?}", honest.findings);

        let without = verify(&seed, None, &seed.commitment(), &event, p, 3, &rows);
        assert!(
            without
                .findings
                .iter()
                .any(|f| matches!(f, Finding::WrongDrawValue { .. })),
            "the seed alone does not give a beacon drop's values"
        );
        let other = Beacon {
            value: Some("cd".repeat(32)),
            ..beacon.clone()
        };
        let swapped = verify(&seed, Some(&other), &seed.commitment(), &event, p, 3, &rows);
        assert!(!swapped.passed(), "another value is another drop");
        let missing = Beacon {
            value: None,
            ..beacon
        };
        let report = verify(
            &seed,
            Some(&missing),
            &seed.commitment(),
            &event,
            p,
            3,
            &rows,
        );
        assert!(matches!(
            report.findings.as_slice(),
            [Finding::BeaconMissing { .. }]
        ));
    }

    #[test]
    fn a_beacon_value_is_taken_once_before_the_opening_and_opening_needs_it() {
        use crate::EventState;
        let value = "0f".repeat(32);
        let named = Beacon {
            round: "drand-quicknet/1".into(),
            value: None,
        };
        assert_eq!(
            Beacon::accept_value(Some(&named), EventState::Scheduled, &value),
            Ok(true)
        );
        assert_eq!(
            Beacon::accept_value(None, EventState::Scheduled, &value),
            Err(BeaconProblem::NotNamed)
        );
        assert_eq!(
            Beacon::accept_value(Some(&named), EventState::Open, &value),
            Err(BeaconProblem::TooLate(EventState::Open))
        );
        assert_eq!(
            Beacon::accept_value(Some(&named), EventState::Scheduled, "xyz"),
            Err(BeaconProblem::BadValue)
        );
        let given = Beacon {
            value: Some(value.clone()),
            ..named.clone()
        };
        assert_eq!(
            Beacon::accept_value(Some(&given), EventState::Open, &value),
            Ok(false),
            "the same value again changes nothing"
        );
        assert!(matches!(
            Beacon::accept_value(Some(&given), EventState::Scheduled, &"1f".repeat(32)),
            Err(BeaconProblem::AlreadyGiven { .. })
        ));
        assert_eq!(
            Beacon::ready_to_open(Some(&named)),
            Err(BeaconProblem::Missing("drand-quicknet/1".into()))
        );
        assert!(Beacon::ready_to_open(Some(&given)).is_ok());
        assert!(Beacon::ready_to_open(None).is_ok());
    }

    #[test]
    fn beacon_names_and_values_are_checked() {
        assert!(Beacon::check_round("drand-quicknet/12345678").is_ok());
        for bad in ["", "has space", &"x".repeat(201), "tab\t"] {
            assert_eq!(
                Beacon::check_round(bad),
                Err(BeaconProblem::BadRound),
                "{bad:?}"
            );
        }
        assert!(Beacon::check_value(&"0f".repeat(32)).is_ok());
        for bad in [
            "",
            "abc",
            &"AB".repeat(32),
            &"0".repeat(30),
            &"0".repeat(258),
        ] {
            assert_eq!(
                Beacon::check_value(bad),
                Err(BeaconProblem::BadValue),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_wrong_seed_fails_the_commitment() {
        let seed = EventSeed::from_bytes([3; 32]);
        let p = WinProbability::new(0.2).expect("valid");
        let rows = recorded_event(&seed, p, 10, 10);
        let event = EventId::parse("ev").expect("valid");
        let other = EventSeed::from_bytes([4; 32]);
        let report = verify(&other, None, &seed.commitment(), &event, p, 10, &rows);
        assert!(matches!(
            report.findings[0],
            Finding::CommitmentMismatch { .. }
        ));
    }

    #[test]
    fn duplicates_and_oversell_are_found() {
        let seed = EventSeed::from_bytes([5; 32]);
        let p = WinProbability::new(1.0).expect("valid");
        let mut rows = recorded_event(&seed, p, 2, 3);
        rows[2].outcome = Outcome::Won;
        let mut again = rows[0].clone();
        again.order = 4;
        rows.push(again);
        let findings = check(&seed, p, 2, &rows).findings;
        assert!(
            findings
                .iter()
                .any(|f| matches!(f, Finding::DuplicateUser { order: 4, .. }))
        );
        assert!(findings.iter().any(|f| matches!(
            f,
            Finding::Oversold {
                winners: 3,
                stock: 2
            }
        )));
    }

    proptest! {
        #[test]
        fn any_single_changed_outcome_is_detected(
            seed_byte in any::<u8>(),
            stock in 1u32..30,
            users in 1u64..200,
            pick in any::<prop::sample::Index>(),
            replacement in prop::sample::select(vec![Outcome::Won, Outcome::Lost, Outcome::SoldOut]),
        ) {
            let seed = EventSeed::from_bytes([seed_byte; 32]);
            let p = WinProbability::new(0.25).expect("valid");
            let mut rows = recorded_event(&seed, p, stock, users);
            let i = pick.index(rows.len());
            prop_assume!(rows[i].outcome != replacement);
            rows[i].outcome = replacement;
            prop_assert!(!check(&seed, p, stock, &rows).passed());
        }

        #[test]
        fn any_single_changed_value_is_detected(
            seed_byte in any::<u8>(),
            users in 1u64..100,
            pick in any::<prop::sample::Index>(),
            delta in 1u64..,
        ) {
            let seed = EventSeed::from_bytes([seed_byte; 32]);
            let p = WinProbability::new(0.25).expect("valid");
            let mut rows = recorded_event(&seed, p, 5, users);
            let i = pick.index(rows.len());
            rows[i].draw_value = rows[i].draw_value.wrapping_add(delta);
            prop_assert!(!check(&seed, p, 5, &rows).passed());
        }
    }
}
