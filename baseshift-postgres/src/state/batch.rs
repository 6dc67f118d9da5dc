//! Group commit of [`StateStore::apply`](baseshift_core::StateStore::apply): concurrent
//! steps queue up, and a few writer tasks each take everything queued (up to
//! [`MAX_BATCH`]) and apply it in one transaction with one commit.
//!
//! - **No added latency**: a step that finds a writer slot free starts a writer at once;
//!   there is no timer. Batches form only while every writer is busy.
//! - **Each caller gets its own result**, and a step is reported applied only after its
//!   batch committed. A step refused by a precondition writes nothing and does not
//!   disturb the others (see [`super::apply`]). If the batch transaction fails before
//!   its commit (a database error, a deadlock), nothing of it was written and each of its
//!   steps is run again in a transaction of its own, so a step's error is its own.
//! - **Lock order**: a batch runs its steps sorted by workflow id (stable, so steps on one
//!   workflow keep their arrival order), and each step locks its header before its jobs,
//!   so two batches never wait for each other in a cycle.
//! - The writers are tokio tasks: a caller that stops waiting (drops its `apply` future)
//!   does not abandon the steps of others batched with it, and its own queued step is
//!   still applied (or refused) as if it had waited.

use super::apply::write_batch;
use crate::backend::Shared;
use crate::error::BACKEND;
use baseshift_core::store::{Applied, Transition};
use baseshift_core::{Error, ErrorKind, Result};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;

/// The most steps one transaction applies.
pub(crate) const MAX_BATCH: usize = 64;

/// A queued step and where its result goes.
struct Pending {
    step: Transition,
    reply: oneshot::Sender<Result<Applied>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    writers: usize,
}

/// The queue of steps waiting for a writer, shared by every store of one [`Shared`].
pub(crate) struct Batcher {
    queue: Mutex<Queue>,
    max_writers: usize,
}

impl Batcher {
    /// A batcher running at most `max_writers` (at least 1) transactions at once.
    pub(crate) fn new(max_writers: usize) -> Batcher {
        Batcher { queue: Mutex::new(Queue::default()), max_writers: max_writers.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch, or `None` when the queue is empty.
    fn take(&self) -> Option<Vec<Pending>> {
        let mut queue = self.lock();
        if queue.pending.is_empty() {
            return None;
        }
        let n = queue.pending.len().min(MAX_BATCH);
        Some(queue.pending.drain(..n).collect())
    }
}

/// Queues `step`, starts a writer if a slot is free, and waits for the step's result.
pub(crate) async fn apply(shared: &Arc<Shared>, step: Transition) -> Result<Applied> {
    let (reply, result) = oneshot::channel();
    let start = {
        let mut queue = shared.batcher.lock();
        queue.pending.push(Pending { step, reply });
        let start = queue.writers < shared.batcher.max_writers;
        if start {
            queue.writers += 1;
        }
        start
    };
    if start {
        spawn_writer(shared.clone());
    }
    result.await.unwrap_or_else(|_| {
        Err(Error::new(ErrorKind::Unavailable, "the step's writer stopped before answering (runtime shutting down?)")
            .with_operation("StateStore::apply")
            .with_backend(BACKEND))
    })
}

fn spawn_writer(shared: Arc<Shared>) {
    tokio::spawn(async move {
        let _slot = WriterSlot(shared.clone());
        while let Some(batch) = shared.batcher.take() {
            run(&shared, batch).await;
        }
    });
}

/// A running writer's slot: freed when the writer ends (also by a panic or an abort),
/// and taken again at once by a new writer if steps were queued meanwhile.
struct WriterSlot(Arc<Shared>);

impl Drop for WriterSlot {
    fn drop(&mut self) {
        let restart = {
            let mut queue = self.0.batcher.lock();
            if queue.pending.is_empty() {
                queue.writers -= 1;
                false
            } else {
                true
            }
        };
        if restart && tokio::runtime::Handle::try_current().is_ok() {
            spawn_writer(self.0.clone());
        } else if restart {
            self.0.batcher.lock().writers -= 1;
        }
    }
}

/// Applies one batch and answers each of its callers.
async fn run(shared: &Shared, mut batch: Vec<Pending>) {
    batch.sort_by(|a, b| a.step.workflow_id.as_str().cmp(b.step.workflow_id.as_str()));
    let (steps, replies): (Vec<Transition>, Vec<_>) = batch.into_iter().map(|p| (p.step, p.reply)).unzip();
    let results = if steps.len() == 1 {
        write_batch(shared, steps).await.unwrap_or_else(|e| vec![Err(e)])
    } else {
        let again = steps.clone();
        match write_batch(shared, steps).await {
            Ok(results) => results,
            Err(e) => {
                tracing::debug!(error = %e, steps = again.len(), "batched apply failed; applying its steps one by one");
                let mut results = Vec::with_capacity(again.len());
                for step in again {
                    results.extend(write_batch(shared, vec![step]).await.unwrap_or_else(|e| vec![Err(e)]));
                }
                results
            }
        }
    };
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that stopped waiting does not want its answer.
        let _ = reply.send(result);
    }
}
