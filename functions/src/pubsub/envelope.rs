//! The body of a Pub/Sub push request (the "wrapped" format):
//!
//! ```json
//! {"message": {"data": "<base64>", "attributes": {"key": "web:u1"},
//!              "messageId": "136969346945", "publishTime": "2026-01-01T00:00:00Z"},
//!  "subscription": "projects/p/subscriptions/goods-worker", "deliveryAttempt": 1}
//! ```
//!
//! Pub/Sub also sends snake_case duplicates (`message_id`, `publish_time`); unknown
//! fields are ignored so a new field from Google does not break delivery.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// One pushed message, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedMessage {
    /// The message payload, base64-decoded.
    pub data: Vec<u8>,
    /// Its attributes.
    pub attributes: HashMap<String, String>,
    /// Pub/Sub's id for the message (the same on every redelivery).
    pub message_id: String,
    /// The subscription that delivered it.
    pub subscription: String,
    /// Which delivery this is (only when the subscription has a dead-letter policy).
    pub delivery_attempt: Option<u32>,
}

#[derive(Deserialize)]
struct Envelope {
    message: Option<Message>,
    subscription: Option<String>,
    #[serde(rename = "deliveryAttempt")]
    delivery_attempt: Option<u32>,
}

#[derive(Deserialize)]
struct Message {
    data: Option<String>,
    #[serde(default)]
    attributes: Option<HashMap<String, String>>,
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    #[serde(rename = "message_id")]
    message_id_snake: Option<String>,
}

/// Why a push body is not a usable envelope (a client error: answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedEnvelope(pub String);

impl PushedMessage {
    /// Parses and validates a push request body.
    pub fn parse(body: &[u8]) -> Result<Self, MalformedEnvelope> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(|error| {
            MalformedEnvelope(format!("the body is not a Pub/Sub push envelope: {error}"))
        })?;
        let message = envelope
            .message
            .ok_or_else(|| MalformedEnvelope("the envelope has no `message`".into()))?;
        let subscription = envelope
            .subscription
            .filter(|name| !name.is_empty())
            .ok_or_else(|| MalformedEnvelope("the envelope has no `subscription`".into()))?;
        let message_id = message
            .message_id
            .or(message.message_id_snake)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| MalformedEnvelope("the message has no `messageId`".into()))?;
        let encoded = message
            .data
            .filter(|data| !data.is_empty())
            .ok_or_else(|| MalformedEnvelope("the message has no `data`".into()))?;
        let data = STANDARD.decode(encoded.as_bytes()).map_err(|error| {
            MalformedEnvelope(format!("`message.data` is not valid base64: {error}"))
        })?;
        Ok(Self {
            data,
            attributes: message.attributes.unwrap_or_default(),
            message_id,
            subscription,
            delivery_attempt: envelope.delivery_attempt,
        })
    }
}

/// A push request body carrying `data`, as Pub/Sub would send it (tests and tools
/// build deliveries with it).
pub fn encode(
    data: &[u8],
    attributes: &HashMap<String, String>,
    message_id: &str,
    subscription: &str,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "message": {
            "data": STANDARD.encode(data),
            "attributes": attributes,
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2026-01-01T00:00:00.000Z",
        },
        "subscription": subscription,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_google_style_envelope_is_read() {
        let body = br#"{"message":{"attributes":{"key":"web:u1"},"data":"eyJ2ZXJzaW9uIjoxfQ==",
            "messageId":"2070443601311540","message_id":"2070443601311540",
            "publishTime":"2021-02-26T19:13:55.749Z","publish_time":"2021-02-26T19:13:55.749Z",
            "orderingKey":"web:u1"},
            "subscription":"projects/p/subscriptions/s","deliveryAttempt":3,"newField":1}"#;
        let message = PushedMessage::parse(body).expect("valid");
        assert_eq!(message.data, br#"{"version":1}"#);
        assert_eq!(message.attributes["key"], "web:u1");
        assert_eq!(message.message_id, "2070443601311540");
        assert_eq!(message.subscription, "projects/p/subscriptions/s");
        assert_eq!(message.delivery_attempt, Some(3));
    }

    #[test]
    fn encode_and_parse_agree() {
        let attributes = HashMap::from([("key".to_owned(), "web:u1".to_owned())]);
        let body = encode(
            b"\x00\xffpayload",
            &attributes,
            "7",
            "projects/p/subscriptions/s",
        );
        let message = PushedMessage::parse(&body).expect("valid");
        assert_eq!(message.data, b"\x00\xffpayload");
        assert_eq!(message.attributes, attributes);
        assert_eq!(message.message_id, "7");
        assert_eq!(message.delivery_attempt, None);
    }

    #[test]
    fn every_malformation_is_named() {
        let cases: [(&[u8], &str); 8] = [
            (b"", "not a Pub/Sub push envelope"),
            (b"[1,2]", "not a Pub/Sub push envelope"),
            (br#"{"subscription":"s"}"#, "no `message`"),
            (
                br#"{"message":{"data":"AA==","messageId":"1"}}"#,
                "no `subscription`",
            ),
            (
                br#"{"message":{"data":"AA=="},"subscription":"s"}"#,
                "no `messageId`",
            ),
            (
                br#"{"message":{"messageId":"1"},"subscription":"s"}"#,
                "no `data`",
            ),
            (
                br#"{"message":{"data":"%%%","messageId":"1"},"subscription":"s"}"#,
                "not valid base64",
            ),
            (
                br#"{"message":{"data":5,"messageId":"1"},"subscription":"s"}"#,
                "not a Pub/Sub push envelope",
            ),
        ];
        for (body, expected) in cases {
            let error = PushedMessage::parse(body).expect_err("malformed");
            assert!(
                error.0.contains(expected),
                "{:?}: {error}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
