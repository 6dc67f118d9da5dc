//! The outbox relay: publishes events written with state changes, then acknowledges them.

use super::Inner;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 512;

/// Drains the store's outbox to the event bus until the engine stops (then one last drain).
/// A partial batch means the outbox was empty at that read: the relay then waits for the
/// next step's wake-up (a wake-up sent meanwhile is kept) instead of reading again at once,
/// and on a durable store first lingers (`relay_linger`) so one read and one
/// acknowledgement carry several steps' events.
pub(crate) async fn relay_loop(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    let linger = if inner.store.capabilities().durable { inner.config.relay_linger } else { Duration::ZERO };
    loop {
        match drain(&inner).await {
            Ok(n) => {
                backoff = Duration::from_millis(50);
                if n == BATCH {
                    continue;
                }
                if inner.stop.is_cancelled() {
                    if n == 0 {
                        return;
                    }
                    continue;
                }
                if n > 0 && !linger.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(linger) => {}
                        _ = inner.stop.cancelled() => continue,
                    }
                }
                tokio::select! {
                    _ = inner.outbox_wake.notified() => {}
                    _ = tokio::time::sleep(inner.config.poll_interval) => {}
                    _ = inner.stop.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "relaying events failed; retrying");
                if inner.stop.is_cancelled() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Publishes one batch in order; acknowledges what was published even if a later event failed.
async fn drain(inner: &Inner) -> crate::Result<usize> {
    let batch = inner.store.outbox_pending(BATCH).await?;
    let (mut seqs, events): (Vec<u64>, Vec<_>) = batch.into_iter().map(|entry| (entry.seq, entry.event)).unzip();
    let (published, outcome) = inner.bus.publish_batch(events).await;
    seqs.truncate(published);
    if !seqs.is_empty() {
        inner.store.outbox_ack(&seqs).await?;
    }
    outcome.map(|()| seqs.len())
}
