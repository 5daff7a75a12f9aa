//! `dropgate dead-letter list|replay|replay-pubsub`: what the consumers set aside as
//! unreadable, and sending it back once they can read it (after a rolling upgrade
//! finished). On Kafka the consumers set letters aside themselves; on Pub/Sub each push
//! subscription's dead-letter policy does, after its retry budget.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use dropgate_functions::bus::Publisher;
use dropgate_functions::config::{KafkaArgs, TopicArgs};
use dropgate_functions::dead_letter::DeadLetter;
use dropgate_functions::kafka::{self, Positions};
use dropgate_functions::pubsub::PubSubArgs;
use dropgate_functions::pubsub::dead_letters;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::Message as _;

/// The consumer group replays commit under, so each letter is replayed once.
pub const REPLAY_GROUP: &str = "dropgate-dead-letter-replay";

/// How long the topic must stay quiet before a pass counts as finished.
const IDLE: Duration = Duration::from_secs(3);

/// `dropgate dead-letter ...`
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Print every dead letter (one JSON object per line) and a count per topic and
    /// reason; changes nothing.
    List {
        /// Where Kafka is.
        #[command(flatten)]
        kafka: KafkaArgs,
        /// The topic names.
        #[command(flatten)]
        topics: TopicArgs,
    },
    /// Send every dead letter not replayed yet back to the topic it came from. Run it
    /// once every consumer reads the messages (e.g. after the upgrade that set them
    /// aside finished); a letter still unreadable is set aside again.
    Replay {
        /// Where Kafka is.
        #[command(flatten)]
        kafka: KafkaArgs,
        /// The topic names.
        #[command(flatten)]
        topics: TopicArgs,
    },
    /// Pub/Sub (Cloud Run): move every message waiting on the `<topic>-dead-letter`
    /// subscriptions of the waiting-queue and result-notification topics back to its
    /// topic, each acknowledged only once published again. Stops once both have been
    /// quiet for `--quiet-secs`.
    ReplayPubsub {
        /// Where Pub/Sub is.
        #[command(flatten)]
        pubsub: PubSubArgs,
        /// The topic names (with the deployment's prefix, as the functions have them).
        #[command(flatten)]
        topics: TopicArgs,
        /// How long a subscription must stay quiet before it counts as drained.
        #[arg(long, default_value_t = 10)]
        quiet_secs: u64,
    },
}

/// Runs one subcommand.
pub async fn run(command: DeadLetterCommand) -> Result<ExitCode> {
    match command {
        DeadLetterCommand::List { kafka, topics } => {
            // A group of its own each time: reads from the start, commits nothing.
            let group = format!("dropgate-dead-letter-list-{}", std::process::id());
            let letters = read_all(&kafka, &group, &topics.dead_letter, false).await?;
            let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
            for letter in &letters {
                println!("{}", serde_json::to_string(letter)?);
                *counts
                    .entry((letter.source_topic.clone(), letter.reason.clone()))
                    .or_default() += 1;
            }
            eprintln!("{} dead letters", letters.len());
            for ((topic, reason), count) in counts {
                eprintln!("  {topic:<24} {reason:<16} {count}");
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadLetterCommand::Replay { kafka, topics } => {
            let letters = read_all(&kafka, REPLAY_GROUP, &topics.dead_letter, true).await?;
            println!("{} dead letters replayed", letters.len());
            Ok(ExitCode::SUCCESS)
        }
        DeadLetterCommand::ReplayPubsub {
            pubsub,
            topics,
            quiet_secs,
        } => {
            let quiet = Duration::from_secs(quiet_secs);
            let mut total = 0;
            for topic in [&topics.waiting_queue, &topics.result_notification] {
                eprintln!(
                    "replaying {} to {topic} (until quiet for {quiet_secs} s)",
                    dead_letters::dead_letter_subscription(topic)
                );
                let moved = dead_letters::replay(&pubsub, topic, quiet, |moved| {
                    if moved % 1_000 == 0 {
                        eprintln!("  {moved} replayed so far");
                    }
                })
                .await?;
                println!("{moved} dead letters replayed to {topic}");
                total += moved;
            }
            println!("{total} dead letters replayed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads `topic` as `group` up to where it ended when the read began (or until it
/// stays quiet for [`IDLE`]); with `replay`, sends each letter back to its topic and
/// commits past it. Letters written after the start are left for the next run: a
/// replayed message a consumer still cannot read comes back as a new letter, and
/// replaying that too would never end.
async fn read_all(
    args: &KafkaArgs,
    group: &str,
    topic: &str,
    replay: bool,
) -> Result<Vec<DeadLetter>> {
    let consumer = kafka::consumer(args, group, topic).await?;
    let ends = partition_ends(&consumer, topic).await?;
    let mut reached: BTreeMap<i32, bool> = ends.iter().map(|(p, high)| (*p, *high == 0)).collect();
    let mut publishers: BTreeMap<String, Publisher> = BTreeMap::new();
    let mut letters = Vec::new();
    while reached.values().any(|done| !done) {
        let message = match tokio::time::timeout(IDLE, consumer.recv()).await {
            Ok(message) => message.context("reading the dead-letter topic")?,
            Err(_) => break,
        };
        let end = ends.get(&message.partition()).copied().unwrap_or(0);
        if message.offset() + 1 >= end {
            reached.insert(message.partition(), true);
        }
        if message.offset() >= end {
            continue;
        }
        let letter: DeadLetter = serde_json::from_slice(message.payload().unwrap_or_default())
            .with_context(|| {
                format!(
                    "an unreadable dead letter at partition {} offset {}",
                    message.partition(),
                    message.offset()
                )
            })?;
        if replay {
            let publisher = match publishers.get(&letter.source_topic) {
                Some(publisher) => publisher.clone(),
                None => {
                    let publisher = Publisher::kafka(args, &letter.source_topic).await?;
                    publishers.insert(letter.source_topic.clone(), publisher.clone());
                    publisher
                }
            };
            publisher
                .publish(&letter.replay_key(), &letter.payload()?)
                .await
                .with_context(|| format!("replaying to {}", letter.source_topic))?;
            let mut positions = Positions::default();
            positions.pass(&message);
            if let Some(offsets) = positions.to_commit()? {
                consumer
                    .commit(&offsets, CommitMode::Sync)
                    .context("committing the replay")?;
            }
            if letters.len() % 1_000 == 999 {
                eprintln!("{} replayed so far", letters.len() + 1);
            }
        }
        letters.push(letter);
    }
    Ok(letters)
}

/// Each partition of `topic` and the offset its log ends at now.
async fn partition_ends(consumer: &kafka::Consumer, topic: &str) -> Result<BTreeMap<i32, i64>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} does not exist");
    let mut ends = BTreeMap::new();
    for partition in partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .with_context(|| format!("reading where {topic}/{partition} ends"))?;
        ends.insert(partition, high);
    }
    Ok(ends)
}
