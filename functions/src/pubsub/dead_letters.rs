//! Pub/Sub's dead letters, sent back. A push that keeps failing (an unreadable
//! message during a version skew, a handler down for longer than the retry budget) is
//! moved by its subscription's dead-letter policy to `<topic>-dead-letter`, where a
//! pull subscription of the same name keeps it. Replaying pulls each message from
//! there, publishes its bytes, ordering key and attributes to the topic again, and only
//! then acknowledges it, so a replay that fails halfway loses nothing: what was not
//! acknowledged is pulled again by the next run.
//!
//! Pub/Sub has no end of topic to stop at, so a replay ends once the subscription has
//! stayed quiet for a while. A replayed message that fails again comes back only after
//! the push subscription's whole retry budget (minutes), long after that.

use std::time::Duration;

use anyhow::Result;

use super::PubSubArgs;

/// The pull subscription (and topic) that keeps `topic`'s dead letters: what the
/// Terraform module creates.
pub fn dead_letter_subscription(topic: &str) -> String {
    format!("{topic}-dead-letter")
}

/// Moves every message waiting on `topic`'s dead-letter subscription back to `topic`,
/// until nothing arrives for `quiet`; `progress` hears the running count. Returns how
/// many were moved.
#[cfg(feature = "pubsub")]
pub async fn replay(
    args: &PubSubArgs,
    topic: &str,
    quiet: Duration,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    use anyhow::{Context as _, bail};
    use google_cloud_pubsub::client::Subscriber;
    use google_cloud_pubsub::subscriber::handler::Handler;

    use super::KEY_ATTRIBUTE;
    use super::publisher::TopicPublisher;

    let Some(project) = args.pubsub_project.as_deref().filter(|p| !p.is_empty()) else {
        bail!("DROPGATE_PUBSUB_PROJECT is required to replay Pub/Sub dead letters");
    };
    let subscription = format!(
        "projects/{project}/subscriptions/{}",
        dead_letter_subscription(topic)
    );
    let mut builder = Subscriber::builder();
    if let Some(host) = args
        .pubsub_emulator_host
        .as_deref()
        .filter(|h| !h.is_empty())
    {
        builder = builder
            .with_endpoint(format!("http://{host}"))
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
    } else if let Some(endpoint) = args.pubsub_endpoint.as_deref().filter(|e| !e.is_empty()) {
        builder = builder.with_endpoint(endpoint);
    }
    let subscriber = builder
        .build()
        .await
        .context("Failed to create a Pub/Sub subscriber")?;
    let publisher = TopicPublisher::connect(args, topic).await?;
    let mut stream = subscriber
        .subscribe(subscription.clone())
        .set_max_outstanding_messages(1_000)
        .build();
    let mut moved = 0u64;
    loop {
        let next = match tokio::time::timeout(quiet, stream.next()).await {
            Ok(Some(next)) => next,
            Ok(None) | Err(_) => break,
        };
        let (message, handler) = next.with_context(|| format!("pulling from {subscription}"))?;
        let key = if message.ordering_key.is_empty() {
            message
                .attributes
                .get(KEY_ATTRIBUTE)
                .cloned()
                .unwrap_or_default()
        } else {
            message.ordering_key.clone()
        };
        // Not acknowledged when the publish fails: dropping the handler gives the
        // message back to the subscription.
        publisher.publish(&key, &message.data).await?;
        match handler {
            Handler::ExactlyOnce(handler) => handler
                .confirmed_ack()
                .await
                .with_context(|| format!("acknowledging a replayed message on {subscription}"))?,
            handler => handler.ack(),
        }
        moved += 1;
        progress(moved);
    }
    Ok(moved)
}

/// Without the `pubsub` feature there is no Pub/Sub client to replay with.
#[cfg(not(feature = "pubsub"))]
pub async fn replay(
    _args: &PubSubArgs,
    _topic: &str,
    _quiet: Duration,
    _progress: impl FnMut(u64),
) -> Result<u64> {
    anyhow::bail!(
        "this build has no Pub/Sub client: replaying Pub/Sub dead letters needs the binary \
         built with `--features dropgate-functions/pubsub`"
    )
}
