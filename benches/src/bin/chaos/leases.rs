//! A [`StateStore`] decorator for the workers: it records the lease of every job the
//! engine claims and every successful renewal (token and expiry) as `lease` marks, so the
//! checker knows until when each run's lease was valid. Every other call is forwarded.

use crate::record::{Mark, Recorder};
use async_trait::async_trait;
use baseshift_core::store::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, StoreCapabilities,
    Transition, WorkflowFilter,
};
use baseshift_core::{JobKey, JobRecord, Result, StateStore, WorkflowId, WorkflowRecord, WorkflowTemplate};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// The engine's store, with lease marks.
pub struct LeaseRecording {
    /// The real store.
    pub inner: Arc<dyn StateStore>,
    /// Where the marks go.
    pub recorder: Arc<Recorder>,
}

fn micros(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_micros()).unwrap_or(0)
}

impl LeaseRecording {
    async fn mark(&self, key: &JobKey, attempt: u32, token: &str, expires: DateTime<Utc>) {
        let mark = Mark {
            kind: "lease".into(),
            wf: key.workflow_id.to_string(),
            job: key.job_id.to_string(),
            attempt,
            token: token.to_owned(),
            pid: std::process::id(),
            t_us: micros(expires),
            outcome: None,
        };
        self.recorder.write_until_done(&mark).await;
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl StateStore for LeaseRecording {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }

    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        self.inner.create_workflow(new).await
    }

    async fn create_workflows(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        self.inner.create_workflows(news).await
    }

    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        self.inner.workflow(id).await
    }

    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        self.inner.workflows(ids).await
    }

    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        self.inner.job(key).await
    }

    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        self.inner.jobs(id, ids).await
    }

    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        self.inner.jobs_of(ids).await
    }

    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        self.inner.template(template_id, version).await
    }

    async fn apply(&self, step: Transition) -> Result<Applied> {
        self.inner.apply(step).await
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Claimed> {
        let claimed = self.inner.claim(req).await?;
        for rec in &claimed.jobs {
            if let Some(lease) = &rec.lease {
                self.mark(&rec.key(), rec.attempt, &lease.token, lease.expires_at).await;
            }
        }
        Ok(claimed)
    }

    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        let expires = self.inner.renew_lease(key, token, ttl).await?;
        self.mark(key, 0, token, expires).await;
        Ok(expires)
    }

    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        self.inner.list_workflows(filter).await
    }

    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
        self.inner.dead_letters(filter).await
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.inner.outbox_pending(limit).await
    }

    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()> {
        self.inner.outbox_ack(seqs).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.inner.wait_for_work(timeout).await
    }
}
