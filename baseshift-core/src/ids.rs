//! Identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The id of one workflow run (a UUIDv7 string unless the host supplies its own).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(String);

impl WorkflowId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        WorkflowId(uuid::Uuid::now_v7().to_string())
    }

    /// Wraps an existing id.
    pub fn new(id: impl Into<String>) -> Self {
        WorkflowId(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for WorkflowId {
    fn from(s: &str) -> Self {
        WorkflowId(s.to_owned())
    }
}

impl From<String> for WorkflowId {
    fn from(s: String) -> Self {
        WorkflowId(s)
    }
}

/// The key of one job record: its workflow and its job id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobKey {
    /// The workflow the job belongs to.
    pub workflow_id: WorkflowId,
    /// The job's id within the template.
    pub job_id: String,
}

impl JobKey {
    /// A key from its parts.
    pub fn new(workflow_id: WorkflowId, job_id: impl Into<String>) -> Self {
        JobKey { workflow_id, job_id: job_id.into() }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workflow_id, self.job_id)
    }
}
