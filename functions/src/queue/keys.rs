//! Redis key names of one event. Every key carries the hash tag `{ev:<id>}`, so all of
//! an event's keys live on one cluster slot and a Lua script may touch them together.

use dropgate_core::EventId;

/// The keys of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKeys {
    tag: String,
}

impl EventKeys {
    /// Keys of `event`.
    pub fn new(event: &EventId) -> Self {
        Self {
            tag: format!("{{ev:{event}}}"),
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.tag)
    }

    /// HASH: state, rate, abandon timeout, opening time, mode, stock left, max in
    /// flight: what the queue side needs to know of the event.
    pub fn meta(&self) -> String {
        self.key("meta")
    }
    /// STRING counter handing out ticket numbers.
    pub fn seq(&self) -> String {
        self.key("seq")
    }
    /// ZSET of waiting members scored by ticket.
    pub fn queue(&self) -> String {
        self.key("queue")
    }
    /// HASH member → compact [`dropgate_core::UserRecord`].
    pub fn users(&self) -> String {
        self.key("users")
    }
    /// STRING: highest ticket served so far.
    pub fn serving(&self) -> String {
        self.key("serving")
    }
    /// ZSET of admitted members not yet acknowledged by Kafka.
    pub fn admitting(&self) -> String {
        self.key("admitting")
    }
    /// HASH of counters: entered, admitted, won, lost, sold_out, expired.
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// Pub/sub channel of results and the sold-out notice for open streams.
    pub fn channel(&self) -> String {
        self.key("notify")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_hash_tag() {
        let keys = EventKeys::new(&EventId::parse("drop-1").expect("valid"));
        for key in [
            keys.meta(),
            keys.seq(),
            keys.queue(),
            keys.users(),
            keys.serving(),
            keys.admitting(),
            keys.stats(),
            keys.channel(),
        ] {
            assert!(key.starts_with("{ev:drop-1}:"), "{key}");
        }
    }
}
