//! STUB: the `noop` runner.
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use async_trait::async_trait;
use serde_json::Value;

/// The `noop` runner.
#[derive(Clone, Debug, Default)]
pub struct NoopRunner;

#[async_trait]
impl JobRunner for NoopRunner {
    fn job_type(&self) -> &str {
        "noop"
    }
    fn validate_config(&self, _config: &Value) -> Result<(), Error> {
        Ok(())
    }
    async fn run(&self, _ctx: JobContext) -> Result<JobOutput, JobError> {
        Ok(JobOutput::empty())
    }
}
