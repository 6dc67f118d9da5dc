//! Builders for the records the conformance checks write: small DAG workflows and the
//! steps that drive their jobs through legal transitions.

use super::check::{ensure, ensure_eq, failure};
use crate::error::Result;
use crate::event::Event;
use crate::ids::{JobKey, WorkflowId};
use crate::state::{JobRecord, JobStatus, WorkflowRecord, WorkflowStatus};
use crate::store::{Applied, ClaimRequest, CreateOutcome, NewWorkflow, ParentOutcome, StateStore, Transition};
use crate::template::{JobSpec, WorkflowTemplate};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;
use std::time::Duration;

/// The current time truncated to milliseconds, a precision every backend keeps.
pub fn now_ms() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A small workflow to create in a store under test: a fresh [`WorkflowId`], a template
/// of its own (`conformance-<id>`, version `1.0.0`) and `PENDING` `noop` jobs.
///
/// ```
/// use baseshift_core::conformance::fixtures::TestWorkflow;
///
/// let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]);
/// let new = wf.build();
/// assert_eq!(new.jobs[1].deps.total, 1);
/// ```
#[derive(Clone, Debug)]
pub struct TestWorkflow {
    header: WorkflowRecord,
    jobs: Vec<JobRecord>,
    parents: Vec<Vec<String>>,
}

impl Default for TestWorkflow {
    fn default() -> Self {
        Self::new()
    }
}

impl TestWorkflow {
    /// A workflow with a fresh id and no jobs.
    pub fn new() -> Self {
        let id = WorkflowId::generate();
        let now = now_ms();
        let mut header =
            WorkflowRecord::initialized(id.clone(), format!("conformance-{id}"), "1.0.0", json!({"n": 1, "s": "text"}));
        header.created_at = now;
        header.updated_at = now;
        TestWorkflow { header, jobs: Vec::new(), parents: Vec::new() }
    }

    /// Adds a `PENDING` `noop` job with these parents (all added before it).
    #[must_use]
    pub fn job(mut self, job_id: &str, parents: &[&str]) -> Self {
        self.jobs.push(JobRecord::pending(self.header.id.clone(), job_id, "noop", parents.len() as u32));
        self.parents.push(parents.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// Edits the record of job `job_id` (added before); unknown ids are ignored.
    #[must_use]
    pub fn with_job(mut self, job_id: &str, edit: impl FnOnce(&mut JobRecord)) -> Self {
        if let Some(job) = self.jobs.iter_mut().find(|j| j.job_id == job_id) {
            edit(job);
        }
        self
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.header.idempotency_key = Some(key.into());
        self
    }

    /// The workflow id.
    pub fn id(&self) -> &WorkflowId {
        &self.header.id
    }

    /// The key of job `job_id` of this workflow.
    pub fn key(&self, job_id: &str) -> JobKey {
        JobKey::new(self.header.id.clone(), job_id)
    }

    /// The header as built (version and `remaining` are the store's to set).
    pub fn header(&self) -> &WorkflowRecord {
        &self.header
    }

    /// The job records as built.
    pub fn jobs(&self) -> &[JobRecord] {
        &self.jobs
    }

    /// The template snapshot: one `JobSpec` per job, with its parents.
    pub fn template(&self) -> WorkflowTemplate {
        let mut template = WorkflowTemplate::new(self.header.template_id.clone(), semver::Version::new(1, 0, 0));
        for (job, parents) in self.jobs.iter().zip(&self.parents) {
            if job.compensation_of.is_none() {
                let spec = JobSpec::new(job.job_id.clone(), job.job_type.clone())
                    .depends_on(parents.iter().cloned())
                    .trigger(job.trigger)
                    .priority(job.priority);
                template = template.job(spec);
            }
        }
        template
    }

    /// The [`NewWorkflow`] to create, with one `workflow_initialized` event.
    pub fn build(&self) -> NewWorkflow {
        NewWorkflow {
            header: self.header.clone(),
            jobs: self.jobs.clone(),
            template: std::sync::Arc::new(self.template()),
            events: vec![Event::workflow(&self.header.id, WorkflowStatus::Initialized, None)],
        }
    }

    /// Creates the workflow in `store`; fails unless the outcome is `Created`.
    pub async fn create(&self, store: &dyn StateStore) -> Result<()> {
        match store.create_workflow(self.build()).await? {
            CreateOutcome::Created(id) => {
                ensure_eq!(id, self.header.id, "create_workflow returned another id");
                Ok(())
            }
            other => Err(failure(format!("create_workflow of a new workflow returned {other:?}"))),
        }
    }
}

/// A claim request for `owner`.
pub fn claim_request(owner: &str, limit: usize, lease_ttl: Duration) -> ClaimRequest {
    ClaimRequest { owner: owner.into(), limit, lease_ttl, exclude_types: Vec::new(), type_limits: Default::default() }
}

/// A step writing `job` with its `job_<status>` event.
pub fn write_job(job: JobRecord) -> Transition {
    let mut step = Transition::new(job.workflow_id.clone());
    step.events.push(Event::job(&job.workflow_id, &job.job_id, job.status, job.attempt, None));
    step.jobs.push(job);
    step
}

/// Makes jobs `READY` with `ready_at = at`, the way an engine readies roots.
pub async fn make_ready(store: &dyn StateStore, wf: &WorkflowId, job_ids: &[&str], at: DateTime<Utc>) -> Result<()> {
    for job_id in job_ids {
        let mut job = store.job(&JobKey::new(wf.clone(), *job_id)).await?;
        job.status = JobStatus::Ready;
        job.ready_at = Some(at);
        store.apply(write_job(job)).await?;
    }
    Ok(())
}

/// Drives job `job_id` along legal transitions to the terminal `status`, the last step
/// delivering the outcome to `children` and counting the job in `terminal_delta`.
/// Returns what the last step applied.
pub async fn finish(
    store: &dyn StateStore,
    wf: &WorkflowId,
    job_id: &str,
    status: JobStatus,
    children: &[&str],
) -> Result<Applied> {
    ensure!(status.is_terminal(), "finish() needs a terminal status, got {status}");
    let key = JobKey::new(wf.clone(), job_id);
    let mut job = store.job(&key).await?;
    if matches!(status, JobStatus::Succeeded | JobStatus::Failed) {
        for step in [JobStatus::Ready, JobStatus::Running] {
            if job.status != step && job.status.can_become(step) {
                job.status = step;
                if step == JobStatus::Ready {
                    job.ready_at = Some(now_ms());
                }
                store.apply(write_job(job)).await?;
                job = store.job(&key).await?;
            }
        }
    }
    job.status = status;
    job.lease = None;
    job.propagated = true;
    job.finished_at = Some(now_ms());
    let main = job.compensation_of.is_none();
    let mut step = write_job(job);
    step.parent_outcomes = children.iter().map(|c| ParentOutcome { child: (*c).into(), status }).collect();
    step.terminal_delta = u64::from(main);
    store.apply(step).await
}

/// Moves job `job_id` of `wf` to `RUNNING` along legal writes, then returns (unapplied)
/// the step making it `SUCCEEDED` with `output`, counted in `terminal_delta`, with
/// `complete_at_zero` set to `at`: the last step of a workflow whose other jobs are done.
pub async fn succeed_step(
    store: &dyn StateStore,
    wf: &TestWorkflow,
    job_id: &str,
    output: Option<serde_json::Value>,
    at: DateTime<Utc>,
) -> Result<Transition> {
    let mut job = store.job(&wf.key(job_id)).await?;
    for next in [JobStatus::Ready, JobStatus::Running] {
        if job.status != next && job.status.can_become(next) {
            job.status = next;
            job.ready_at = Some(at);
            store.apply(write_job(job)).await?;
            job = store.job(&wf.key(job_id)).await?;
        }
    }
    job.status = JobStatus::Succeeded;
    job.output = output;
    job.propagated = true;
    job.finished_at = Some(at);
    let mut step = write_job(job);
    step.terminal_delta = 1;
    step.complete_at_zero = Some(at);
    Ok(step)
}
