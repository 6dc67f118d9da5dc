//! The `workflow` runner: runs a child workflow and waits for it.

use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner, config_error};
use crate::state::{ParentRef, WorkflowStatus};
use async_trait::async_trait;
use serde_json::{Value, json};

/// The `workflow` runner: starts a child workflow and succeeds with its outputs when it
/// completes.
///
/// Config: `{ "template_id": "child", "version": "1.0.0" (optional), "input": {...} }`.
/// The child is started with the idempotency key of the parent job, so a retried or
/// re-claimed parent job waits for the same child instead of starting another. A failed
/// or cancelled child fails the job permanently; cancelling the parent job cancels the child.
#[derive(Clone, Debug, Default)]
pub struct WorkflowRunner;

#[async_trait]
impl JobRunner for WorkflowRunner {
    fn job_type(&self) -> &str {
        "workflow"
    }

    fn validate_config(&self, config: &Value) -> Result<(), Error> {
        let Value::Object(m) = config else {
            return Err(config_error("", "must be an object with `template_id`"));
        };
        match m.get("template_id") {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => return Err(config_error("template_id", "is required (a non-empty string)")),
        }
        match m.get("version") {
            None | Some(Value::String(_)) => {}
            Some(_) => return Err(config_error("version", "must be a string such as \"1.0.0\"")),
        }
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let children = ctx.children.clone().ok_or_else(|| {
            JobError::permanent("the `workflow` runner needs an engine (no child starter in context)")
        })?;
        let template_id: String = ctx.config_field("template_id").map_err(JobError::permanent)?;
        let version: Option<String> = ctx.config_field("version").map_err(JobError::permanent)?;
        let input = ctx.config.get("input").cloned().unwrap_or_else(|| json!({}));
        let parent = ParentRef { workflow_id: ctx.workflow_id.clone(), job_id: String::from(&ctx.job_id) };
        let child = children.start_child(&template_id, version.as_deref(), input, parent).await?;
        let finished = tokio::select! {
            r = children.wait_child(&child) => r?,
            _ = ctx.cancellation.cancelled() => {
                children.cancel_child(&child).await?;
                return Err(JobError::permanent(format!("cancelled; child workflow {child} cancelled")));
            }
        };
        match finished.status {
            WorkflowStatus::Completed => {
                let report = json!({ "workflow_id": child.as_str(), "status": finished.status.as_str() });
                Ok(JobOutput::json(report))
            }
            status => Err(JobError::permanent(format!(
                "child workflow {child} ended {status}: {}",
                finished.error.unwrap_or_default()
            ))
            .with_details(json!({ "workflow_id": child.as_str(), "status": status.as_str() }))),
        }
    }
}
