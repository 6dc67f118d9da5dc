//! STUB: the engine.
use crate::error::Result;
use crate::ids::WorkflowId;
use crate::state::{ParentRef, WorkflowRecord};
use async_trait::async_trait;
use serde_json::Value;

/// Starts and awaits child workflows for the `workflow` runner.
#[async_trait]
pub(crate) trait ChildStarter: Send + Sync + 'static {
    /// Starts (idempotently) a child workflow.
    async fn start_child(&self, template_id: &str, version: Option<&str>, input: Value, parent: ParentRef) -> Result<WorkflowId>;
    /// Waits for a workflow to finish.
    async fn wait_child(&self, id: &WorkflowId) -> Result<WorkflowRecord>;
}
