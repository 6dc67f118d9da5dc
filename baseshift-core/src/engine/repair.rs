//! Repairs: a workflow whose follow-up steps (propagating skips, deciding conditions,
//! finalizing) failed after its own step, e.g. because the store became unreachable or a
//! reply was lost after the step was applied, is finished in the background once the store
//! answers again, instead of waiting for the next `recover` (which only runs at launch).

use super::Inner;
use crate::error::{ErrorKind, Result};
use crate::ids::WorkflowId;
use crate::state::WorkflowStatus;
use std::sync::Arc;
use std::time::Duration;

/// At most this many workflows wait for repair (beyond that, `recover` at the next launch
/// is the safety net).
const MAX_PENDING: usize = 100_000;

impl Inner {
    /// Notes that `id`'s follow-up steps may be half done.
    pub fn needs_repair(&self, id: &WorkflowId) {
        let mut pending = self.repairs.lock();
        if pending.len() < MAX_PENDING {
            pending.insert(id.clone());
        }
    }

    /// Completes what `recover` would complete for `id`: starts it if still `INITIALIZED`,
    /// else finishes its half-done steps. Idempotent: every step re-reads and is
    /// version-checked.
    async fn repair(&self, id: &WorkflowId) -> Result<()> {
        let header = match self.store.workflow(id).await {
            Ok(h) => h,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match header.status {
            WorkflowStatus::Initialized => self.begin(id).await,
            s if s.is_terminal() => Ok(()),
            _ => {
                let jobs = self.store.jobs(id, None).await?;
                self.resume(&header, &jobs).await.map(|_| ())
            }
        }
    }
}

/// Retries pending repairs every poll interval (backing off while they fail).
pub(crate) async fn repair_loop(inner: Arc<Inner>) {
    let mut pause = inner.config.poll_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = inner.stop.cancelled() => return,
        }
        let pending: Vec<WorkflowId> = inner.repairs.lock().iter().cloned().collect();
        let mut failed = false;
        for id in pending {
            match inner.repair(&id).await {
                Ok(()) => {
                    inner.repairs.lock().remove(&id);
                }
                Err(e) => {
                    tracing::warn!(workflow = %id, error = %e, "finishing a workflow's follow-up steps failed; will retry");
                    failed = true;
                    break;
                }
            }
        }
        pause = if failed { (pause * 2).min(Duration::from_secs(5)) } else { inner.config.poll_interval };
    }
}
