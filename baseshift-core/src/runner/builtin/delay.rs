//! STUB: the `delay` runner.
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use async_trait::async_trait;
use serde_json::Value;

/// The `delay` runner.
#[derive(Clone, Debug, Default)]
pub struct DelayRunner;

#[async_trait]
impl JobRunner for DelayRunner {
    fn job_type(&self) -> &str {
        "delay"
    }
    fn validate_config(&self, _config: &Value) -> Result<(), Error> {
        Ok(())
    }
    async fn run(&self, _ctx: JobContext) -> Result<JobOutput, JobError> {
        Ok(JobOutput::empty())
    }
}
