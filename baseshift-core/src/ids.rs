//! Identifiers.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// The id of one workflow run (a UUIDv7 string unless the host supplies its own).
/// Shared: a clone is a reference count, not a copy.
///
/// Ordered as its text. Two clones of one id compare without reading the text (the
/// records and index entries of one workflow share it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkflowId(Arc<str>);

impl Ord for WorkflowId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) { std::cmp::Ordering::Equal } else { self.0.cmp(&other.0) }
    }
}

impl PartialOrd for WorkflowId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl WorkflowId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        // Encoded into a stack buffer: `to_string` would go through `fmt`.
        let mut buf = uuid::Uuid::encode_buffer();
        WorkflowId(Arc::from(&*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf)))
    }

    /// Wraps an existing id.
    pub fn new(id: impl Into<String>) -> Self {
        WorkflowId(Arc::from(id.into()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// As a plain string, like `#[serde(transparent)]` over a `String`.
impl Serialize for WorkflowId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WorkflowId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(WorkflowId::from)
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for WorkflowId {
    fn from(s: &str) -> Self {
        WorkflowId(Arc::from(s))
    }
}

impl From<String> for WorkflowId {
    fn from(s: String) -> Self {
        WorkflowId(Arc::from(s))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn workflow_ids_order_as_their_text_shared_or_not() {
        let a = WorkflowId::new("a");
        let b = WorkflowId::new("b");
        assert_eq!(a.cmp(&a.clone()), Ordering::Equal);
        assert_eq!(a.cmp(&WorkflowId::new("a")), Ordering::Equal);
        assert_eq!((a.cmp(&b), b.cmp(&a)), (Ordering::Less, Ordering::Greater));
        assert_eq!(WorkflowId::new("ab").cmp(&a), "ab".cmp("a"));
        let mut ids = [b.clone(), a.clone(), b.clone(), WorkflowId::new("a")];
        ids.sort();
        assert_eq!(ids.iter().map(WorkflowId::as_str).collect::<Vec<_>>(), ["a", "a", "b", "b"]);
    }
}
