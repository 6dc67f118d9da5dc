//! STUB (helper A replaces): the `shell` runner.
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use async_trait::async_trait;
use serde_json::Value;

/// Host-side limits of the `shell` runner.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ShellRunnerConfig {}

/// The `shell` runner: runs a program with an argv (never through a shell).
#[derive(Clone, Debug, Default)]
pub struct ShellRunner {
    config: ShellRunnerConfig,
}

impl ShellRunner {
    /// A runner with these host-side limits.
    pub fn new(config: ShellRunnerConfig) -> Self {
        ShellRunner { config }
    }
}

#[async_trait]
impl JobRunner for ShellRunner {
    fn job_type(&self) -> &str {
        "shell"
    }
    fn validate_config(&self, _config: &Value) -> Result<(), Error> {
        let _ = &self.config;
        Ok(())
    }
    async fn run(&self, _ctx: JobContext) -> Result<JobOutput, JobError> {
        todo!()
    }
}
