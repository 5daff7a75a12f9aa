//! The two Kafka messages, `Admitted` (topic `waiting-queue`) and `DrawResult` (topic
//! `result-notification`): JSON with a `version` field, keyed by the user's member
//! string.
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

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Valid JSON from a producer speaking another format version.
    #[error("unknown message version {0}; this build reads version {MESSAGE_VERSION}")]
    UnknownVersion(u64),
    /// Not JSON, no version, missing fields or invalid ids.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

/// What both messages share: versioned JSON, keyed by the user's member string so
/// one user's messages share a partition.
pub trait Message: Serialize + DeserializeOwned {
    /// Who the message is about.
    fn user(&self) -> &UserKey;

    /// Decodes and validates a payload: the version first, then the fields.
    fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let VersionOnly { version } = serde_json::from_slice(bytes)?;
        if version != u64::from(MESSAGE_VERSION) {
            return Err(MessageError::UnknownVersion(version));
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The JSON payload.
    fn encode(&self) -> Vec<u8> {
        // Both messages hold only strings and integers: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The user's member string: result-notification's key, and the ordering key on
    /// Pub/Sub. Admissions on Kafka travel under their event instead, so one event's
    /// admissions keep their order on one partition (the admitter's
    /// `Publisher::admission_key`).
    fn key(&self) -> String {
        self.user().member()
    }
}

impl Message for Admitted {
    fn user(&self) -> &UserKey {
        &self.user
    }
}

impl Message for DrawResult {
    fn user(&self) -> &UserKey {
        &self.user
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

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Admitted::decode(&bytes);
            let _ = DrawResult::decode(&bytes);
        }
    }
}
