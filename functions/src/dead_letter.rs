//! Messages a consumer cannot read are not skipped silently: each goes to the
//! dead-letter topic as a [`DeadLetter`] (where it came from, why it was refused, the
//! bytes themselves), is counted in `dropgate_dead_letters_total`, and only then is
//! its offset committed. A version skew during a rolling upgrade thus parks messages
//! instead of losing them; `dropgate dead-letter replay` sends them back to their
//! topic once every consumer reads them. The users concerned are not left waiting
//! meanwhile: the admitter sends again anyone whose result has not landed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use dropgate_core::MessageError;
use rdkafka::message::{BorrowedMessage, Message as _};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::bus::Publisher;

/// One refused message, as written to the dead-letter topic (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The topic it was read from, and where a replay sends it back.
    pub source_topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Its key (the user's member string, or the event id), if it had a readable one.
    pub key: Option<String>,
    /// `unknown_version` or `malformed`.
    pub reason: String,
    /// The decoder's message.
    pub detail: String,
    /// The message's bytes, hex-encoded (they may not be text).
    pub payload_hex: String,
    /// When it was refused (Unix ms).
    pub refused_at_ms: u64,
}

impl DeadLetter {
    /// The dead letter of `message`, refused with `error`.
    pub fn of(message: &BorrowedMessage<'_>, error: &MessageError) -> Self {
        let reason = match error {
            MessageError::UnknownVersion(_) => "unknown_version",
            MessageError::Malformed(_) | MessageError::Inconsistent(_) => "malformed",
        };
        Self {
            source_topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .and_then(|key| std::str::from_utf8(key).ok())
                .map(str::to_owned),
            reason: reason.to_owned(),
            detail: error.to_string(),
            payload_hex: dropgate_core::hex::encode(message.payload().unwrap_or_default()),
            refused_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|since| since.as_millis() as u64)
                .unwrap_or_default(),
        }
    }

    /// The original message's bytes.
    pub fn payload(&self) -> Result<Vec<u8>> {
        dropgate_core::hex::decode(&self.payload_hex)
            .map_err(|e| anyhow::anyhow!("dead letter payload: {e}"))
    }

    /// The key a replay publishes with: the original one, or where it came from.
    pub fn replay_key(&self) -> String {
        self.key
            .clone()
            .unwrap_or_else(|| format!("{}/{}/{}", self.source_topic, self.partition, self.offset))
    }
}

/// Where refused messages go.
#[derive(Clone)]
pub struct DeadLetters {
    publisher: Publisher,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// Dead letters published with `publisher` (to the dead-letter topic).
    pub fn new(publisher: Publisher) -> Self {
        Self { publisher }
    }

    /// Publishes every letter, retrying until the broker has them all or `shutdown`
    /// turns true (then fails: the caller must not commit past them).
    pub async fn send(
        &self,
        letters: &[DeadLetter],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        for letter in letters {
            let body = serde_json::to_vec(letter).context("encoding a dead letter")?;
            loop {
                match self.publisher.publish(&letter.replay_key(), &body).await {
                    Ok(()) => break,
                    Err(error) if *shutdown.borrow() => {
                        return Err(error.context("stopping with a dead letter not delivered"));
                    }
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "dead letter not delivered; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            tracing::error!(
                topic = %letter.source_topic,
                partition = letter.partition,
                offset = letter.offset,
                reason = %letter.reason,
                detail = %letter.detail,
                "unreadable message sent to the dead-letter topic"
            );
            metrics::counter!(
                "dropgate_dead_letters_total",
                "topic" => letter.source_topic.clone(),
                "reason" => letter.reason.clone()
            )
            .increment(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_bytes_and_where_they_came_from() {
        let letter = DeadLetter {
            source_topic: "waiting-queue".into(),
            partition: 2,
            offset: 41,
            key: None,
            reason: "malformed".into(),
            detail: "expected value".into(),
            payload_hex: dropgate_core::hex::encode(b"\xff{not json"),
            refused_at_ms: 1,
        };
        let text = serde_json::to_string(&letter).expect("encodes");
        let back: DeadLetter = serde_json::from_str(&text).expect("decodes");
        assert_eq!(back, letter);
        assert_eq!(back.payload().expect("hex"), b"\xff{not json");
        assert_eq!(back.replay_key(), "waiting-queue/2/41");
    }
}
