//! Retention for the memory store: finished workflows are removed once old enough, so a
//! long-running host does not keep every workflow it ever ran.

use super::inner::Inner;
use chrono::{DateTime, Utc};

/// What one retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryRetention {
    /// Workflow headers removed.
    pub workflows: u64,
    /// Job records removed with them.
    pub jobs: u64,
}

impl Inner {
    /// Removes up to `limit` workflows that finished before `cutoff`, with their job
    /// records (all terminal, so in no claim queue), dead letters and idempotency key. Events still in the outbox stay (they are relayed as
    /// usual); template snapshots stay (other workflows may share them).
    pub(super) fn remove_finished(&mut self, cutoff: DateTime<Utc>, limit: usize) -> MemoryRetention {
        let mut report = MemoryRetention::default();
        while (report.workflows as usize) < limit {
            let Some(first) = self.finished.first() else { break };
            if first.0 >= cutoff {
                break;
            }
            let Some((_, id)) = self.finished.pop_first() else { break };
            // A stale entry: the workflow was replayed (it runs again and is indexed anew
            // when it finishes) or still holds a job that is not terminal.
            let removable = self
                .workflows
                .get(&id)
                .is_some_and(|wf| wf.header.status.is_terminal() && wf.jobs.iter().all(|j| j.status.is_terminal()));
            if !removable {
                continue;
            }
            let Some(entry) = self.workflows.remove(&id) else { continue };
            if let Some(key) = &entry.header.idempotency_key
                && self.idempotency.get(key) == Some(&id)
            {
                self.idempotency.remove(key);
            }
            for job in &entry.jobs {
                self.dead.remove(&(id.clone(), job.job_id.clone()));
            }
            report.workflows += 1;
            report.jobs += entry.jobs.len() as u64;
        }
        report
    }
}
