//! The [`StateStore`] trait: durable workflow and job state shared by engine instances.

pub mod batch;
mod memory;

pub use memory::{MemoryRetention, MemoryStateStore};

use crate::error::Result;
use crate::event::Event;
use crate::ids::{JobKey, Name, WorkflowId};
use crate::state::{JobRecord, JobStatus, WorkflowRecord, WorkflowStatus};
use crate::template::WorkflowTemplate;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What a state store backend can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreCapabilities {
    /// The backend's name, e.g. `memory`, `redis`, `postgres`.
    pub name: &'static str,
    /// State survives a restart of the host process.
    pub durable: bool,
    /// Several engine instances (processes) can share the store.
    pub shared: bool,
}

impl StoreCapabilities {
    /// Capabilities of a backend called `name`.
    pub const fn new(name: &'static str, durable: bool, shared: bool) -> Self {
        StoreCapabilities { name, durable, shared }
    }
}

/// A new workflow run, written atomically by [`StateStore::create_workflow`].
#[derive(Clone, Debug)]
pub struct NewWorkflow {
    /// The header, `INITIALIZED`; its `version` is ignored (the store sets 1).
    pub header: WorkflowRecord,
    /// One record per job (compensations included), all `PENDING`.
    pub jobs: Vec<JobRecord>,
    /// The template version it runs, stored once per `(template_id, version)`. Shared,
    /// so a start does not copy the template.
    pub template: Arc<WorkflowTemplate>,
    /// Events of the creation (the outbox gets them in the same step).
    pub events: Vec<Event>,
}

/// The outcome of [`StateStore::create_workflow`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The workflow was created.
    Created(WorkflowId),
    /// A workflow with the same idempotency key exists: nothing was written.
    Existing(WorkflowId),
}

impl CreateOutcome {
    /// The workflow's id, either way.
    pub fn id(&self) -> &WorkflowId {
        match self {
            CreateOutcome::Created(id) | CreateOutcome::Existing(id) => id,
        }
    }
}

/// A parent's terminal status, delivered to one child's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentOutcome {
    /// The child job.
    pub child: Name,
    /// The parent's terminal status.
    pub status: JobStatus,
}

/// One atomic step on one workflow: version-checked record writes, parent outcomes,
/// and the events that describe them.
#[derive(Clone, Debug)]
pub struct Transition {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// A new header. Its `version` must equal the stored version (else `Conflict`);
    /// its `remaining` is ignored (the store maintains it). Boxed: most steps carry none,
    /// and a step is moved several times on its way to the store.
    pub header: Option<Box<WorkflowRecord>>,
    /// New job records. Each `version` must equal the stored version (else `Conflict`).
    pub jobs: Vec<JobRecord>,
    /// Parent outcomes to add to children's counters (see [`StateStore::apply`]).
    pub parent_outcomes: Vec<ParentOutcome>,
    /// Main (non-compensation) jobs that became terminal through `jobs`.
    pub terminal_delta: u64,
    /// Main jobs that a replay step made non-terminal again (added back to `remaining`).
    pub reopened: u64,
    /// A replay step: besides the ordinary transitions it may make the ones
    /// [`JobStatus::can_replay`] and [`WorkflowStatus::can_replay`] allow.
    pub replay: bool,
    /// Events to append to the outbox.
    pub events: Vec<Event>,
    /// Completes the workflow in this same step, at this time, if the step leaves it
    /// done (see the contract's *Completion at zero*). The planner sets it on the steps
    /// of templates without compensations; it saves the engine a separate finalize step.
    pub complete_at_zero: Option<DateTime<Utc>>,
    /// Claims ready jobs as this request says in the same atomic step, after its writes:
    /// whichever are first in the ready queue, as [`StateStore::claim`] would pick them,
    /// not only those the step made ready. A worker whose step made work ready runs on
    /// without a claim call of its own. A store may ignore it (then
    /// [`Applied::claimed`] is empty and the engine claims as usual); the memory store
    /// honours it, and no step that is refused claims anything.
    pub claim_after: Option<ClaimRequest>,
}

impl Transition {
    /// An empty step on `workflow_id`.
    pub fn new(workflow_id: WorkflowId) -> Self {
        Transition {
            workflow_id,
            header: None,
            jobs: Vec::new(),
            parent_outcomes: Vec::new(),
            terminal_delta: 0,
            reopened: 0,
            replay: false,
            events: Vec::new(),
            complete_at_zero: None,
            claim_after: None,
        }
    }
}

/// What [`StateStore::apply`] did beyond the writes it was given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// Main jobs of the workflow not yet terminal, after this step.
    pub remaining: u64,
    /// Children the store moved to `READY`.
    pub ready: Vec<Name>,
    /// Children whose parents are all done and whose condition now awaits evaluation.
    pub eligible: Vec<Name>,
    /// Children the store moved to `SKIPPED` (their own children still need the outcome).
    pub skipped: Vec<Name>,
    /// The step also completed the workflow (see [`Transition::complete_at_zero`]).
    pub completed: bool,
    /// The jobs claimed for [`Transition::claim_after`]: `RUNNING` under the request's
    /// lease, as [`StateStore::claim`] returns them (empty when the store ignores it).
    pub claimed: Vec<JobRecord>,
}

/// The completion a step with [`Transition::complete_at_zero`] makes, given the header and
/// every job record of the workflow as they are after the step's own writes: `None`
/// unless `remaining` is 0, the header is `RUNNING` with no compensation queue, and every
/// record is a main job that `SUCCEEDED` or was `SKIPPED` with its outcome propagated.
/// Otherwise the completed header (status and times exactly as the engine's finalize
/// step sets them; its `version` still the stored one) and the `workflow_completed`
/// event (stamped `at`), whose result holds the outputs, to append after the step's
/// other events.
///
/// ```
/// use baseshift_core::state::{JobRecord, JobStatus, WorkflowRecord, WorkflowStatus};
/// use baseshift_core::store::completion;
/// use baseshift_core::WorkflowId;
/// use serde_json::json;
///
/// let id = WorkflowId::new("w1");
/// let mut header = WorkflowRecord::initialized(id.clone(), "t", "1.0.0", json!({}));
/// header.status = WorkflowStatus::Running;
/// header.remaining = 0;
/// let mut job = JobRecord::pending(id, "a", "noop", 0);
/// job.status = JobStatus::Succeeded;
/// job.propagated = true;
/// job.output = Some(json!(7));
/// let (done, event) = completion(&header, &[job.clone()], chrono::Utc::now()).unwrap();
/// assert_eq!(done.status, WorkflowStatus::Completed);
/// assert_eq!(event.event_type, "workflow_completed");
/// assert_eq!(event.payload.result, Some(json!({ "outputs": { "a": 7 } })));
///
/// job.status = JobStatus::Failed; // the engine's finalize decides (compensation, FAILED)
/// assert!(completion(&header, &[job], chrono::Utc::now()).is_none());
/// ```
pub fn completion(header: &WorkflowRecord, jobs: &[JobRecord], at: DateTime<Utc>) -> Option<(WorkflowRecord, Event)> {
    if !completes(header, jobs) {
        return None;
    }
    let mut step = crate::engine::plan::finalize(header.clone(), jobs, at);
    let header = step.header.take()?;
    let mut event = step.events.pop()?;
    event.timestamp = at;
    Some((*header, event))
}

/// Whether [`completion`] completes a workflow with this header and these job records
/// (all of them, in any order): the check alone, for a store that wants it before it
/// gathers the records in template order.
pub fn completes<'a>(header: &WorkflowRecord, jobs: impl IntoIterator<Item = &'a JobRecord>) -> bool {
    let done = |j: &JobRecord| {
        j.compensation_of.is_none() && j.propagated && matches!(j.status, JobStatus::Succeeded | JobStatus::Skipped)
    };
    header.remaining == 0
        && header.status == WorkflowStatus::Running
        && header.compensation_queue.is_empty()
        && jobs.into_iter().all(done)
}

/// A request for ready jobs.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// The claiming engine instance.
    pub owner: Name,
    /// At most this many jobs.
    pub limit: usize,
    /// The lease length.
    pub lease_ttl: Duration,
    /// Job types not to claim now (their per-type limit is reached).
    pub exclude_types: Vec<String>,
    /// At most this many jobs of a type in this claim (the room left under its limit).
    pub type_limits: HashMap<String, usize>,
}

/// The answer to a [`ClaimRequest`].
#[derive(Clone, Debug, Default)]
pub struct Claimed {
    /// Claimed jobs: `RUNNING`, `attempt` incremented, `lease` set, version bumped.
    pub jobs: Vec<JobRecord>,
    /// The earliest time a delayed (retrying) job becomes claimable, if any.
    pub next_ready_at: Option<DateTime<Utc>>,
}

/// A filter for [`StateStore::list_workflows`].
#[derive(Clone, Debug, Default)]
pub struct WorkflowFilter {
    /// Only these statuses (all when empty).
    pub statuses: Vec<WorkflowStatus>,
    /// Only ids greater than this one (paging).
    pub after: Option<WorkflowId>,
    /// At most this many (0 = the backend's default page of 100).
    pub limit: usize,
}

/// A filter for [`StateStore::dead_letters`]. Results come ordered by (workflow id, job id).
#[derive(Clone, Debug, Default)]
pub struct DeadLetterFilter {
    /// Only dead letters of this workflow.
    pub workflow_id: Option<WorkflowId>,
    /// Only dead letters of this job type.
    pub job_type: Option<String>,
    /// Only keys greater than this one (paging).
    pub after: Option<JobKey>,
    /// At most this many (0 = the backend's default page of 100).
    pub limit: usize,
}

impl DeadLetterFilter {
    /// Whether `rec` passes the workflow, type and paging parts of the filter (not `limit`).
    pub fn matches(&self, rec: &JobRecord) -> bool {
        self.workflow_id.as_ref().is_none_or(|w| *w == rec.workflow_id)
            && self.job_type.as_ref().is_none_or(|t| *t == rec.job_type)
            && self.after.as_ref().is_none_or(|a| {
                (rec.workflow_id.as_str(), rec.job_id.as_str()) > (a.workflow_id.as_str(), a.job_id.as_str())
            })
    }

    /// The page size: `limit`, or 100 when it is 0.
    pub fn page(&self) -> usize {
        if self.limit == 0 { 100 } else { self.limit }
    }
}

/// One event waiting in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEntry {
    /// Position in the outbox (increasing in commit order).
    pub seq: u64,
    /// The event, shared: the in-memory store and bus pass it on without copying.
    pub event: Arc<Event>,
}

/// The cutoff of a retention pass: workflows that finished before `now - older_than` go.
/// Every backend's `apply_retention` uses it, so all refuse the same ages.
///
/// ```
/// use baseshift_core::store::retention_cutoff;
/// use std::time::Duration;
///
/// assert!(retention_cutoff(Duration::from_secs(60)).unwrap() < chrono::Utc::now());
/// assert!(retention_cutoff(Duration::MAX).is_err());
/// ```
pub fn retention_cutoff(older_than: Duration) -> Result<DateTime<Utc>> {
    chrono::TimeDelta::from_std(older_than)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .ok_or_else(|| crate::Error::invalid_input(format!("retention age {older_than:?} is out of range")))
}

/// Durable (or in-memory) workflow state, shared by every engine instance that uses it.
///
/// # Contract
///
/// - **Records.** A workflow is a header ([`WorkflowRecord`]) plus one [`JobRecord`] per
///   job, each stored and versioned on its own; no step rewrites the whole workflow.
/// - **Versions.** Every write of a record bumps its `version` by one. A write carrying a
///   `version` different from the stored one fails with `Conflict` and writes nothing.
/// - **Atomic steps.** [`create_workflow`](Self::create_workflow), [`apply`](Self::apply)
///   and [`claim`](Self::claim) each take effect entirely or not at all, events included.
/// - **Parent outcomes.** For each [`ParentOutcome`], `apply` adds the status to the
///   child's [`DepCounts`](crate::state::DepCounts). If the child is `PENDING` and its
///   counts are now complete, it applies [`ChildDecision::decide`](crate::state::ChildDecision::decide):
///   `Ready` makes it `READY` (`ready_at = now`) unless it `has_condition`, in which case it
///   stays `PENDING` with `eligible = true`; `Skip` makes it `SKIPPED` (`propagated = false`,
///   `finished_at = now`) and counts it in `remaining`. Each such change bumps the child's
///   version and appends its `job_ready` / `job_skipped` event.
/// - **Remaining.** `remaining` starts as the number of main jobs and drops by
///   `terminal_delta` plus the store-made skips, and grows by `reopened`; `apply` returns
///   the value after the step.
/// - **Completion at zero.** A step with [`Transition::complete_at_zero`] set to `at`
///   that leaves the workflow done, as [`completion`] decides it on the header and every
///   job record after the step's writes, also writes the completed header [`completion`]
///   returns (version + 1) and appends its `workflow_completed` event after the step's
///   other events, and returns `completed: true`. Otherwise it changes nothing more
///   (`completed: false`): the engine finalizes in a step of its own.
/// - **Replay.** A step with `replay` set may also make the transitions of
///   [`JobStatus::can_replay`] and [`WorkflowStatus::can_replay`] (`FAILED -> READY`,
///   `FAILED | SKIPPED -> PENDING`, workflow `FAILED -> RUNNING`); any other step making
///   them is an `IllegalTransition`.
/// - **Dead letters.** `dead_letters` returns the records for which
///   [`JobRecord::is_dead_letter`] holds (`FAILED`, not discarded) that pass the filter,
///   ordered by (workflow id, job id), at most a page; it follows every step (a replayed or
///   discarded job is no longer listed once the step returns).
/// - **Claims.** `claim` takes `READY` jobs with `ready_at <= now`, and `RUNNING` jobs
///   whose lease expired (not `awaiting_external`), skipping `exclude_types` and taking at
///   most `type_limits[t]` jobs of type `t` (the others stay queued, in order); expired
///   leases first, then by [`JobRecord::queue_score`] ascending. Each claimed job becomes
///   `RUNNING` with `attempt + 1`, a new lease (fresh token) and a `job_running` event.
///   No two claims return the same job while its lease is valid.
/// - **Concurrency keys.** A `READY` job with [`JobRecord::concurrency`] is claimed only
///   while fewer than its `limit` jobs with the same key are `RUNNING` (jobs awaiting an
///   external completion included), counted across every workflow and every claimer, even
///   concurrent ones; the others stay queued, in order. Re-claiming an expired lease keeps
///   the slot the job already holds.
/// - **Leases.** `renew_lease` extends a lease only for the holder of the current token
///   on a `RUNNING` job; otherwise `Conflict` (the job was re-claimed or cancelled). It does
///   not change the record's `version`, so the worker's completion write (carrying the
///   version it claimed) still applies; a re-claim or cancellation does change it.
/// - **Idempotency.** `create_workflow` with a key already used returns `Existing` with
///   the first workflow's id and writes nothing, even under concurrent calls.
/// - **Batch reads.** [`workflows`](Self::workflows) and [`jobs_of`](Self::jobs_of) read
///   what [`workflow`](Self::workflow) and [`jobs(id, None)`](Self::jobs) would, for many
///   ids at once, answering in the order asked (a repeated id each time it is asked);
///   `workflows` leaves absent ids out, `jobs_of` answers an empty list for them. Each
///   workflow's records are read as of one moment; different workflows may be read at
///   different moments.
/// - **Outbox.** Events of a step are appended in the step, in order; `outbox_pending`
///   returns them by increasing `seq`; `outbox_ack` removes them.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> StoreCapabilities;

    /// Creates a workflow, its job records, its template snapshot and its events.
    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome>;

    /// Creates several workflows, each exactly as [`create_workflow`](Self::create_workflow)
    /// would (each atomic and idempotent on its own, not all-or-nothing), and returns one
    /// result per input, in input order. Backends override it to save round trips or
    /// commits (a pipeline, one transaction); the default creates them one by one.
    async fn create_workflows(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        let mut out = Vec::with_capacity(news.len());
        for new in news {
            out.push(self.create_workflow(new).await);
        }
        out
    }

    /// Reads a workflow header (`NotFound` if absent).
    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord>;

    /// Reads several workflow headers, in the order asked; absent ids are left out.
    /// Backends override it to read them in one round trip; the default reads them one
    /// by one.
    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.workflow(id).await {
                Ok(h) => out.push(h),
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Reads one job record (`NotFound` if absent).
    async fn job(&self, key: &JobKey) -> Result<JobRecord>;

    /// Reads job records of a workflow: all of them (`ids = None`, in template order) or
    /// the named ones (in the order asked; absent ids are left out).
    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>>;

    /// Reads every job record of several workflows: one list per id, in the order of
    /// `ids` (a repeated id gets its list each time), each list exactly what
    /// [`jobs(id, None)`](Self::jobs) returns (template order). An absent workflow gets an
    /// empty list rather than an error, so a reader can skip one removed since it listed
    /// it (workflows the engine creates always have jobs). Backends override it to read
    /// them in one round trip; the default reads them one by one. Errors name the
    /// workflow whose read failed where the backend can tell.
    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.jobs(id, None).await {
                Ok(jobs) => out.push(jobs),
                Err(e) if e.kind() == crate::ErrorKind::NotFound => out.push(Vec::new()),
                Err(e) => return Err(e.with_workflow(id.as_str())),
            }
        }
        Ok(out)
    }

    /// Reads the template snapshot a workflow runs.
    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate>;

    /// Applies one atomic step (see the contract).
    async fn apply(&self, step: Transition) -> Result<Applied>;

    /// Claims ready jobs under a lease.
    async fn claim(&self, req: ClaimRequest) -> Result<Claimed>;

    /// Extends a lease; returns the new expiry.
    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>>;

    /// Lists workflow headers by id.
    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>>;

    /// Dead-lettered jobs (see the contract), ordered by (workflow id, job id).
    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>>;

    /// Events not yet acknowledged, oldest first.
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>>;

    /// Removes relayed events from the outbox.
    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()>;

    /// Waits until work may be claimable (a job became ready or a retry came due) or
    /// `timeout` passes. It may return early with nothing to claim (a late or shared
    /// wake-up); callers claim and wait again.
    async fn wait_for_work(&self, timeout: Duration);
}
