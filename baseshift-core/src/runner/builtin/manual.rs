//! The `manual` runner: a job completed by an external call.

use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner, config_error};
use async_trait::async_trait;
use serde_json::Value;

/// The `manual` runner: the job stays `RUNNING` until the host calls
/// `Engine::complete_job` (with the job's output) or `Engine::fail_job`.
///
/// Config (optional): `{ "instructions": "text shown to whoever completes it" }`.
#[derive(Clone, Debug, Default)]
pub struct ManualRunner;

#[async_trait]
impl JobRunner for ManualRunner {
    fn job_type(&self) -> &str {
        "manual"
    }

    fn validate_config(&self, config: &Value) -> Result<(), Error> {
        match config {
            Value::Null => Ok(()),
            Value::Object(m) => match m.get("instructions") {
                None | Some(Value::String(_)) => Ok(()),
                Some(_) => Err(config_error("instructions", "must be a string")),
            },
            _ => Err(config_error("", "must be an object")),
        }
    }

    async fn run(&self, _ctx: JobContext) -> Result<JobOutput, JobError> {
        Ok(JobOutput::await_external())
    }
}
