//! Publishing to Pub/Sub with Google's client. A message carries the versioned JSON a
//! Kafka record would (admissions as one batch per event and tick, see
//! [`crate::bus::Publisher::publish_admissions`]); its ordering key is the message key
//! (the user's member key for a result, the event for admissions and winners), and
//! the key is repeated as an attribute for whoever reads a dead-letter topic.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;

use super::{KEY_ATTRIBUTE, PubSubArgs, topic_path};
use crate::kafka::DELIVERY_TIMEOUT;

/// How long the client gathers messages into one publish call; like Kafka's
/// `linger.ms`, invisible to users and a large saving at the admitter's bursts.
const DELAY_THRESHOLD: std::time::Duration = std::time::Duration::from_millis(5);

/// The Pub/Sub message for (`key`, `payload`).
pub fn message(key: &str, payload: &[u8]) -> Message {
    Message::new()
        .set_data(payload.to_vec())
        .set_ordering_key(key)
        .set_attributes(HashMap::from([(KEY_ATTRIBUTE, key)]))
}

/// A publisher bound to one topic.
#[derive(Debug, Clone)]
pub struct TopicPublisher {
    publisher: Publisher,
    topic: String,
}

impl TopicPublisher {
    /// A publisher to `topic` in the configured project: Google's endpoint with
    /// Application Default Credentials (on Cloud Run, the service's account), or the
    /// emulator named by `PUBSUB_EMULATOR_HOST` without credentials.
    pub async fn connect(args: &PubSubArgs, topic: &str) -> Result<Self> {
        let Some(project) = args.pubsub_project.as_deref().filter(|p| !p.is_empty()) else {
            bail!("DROPGATE_PUBSUB_PROJECT is required with DROPGATE_TRANSPORT=pubsub");
        };
        let path = topic_path(project, topic);
        let mut builder = Publisher::builder(path.clone()).set_delay_threshold(DELAY_THRESHOLD);
        let emulator = args
            .pubsub_emulator_host
            .as_deref()
            .filter(|h| !h.is_empty());
        if let Some(host) = emulator {
            builder = builder
                .with_endpoint(format!("http://{host}"))
                .with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                );
        } else if let Some(endpoint) = args.pubsub_endpoint.as_deref().filter(|e| !e.is_empty()) {
            builder = builder.with_endpoint(endpoint);
        }
        let publisher = builder
            .build()
            .await
            .with_context(|| format!("Failed to create a Pub/Sub publisher for {path}"))?;
        Ok(Self {
            publisher,
            topic: topic.to_owned(),
        })
    }

    /// The topic's short name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes one message and waits for Pub/Sub to store it.
    pub async fn publish(&self, key: &str, payload: &[u8]) -> Result<()> {
        let published = tokio::time::timeout(
            DELIVERY_TIMEOUT,
            self.publisher.publish(message(key, payload)),
        )
        .await;
        let failure = match published {
            Ok(Ok(_id)) => return Ok(()),
            Ok(Err(error)) => format!("{error}"),
            Err(_) => format!("no answer within {DELIVERY_TIMEOUT:?}"),
        };
        // A failed publish pauses its ordering key; the message is retried later (next
        // admitter tick, outbox re-send), so the key must accept it again.
        self.publisher.resume_publish(key);
        bail!("Pub/Sub delivery to {} failed: {failure}", self.topic)
    }
}

#[cfg(test)]
mod tests {
    use dropgate_core::{
        Admitted, DrawResult, EventId, MESSAGE_VERSION, Message as _, Outcome, UserKey,
    };

    use super::*;
    use crate::pubsub::envelope::{self, PushedMessage};

    fn admitted() -> Admitted {
        Admitted {
            version: MESSAGE_VERSION,
            event_id: EventId::parse("drop-1").expect("id"),
            user: UserKey::parse("web", "u1").expect("user"),
            ticket: 7,
            admitted_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_message_carries_the_payload_the_key_as_ordering_key_and_attribute() {
        let event = admitted().event_id;
        let batch = crate::bus::admission_batches(&event, &[admitted()]).remove(0);
        let payload = batch.encode();
        let encoded = message(&batch.key(), &payload);
        assert_eq!(encoded.data.as_ref(), payload.as_slice());
        assert_eq!(
            encoded.ordering_key, "drop-1",
            "admissions are ordered per event"
        );
        assert_eq!(
            encoded.attributes,
            HashMap::from([("key".to_owned(), "drop-1".to_owned())])
        );
        // The service assigns these; a client that set them would be refused.
        assert!(encoded.message_id.is_empty());
        assert!(encoded.publish_time.is_none());
    }

    #[test]
    fn what_is_published_is_what_a_push_handler_decodes() {
        let result = DrawResult {
            version: MESSAGE_VERSION,
            event_id: EventId::parse("drop-1").expect("id"),
            user: UserKey::parse("web", "u1").expect("user"),
            ticket: 7,
            outcome: Outcome::Won,
            decision_order: 3,
            stock_left: 97,
            decided_at_ms: 1_700_000_000_450,
        };
        let published = message(&result.key(), &result.encode());
        // Pub/Sub pushes the stored message back in its envelope, data in base64.
        let body = envelope::encode(
            &published.data,
            &published.attributes,
            "1",
            "projects/p/subscriptions/s",
        );
        let pushed = PushedMessage::parse(&body).expect("envelope");
        assert_eq!(DrawResult::decode(&pushed.data).expect("result"), result);
        assert_eq!(pushed.attributes[KEY_ATTRIBUTE], result.key());
    }

    #[tokio::test]
    async fn connecting_without_a_project_names_the_variable() {
        let error = TopicPublisher::connect(&PubSubArgs::default(), "waiting-queue")
            .await
            .expect_err("no project");
        assert!(
            error.to_string().contains("DROPGATE_PUBSUB_PROJECT"),
            "{error}"
        );
    }
}
