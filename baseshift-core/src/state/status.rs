//! Workflow and job statuses and their legal transitions (the ordinary ones and the
//! replay-only ones).

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The status of a workflow: `INITIALIZED -> RUNNING -> COMPLETED | FAILED | CANCELLED`.
///
/// One more edge exists only in a replay step ([`Transition::replay`](crate::store::Transition::replay)):
/// `FAILED -> RUNNING`, when a dead-lettered job of the workflow is run again
/// (see [`can_replay`](Self::can_replay)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowStatus {
    /// Created; its first jobs have not been made ready yet.
    Initialized,
    /// Jobs are running or waiting (compensations included).
    Running,
    /// Every job finished without a failure.
    Completed,
    /// A job failed (after compensations ran).
    Failed,
    /// Cancelled by a caller.
    Cancelled,
}

impl WorkflowStatus {
    /// Whether no further transition can happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether `self -> next` is a legal transition.
    pub fn can_become(self, next: WorkflowStatus) -> bool {
        use WorkflowStatus::*;
        matches!((self, next), (Initialized, Running | Failed | Cancelled) | (Running, Completed | Failed | Cancelled))
    }

    /// Whether `self -> next` is legal in a replay step: the ordinary transitions plus
    /// `FAILED -> RUNNING` (a failed workflow resumes when one of its dead letters is replayed).
    pub fn can_replay(self, next: WorkflowStatus) -> bool {
        self.can_become(next) || matches!((self, next), (WorkflowStatus::Failed, WorkflowStatus::Running))
    }

    /// `Ok` if `self -> next` is legal (in a replay step when `replay`), else an
    /// [`ErrorKind::IllegalTransition`] error.
    pub fn check_step(self, next: WorkflowStatus, replay: bool) -> Result<()> {
        if replay && self.can_replay(next) { Ok(()) } else { self.check(next) }
    }

    /// `Ok` if `self -> next` is legal, else an [`ErrorKind::IllegalTransition`] error.
    pub fn check(self, next: WorkflowStatus) -> Result<()> {
        if self.can_become(next) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::IllegalTransition, format!("workflow cannot go from {self} to {next}")))
        }
    }

    /// The upper-case name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialized => "INITIALIZED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status of a job: `PENDING -> READY -> RUNNING -> SUCCEEDED | FAILED | SKIPPED | CANCELLED`.
///
/// A replay step ([`Transition::replay`](crate::store::Transition::replay)) also allows
/// `FAILED -> READY` (the dead-lettered job, with fresh attempts) and
/// `FAILED | SKIPPED -> PENDING` (its downstream jobs and unused compensations, reset);
/// see [`can_replay`](Self::can_replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for its parents.
    Pending,
    /// Waiting for a worker (possibly until `ready_at`, for a retry).
    Ready,
    /// Claimed under a lease, or waiting for an external completion.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Failed permanently or ran out of attempts.
    Failed,
    /// Not run: its `when` was false or its join rule could not be met.
    Skipped,
    /// Cancelled with its workflow.
    Cancelled,
}

impl JobStatus {
    /// Whether no further transition can happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled)
    }

    /// Whether `self -> next` is a legal transition.
    ///
    /// `RUNNING -> READY` is a retry (or a re-queue after a lost lease);
    /// `RUNNING -> RUNNING` is a re-claim of an expired lease.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Pending, Ready | Skipped | Cancelled)
                | (Ready, Running | Skipped | Cancelled)
                | (Running, Succeeded | Failed | Ready | Running | Skipped | Cancelled)
        )
    }

    /// Whether `self -> next` is legal in a replay step: the ordinary transitions plus
    /// `FAILED -> READY` and `FAILED | SKIPPED -> PENDING`.
    pub fn can_replay(self, next: JobStatus) -> bool {
        use JobStatus::*;
        self.can_become(next) || matches!((self, next), (Failed, Ready) | (Failed | Skipped, Pending))
    }

    /// `Ok` if `self -> next` is legal (in a replay step when `replay`), else an
    /// [`ErrorKind::IllegalTransition`] error.
    pub fn check_step(self, next: JobStatus, replay: bool) -> Result<()> {
        if replay && self.can_replay(next) { Ok(()) } else { self.check(next) }
    }

    /// `Ok` if `self -> next` is legal, else an [`ErrorKind::IllegalTransition`] error.
    pub fn check(self, next: JobStatus) -> Result<()> {
        if self.can_become(next) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::IllegalTransition, format!("job cannot go from {self} to {next}")))
        }
    }

    /// The upper-case name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Ready => "READY",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Skipped => "SKIPPED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
