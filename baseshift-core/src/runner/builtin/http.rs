//! STUB (helper A replaces): the `http_request` runner.
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use async_trait::async_trait;
use serde_json::Value;

/// Host-side limits of the `http_request` runner.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct HttpRunnerConfig {}

/// The `http_request` runner: sends one HTTP request.
#[derive(Clone, Debug, Default)]
pub struct HttpRunner {
    config: HttpRunnerConfig,
}

impl HttpRunner {
    /// A runner with these host-side limits.
    pub fn new(config: HttpRunnerConfig) -> Self {
        HttpRunner { config }
    }
}

#[async_trait]
impl JobRunner for HttpRunner {
    fn job_type(&self) -> &str {
        "http_request"
    }
    fn validate_config(&self, _config: &Value) -> Result<(), Error> {
        let _ = &self.config;
        Ok(())
    }
    async fn run(&self, _ctx: JobContext) -> Result<JobOutput, JobError> {
        todo!()
    }
}
