//! Local dispatch: on a durable store, the ready roots of a workflow this instance starts
//! while it has free slots and no backlog are claimed in the workflow's create step and
//! run here, without the claim round trip (see `EngineConfig::local_dispatch`).

use super::Inner;
use crate::state::{JobRecord, JobStatus};
use crate::store::NewWorkflow;
use chrono::Utc;
use std::sync::atomic::Ordering;

impl Inner {
    /// Whether a start may claim its roots now: durable store, launched and not stopping,
    /// the last claim found no backlog (so no older job is passed over), nothing limits
    /// job types.
    fn dispatches_locally(&self) -> bool {
        self.config.local_dispatch
            && self.store.capabilities().durable
            && self.launched.load(Ordering::SeqCst)
            && !self.stop.is_cancelled()
            && self.drained.load(Ordering::SeqCst)
            && !self.limits_types()
    }

    /// Takes up to `want` free slots; how many it took.
    fn reserve_slots(&self, want: usize) -> usize {
        let limit = self.config.concurrency;
        let mut taken = 0;
        let _ = self.total_running.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |running| {
            taken = want.min(limit.saturating_sub(running));
            (taken > 0).then_some(running + taken)
        });
        taken
    }

    /// Gives back slots that were reserved for jobs that will not run here.
    pub(super) fn release_slots(&self, n: usize) {
        if n > 0 {
            self.total_running.fetch_sub(n, Ordering::SeqCst);
            self.slot_freed.notify_one();
        }
    }

    /// Claims the new workflow's ready roots for this instance in its create step, when
    /// local dispatch applies: each becomes `RUNNING` under a lease of this instance with
    /// its `job_running` event, exactly as a claim would make it. Returns the records as the
    /// store will hold them (version 1), with a slot reserved for each: the caller runs
    /// them once the create succeeded, or gives the slots back.
    pub(super) fn claim_at_create(&self, new: &mut NewWorkflow) -> Vec<JobRecord> {
        if !self.dispatches_locally() {
            return Vec::new();
        }
        let now = Utc::now();
        let runnable = |j: &JobRecord| {
            j.status == JobStatus::Ready
                && j.compensation_of.is_none()
                && j.concurrency.is_none()
                && j.ready_at.is_none_or(|at| at <= now)
                && self.registry.get(&j.job_type).is_some()
        };
        let want = new.jobs.iter().filter(|j| runnable(j)).count();
        let mut left = self.reserve_slots(want);
        let Ok(ttl) = chrono::Duration::from_std(self.config.lease_ttl) else {
            self.release_slots(left);
            return Vec::new();
        };
        let mut claimed = Vec::with_capacity(left);
        for job in new.jobs.iter_mut() {
            if left == 0 {
                break;
            }
            if !runnable(job) {
                continue;
            }
            left -= 1;
            new.events.push(job.start_attempt(&self.config.instance_id, now + ttl, now));
            let mut rec = job.clone();
            rec.version = 1;
            claimed.push(rec);
        }
        claimed
    }
}
