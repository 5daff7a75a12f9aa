//! The message bus between the functions, behind one small interface: a
//! [`Publisher`] sends a keyed message to one topic, and each consuming function hands
//! batches of decoded messages to the same handler whatever brought them.
//!
//! Two transports exist. Kafka (the default, used locally and on GKE) is consumed by
//! long-lived consumer groups ([`crate::kafka::collect_batch`]). Pub/Sub (Cloud Run)
//! pushes every message as an HTTP request to the consuming function
//! ([`crate::pubsub::push`]), and concurrent requests are gathered into batches by a
//! [`crate::pubsub::batcher::Batcher`]. Only the way bytes arrive and leave differs:
//! the rules that decide, record and apply are the same code on both paths.

use anyhow::{Result, bail};
use dropgate_core::{Admitted, Message as _};
use rdkafka::producer::FutureRecord;

use crate::config::KafkaArgs;
use crate::kafka::{self, DELIVERY_TIMEOUT};

/// Most admissions in one Pub/Sub message.
pub const PUBSUB_ADMISSION_BATCH: usize = 1_000;

/// Most JSON bytes in one Pub/Sub admission batch: base64 in the push envelope makes
/// it a third larger, still within goods-worker's push body limit
/// ([`crate::pubsub::push::MAX_ADMISSIONS_PUSH_BODY`]) whatever the ids' lengths (up to 128
/// bytes each, so an admission is 150 to 500 bytes).
pub const PUBSUB_BATCH_BYTES: usize = 300 * 1024;

/// One event's admissions cut into the Pub/Sub messages that carry them, in order:
/// at most [`PUBSUB_ADMISSION_BATCH`] admissions and [`PUBSUB_BATCH_BYTES`] each.
pub fn admission_batches(
    event: &dropgate_core::EventId,
    admissions: &[Admitted],
) -> Vec<dropgate_core::AdmittedBatch> {
    let mut batches = Vec::new();
    let mut current: Vec<Admitted> = Vec::new();
    let mut bytes = 0;
    for admitted in admissions {
        let size = admitted.encode().len() + 1;
        if !current.is_empty()
            && (current.len() == PUBSUB_ADMISSION_BATCH || bytes + size > PUBSUB_BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(admitted.clone());
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
        .into_iter()
        .map(|admitted| dropgate_core::AdmittedBatch {
            version: dropgate_core::MESSAGE_VERSION,
            event_id: event.clone(),
            admitted,
        })
        .collect()
}

/// Which transport carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Transport {
    /// Kafka consumer groups and an idempotent producer.
    #[default]
    Kafka,
    /// Google Cloud Pub/Sub: published with the Google client, consumed as push
    /// requests (needs a build with the `pubsub` feature).
    #[value(name = "pubsub")]
    PubSub,
}

/// The transport setting shared by the admitter, goods-worker and result-relay.
#[derive(Debug, Clone, clap::Args)]
pub struct TransportArgs {
    /// `kafka` (consumer groups) or `pubsub` (Pub/Sub publishing, push endpoints).
    #[arg(long, env = "DROPGATE_TRANSPORT", value_enum, default_value = "kafka")]
    pub transport: Transport,
    /// Pub/Sub settings (used with `--transport pubsub`).
    #[command(flatten)]
    pub pubsub: crate::pubsub::PubSubArgs,
    /// Push endpoint settings (used with `--transport pubsub` by consuming functions).
    #[command(flatten)]
    pub push: crate::pubsub::push::PushArgs,
}

/// Parses a binary's flags and environment with the Kafka brokers made optional, since
/// the Pub/Sub transport does not use them; [`TransportArgs::require_brokers`] then
/// insists on them for Kafka. `--help` still lists every setting.
pub fn parse_config<C: clap::Parser>() -> C {
    parse_config_from(std::env::args_os()).unwrap_or_else(|error| error.exit())
}

/// [`parse_config`] over the given command line.
pub fn parse_config_from<C, I, T>(args: I) -> Result<C, clap::Error>
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = C::command().mut_arg("brokers", |arg| arg.required(false).default_value(""));
    let matches = command.try_get_matches_from_mut(args)?;
    C::from_arg_matches(&matches).map_err(|error| error.format(&mut command))
}

impl TransportArgs {
    /// Fails with the variable to set when Kafka is the transport and no brokers were
    /// given (see [`parse_config`]).
    pub fn require_brokers(&self, kafka: &KafkaArgs) -> Result<()> {
        if self.transport == Transport::Kafka && kafka.brokers.trim().is_empty() {
            bail!(
                "DROPGATE_KAFKA_BROKERS (--kafka-brokers) is required with DROPGATE_TRANSPORT=kafka"
            );
        }
        Ok(())
    }

    /// A publisher to `topic` on the configured transport.
    pub async fn publisher(&self, kafka: &KafkaArgs, topic: &str) -> Result<Publisher> {
        match self.transport {
            Transport::Kafka => Publisher::kafka(kafka, topic).await,
            Transport::PubSub => Publisher::pubsub(&self.pubsub, topic).await,
        }
    }
}

/// Sends keyed messages to one topic.
#[derive(Clone)]
pub enum Publisher {
    /// An idempotent Kafka producer; the key picks the partition.
    Kafka {
        /// The producer.
        producer: kafka::Producer,
        /// The topic.
        topic: String,
    },
    /// A Pub/Sub publisher; the key is the ordering key.
    #[cfg(feature = "pubsub")]
    PubSub(crate::pubsub::publisher::TopicPublisher),
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Publisher::Kafka { topic, .. } => write!(f, "Publisher(kafka:{topic})"),
            #[cfg(feature = "pubsub")]
            Publisher::PubSub(publisher) => write!(f, "Publisher(pubsub:{})", publisher.topic()),
        }
    }
}

impl Publisher {
    /// A Kafka publisher to `topic` with dropgate's producer settings.
    pub async fn kafka(args: &KafkaArgs, topic: &str) -> Result<Self> {
        Ok(Publisher::Kafka {
            producer: kafka::producer(args).await?,
            topic: topic.to_owned(),
        })
    }

    /// A Pub/Sub publisher to `topic` (a short name, in the configured project).
    #[cfg(feature = "pubsub")]
    pub async fn pubsub(args: &crate::pubsub::PubSubArgs, topic: &str) -> Result<Self> {
        Ok(Publisher::PubSub(
            crate::pubsub::publisher::TopicPublisher::connect(args, topic).await?,
        ))
    }

    /// Without the `pubsub` feature there is no Pub/Sub client to publish with.
    #[cfg(not(feature = "pubsub"))]
    pub async fn pubsub(_args: &crate::pubsub::PubSubArgs, _topic: &str) -> Result<Self> {
        bail!(
            "this build has no Pub/Sub client: DROPGATE_TRANSPORT=pubsub needs the binaries \
             built with `--features dropgate-functions/pubsub`"
        )
    }

    /// The topic's name as configured.
    pub fn topic(&self) -> &str {
        match self {
            Publisher::Kafka { topic, .. } => topic,
            #[cfg(feature = "pubsub")]
            Publisher::PubSub(publisher) => publisher.topic(),
        }
    }

    /// Sends one event's admissions, in ticket order, so the draw decides them in
    /// that order; one result per admission, in order.
    ///
    /// On Kafka each admission is its own message keyed by the event: one event's
    /// admissions share one partition, which one goods-worker reads in order. On
    /// Pub/Sub they go as [`admission_batches`] under the event's ordering key, each
    /// sent once the previous one is stored: Pub/Sub pushes one message of an ordering
    /// key at a time, in order, so a push carries many users and the order holds.
    pub async fn publish_admissions(
        &self,
        event: &dropgate_core::EventId,
        admissions: &[Admitted],
    ) -> Vec<Result<()>> {
        match self {
            Publisher::Kafka { .. } => {
                let messages: Vec<(String, Vec<u8>)> = admissions
                    .iter()
                    .map(|admitted| (event.to_string(), admitted.encode()))
                    .collect();
                self.publish_in_order(&messages).await
            }
            #[cfg(feature = "pubsub")]
            Publisher::PubSub(publisher) => {
                let mut results = Vec::with_capacity(admissions.len());
                for batch in admission_batches(event, admissions) {
                    let sent = publisher.publish(&batch.key(), &batch.encode()).await;
                    let failed = sent.as_ref().err().map(|error| format!("{error:#}"));
                    results.extend(batch.admitted.iter().map(|_| match &failed {
                        None => Ok(()),
                        Some(error) => Err(anyhow::anyhow!("{error}")),
                    }));
                    if failed.is_some() {
                        // Nothing after a lost batch: it would overtake it.
                        let skipped = admissions.len() - results.len();
                        results.extend((0..skipped).map(|_| {
                            Err(anyhow::anyhow!(
                                "not sent: an earlier batch of the event failed"
                            ))
                        }));
                        break;
                    }
                }
                results
            }
        }
    }

    /// Sends `messages` (key, payload) in their order and waits for every
    /// acknowledgement; one result per message, in order. On Kafka each message is
    /// queued before the next, so messages sharing a partition keep their order, and
    /// the idempotent producer keeps it through retries.
    pub async fn publish_in_order(&self, messages: &[(String, Vec<u8>)]) -> Vec<Result<()>> {
        match self {
            Publisher::Kafka { producer, topic } => {
                let mut queued = Vec::with_capacity(messages.len());
                for (key, payload) in messages {
                    queued.push(enqueue_in_order(producer, topic, key, payload).await);
                }
                let mut results = Vec::with_capacity(messages.len());
                for delivery in queued {
                    results.push(match delivery {
                        Ok(delivery) => match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((error, _))) => {
                                Err(anyhow::anyhow!("Kafka delivery to {topic} failed: {error}"))
                            }
                            Err(_) => {
                                Err(anyhow::anyhow!("Kafka delivery to {topic} was cancelled"))
                            }
                        },
                        Err(error) => Err(error),
                    });
                }
                results
            }
            #[cfg(feature = "pubsub")]
            Publisher::PubSub(publisher) => {
                futures_util::future::join_all(
                    messages
                        .iter()
                        .map(|(key, payload)| publisher.publish(key, payload)),
                )
                .await
            }
        }
    }

    /// Sends one message and waits until the transport acknowledged it durably (Kafka:
    /// every in-sync replica; Pub/Sub: the service stored it), at most
    /// [`DELIVERY_TIMEOUT`].
    pub async fn publish(&self, key: &str, payload: &[u8]) -> Result<()> {
        match self {
            Publisher::Kafka { producer, topic } => {
                let record = FutureRecord::to(topic).key(key).payload(payload);
                producer
                    .send(record, DELIVERY_TIMEOUT)
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| {
                        anyhow::anyhow!("Kafka delivery to {topic} failed: {error}")
                    })
            }
            #[cfg(feature = "pubsub")]
            Publisher::PubSub(publisher) => publisher.publish(key, payload).await,
        }
    }
}

/// Queues one message on the producer, waiting (in order) while its queue is full,
/// for at most [`DELIVERY_TIMEOUT`].
async fn enqueue_in_order(
    producer: &kafka::Producer,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> Result<rdkafka::producer::DeliveryFuture> {
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err((error, _)) => bail!("Kafka delivery to {topic} failed: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_batches_keep_the_order_and_fit_a_push_whatever_the_ids() {
        let long = "x".repeat(128);
        let event = dropgate_core::EventId::parse(&long).expect("valid");
        let admissions: Vec<Admitted> = (1..=2_500)
            .map(|ticket| Admitted {
                version: dropgate_core::MESSAGE_VERSION,
                event_id: event.clone(),
                user: dropgate_core::UserKey::parse(&long, &format!("{ticket:0>128}"))
                    .expect("valid"),
                ticket,
                admitted_at_ms: 1_700_000_000_000,
            })
            .collect();
        let batches = admission_batches(&event, &admissions);
        assert!(
            batches.len() > 3,
            "long ids cut batches by bytes: {}",
            batches.len()
        );
        let tickets: Vec<u64> = batches
            .iter()
            .flat_map(|batch| batch.admitted.iter().map(|a| a.ticket))
            .collect();
        assert_eq!(tickets, (1..=2_500).collect::<Vec<u64>>());
        for batch in &batches {
            // The push envelope base64-encodes the data, plus a few hundred bytes.
            let pushed = batch.encode().len() * 4 / 3 + 1_024;
            assert!(
                pushed < crate::pubsub::push::MAX_ADMISSIONS_PUSH_BODY,
                "{pushed}"
            );
            assert!(batch.admitted.len() <= PUBSUB_ADMISSION_BATCH);
        }
        let short: Vec<Admitted> = admissions
            .iter()
            .map(|a| Admitted {
                event_id: dropgate_core::EventId::parse("e").expect("valid"),
                user: dropgate_core::UserKey::parse("p", "u").expect("valid"),
                ..a.clone()
            })
            .collect();
        let counted =
            admission_batches(&dropgate_core::EventId::parse("e").expect("valid"), &short);
        assert_eq!(
            counted.iter().map(|b| b.admitted.len()).collect::<Vec<_>>(),
            vec![1_000, 1_000, 500]
        );
    }

    #[derive(Debug, clap::Parser)]
    struct Probe {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        transport: TransportArgs,
    }

    #[test]
    fn brokers_are_required_for_kafka_only() {
        let pubsub: Probe = parse_config_from([
            "probe",
            "--transport",
            "pubsub",
            "--pubsub-project",
            "p",
            "--kafka-brokers",
            "",
        ])
        .expect("parses");
        assert_eq!(pubsub.transport.transport, Transport::PubSub);
        pubsub
            .transport
            .require_brokers(&pubsub.kafka)
            .expect("Pub/Sub needs no brokers");

        let kafka: Probe =
            parse_config_from(["probe", "--transport", "kafka", "--kafka-brokers", " "])
                .expect("parses");
        let error = kafka
            .transport
            .require_brokers(&kafka.kafka)
            .expect_err("Kafka needs brokers");
        assert!(
            error.to_string().contains("DROPGATE_KAFKA_BROKERS"),
            "{error}"
        );

        let given: Probe =
            parse_config_from(["probe", "--kafka-brokers", "127.0.0.1:9092"]).expect("parses");
        assert_eq!(
            given.transport.transport,
            Transport::Kafka,
            "kafka is the default"
        );
        given
            .transport
            .require_brokers(&given.kafka)
            .expect("brokers given");
        assert!(
            parse_config_from::<Probe, _, _>(["probe", "--transport", "carrier-pigeon"]).is_err()
        );
    }

    #[cfg(not(feature = "pubsub"))]
    #[tokio::test]
    async fn without_the_feature_pubsub_is_refused_with_the_reason() {
        let error = Publisher::pubsub(&crate::pubsub::PubSubArgs::default(), "waiting-queue")
            .await
            .expect_err("no client");
        assert!(error.to_string().contains("--features"), "{error}");
    }
}
