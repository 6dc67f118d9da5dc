//! STUB: the `manual` runner.
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use async_trait::async_trait;
use serde_json::Value;

/// The `manual` runner.
#[derive(Clone, Debug, Default)]
pub struct ManualRunner;

#[async_trait]
impl JobRunner for ManualRunner {
    fn job_type(&self) -> &str {
        "manual"
    }
    fn validate_config(&self, _config: &Value) -> Result<(), Error> {
        Ok(())
    }
    async fn run(&self, _ctx: JobContext) -> Result<JobOutput, JobError> {
        Ok(JobOutput::empty())
    }
}
