//! A Server-Sent Events reader for the simulated crowd: what a fetch-based browser
//! client does with `GET .../queue/me/stream` (EventSource cannot send the
//! `Authorization` header the API needs).

use std::time::Duration;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// `event:`; `message` when the server named none, as in browsers.
    pub(crate) name: String,
    /// `id:`, sent back as `Last-Event-ID` on reconnect.
    pub(crate) id: Option<String>,
    /// `data:` lines joined by newlines; empty for a block with only `retry:`.
    pub(crate) data: String,
    /// `retry:`: how long to wait before reconnecting.
    pub(crate) retry: Option<Duration>,
}

/// Splits a byte stream into events. Bytes are kept until a blank line ends a block,
/// so a chunk boundary inside a UTF-8 character or a line does no harm.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    /// Adds bytes read from the connection.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        // CR LF and LF both end lines; dropping CR makes both plain LF.
        self.buffer
            .extend(bytes.iter().filter(|&&byte| byte != b'\r'));
    }

    /// The next complete event, if a whole block has arrived. Comment-only blocks
    /// (heartbeats) are skipped.
    pub(crate) fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.windows(2).position(|pair| pair == b"\n\n")?;
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            if let Some(event) = parse_block(&String::from_utf8_lossy(&block)) {
                return Some(event);
            }
        }
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent::default();
    let mut has_data = false;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.name = value.to_owned(),
            "id" => event.id = Some(value.to_owned()),
            "retry" => event.retry = value.parse().ok().map(Duration::from_millis),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    if !has_data && event.retry.is_none() {
        return None;
    }
    if has_data && event.name.is_empty() {
        event.name = "message".to_owned();
    }
    Some(event)
}

/// Reads events from a streaming response.
pub(crate) struct SseReader {
    response: reqwest::Response,
    parser: SseParser,
}

impl SseReader {
    /// Wraps a `200 text/event-stream` response.
    pub(crate) fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            parser: SseParser::default(),
        }
    }

    /// The next event; `None` when the server ended the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<SseEvent>, reqwest::Error> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Ok(Some(event));
            }
            match self.response.chunk().await? {
                Some(bytes) => self.parser.push(&bytes),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_heartbeats_skipped() {
        let mut parser = SseParser::default();
        parser.push(b"retry: 3000\n\nevent: position\nid: position-waiting-3\nda");
        let retry = parser.next_event().expect("retry block");
        assert_eq!(retry.retry, Some(Duration::from_millis(3000)));
        assert_eq!(
            parser.next_event(),
            None,
            "the position block is incomplete"
        );
        parser.push(b"ta: {\"a\":1}\n\n: heartbeat\n\nevent: result\r\nid: result\r\n");
        parser.push(b"data: x\r\ndata: y\r\n\r\n");
        let position = parser.next_event().expect("position");
        assert_eq!(position.name, "position");
        assert_eq!(position.id.as_deref(), Some("position-waiting-3"));
        assert_eq!(position.data, "{\"a\":1}");
        let result = parser.next_event().expect("result after the heartbeat");
        assert_eq!(result.name, "result");
        assert_eq!(result.data, "x\ny");
        assert_eq!(parser.next_event(), None);
    }

    #[test]
    fn unnamed_data_is_a_message() {
        let mut parser = SseParser::default();
        parser.push(b"data:plain\n\n");
        let event = parser.next_event().expect("event");
        assert_eq!(event.name, "message");
        assert_eq!(event.data, "plain");
    }
}
