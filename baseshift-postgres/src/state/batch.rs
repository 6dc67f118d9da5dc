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
//! - The queue, its writers and their slots are baseshift-core's
//!   [`Batcher`](baseshift_core::store::batch::Batcher); this module says how a batch
//!   is written.

use super::apply::write_batch;
use crate::backend::Shared;
use crate::error::BACKEND;
use baseshift_core::store::batch::{BatchLimits, BatchWrite, submit};
use baseshift_core::store::{Applied, Transition};
use baseshift_core::{Error, Result};
use std::sync::Arc;

/// The most steps one transaction applies.
pub(crate) const MAX_BATCH: usize = 64;

/// The queue of steps waiting for a writer, shared by every store of one [`Shared`].
pub(crate) type Batcher = baseshift_core::store::batch::Batcher<Transition>;

/// A batcher running at most `max_writers` (at least 1) transactions at once.
pub(crate) fn batcher(max_writers: usize) -> Batcher {
    Batcher::new(BatchLimits {
        writers: max_writers,
        max_steps: MAX_BATCH,
        max_bytes: usize::MAX,
        inline_when_idle: false,
    })
}

/// Queues `step`, starts a writer if a slot is free, and waits for the step's result.
pub(crate) async fn apply(shared: &Arc<Shared>, step: Transition) -> Result<Applied> {
    submit(shared, step).await
}

impl BatchWrite for Shared {
    type Step = Transition;
    const BACKEND: &'static str = BACKEND;

    fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    fn size(_: &Transition) -> usize {
        0
    }

    /// Applies one batch in workflow id order (stable), one result per step as given.
    async fn write(self: Arc<Self>, steps: Vec<Transition>) -> Vec<Result<Applied>> {
        let mut indexed: Vec<(usize, Transition)> = steps.into_iter().enumerate().collect();
        indexed.sort_by(|a, b| a.1.workflow_id.as_str().cmp(b.1.workflow_id.as_str()));
        let (order, sorted): (Vec<usize>, Vec<Transition>) = indexed.into_iter().unzip();
        let results = write_sorted(&self, sorted).await;
        // Back in the callers' order.
        let mut out: Vec<Option<Result<Applied>>> = (0..order.len()).map(|_| None).collect();
        for (&i, result) in order.iter().zip(results) {
            out[i] = Some(result);
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::internal("no result for the step")))).collect()
    }
}

/// Applies sorted steps in one transaction; if it fails before its commit, each step
/// again in a transaction of its own, so a step's error is its own.
async fn write_sorted(shared: &Shared, steps: Vec<Transition>) -> Vec<Result<Applied>> {
    if steps.len() == 1 {
        return write_batch(shared, steps).await.unwrap_or_else(|e| vec![Err(e)]);
    }
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
}
