//! Workflow and job states, their legal transitions, and the records a [`StateStore`](crate::StateStore) keeps.

mod compact;
mod status;

pub(crate) use compact::CompactValue;
pub use status::{JobStatus, WorkflowStatus};

use crate::ids::{JobKey, Name, WorkflowId};
use crate::template::Trigger;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who holds a job and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The engine instance that claimed the job.
    pub owner: Name,
    /// A token unique to this claim; a re-claim gets a new one.
    pub token: Name,
    /// When the lease lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// Why a job failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// `timeout`, `permanent`, `retryable`, `cancelled`, `lease_expired`, `policy_violation`, ...
    pub kind: String,
    /// A human-readable message (secrets redacted).
    pub message: String,
    /// For a `FAILED` job: when its dead letter was discarded (it is then no longer listed
    /// by [`StateStore::dead_letters`](crate::StateStore::dead_letters)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_at: Option<DateTime<Utc>>,
}

impl JobFailure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        JobFailure { kind: kind.into(), message: message.into(), discarded_at: None }
    }
}

/// A job's concurrency key, fixed when its workflow starts: at most `limit` jobs with
/// the same `key` are `RUNNING` at once, across every engine instance sharing the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConcurrencyKey {
    /// The rendered key, e.g. `customer-42`.
    pub key: String,
    /// How many jobs with this key may run at once (>= 1).
    pub limit: u32,
}

/// How many of a job's parents finished, and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepCounts {
    /// The number of parents.
    pub total: u32,
    /// Parents that succeeded.
    pub succeeded: u32,
    /// Parents that failed or were cancelled.
    pub failed: u32,
    /// Parents that were skipped.
    pub skipped: u32,
}

impl DepCounts {
    /// Parents that reached a terminal state.
    pub fn done(&self) -> u32 {
        self.succeeded + self.failed + self.skipped
    }

    /// Whether every parent reached a terminal state.
    pub fn is_complete(&self) -> bool {
        self.done() >= self.total
    }

    /// Counts one more parent that ended in `status` (a terminal status).
    pub fn record(&mut self, status: JobStatus) {
        match status {
            JobStatus::Succeeded => self.succeeded += 1,
            JobStatus::Skipped => self.skipped += 1,
            _ => self.failed += 1,
        }
    }
}

/// What a store does to a child job when one of its parents finishes.
///
/// The decision is a pure function of the child's counters and join rule, so
/// every backend can apply it inside its atomic step (in Rust, Lua or SQL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildDecision {
    /// Some parents are still running: nothing changes.
    Wait,
    /// All parents are done and the join rule holds: `READY` (or eligible, with a `when`).
    Ready,
    /// All parents are done and the join rule cannot hold: `SKIPPED`.
    Skip,
}

impl ChildDecision {
    /// Decides for a child with `counts` under `trigger`.
    pub fn decide(trigger: Trigger, counts: &DepCounts) -> ChildDecision {
        if !counts.is_complete() {
            return ChildDecision::Wait;
        }
        if counts.total == 0 {
            // A root: nothing to join.
            return ChildDecision::Ready;
        }
        let ok = match trigger {
            Trigger::AllSuccess => counts.succeeded == counts.total,
            Trigger::AllDone => true,
            Trigger::OneSuccess => counts.succeeded > 0,
            Trigger::NoneFailed => counts.failed == 0,
        };
        if ok { ChildDecision::Ready } else { ChildDecision::Skip }
    }
}

/// A fresh lease token: a random (v4) UUID in its hyphenated form. Tokens are only
/// compared, never ordered, so they skip the v7 clock and counter; the text is encoded
/// into a stack buffer rather than through `fmt`.
pub(crate) fn lease_token() -> Name {
    let mut buf = uuid::Uuid::encode_buffer();
    Name::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
}

/// What [`JobRecord::record_parent`] did to a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildChange {
    /// Only its counters changed.
    Unchanged,
    /// All parents are done and its condition awaits evaluation.
    Eligible,
    /// It became `READY`.
    Ready,
    /// It became `SKIPPED`.
    Skipped,
}

impl ChildChange {
    /// Notes the change in `applied` and appends its `job_ready` / `job_skipped` event to
    /// `events`, stamped with the child's `ready_at` / `finished_at`, else `now` (the time
    /// of the step); returns 1 when a main (non-compensation) job became terminal, else 0.
    pub fn report(
        self,
        child: &JobRecord,
        now: DateTime<Utc>,
        applied: &mut crate::store::Applied,
        events: &mut Vec<crate::Event>,
    ) -> u64 {
        let id = &child.job_id;
        match self {
            ChildChange::Unchanged => 0,
            ChildChange::Eligible => {
                push(&mut applied.eligible, id.clone());
                0
            }
            ChildChange::Ready => {
                let at = child.ready_at.unwrap_or(now);
                push(events, crate::Event::job_at(at, &child.workflow_id, id, JobStatus::Ready, child.attempt, None));
                push(&mut applied.ready, id.clone());
                0
            }
            ChildChange::Skipped => {
                let at = child.finished_at.unwrap_or(now);
                push(events, crate::Event::job_at(at, &child.workflow_id, id, JobStatus::Skipped, child.attempt, None));
                push(&mut applied.skipped, id.clone());
                u64::from(child.compensation_of.is_none())
            }
        }
    }
}

/// Pushes onto `v`, allocating a first small buffer directly: a step reports one or a
/// few changes, and a first push's amortized growth costs more than the allocation.
fn push<T>(v: &mut Vec<T>, item: T) {
    if v.capacity() == 0 {
        *v = Vec::with_capacity(4);
    }
    v.push(item);
}

/// A compensation job's link to the job it undoes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent workflow.
    pub workflow_id: WorkflowId,
    /// The job in the parent workflow that started this one.
    pub job_id: String,
}

/// The header record of one workflow run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// The workflow id.
    pub id: WorkflowId,
    /// The template it was started from.
    pub template_id: String,
    /// The exact template version it runs (kept even if the template is updated).
    pub template_version: String,
    /// Current status.
    pub status: WorkflowStatus,
    /// Optimistic version: bumped by every write of this record.
    pub version: u64,
    /// The input it was started with.
    pub input: Value,
    /// The idempotency key it was started with, if any.
    pub idempotency_key: Option<String>,
    /// The workflow and job that started this one as a child, if any.
    pub parent: Option<Box<ParentRef>>,
    /// Main (non-compensation) jobs not yet terminal.
    pub remaining: u64,
    /// While failing: compensation jobs still to run, next first.
    pub compensation_queue: Vec<String>,
    /// Why the workflow failed or was cancelled.
    pub error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
}

impl WorkflowRecord {
    /// An `INITIALIZED` header for a new run of `template_id` at `template_version`.
    pub fn initialized(
        id: WorkflowId,
        template_id: impl Into<String>,
        template_version: impl Into<String>,
        input: Value,
    ) -> Self {
        let now = Utc::now();
        WorkflowRecord {
            id,
            template_id: template_id.into(),
            template_version: template_version.into(),
            status: WorkflowStatus::Initialized,
            version: 0,
            input,
            idempotency_key: None,
            parent: None,
            remaining: 0,
            compensation_queue: Vec::new(),
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }
}

/// The record of one job in one workflow run: stored and updated on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The workflow it belongs to.
    pub workflow_id: WorkflowId,
    /// Its id within the template (`<job>.compensate` for a compensation).
    pub job_id: Name,
    /// The runner type.
    pub job_type: Name,
    /// Current status.
    pub status: JobStatus,
    /// Optimistic version: bumped by every write of this record.
    pub version: u64,
    /// Attempts started so far.
    pub attempt: u32,
    /// Base priority (higher runs first).
    pub priority: i32,
    /// The join rule applied when its parents finish.
    pub trigger: Trigger,
    /// Whether a `when` condition must be evaluated before it becomes `READY`.
    pub has_condition: bool,
    /// Parent completion counters.
    pub deps: DepCounts,
    /// For a `PENDING` job with a condition: all parents are done and the condition awaits evaluation.
    pub eligible: bool,
    /// For a terminal job: its children's counters were updated.
    pub propagated: bool,
    /// When it became ready, or the earliest time it may run (retry backoff).
    pub ready_at: Option<DateTime<Utc>>,
    /// The current claim, while `RUNNING` under a lease.
    pub lease: Option<Lease>,
    /// A `RUNNING` job waiting for `complete_job` / `fail_job` (no lease).
    pub awaiting_external: bool,
    /// The output, once `SUCCEEDED`.
    pub output: Option<Value>,
    /// The failure, once `FAILED` (or the last retryable failure).
    pub error: Option<JobFailure>,
    /// For a compensation job: the job it compensates.
    pub compensation_of: Option<Name>,
    /// When the current attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its concurrency key, if its template declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyKey>,
}

impl JobRecord {
    /// Starts an attempt the way a claim does: `RUNNING`, `attempt + 1`, `started_at = now`
    /// and a lease of `owner` until `expires_at` with a fresh token; returns the attempt's
    /// `job_running` event. The version is the caller's to bump.
    pub fn start_attempt(&mut self, owner: &Name, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> crate::Event {
        self.start_attempt_with(owner, lease_token(), expires_at, now)
    }

    /// [`start_attempt`](Self::start_attempt) with a lease token the caller made, e.g. before
    /// taking a lock it would rather not hold while one is made.
    pub(crate) fn start_attempt_with(
        &mut self,
        owner: &Name,
        token: Name,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> crate::Event {
        self.status = JobStatus::Running;
        self.attempt += 1;
        self.started_at = Some(now);
        self.lease = Some(Lease { owner: owner.clone(), token, expires_at });
        crate::Event::job_at(now, &self.workflow_id, &self.job_id, JobStatus::Running, self.attempt, None)
    }

    /// A `PENDING` job record with `parents` parents and every other field at its start value.
    pub fn pending(workflow_id: WorkflowId, job_id: impl Into<Name>, job_type: impl Into<Name>, parents: u32) -> Self {
        JobRecord {
            workflow_id,
            job_id: job_id.into(),
            job_type: job_type.into(),
            status: JobStatus::Pending,
            version: 0,
            attempt: 0,
            priority: 0,
            trigger: Trigger::AllSuccess,
            has_condition: false,
            deps: DepCounts { total: parents, ..DepCounts::default() },
            eligible: false,
            propagated: false,
            ready_at: None,
            lease: None,
            awaiting_external: false,
            output: None,
            error: None,
            compensation_of: None,
            started_at: None,
            finished_at: None,
            concurrency: None,
        }
    }

    /// Counts one parent's terminal `status` and, when this job is `PENDING` (not already
    /// eligible) and its parents are now all done, applies its join rule exactly as the
    /// [`StateStore`](crate::StateStore) contract says: `READY` (`ready_at = now`), eligible
    /// (it has a condition), or `SKIPPED` (`propagated = false`, `finished_at = now`).
    ///
    /// The caller bumps the version, keeps its indexes, and calls
    /// [`ChildChange::report`] to fill `Applied` and the derived events.
    pub fn record_parent(&mut self, status: JobStatus, now: DateTime<Utc>) -> ChildChange {
        self.deps.record(status);
        if self.status != JobStatus::Pending || self.eligible {
            return ChildChange::Unchanged;
        }
        match ChildDecision::decide(self.trigger, &self.deps) {
            ChildDecision::Wait => ChildChange::Unchanged,
            ChildDecision::Ready if self.has_condition => {
                self.eligible = true;
                ChildChange::Eligible
            }
            ChildDecision::Ready => {
                self.status = JobStatus::Ready;
                self.ready_at = Some(now);
                ChildChange::Ready
            }
            ChildDecision::Skip => {
                self.status = JobStatus::Skipped;
                self.propagated = false;
                self.finished_at = Some(now);
                ChildChange::Skipped
            }
        }
    }

    /// Whether this record is a dead letter: `FAILED` (out of attempts, or failed
    /// permanently) and not discarded.
    pub fn is_dead_letter(&self) -> bool {
        self.status == JobStatus::Failed && self.error.as_ref().is_none_or(|e| e.discarded_at.is_none())
    }

    /// How long the last attempt ran, from `started_at` to `finished_at`, in milliseconds.
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds().max(0))
    }

    /// The record's key.
    pub fn key(&self) -> JobKey {
        JobKey::new(self.workflow_id.clone(), self.job_id.clone())
    }

    /// Ready-queue score (lower is served first): `-(priority - 0.1 * ready_at_secs)`.
    ///
    /// The plan's aging rule ranks by `priority + 0.1 * seconds_waiting`; since
    /// `now` is common to all jobs, that order equals the order of
    /// `priority - 0.1 * ready_at`, a value fixed when the job becomes ready,
    /// so backends can keep a static sorted index (a Redis sorted set, a SQL index).
    pub fn queue_score(&self) -> f64 {
        let ready = self.ready_at.map(|t| t.timestamp_millis() as f64 / 1000.0).unwrap_or(0.0);
        -(self.priority as f64 - 0.1 * ready)
    }
}
