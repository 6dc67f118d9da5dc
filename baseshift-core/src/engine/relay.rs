//! The outbox relay: publishes events written with state changes, then acknowledges them.

use super::Inner;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 512;

/// Drains the store's outbox to the event bus until the engine stops (then one last drain).
pub(crate) async fn relay_loop(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match drain(&inner).await {
            Ok(0) => {
                backoff = Duration::from_millis(50);
                if inner.stop.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = inner.outbox_wake.notified() => {}
                    _ = tokio::time::sleep(inner.config.poll_interval) => {}
                    _ = inner.stop.cancelled() => {}
                }
            }
            Ok(_) => {}
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
    let mut done = Vec::with_capacity(batch.len());
    let mut failure = None;
    for entry in batch {
        match inner.bus.publish_shared(entry.event).await {
            Ok(()) => done.push(entry.seq),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if !done.is_empty() {
        inner.store.outbox_ack(&done).await?;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(done.len()),
    }
}
