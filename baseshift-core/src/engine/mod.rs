//! The engine (the plan's Workflow Manager): starts workflows, runs their jobs through
//! the [`StateStore`], and publishes every transition on the [`EventBus`].
//!
//! ```
//! use baseshift_core::engine::Engine;
//! use baseshift_core::{JobSpec, WorkflowStatus, WorkflowTemplate};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> baseshift_core::Result<()> {
//! let engine = Engine::builder().build()?;
//! engine.launch().await?;
//! let template = WorkflowTemplate::new("hello", semver::Version::new(1, 0, 0))
//!     .job(JobSpec::new("a", "noop").config(json!({ "output": { "greeting": "hi" } })))
//!     .job(JobSpec::new("b", "noop"));
//! engine.register_template(template).await?;
//! let id = engine.start("hello", json!({})).await?;
//! let done = engine.wait(&id).await?;
//! assert_eq!(done.status, WorkflowStatus::Completed);
//! engine.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod builder;
mod claim;
mod compiled;
mod dispatch;
mod flow;
mod inner;
pub mod plan;
mod relay;
mod repair;
mod replay;
mod settle;
mod start;
mod wait;
mod waiters;
mod worker;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod plan_tests;

#[cfg(test)]
mod outage_tests;

#[cfg(test)]
mod fairness_tests;
#[cfg(test)]
mod safety_tests;

pub use builder::{EngineBuilder, EngineConfig};
pub use flow::{CircuitBreaker, RateLimit};
pub(crate) use inner::Inner;
pub use replay::DeadLetter;

use crate::bus::EventBus;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{JobKey, WorkflowId};
use crate::state::{JobFailure, JobRecord, JobStatus, ParentRef, WorkflowRecord};
use crate::store::{DeadLetterFilter, StateStore, WorkflowFilter};
use crate::template::WorkflowTemplate;
use crate::templates::TemplateStore;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Starts and awaits child workflows for the `workflow` runner.
#[async_trait]
pub(crate) trait ChildStarter: Send + Sync + 'static {
    /// Starts (idempotently, keyed by the parent job) a child workflow.
    async fn start_child(
        &self,
        template_id: &str,
        version: Option<&str>,
        input: Value,
        parent: ParentRef,
    ) -> Result<WorkflowId>;
    /// Waits for a workflow to finish.
    async fn wait_child(&self, id: &WorkflowId) -> Result<WorkflowRecord>;
    /// Cancels a child workflow.
    async fn cancel_child(&self, id: &WorkflowId) -> Result<()>;
}

/// What to start: a template (latest or a given version), an input, and optionally an
/// idempotency key.
#[derive(Clone, Debug)]
#[must_use]
pub struct StartRequest {
    pub(crate) template_id: String,
    pub(crate) version: Option<semver::Version>,
    pub(crate) input: Value,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) parent: Option<ParentRef>,
}

impl StartRequest {
    /// Starts the latest version of `template_id` with an empty input.
    pub fn new(template_id: impl Into<String>) -> Self {
        StartRequest {
            template_id: template_id.into(),
            version: None,
            input: Value::Object(Default::default()),
            idempotency_key: None,
            parent: None,
        }
    }

    /// The workflow input.
    pub fn input(mut self, input: Value) -> Self {
        self.input = input;
        self
    }

    /// A specific template version.
    pub fn version(mut self, version: semver::Version) -> Self {
        self.version = Some(version);
        self
    }

    /// A second start with the same key returns the first workflow's id.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A workflow's header and job records, as returned by [`Engine::status`].
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowReport {
    /// The header.
    pub workflow: WorkflowRecord,
    /// The jobs, in template order (compensations last).
    pub jobs: Vec<JobRecord>,
}

impl WorkflowReport {
    /// A job by id.
    pub fn job(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.iter().find(|j| j.job_id == id)
    }
}

/// What [`Engine::recover`] found and resumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Workflows examined (not terminal).
    pub examined: usize,
    /// Workflows that were started (left `INITIALIZED`).
    pub started: usize,
    /// Jobs whose pending step (propagation, condition, finalization) was completed.
    pub resumed_steps: usize,
    /// Workflows that could not be resumed (logged; the others were still resumed).
    pub failed: usize,
}

/// The embedded workflow engine. Cheap to clone; all clones share one instance.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("instance_id", &self.inner.config.instance_id).finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder with in-memory defaults.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The state store.
    pub fn state_store(&self) -> &Arc<dyn StateStore> {
        &self.inner.store
    }

    /// The event bus.
    pub fn event_bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.bus
    }

    /// The template store.
    pub fn template_store(&self) -> &Arc<dyn TemplateStore> {
        &self.inner.templates
    }

    /// This instance's id (the lease owner name).
    pub fn instance_id(&self) -> &str {
        &self.inner.config.instance_id
    }

    /// Runs [`recover`](Self::recover), then starts the workers and the outbox relay on
    /// the current tokio runtime. Calling it again does nothing once it has succeeded; if
    /// recovery fails (e.g. the store is unreachable), nothing is started and a later call
    /// tries again.
    pub async fn launch(&self) -> Result<RecoveryReport> {
        use std::sync::atomic::Ordering;
        if self.inner.launched.swap(true, Ordering::SeqCst) {
            return Ok(RecoveryReport::default());
        }
        let report = match self.inner.recover().await {
            Ok(report) => report,
            Err(e) => {
                self.inner.launched.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        let mut tasks = self.inner.tasks.lock();
        tasks.push(tokio::spawn(claim::claim_loop(self.inner.clone())));
        tasks.push(tokio::spawn(relay::relay_loop(self.inner.clone())));
        tasks.push(tokio::spawn(worker::lease_loop(self.inner.clone())));
        tasks.push(tokio::spawn(repair::repair_loop(self.inner.clone())));
        Ok(report)
    }

    /// Stops claiming, waits up to the lease TTL for running jobs, and stops the relay
    /// after a last drain of the outbox.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await
    }

    /// Validates a template against this engine's runners and stores it (a new id is
    /// created; a known id gets the new, greater version).
    pub async fn register_template(&self, template: WorkflowTemplate) -> Result<()> {
        let template = Arc::new(template);
        let compiled = self.inner.compile(&template)?;
        // Compiling validated it: the template store need not validate it again.
        match self.inner.templates.get_shared(&template.template_id, None).await {
            Ok(_) => self.inner.templates.update_compiled(&compiled).await,
            Err(e) if e.kind() == ErrorKind::NotFound => self.inner.templates.create_compiled(&compiled).await,
            Err(e) => Err(e),
        }
    }

    /// Starts the latest version of `template_id` with `input`.
    pub async fn start(&self, template_id: &str, input: Value) -> Result<WorkflowId> {
        Inner::start_here(&self.inner, StartRequest::new(template_id).input(input)).await
    }

    /// Starts a workflow as `request` says (version, idempotency key).
    pub async fn start_with(&self, request: StartRequest) -> Result<WorkflowId> {
        Inner::start_here(&self.inner, request).await
    }

    /// Starts many workflows in one store call (one pipeline on Redis, one transaction on
    /// PostgreSQL): one result per request, in order. Each workflow is created atomically
    /// and idempotently on its own; a request that fails (unknown template, invalid input,
    /// a store error) fails alone.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use baseshift_core::engine::{Engine, StartRequest};
    /// use baseshift_core::{JobSpec, WorkflowStatus, WorkflowTemplate};
    /// use serde_json::json;
    ///
    /// let engine = Engine::builder().build()?;
    /// engine.register_template(WorkflowTemplate::new("one", semver::Version::new(1, 0, 0))
    ///     .job(JobSpec::new("a", "noop"))).await?;
    /// engine.launch().await?;
    /// let requests = (0..3).map(|i| StartRequest::new("one").input(json!({ "i": i })));
    /// let mut started = engine.start_many(requests.chain([StartRequest::new("missing")])).await;
    /// assert!(started.pop().unwrap().is_err()); // unknown template: fails alone
    /// for id in started {
    ///     assert_eq!(engine.wait(&id?).await?.status, WorkflowStatus::Completed);
    /// }
    /// engine.shutdown().await;
    /// # Ok::<(), baseshift_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn start_many(&self, requests: impl IntoIterator<Item = StartRequest>) -> Vec<Result<WorkflowId>> {
        self.inner.start_many(requests.into_iter().collect()).await
    }

    /// The workflow's header and jobs.
    pub async fn status(&self, id: &WorkflowId) -> Result<WorkflowReport> {
        let workflow = self.inner.store.workflow(id).await?;
        let jobs = self.inner.store.jobs(id, None).await?;
        Ok(WorkflowReport { workflow, jobs })
    }

    /// Waits until the workflow is terminal and returns its header.
    pub async fn wait(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        self.inner.wait(id, None).await
    }

    /// Like [`wait`](Self::wait), giving up with [`ErrorKind::Timeout`] after `timeout`.
    pub async fn wait_timeout(&self, id: &WorkflowId, timeout: Duration) -> Result<WorkflowRecord> {
        self.inner.wait(id, Some(timeout)).await
    }

    /// Waits until every workflow of `ids` is terminal and returns their headers, in the
    /// order of `ids`. It reads the headers in batches (one store call for up to 1 000),
    /// not one call per workflow: the way to wait for a batch from
    /// [`start_many`](Self::start_many). `NotFound` names the first id that does not exist.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use baseshift_core::engine::{Engine, StartRequest};
    /// use baseshift_core::{JobSpec, WorkflowStatus, WorkflowTemplate};
    /// use serde_json::json;
    ///
    /// let engine = Engine::builder().build()?;
    /// engine.register_template(WorkflowTemplate::new("one", semver::Version::new(1, 0, 0))
    ///     .job(JobSpec::new("a", "noop"))).await?;
    /// engine.launch().await?;
    /// let requests = (0..3).map(|i| StartRequest::new("one").input(json!({ "i": i })));
    /// let ids = engine.start_many(requests).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    /// let done = engine.wait_all(&ids).await?;
    /// assert!(done.iter().all(|h| h.status == WorkflowStatus::Completed));
    /// assert_eq!(done[2].id, ids[2]);
    /// engine.shutdown().await;
    /// # Ok::<(), baseshift_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn wait_all(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        self.inner.wait_all(ids, None).await
    }

    /// Cancels a workflow: no new job starts, running jobs are told to stop, every
    /// unfinished job becomes `CANCELLED`. Cancelling a cancelled workflow is a no-op;
    /// a completed or failed one is an [`ErrorKind::IllegalTransition`] error.
    pub async fn cancel(&self, id: &WorkflowId) -> Result<()> {
        self.inner.cancel(id, "cancelled by request").await
    }

    /// Completes a job waiting for an external call (e.g. a `manual` job) with `output`.
    pub async fn complete_job(&self, id: &WorkflowId, job_id: &str, output: Value) -> Result<()> {
        self.inner.finish_external(&JobKey::new(id.clone(), job_id), Ok(output)).await
    }

    /// Fails a job waiting for an external call; the failure is permanent.
    pub async fn fail_job(&self, id: &WorkflowId, job_id: &str, message: &str) -> Result<()> {
        let failure = JobFailure::new("external", message);
        self.inner.finish_external(&JobKey::new(id.clone(), job_id), Err(failure)).await
    }

    /// Finishes what a crashed instance left half done: starts `INITIALIZED` workflows,
    /// propagates skipped jobs, evaluates eligible conditions, finalizes workflows whose
    /// jobs are all terminal. Expired leases need nothing here: any instance re-claims them.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        self.inner.recover().await
    }

    /// Lists workflows (paged by id).
    pub async fn list(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        self.inner.store.list_workflows(filter).await
    }

    /// Lists dead letters: jobs that ran out of attempts or failed permanently and were
    /// neither replayed nor discarded, ordered by (workflow id, job id).
    pub async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(filter).await
    }

    /// One dead letter (`NotFound` if the job is not one).
    pub async fn dead_letter(&self, id: &WorkflowId, job_id: &str) -> Result<DeadLetter> {
        self.inner.dead_letter(&JobKey::new(id.clone(), job_id)).await
    }

    /// Replays a dead letter: the job goes back to `READY` with fresh attempts, the jobs
    /// downstream of it that failed or were skipped go back to `PENDING`, and a workflow
    /// that ended `FAILED` because of it becomes `RUNNING` again and can complete
    /// (`job_replayed` and `workflow_running` events). Succeeded jobs are not re-run.
    ///
    /// Refused with [`ErrorKind::IllegalTransition`] when the workflow was cancelled, is
    /// running its compensations, or already ran one: its effects were undone, and running
    /// forward again on top of the undo would be wrong. Compensation jobs cannot be
    /// replayed (discard them). A replayed `workflow` job re-attaches to the child it
    /// started (the child's start is idempotent): replay the child workflow's dead letter
    /// first, then the parent's job.
    pub async fn replay(&self, id: &WorkflowId, job_id: &str) -> Result<()> {
        self.inner.replay(&JobKey::new(id.clone(), job_id)).await
    }

    /// Discards a dead letter: the job stays `FAILED` (and its workflow as it is) but is no
    /// longer listed (`job_discarded` event).
    pub async fn discard(&self, id: &WorkflowId, job_id: &str) -> Result<()> {
        self.inner.discard(&JobKey::new(id.clone(), job_id)).await
    }
}

pub(crate) fn illegal(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::IllegalTransition, msg)
}

pub(crate) fn is_waiting_external(rec: &JobRecord) -> bool {
    rec.status == JobStatus::Running && rec.awaiting_external
}
