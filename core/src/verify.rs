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

use crate::draw::{EventSeed, Outcome, SeedCommitment, WinProbability, decide, draw_value};
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
}

/// Something verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
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
    /// Two users decided with the same ticket.
    DuplicateTicket {
        /// The ticket.
        ticket: u64,
        /// Decision order of the second one.
        order: u64,
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
        let expected_value = draw_value(seed, event, &recorded.user);
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
        verify(seed, &seed.commitment(), &event, p, stock, rows)
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

    #[test]
    fn a_wrong_seed_fails_the_commitment() {
        let seed = EventSeed::from_bytes([3; 32]);
        let p = WinProbability::new(0.2).expect("valid");
        let rows = recorded_event(&seed, p, 10, 10);
        let event = EventId::parse("ev").expect("valid");
        let other = EventSeed::from_bytes([4; 32]);
        let report = verify(&other, &seed.commitment(), &event, p, 10, &rows);
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
