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
    /// LIST of [`LineEntry`]s in ticket order: the waiting line. New users are pushed
    /// at the tail (the enter script takes the ticket and pushes in one step, so list
    /// order is ticket order) and the admitter takes them from the head. A user who
    /// leaves the line another way (drawn while Redis still had them waiting, answered
    /// by PostgreSQL) is not searched for: their entry goes stale and whoever reaches
    /// it drops it.
    ///
    /// A list, not a sorted set: at a million waiting users the sorted set cost 125
    /// bytes per user (skiplist node, dict entry, member string) and the list 27 (the
    /// entry inside a listpack node), measured with `INFO memory` on Redis 7.0.
    pub fn line(&self) -> String {
        self.key("line")
    }
    /// ZSET of members scored by ticket: the waiting line of releases before the
    /// list. Read only to merge what older queue-api instances still put there during
    /// a rolling upgrade into [`EventKeys::line`].
    pub fn legacy_queue(&self) -> String {
        self.key("queue")
    }
    /// LIST of the pre-queue shuffle's plan while it is applied: one
    /// `<position>|<ticket>|<member>` per user, so a shuffle cut short is resumed
    /// rather than planned again from a half-shuffled line.
    pub fn shuffle_plan(&self) -> String {
        self.key("shuffle")
    }
    /// STRING set once the pre-queue shuffle's plan is applied: the line is shuffled
    /// once, so no later plan reorders it again.
    pub fn shuffled(&self) -> String {
        self.key("shuffled")
    }
    /// LIST where the shuffle's plan is written before it becomes
    /// [`EventKeys::shuffle_plan`] in one rename: a plan is either whole or absent.
    pub fn shuffle_staging(&self) -> String {
        self.key("shuffle:staging")
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
    /// ZSET of members just marked expired, scored by ticket, until the admitter has
    /// recorded them in PostgreSQL (as `admitting` holds admissions until Kafka has
    /// them).
    pub fn expiring(&self) -> String {
        self.key("expiring")
    }
    /// ZSET of members sent to the draw whose result is not applied yet, scored by
    /// when they were last sent (Unix s): the in-flight count, and what the admitter
    /// sends again when a result never comes back.
    pub fn inflight(&self) -> String {
        self.key("inflight")
    }
    /// HASH of the event's public fairness record (docs/fairness.md): the rule, the
    /// commitment and the parameters it binds; the seed once it is revealed.
    pub fn fairness(&self) -> String {
        self.key("fairness")
    }
    /// STRING of the event's public decision log, as JSON (docs/fairness.md), written
    /// once at the close.
    pub fn decision_log(&self) -> String {
        self.key("fairness:log")
    }
    /// HASH of counters: entered, admitted, won, lost, sold_out, expired.
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// Pub/sub channel of results and the sold-out notice for open streams.
    pub fn channel(&self) -> String {
        self.key("notify")
    }
    /// STRING `<instance>|<fencing token>` with a TTL: the admitter holding the lease.
    pub fn leader(&self) -> String {
        self.key("leader")
    }
    /// STRING counter of fencing tokens, one per new lease holder.
    pub fn fence(&self) -> String {
        self.key("fence")
    }
    /// HASH of the admission token bucket (milli, at_ms), carried across failover.
    pub fn bucket(&self) -> String {
        self.key("bucket")
    }
}

/// SET of every event id the queue side knows, so admitters find their work. Not
/// hash-tagged: it is only ever read or written alone.
pub const EVENTS_KEY: &str = "dropgate:events";

/// One place in an event's [`EventKeys::line`]: `<ticket>|<member>`. The ticket goes
/// first because user ids may contain `|`. The entry is the member's place while
/// their record says waiting with this ticket; otherwise it is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEntry {
    /// The ticket the place was taken with.
    pub ticket: u64,
    /// `<platform>:<user>`.
    pub member: String,
}

impl LineEntry {
    /// The stored form (the scripts read and write the same).
    pub fn encode(&self) -> String {
        format!("{}|{}", self.ticket, self.member)
    }

    /// Parses the stored form; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let (ticket, member) = text.split_once('|')?;
        if member.is_empty() || !ticket.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            ticket: ticket.parse().ok()?,
            member: member.to_owned(),
        })
    }
}

/// What is published on an event's [`EventKeys::channel`]: one user's outcome was
/// written to their record, or the event sold out. queue-api wakes the matching
/// streams, which re-read the record itself, so a notice carries no outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The member's record now holds their outcome.
    Result(String),
    /// The event's stock is gone.
    SoldOut,
    /// The event is closing: nobody still in line will be admitted.
    Closing,
}

impl Notice {
    /// The published text: `r|<member>`, `sold_out` or `closing`.
    pub fn encode(&self) -> String {
        match self {
            Notice::Result(member) => format!("r|{member}"),
            Notice::SoldOut => "sold_out".to_owned(),
            Notice::Closing => "closing".to_owned(),
        }
    }

    /// Parses a published text; unknown notices are `None` (newer publishers).
    pub fn decode(text: &str) -> Option<Self> {
        match text.split_once('|') {
            Some(("r", member)) if !member.is_empty() => Some(Notice::Result(member.to_owned())),
            _ if text == "sold_out" => Some(Notice::SoldOut),
            _ if text == "closing" => Some(Notice::Closing),
            _ => None,
        }
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
            keys.line(),
            keys.legacy_queue(),
            keys.shuffle_plan(),
            keys.shuffle_staging(),
            keys.shuffled(),
            keys.users(),
            keys.serving(),
            keys.admitting(),
            keys.stats(),
            keys.channel(),
            keys.fairness(),
            keys.decision_log(),
            keys.inflight(),
            keys.expiring(),
        ] {
            assert!(key.starts_with("{ev:drop-1}:"), "{key}");
        }
    }

    #[test]
    fn line_entries_round_trip_members_with_bars() {
        let entry = LineEntry {
            ticket: 42,
            member: "web:a|b".into(),
        };
        assert_eq!(entry.encode(), "42|web:a|b");
        assert_eq!(LineEntry::decode(&entry.encode()), Some(entry));
        for bad in [
            "",
            "42",
            "42|",
            "|web:a",
            "x|web:a",
            "-1|web:a",
            "4 2|web:a",
        ] {
            assert_eq!(LineEntry::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn notices_round_trip() {
        for notice in [Notice::Result("web:a|b".into()), Notice::SoldOut] {
            assert_eq!(Notice::decode(&notice.encode()), Some(notice));
        }
        assert_eq!(Notice::decode("r|"), None);
        assert_eq!(Notice::decode("something-new"), None);
    }
}
