//! STUB: the `workflow` runner.
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use async_trait::async_trait;
use serde_json::Value;

/// The `workflow` runner.
#[derive(Clone, Debug, Default)]
pub struct WorkflowRunner;

#[async_trait]
impl JobRunner for WorkflowRunner {
    fn job_type(&self) -> &str {
        "workflow"
    }
    fn validate_config(&self, _config: &Value) -> Result<(), Error> {
        Ok(())
    }
    async fn run(&self, _ctx: JobContext) -> Result<JobOutput, JobError> {
        Ok(JobOutput::empty())
    }
}
