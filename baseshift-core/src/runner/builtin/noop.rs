//! The `noop` runner: does nothing and returns `config.output`.

use super::fields::ConfigReader;
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use async_trait::async_trait;
use serde_json::Value;

const FIELDS: &[&str] = &["output"];

/// The `noop` runner: succeeds at once with `config.output` (any JSON) as its output,
/// or `null` when the config has none.
///
/// Useful as a join point, a placeholder, or to inject constant values into a workflow.
///
/// ```yaml
/// - id: constants
///   type: noop
///   config: { output: { region: eu-west-1 } }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopRunner;

impl NoopRunner {
    /// A `noop` runner.
    pub fn new() -> Self {
        NoopRunner
    }
}

#[async_trait]
impl JobRunner for NoopRunner {
    fn job_type(&self) -> &str {
        "noop"
    }

    fn validate_config(&self, config: &Value) -> Result<(), Error> {
        ConfigReader::raw(config, FIELDS).map(|_| ())
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let config = ConfigReader::resolved(&ctx.config, FIELDS)?;
        Ok(JobOutput::json(config.get_raw("output").cloned().unwrap_or(Value::Null)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn ctx(config: Value) -> JobContext {
        JobContext::new("wf-1", "job", "noop", config)
    }

    #[tokio::test]
    async fn returns_configured_output() {
        let out = NoopRunner.run(ctx(json!({"output": {"a": [1, 2]}}))).await.unwrap();
        assert_eq!(out.value(), &json!({"a": [1, 2]}));
        assert!(!out.is_external());
    }

    #[tokio::test]
    async fn returns_null_without_output() {
        assert_eq!(NoopRunner.run(ctx(Value::Null)).await.unwrap().value(), &Value::Null);
        assert_eq!(NoopRunner.run(ctx(json!({}))).await.unwrap().value(), &Value::Null);
    }

    #[test]
    fn validates_config_shape() {
        assert!(NoopRunner.validate_config(&Value::Null).is_ok());
        assert!(NoopRunner.validate_config(&json!({"output": "${input.x}"})).is_ok());
        let err = NoopRunner.validate_config(&json!("text")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidTemplate);
        assert!(NoopRunner.validate_config(&json!({"outptu": 1})).is_err());
    }

    #[tokio::test]
    async fn rejects_bad_resolved_config_permanently() {
        let err = NoopRunner.run(ctx(json!([1]))).await.unwrap_err();
        assert!(!err.is_retryable());
    }
}
