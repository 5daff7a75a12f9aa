//! CPU of queue-api's side of one enter script call, by how many calls are in flight
//! at once: `cargo run --release -p dropgate-functions --example store_timing --
//! redis://127.0.0.1:<port> <in flight>` against a Redis of your own (it writes an
//! event named `timing`). On the bench machine: 31.9 µs per call one at a time, 12.8
//! at 4, 7.3 at 16, 5.3 at 64, on loopback, where the sender also pays the
//! receiver's TCP work. An enter's Redis round trip is cheap only when many are in
//! flight and the connection sends them together.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use dropgate_core::{EventId, EventState, UserKey};
use dropgate_functions::config::RedisArgs;
use dropgate_functions::queue::{EventMeta, QueueStore};

/// This process's user and system CPU so far, in seconds (Linux).
fn cpu_s() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |at: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(at)
            .ok_or_else(|| anyhow::anyhow!("/proc/self/stat too short"))?
            .parse()?)
    };
    // utime and stime, in clock ticks of 1/100 s.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("give the Redis URL"))?;
    let in_flight: usize = std::env::args().nth(2).map_or(Ok(64), |n| n.parse())?;
    let store = QueueStore::connect(&RedisArgs::url(url)).await?;
    let event = EventId::parse("timing")?;
    store
        .put_event_meta(
            &event,
            &EventMeta {
                state: EventState::Open,
                rate_per_s: 100,
                abandon_timeout_ms: 60_000,
                opens_at_ms: 0,
                allowed_platforms: Vec::new(),
            },
        )
        .await?;
    let users: Arc<Vec<UserKey>> = Arc::new(
        (0..100_000)
            .map(|n| UserKey::parse("bench", &format!("user-{n:07}")))
            .collect::<Result<_, _>>()?,
    );
    for round in ["new", "existing", "existing"] {
        let next = Arc::new(AtomicUsize::new(0));
        let (cpu, wall) = (cpu_s()?, Instant::now());
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let (store, users, next, event) = (
                store.clone(),
                Arc::clone(&users),
                Arc::clone(&next),
                event.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while let Some(user) = users.get(next.fetch_add(1, Ordering::Relaxed)) {
                    store.enter(&event, user, 1).await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        println!(
            "{round}: {:.2} µs CPU per enter call (client side), {:.0}/s",
            (cpu_s()? - cpu) * 1e6 / users.len() as f64,
            users.len() as f64 / wall.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
