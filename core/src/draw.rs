//! The draw: a committed seed, a per-user value derived from it, and the decision rule.
//!
//! The seed is generated when an event is created and only its SHA-256 commitment is
//! published; the seed itself is revealed when the event closes. The event key K is
//! the seed, or the seed mixed with a public beacon's value ([`EventSeed::event_key`]).
//! A user is known in the public decision log by a pseudonym, the first 16 bytes of
//! HMAC-SHA256(K, "dropgate/pseudonym/v2" ‖ len ‖ event ‖ len ‖ platform ‖ len ‖
//! user), and their draw value is the first 8 bytes, big-endian, of HMAC-SHA256(K,
//! "dropgate/draw/v2" ‖ len ‖ event ‖ len ‖ pseudonym), each len a 4-byte big-endian
//! byte count (docs/fairness.md has the byte-exact rule and test vectors). Keying the
//! draw on the pseudonym lets anyone re-run the whole drop from a log that names
//! nobody, while each user can find their own row from their own identity. Nobody, not even the
//! operator after creation, can steer one user's outcome without breaking the
//! commitment, and anyone with the revealed seed can recompute every outcome
//! ([`crate::verify()`]).

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ConfigProblem;
use crate::hex;
use crate::identity::{EventId, UserKey};

/// The version of the draw's rules (docs/fairness.md): every fairness record names it.
pub const DRAW_RULE: &str = "dropgate/draw/v2";

/// The secret that decides every draw of one event.
#[derive(Clone, PartialEq, Eq)]
pub struct EventSeed([u8; 32]);

impl EventSeed {
    /// Wraps 32 bytes from a CSPRNG (the caller's: core reads no randomness).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the 64-hex-digit form stored in PostgreSQL and published at close.
    pub fn from_hex(text: &str) -> Result<Self, hex::HexError> {
        hex::decode_32(text).map(Self)
    }

    /// The 64-hex-digit form.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// SHA-256 of the seed: published at creation, checked at verification.
    pub fn commitment(&self) -> SeedCommitment {
        SeedCommitment(Sha256::digest(self.0).into())
    }

    /// The raw bytes, for keyed derivations.
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The deterministic HMAC of `parts` under this seed, with a domain tag so the
    /// draw and the shuffle never reuse one value for two purposes. Each part is
    /// length-prefixed so ("ab","c") and ("a","bc") differ.
    pub(crate) fn derive(&self, domain: &str, parts: &[&str]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.as_bytes())
            .expect("HMAC-SHA256 accepts any key length");
        mac.update(domain.as_bytes());
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

/// A public randomness beacon round named when an event is created (so nobody can
/// pick it afterwards) and its value, supplied when the event opens. Mixed into the
/// event's key, it makes every outcome unknowable, even to whoever holds the seed,
/// until that round is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    /// Which beacon and round, e.g. `drand-quicknet/12345678`.
    pub round: String,
    /// The round's published randomness, as lowercase hex; `None` until supplied.
    pub value: Option<String>,
}

/// Why a beacon name or value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconProblem {
    /// The round's name is empty, too long or not printable ASCII without spaces.
    #[error(
        "a beacon round is 1 to 200 printable ASCII characters without spaces, e.g. drand-quicknet/12345678"
    )]
    BadRound,
    /// The value is not 16 to 128 bytes of lowercase hex.
    #[error("a beacon value is 32 to 256 lowercase hex digits (16 to 128 bytes)")]
    BadValue,
    /// The event names a beacon whose value was never supplied.
    #[error("the event names beacon round {0} but its value was never supplied")]
    Missing(String),
    /// A value given for an event that names no beacon round.
    #[error("the event names no beacon round; it was created without --beacon-round")]
    NotNamed,
    /// A value other than the one already recorded.
    #[error("the value of beacon round {round} is already {recorded}; it cannot change")]
    AlreadyGiven {
        /// The round.
        round: String,
        /// The value on record.
        recorded: String,
    },
    /// A value given once the event has left `scheduled`.
    #[error("the event is {0}: a beacon value is given before the event opens")]
    TooLate(crate::EventState),
}

impl Beacon {
    /// The beacon of an event stored as a round (none: the event names no beacon) and
    /// its value once supplied.
    pub fn from_columns(round: Option<String>, value: Option<String>) -> Option<Self> {
        round.map(|round| Self { round, value })
    }

    /// Whether an event in `state` that names `beacon` (or none) takes `value` now:
    /// true to record it, false when it holds that value already.
    pub fn accept_value(
        beacon: Option<&Beacon>,
        state: crate::EventState,
        value: &str,
    ) -> Result<bool, BeaconProblem> {
        Self::check_value(value)?;
        let beacon = beacon.ok_or(BeaconProblem::NotNamed)?;
        match &beacon.value {
            Some(recorded) if recorded == value => Ok(false),
            Some(recorded) => Err(BeaconProblem::AlreadyGiven {
                round: beacon.round.clone(),
                recorded: recorded.clone(),
            }),
            None if state != crate::EventState::Scheduled => Err(BeaconProblem::TooLate(state)),
            None => Ok(true),
        }
    }

    /// An event opens only once the beacon it names has its value: nothing may be
    /// drawn, nor the pre-queue shuffled, without it.
    pub fn ready_to_open(beacon: Option<&Beacon>) -> Result<(), BeaconProblem> {
        match beacon {
            Some(Beacon { round, value: None }) => Err(BeaconProblem::Missing(round.clone())),
            _ => Ok(()),
        }
    }

    /// Checks a round's name.
    pub fn check_round(round: &str) -> Result<(), BeaconProblem> {
        if round.is_empty() || round.len() > 200 || !round.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BeaconProblem::BadRound);
        }
        Ok(())
    }

    /// Checks a value.
    pub fn check_value(value: &str) -> Result<(), BeaconProblem> {
        let digits = value.len();
        if !(32..=256).contains(&digits)
            || !digits.is_multiple_of(2)
            || !value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(BeaconProblem::BadValue);
        }
        Ok(())
    }
}

impl EventSeed {
    /// The key the event's pseudonyms, draw values and pre-queue shuffle are derived
    /// from: the seed itself, or, when the event names a beacon,
    /// HMAC-SHA256(seed, "dropgate/beacon/v2" ‖ len ‖ round ‖ len ‖ value) as 32 bytes.
    /// The commitment stays the seed's.
    pub fn event_key(&self, beacon: Option<&Beacon>) -> Result<EventSeed, BeaconProblem> {
        match beacon {
            None => Ok(self.clone()),
            Some(Beacon { round, value: None }) => Err(BeaconProblem::Missing(round.clone())),
            Some(Beacon {
                round,
                value: Some(value),
            }) => Ok(EventSeed(
                self.derive("dropgate/beacon/v2", &[round, value]),
            )),
        }
    }
}

impl fmt::Debug for EventSeed {
    /// Never prints the secret: seeds end up in logs through `{:?}` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventSeed(commitment {})", self.commitment())
    }
}

/// SHA-256 of an [`EventSeed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeedCommitment([u8; 32]);

impl SeedCommitment {
    /// Parses the 64-hex-digit form.
    pub fn from_hex(text: &str) -> Result<Self, hex::HexError> {
        hex::decode_32(text).map(Self)
    }

    /// The 64-hex-digit form.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for SeedCommitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A win probability in (0, 1], held as the threshold the draw compares against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WinProbability {
    probability: f64,
    /// `floor(p · 2^64)`; u128 because p = 1 gives exactly 2^64.
    threshold: u128,
}

impl WinProbability {
    /// Accepts 0 < p ≤ 1 (NaN and infinities are refused).
    pub fn new(probability: f64) -> Result<Self, ConfigProblem> {
        if !(probability > 0.0 && probability <= 1.0) {
            return Err(ConfigProblem::WinProbabilityOutOfRange(probability));
        }
        // 2^64 as f64 is exact, and so is the product's truncation for p in (0, 1].
        let threshold = (probability * 18_446_744_073_709_551_616.0) as u128;
        Ok(Self {
            probability,
            threshold,
        })
    }

    /// The probability as configured.
    pub fn get(self) -> f64 {
        self.probability
    }

    /// `floor(p · 2^64)`: a draw value below it wins (2^64 when p = 1).
    pub fn threshold(self) -> u128 {
        self.threshold
    }

    /// Whether a draw value is a winning one.
    pub fn is_winning(self, draw_value: u64) -> bool {
        u128::from(draw_value) < self.threshold
    }
}

/// A user's name in the event's public decision log: 32 hex digits that nobody can
/// compute before the seed is revealed, and that the user (or anyone who knows or
/// guesses their ids) can compute after it.
pub fn pseudonym(seed: &EventSeed, event: &EventId, user: &UserKey) -> String {
    let mac = seed.derive(
        "dropgate/pseudonym/v2",
        &[
            event.as_str(),
            user.platform_id.as_str(),
            user.user_id.as_str(),
        ],
    );
    hex::encode(&mac[..16])
}

/// The draw value of the user the log names `pseudonym`: the first 8 bytes
/// (big-endian) of the keyed hash.
pub fn draw_value_of_pseudonym(seed: &EventSeed, event: &EventId, pseudonym: &str) -> u64 {
    let mac = seed.derive("dropgate/draw/v2", &[event.as_str(), pseudonym]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&mac[..8]);
    u64::from_be_bytes(first)
}

/// A user's draw value.
pub fn draw_value(seed: &EventSeed, event: &EventId, user: &UserKey) -> u64 {
    draw_value_of_pseudonym(seed, event, &pseudonym(seed, event, user))
}

/// How one admitted user's draw ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Winning value while stock was left: one unit is theirs.
    Won,
    /// Losing value while stock was left.
    Lost,
    /// No stock was left when this user's turn came.
    SoldOut,
    /// Not drawn: the admission reached the goods side after the event closed and
    /// its seed was revealed (see [`crate::EventState::draws`]). [`decide`] never
    /// gives it.
    Closed,
    /// Not drawn: the user was away (not seen for the event's abandon timeout) when
    /// their turn came. Recorded by the admitter, never by [`decide`].
    Expired,
}

impl Outcome {
    /// The snake_case name used in PostgreSQL, Redis and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Won => "won",
            Outcome::Lost => "lost",
            Outcome::SoldOut => "sold_out",
            Outcome::Closed => "closed",
            Outcome::Expired => "expired",
        }
    }

    /// The user state this outcome puts a user in.
    pub fn user_state(self) -> crate::UserState {
        match self {
            Outcome::Won => crate::UserState::Won,
            Outcome::Lost => crate::UserState::Lost,
            Outcome::SoldOut => crate::UserState::SoldOut,
            Outcome::Closed => crate::UserState::Closed,
            Outcome::Expired => crate::UserState::Expired,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Outcome {
    type Err = crate::state::UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "won" => Ok(Outcome::Won),
            "lost" => Ok(Outcome::Lost),
            "sold_out" => Ok(Outcome::SoldOut),
            "closed" => Ok(Outcome::Closed),
            "expired" => Ok(Outcome::Expired),
            other => Err(crate::state::UnknownState(other.to_owned())),
        }
    }
}

/// One decision and the stock it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What the user gets.
    pub outcome: Outcome,
    /// Stock after this decision.
    pub stock_left: u32,
}

/// The rule: with no stock left everyone is sold out (they never had a chance, so
/// "lost" would misstate it); otherwise a winning value wins one unit and any other
/// value loses.
pub fn decide(draw_value: u64, probability: WinProbability, stock_left: u32) -> Decision {
    if stock_left == 0 {
        Decision {
            outcome: Outcome::SoldOut,
            stock_left,
        }
    } else if probability.is_winning(draw_value) {
        Decision {
            outcome: Outcome::Won,
            stock_left: stock_left - 1,
        }
    } else {
        Decision {
            outcome: Outcome::Lost,
            stock_left,
        }
    }
}

/// Decides a batch of users in the given order (ticket order) from `stock_left`, the
/// way the goods worker does inside one transaction.
pub fn decide_batch<'a>(
    seed: &EventSeed,
    event: &EventId,
    probability: WinProbability,
    mut stock_left: u32,
    users: impl IntoIterator<Item = &'a UserKey>,
) -> Vec<(u64, Decision)> {
    users
        .into_iter()
        .map(|user| {
            let value = draw_value(seed, event, user);
            let decision = decide(value, probability, stock_left);
            stock_left = decision.stock_left;
            (value, decision)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seed(byte: u8) -> EventSeed {
        EventSeed::from_bytes([byte; 32])
    }

    fn event() -> EventId {
        EventId::parse("drop-1").expect("valid")
    }

    fn user(n: u64) -> UserKey {
        UserKey::parse("web", &format!("u{n}")).expect("valid")
    }

    #[test]
    fn commitment_is_sha256_of_the_seed() {
        // SHA-256 of 32 zero bytes, a published test vector.
        assert_eq!(
            seed(0).commitment().to_hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        let s = seed(7);
        assert_eq!(EventSeed::from_hex(&s.to_hex()), Ok(s.clone()));
        assert!(
            !format!("{s:?}").contains(&s.to_hex()),
            "Debug leaks the seed"
        );
    }

    #[test]
    fn probability_edges() {
        let always = WinProbability::new(1.0).expect("valid");
        assert!(always.is_winning(u64::MAX));
        let tiny = WinProbability::new(f64::MIN_POSITIVE).expect("valid");
        assert!(!tiny.is_winning(0), "threshold floors to 0: nobody wins");
        let half = WinProbability::new(0.5).expect("valid");
        assert!(half.is_winning((1 << 63) - 1));
        assert!(!half.is_winning(1 << 63));
    }

    #[test]
    fn no_stock_means_sold_out_whatever_the_value() {
        let p = WinProbability::new(1.0).expect("valid");
        assert_eq!(decide(0, p, 0).outcome, Outcome::SoldOut);
        let p = WinProbability::new(0.05).expect("valid");
        assert_eq!(decide(u64::MAX, p, 0).outcome, Outcome::SoldOut);
        assert_eq!(
            decide(u64::MAX, p, 3),
            Decision {
                outcome: Outcome::Lost,
                stock_left: 3
            }
        );
    }

    #[test]
    fn certain_win_gives_exactly_the_stock_then_sold_out() {
        let p = WinProbability::new(1.0).expect("valid");
        let users: Vec<_> = (0..500).map(user).collect();
        let decisions = decide_batch(&seed(1), &event(), p, 50, &users);
        let won = decisions
            .iter()
            .filter(|(_, d)| d.outcome == Outcome::Won)
            .count();
        let sold_out = decisions
            .iter()
            .filter(|(_, d)| d.outcome == Outcome::SoldOut)
            .count();
        assert_eq!((won, sold_out), (50, 450));
    }

    #[test]
    fn win_rate_is_within_four_sigma_of_p() {
        let p = 0.05;
        let probability = WinProbability::new(p).expect("valid");
        let n = 100_000u32;
        let wins = (0..u64::from(n))
            .filter(|i| probability.is_winning(draw_value(&seed(42), &event(), &user(*i))))
            .count() as f64;
        let mean = f64::from(n) * p;
        let sigma = (f64::from(n) * p * (1.0 - p)).sqrt();
        assert!(
            (wins - mean).abs() <= 4.0 * sigma,
            "{wins} wins of {n}, expected {mean} ± {}",
            4.0 * sigma
        );
    }

    #[test]
    fn values_depend_on_every_input() {
        let base = draw_value(&seed(1), &event(), &user(1));
        assert_ne!(base, draw_value(&seed(2), &event(), &user(1)));
        assert_ne!(
            base,
            draw_value(
                &seed(1),
                &EventId::parse("drop-2").expect("valid"),
                &user(1)
            )
        );
        assert_ne!(base, draw_value(&seed(1), &event(), &user(2)));
        let other_platform = UserKey::parse("app", "u1").expect("valid");
        assert_ne!(base, draw_value(&seed(1), &event(), &other_platform));
    }

    proptest! {
        #[test]
        fn winners_never_exceed_stock(
            seed_byte in any::<u8>(),
            stock in 0u32..50,
            users in 0u64..400,
            p in 0.01f64..=1.0,
        ) {
            let p = WinProbability::new(p).expect("in range");
            let keys: Vec<_> = (0..users).map(user).collect();
            let decisions = decide_batch(&seed(seed_byte), &event(), p, stock, &keys);
            let won = decisions.iter().filter(|(_, d)| d.outcome == Outcome::Won).count();
            prop_assert!(won <= stock as usize);
            let last_stock = decisions.last().map_or(stock, |(_, d)| d.stock_left);
            prop_assert_eq!(won as u32, stock - last_stock);
        }

        #[test]
        fn same_seed_same_outcomes(seed_byte in any::<u8>(), stock in 0u32..20, users in 0u64..200) {
            let p = WinProbability::new(0.3).expect("in range");
            let keys: Vec<_> = (0..users).map(user).collect();
            let first = decide_batch(&seed(seed_byte), &event(), p, stock, &keys);
            let second = decide_batch(&seed(seed_byte), &event(), p, stock, &keys);
            prop_assert_eq!(first, second);
        }
    }
}
