//! Gathers concurrent push requests into batches.
//!
//! Pub/Sub pushes one message per request, but the goods side can only reach its
//! throughput by deciding many users per PostgreSQL transaction (one transaction per
//! user tops out near the database's TPS), and the relay by sending many results per
//! Redis round trip. So each request hands its message to one task that waits for
//! the first message, takes whatever else arrives within the batch wait (up to the
//! batch size), runs the handler once for all of them and answers each request with
//! its own verdict. With Pub/Sub pushing hundreds of requests at once, batches fill
//! as they do on the Kafka path; a lone request waits at most the batch wait.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

type Job<T, V> = (T, oneshot::Sender<V>);

/// The sending side; cheap to clone into every request.
#[derive(Debug)]
pub struct Batcher<T, V> {
    jobs: mpsc::Sender<Job<T, V>>,
}

impl<T, V> Clone for Batcher<T, V> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<T: Send + 'static, V: Send + 'static> Batcher<T, V> {
    /// Starts the batching task. `handler` gets each batch and must return one verdict
    /// per message, in order. The task ends when every [`Batcher`] is dropped.
    pub fn spawn<H, F>(max: usize, wait: Duration, mut handler: H) -> Self
    where
        H: FnMut(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Vec<V>> + Send,
    {
        let max = max.max(1);
        // Room for two batches: requests beyond that wait for their turn to enqueue,
        // which holds them (and Pub/Sub's flow control) back instead of piling up.
        let (jobs, mut queue) = mpsc::channel::<Job<T, V>>(max * 2);
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut items = Vec::with_capacity(max);
                let mut replies = Vec::with_capacity(max);
                items.push(first.0);
                replies.push(first.1);
                let deadline = tokio::time::Instant::now() + wait;
                while items.len() < max {
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some((item, reply))) => {
                            items.push(item);
                            replies.push(reply);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                let verdicts = handler(items).await;
                debug_assert_eq!(verdicts.len(), replies.len());
                for (reply, verdict) in replies.into_iter().zip(verdicts) {
                    // The request may have gone (Pub/Sub's deadline passed): it is
                    // redelivered, and handling it again changes nothing.
                    let _ = reply.send(verdict);
                }
            }
        });
        Self { jobs }
    }

    /// Hands `item` to the next batch and waits for its verdict; `None` if the
    /// batching task is gone (the handler panicked) or dropped this message's
    /// verdict.
    pub async fn submit(&self, item: T) -> Option<V> {
        let (reply, verdict) = oneshot::channel();
        self.jobs.send((item, reply)).await.ok()?;
        verdict.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn concurrent_items_share_a_batch_and_get_their_own_verdicts() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let batcher = Batcher::spawn(10, Duration::from_millis(200), move |items: Vec<u32>| {
            seen.lock().expect("lock").push(items.len());
            async move { items.into_iter().map(|n| n * 2).collect() }
        });
        let answers = futures_util::future::join_all((0..25).map(|n| {
            let batcher = batcher.clone();
            async move { batcher.submit(n).await }
        }))
        .await;
        assert_eq!(
            answers,
            (0..25).map(|n| Some(n * 2)).collect::<Vec<_>>(),
            "each request gets its own item's verdict"
        );
        let sizes = sizes.lock().expect("lock").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 25);
        assert!(sizes.iter().all(|size| *size <= 10), "{sizes:?}");
        assert!(sizes.len() <= 4, "requests were not batched: {sizes:?}");
    }

    #[tokio::test]
    async fn a_lone_item_waits_only_the_batch_wait() {
        let batcher = Batcher::spawn(
            100,
            Duration::from_millis(20),
            |items: Vec<u8>| async move { items },
        );
        let started = std::time::Instant::now();
        assert_eq!(batcher.submit(7).await, Some(7));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
