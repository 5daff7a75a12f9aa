//! The messages between the services, `Admitted` (topic `waiting-queue`) and
//! `DrawResult` (topic `result-notification`), keyed by the user's member string, and
//! the one for downstream checkout, `BatchWinners` (topic `winners`), keyed by the
//! event: JSON with a `version` field.
//!
//! Decoding checks the version first, so a consumer meeting a message from a newer
//! producer reports "unknown version 2" rather than a confusing missing-field error,
//! and every id inside is validated like one from a token.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::draw::Outcome;
use crate::identity::{EventId, UserKey};

/// The message format version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// Step ④: a user taken from the head of the queue, to be drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admitted {
    /// Always [`MESSAGE_VERSION`] when written by this build.
    pub version: u32,
    /// The drop.
    pub event_id: EventId,
    /// Who.
    pub user: UserKey,
    /// The user's ticket: the draw decides a batch in ticket order.
    pub ticket: u64,
    /// When the admitter moved the user (Unix ms).
    pub admitted_at_ms: u64,
}

/// Step ④ on Pub/Sub: one admitter tick's admissions to one event, in ticket order,
/// as one message under the event's ordering key. Pub/Sub pushes one message of an
/// ordering key at a time, in publish order, so the draw sees the line in ticket order
/// as it does on Kafka, with a push carrying many users rather than one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmittedBatch {
    /// Always [`MESSAGE_VERSION`] when written by this build.
    pub version: u32,
    /// The drop every admission is for.
    pub event_id: EventId,
    /// The admissions, in ticket order.
    pub admitted: Vec<Admitted>,
}

/// What a waiting-queue message holds: one admission (Kafka, and Pub/Sub from an
/// admitter of an older release) or a batch of one event's admissions (Pub/Sub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Admissions {
    /// One user.
    One(Admitted),
    /// One event's admissions in ticket order.
    Batch(AdmittedBatch),
}

impl Admissions {
    /// The admissions, in the message's order.
    pub fn into_vec(self) -> Vec<Admitted> {
        match self {
            Admissions::One(admitted) => vec![admitted],
            Admissions::Batch(batch) => batch.admitted,
        }
    }
}

/// Step ⑦: the recorded outcome of one user's draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawResult {
    /// Always [`MESSAGE_VERSION`] when written by this build.
    pub version: u32,
    /// The drop.
    pub event_id: EventId,
    /// Who.
    pub user: UserKey,
    /// The user's ticket.
    pub ticket: u64,
    /// What they got.
    pub outcome: Outcome,
    /// Position in the event's decision order (for verification).
    pub decision_order: u64,
    /// Stock left after this decision; 0 tells the admitter to stop.
    pub stock_left: u64,
    /// When the decision was committed (Unix ms).
    pub decided_at_ms: u64,
}

/// After step ⑥: the winners one draw batch produced, for a downstream checkout
/// (topic `winners`, keyed by the event id so one event's batches keep their order).
/// Published only for batches with at least one winner; over a drop the messages name
/// every winner exactly once, in decision order, unless a batch is re-sent after a
/// crash (a consumer keeps the first copy of each `decision_order`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchWinners {
    /// Always [`MESSAGE_VERSION`] when written by this build.
    pub version: u32,
    /// The drop.
    pub event_id: EventId,
    /// This batch's winners, in decision order.
    pub winners: Vec<Winner>,
    /// Units for sale in the drop.
    pub stock_total: u64,
    /// Units left after this batch: `stock_total - stock_left` winners so far.
    pub stock_left: u64,
    /// When the batch was committed (Unix ms).
    pub decided_at_ms: u64,
}

/// One winner in a [`BatchWinners`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Winner {
    /// Who.
    pub user: UserKey,
    /// Their queue ticket.
    pub ticket: u64,
    /// Their place in the event's decision order.
    pub decision_order: u64,
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Valid JSON from a producer speaking another format version.
    #[error("unknown message version {0}; this build reads version {MESSAGE_VERSION}")]
    UnknownVersion(u64),
    /// Not JSON, no version, missing fields or invalid ids.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Well-formed, but its parts disagree (a batch holding another event's user).
    #[error("inconsistent message: {0}")]
    Inconsistent(String),
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

/// What the messages share: versioned JSON under a key.
pub trait Message: Serialize + DeserializeOwned {
    /// The message key: a user's member string for a result (and the Pub/Sub
    /// ordering key), the event id for a batch of admissions or winners. Admissions
    /// travel under their event on both transports so one event's keep their order
    /// (`Publisher::publish_admissions`); an `Admitted`'s own key, its user, serves
    /// only where one admission is handled alone.
    fn key(&self) -> String;

    /// Decodes and validates a payload: the version first, then the fields, then
    /// [`Message::check`].
    fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let VersionOnly { version } = serde_json::from_slice(bytes)?;
        if version != u64::from(MESSAGE_VERSION) {
            return Err(MessageError::UnknownVersion(version));
        }
        let message: Self = serde_json::from_slice(bytes)?;
        message.check()?;
        Ok(message)
    }

    /// What a message's fields must agree on beyond their types (nothing, unless a
    /// message says otherwise).
    fn check(&self) -> Result<(), MessageError> {
        Ok(())
    }

    /// The JSON payload.
    fn encode(&self) -> Vec<u8> {
        // The messages hold only strings and integers: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Message for Admitted {
    fn key(&self) -> String {
        self.user.member()
    }
}

impl Message for DrawResult {
    fn key(&self) -> String {
        self.user.member()
    }
}

impl Message for AdmittedBatch {
    fn key(&self) -> String {
        self.event_id.as_str().to_owned()
    }

    /// One event's admissions, each of this build's version, in ticket order.
    fn check(&self) -> Result<(), MessageError> {
        if let Some(other) = self.admitted.iter().find(|a| a.version != MESSAGE_VERSION) {
            return Err(MessageError::UnknownVersion(u64::from(other.version)));
        }
        if let Some(stray) = self.admitted.iter().find(|a| a.event_id != self.event_id) {
            return Err(MessageError::Inconsistent(format!(
                "a batch for event {} holds an admission to {}",
                self.event_id, stray.event_id
            )));
        }
        if let Some(pair) = self
            .admitted
            .windows(2)
            .find(|pair| pair[1].ticket <= pair[0].ticket)
        {
            return Err(MessageError::Inconsistent(format!(
                "a batch lists ticket {} after ticket {}",
                pair[1].ticket, pair[0].ticket
            )));
        }
        Ok(())
    }
}

impl Message for Admissions {
    fn key(&self) -> String {
        match self {
            Admissions::One(admitted) => admitted.key(),
            Admissions::Batch(batch) => batch.key(),
        }
    }

    fn check(&self) -> Result<(), MessageError> {
        match self {
            Admissions::One(_) => Ok(()),
            Admissions::Batch(batch) => batch.check(),
        }
    }
}

impl Message for BatchWinners {
    fn key(&self) -> String {
        self.event_id.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn admitted() -> Admitted {
        Admitted {
            version: MESSAGE_VERSION,
            event_id: EventId::parse("ev").expect("valid"),
            user: UserKey::parse("web", "u1").expect("valid"),
            ticket: 7,
            admitted_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trips_with_a_version_and_a_user_key() {
        let message = admitted();
        let bytes = message.encode();
        let text = String::from_utf8(bytes.clone()).expect("JSON is UTF-8");
        assert!(text.contains(r#""version":1"#), "{text}");
        assert_eq!(Admitted::decode(&bytes).expect("decodes"), message);
        assert_eq!(message.key(), "web:u1");

        let result = DrawResult {
            version: MESSAGE_VERSION,
            event_id: message.event_id.clone(),
            user: message.user.clone(),
            ticket: 7,
            outcome: Outcome::SoldOut,
            decision_order: 3,
            stock_left: 0,
            decided_at_ms: 1,
        };
        let text = String::from_utf8(result.encode()).expect("UTF-8");
        assert!(text.contains(r#""outcome":"sold_out""#), "{text}");
        assert_eq!(
            DrawResult::decode(text.as_bytes()).expect("decodes"),
            result
        );
    }

    #[test]
    fn unknown_versions_and_garbage_are_typed_errors() {
        let newer = String::from_utf8(admitted().encode())
            .expect("UTF-8")
            .replace(r#""version":1"#, r#""version":2"#);
        assert!(matches!(
            Admitted::decode(newer.as_bytes()),
            Err(MessageError::UnknownVersion(2))
        ));
        for garbage in [&b""[..], b"{}", b"[1]", b"\xff", br#"{"version":1}"#] {
            assert!(matches!(
                Admitted::decode(garbage),
                Err(MessageError::Malformed(_))
            ));
        }
        let bad_user = String::from_utf8(admitted().encode())
            .expect("UTF-8")
            .replace(r#""user_id":"u1""#, r#""user_id":"a:b""#);
        assert!(matches!(
            Admitted::decode(bad_user.as_bytes()),
            Err(MessageError::Malformed(_))
        ));
    }

    #[test]
    fn batch_winners_round_trip_under_their_event() {
        let message = BatchWinners {
            version: MESSAGE_VERSION,
            event_id: EventId::parse("drop-1").expect("valid"),
            winners: vec![Winner {
                user: UserKey::parse("web", "u1").expect("valid"),
                ticket: 12,
                decision_order: 9,
            }],
            stock_total: 100,
            stock_left: 41,
            decided_at_ms: 1_700_000_000_000,
        };
        let text = String::from_utf8(message.encode()).expect("UTF-8");
        assert!(
            text.contains(r#""winners":[{"user":{"platform_id":"web","user_id":"u1"},"ticket":12,"decision_order":9}]"#),
            "{text}"
        );
        assert_eq!(
            BatchWinners::decode(text.as_bytes()).expect("decodes"),
            message
        );
        assert_eq!(message.key(), "drop-1");
    }

    #[test]
    fn a_waiting_queue_message_is_one_admission_or_one_events_batch_in_ticket_order() {
        let one = admitted();
        assert_eq!(
            Admissions::decode(&one.encode()).expect("one").into_vec(),
            vec![one.clone()]
        );
        let mut second = one.clone();
        second.user = UserKey::parse("web", "u2").expect("valid");
        second.ticket = 9;
        let batch = AdmittedBatch {
            version: MESSAGE_VERSION,
            event_id: one.event_id.clone(),
            admitted: vec![one.clone(), second.clone()],
        };
        assert_eq!(batch.key(), "ev");
        assert_eq!(
            Admissions::decode(&batch.encode())
                .expect("batch")
                .into_vec(),
            vec![one.clone(), second.clone()]
        );

        let backwards = AdmittedBatch {
            admitted: vec![second.clone(), one.clone()],
            ..batch.clone()
        };
        assert!(matches!(
            Admissions::decode(&backwards.encode()),
            Err(MessageError::Inconsistent(_))
        ));
        let mut stray = second;
        stray.event_id = EventId::parse("other").expect("valid");
        let mixed = AdmittedBatch {
            admitted: vec![one, stray],
            ..batch
        };
        assert!(matches!(
            AdmittedBatch::decode(&mixed.encode()),
            Err(MessageError::Inconsistent(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Admissions::decode(&bytes);
            let _ = Admitted::decode(&bytes);
            let _ = DrawResult::decode(&bytes);
            let _ = BatchWinners::decode(&bytes);
        }
    }
}
