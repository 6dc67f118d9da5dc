//! [`MemoryStateStore`]: the in-memory [`StateStore`], the embedded default.

mod combine;
mod entry;
mod index;
mod inner;
mod retention;
mod validate;
mod workflows;

pub use retention::MemoryRetention;

use super::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, StateStore,
    StoreCapabilities, Transition, WorkflowFilter,
};
use crate::error::Result;
use crate::ids::{JobKey, WorkflowId};
use crate::state::{JobRecord, WorkflowRecord};
use crate::template::WorkflowTemplate;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inner::{Inner, Wake};
use parking_lot::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// The in-memory [`StateStore`]: the embedded default. Same semantics as the durable
/// backends (versions, conflicts, leases, outbox), state lost when the process exits.
///
/// Every operation runs under one lock, so each step is atomic; a step that finds the lock
/// held for another step is queued for the lock's holder to apply, and its worker's thread
/// runs other tasks meanwhile. A queued step whose caller stops waiting (drops the future)
/// is still applied, as a step sent to a durable store would be. Claimable jobs are kept
/// in ordered indexes (ready queue by [`JobRecord::queue_score`], delayed retries by
/// `ready_at`, leases by expiry), so [`claim`](StateStore::claim) costs about the number of
/// jobs it returns or skips, not the number of jobs stored.
///
/// Two choices the contract leaves to the backend:
/// - [`renew_lease`](StateStore::renew_lease) does not bump the job's `version`, so the
///   lease holder's next write still carries the version its claim returned.
/// - The store-maintained `remaining` count changes without bumping the header's
///   `version` (no caller ever writes it).
///
/// ```
/// use baseshift_core::store::StateStore;
/// use baseshift_core::MemoryStateStore;
/// use std::sync::Arc;
///
/// let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
/// assert!(!store.capabilities().durable);
/// ```
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    inner: Mutex<Inner>,
    /// Steps that found the lock taken, for its holder to apply (see `combine`).
    queued: Mutex<Vec<combine::Queued>>,
    /// How many steps `queued` holds, read without taking its lock.
    waiting: std::sync::atomic::AtomicUsize,
    /// Whether the lock's holder is applying steps (a long hold, worth queueing behind).
    stepping: std::sync::atomic::AtomicBool,
    work: Notify,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes workflows that finished (`COMPLETED`, `FAILED`, `CANCELLED`) more than
    /// `older_than` ago, with their job records and idempotency keys: without it, a
    /// long-running host keeps every workflow it ever ran. Workflows that are not finished
    /// are never touched. Works in batches of 1 000 so other steps are not held up long.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use baseshift_core::MemoryStateStore;
    /// use std::time::Duration;
    ///
    /// let store = MemoryStateStore::new();
    /// let removed = store.apply_retention(Duration::from_secs(3600))?;
    /// assert_eq!(removed.workflows, 0);
    /// # Ok::<(), baseshift_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn apply_retention(&self, older_than: Duration) -> Result<MemoryRetention> {
        const BATCH: usize = 1_000;
        let cutoff = super::retention_cutoff(older_than)?;
        let mut total = MemoryRetention::default();
        loop {
            let batch = self.lock().remove_finished(cutoff, BATCH);
            total.workflows += batch.workflows;
            total.jobs += batch.jobs;
            if (batch.workflows as usize) < BATCH {
                return Ok(total);
            }
        }
    }

    fn wake(&self, wake: Wake) {
        if wake.0 {
            self.work.notify_waiters();
            // Also leave a permit, for an engine between a claim and its next wait.
            self.work.notify_one();
        }
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::new("memory", false, false)
    }

    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        let (outcome, wake) = self.lock().create(new, Utc::now())?;
        self.wake(wake);
        Ok(outcome)
    }

    async fn create_workflows(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        let now = Utc::now();
        let mut wake = Wake::default();
        let mut out = Vec::with_capacity(news.len());
        {
            let mut inner = self.lock();
            for new in news {
                out.push(inner.create(new, now).map(|(outcome, w)| {
                    wake.0 |= w.0;
                    outcome
                }));
            }
        }
        self.wake(wake);
        out
    }

    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        self.lock().workflow(id)
    }

    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        let inner = self.lock();
        Ok(ids.iter().filter_map(|id| inner.workflow(id).ok()).collect())
    }

    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        self.lock().job(key)
    }

    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        self.lock().jobs(id, ids)
    }

    /// Every list under one lock.
    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        Ok(self.lock().jobs_of(ids))
    }

    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        self.lock().template(template_id, version)
    }

    async fn apply(&self, step: Transition) -> Result<Applied> {
        match self.apply_or_queue(step) {
            Ok(answer) => answer,
            Err(queued) => queued.get().await,
        }
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Claimed> {
        self.lock().claim(req, Utc::now(), None)
    }

    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        self.lock().renew(key, token, ttl, Utc::now())
    }

    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        Ok(self.lock().list(&filter))
    }

    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
        Ok(self.lock().dead_letters(&filter))
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        Ok(self.lock().outbox_pending(limit))
    }

    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()> {
        let acked = self.lock().outbox_ack(seqs);
        drop(acked);
        Ok(())
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let now = Utc::now();
        // A retry that came due since the last claim is new work, reported once.
        let (promoted, next_due) = self.lock().promote_due(now);
        if promoted {
            return;
        }
        let until_due = next_due.and_then(|at| (at - now).to_std().ok());
        let timeout = until_due.map_or(timeout, |d| timeout.min(d));
        let _ = tokio::time::timeout(timeout, self.work.notified()).await;
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
