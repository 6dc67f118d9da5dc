//! The [`JobRunner`] plugin trait, the context a runner gets, and the registry of runners.

pub mod builtin;
mod registry;

pub use registry::RunnerRegistry;

use crate::error::{Error, ErrorKind};
use crate::ids::{Name, WorkflowId};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A job type: the code that runs one job.
///
/// Runners are registered with the engine under their [`job_type`](JobRunner::job_type)
/// and shared as `Arc<dyn JobRunner>`.
///
/// # Contract
///
/// - `job_type` is constant: it is stored in state, so renaming it orphans stored jobs.
/// - `validate_config` is called once when a template is stored or loaded, with the
///   job's raw config (before interpolation; strings may hold `${...}`). It returns an
///   [`ErrorKind::InvalidTemplate`] or [`ErrorKind::InvalidInput`] error naming the field.
/// - `run` gets the resolved config. It returns [`JobError::retryable`] for failures
///   worth another attempt and [`JobError::permanent`] for ones that are not. A job runs
///   at least once: a run may be repeated after a crash, so side effects should use
///   [`JobContext::idempotency_key`].
/// - `run` must stop promptly once [`JobContext::cancellation`] is cancelled or
///   [`JobContext::deadline`] passes; the engine also drops the future at the deadline.
/// - `run` may return [`JobOutput::await_external`]: the job then stays `RUNNING` until
///   the host calls `Engine::complete_job` or `Engine::fail_job`.
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    /// The job type this runner serves, e.g. `http_request`.
    fn job_type(&self) -> &str;

    /// Checks a job's config at template load time.
    fn validate_config(&self, config: &Value) -> Result<(), Error>;

    /// Runs one attempt of one job.
    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError>;
}

/// Everything a runner gets for one attempt.
#[derive(Clone)]
pub struct JobContext {
    /// The workflow the job belongs to.
    pub workflow_id: WorkflowId,
    /// The job's id in its template.
    pub job_id: Name,
    /// The job's type.
    pub job_type: Name,
    /// The config with every `${...}` resolved (secrets included: never log it whole).
    pub config: Value,
    /// The workflow's input (shared: every job of the workflow gets the same one).
    pub input: Arc<Value>,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// When the attempt must be finished (the job's timeout), if any.
    pub deadline: Option<Instant>,
    /// Cancelled when the workflow is cancelled, the attempt times out or its lease is lost.
    pub cancellation: CancellationToken,
    /// The token of the lease this attempt runs under (unique per claim), if any: lets a
    /// runner tag its side effects with the claim that made them.
    pub lease_token: Option<Name>,
    /// Handle for runners that start child workflows (`workflow` runner).
    pub(crate) children: Option<Arc<dyn crate::engine::ChildStarter>>,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("workflow_id", &self.workflow_id)
            .field("job_id", &self.job_id)
            .field("job_type", &self.job_type)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// A context for calling a runner directly (tests, tools): attempt 1, no deadline.
    pub fn new(
        workflow_id: impl Into<WorkflowId>,
        job_id: impl Into<Name>,
        job_type: impl Into<Name>,
        config: Value,
    ) -> Self {
        JobContext {
            workflow_id: workflow_id.into(),
            job_id: job_id.into(),
            job_type: job_type.into(),
            config,
            input: Arc::new(Value::Null),
            attempt: 1,
            deadline: None,
            cancellation: CancellationToken::new(),
            lease_token: None,
            children: None,
        }
    }

    /// `workflow_id/job_id`: stable across attempts, for idempotent side effects.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.workflow_id, self.job_id)
    }

    /// Reads a field of the resolved config, e.g. `ctx.config_field::<String>("url")`.
    ///
    /// Errors name the job and field; they are [`ErrorKind::InvalidInput`].
    pub fn config_field<T: DeserializeOwned>(&self, field: &str) -> Result<T, Error> {
        let v = self.config.get(field).cloned().unwrap_or(Value::Null);
        serde_json::from_value(v)
            .map_err(|e| Error::invalid_input(format!("config field `{field}`: {e}")).with_job(self.job_id.clone()))
    }

    /// The time left before the deadline, if there is one.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// What a successful attempt produced.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOutput {
    pub(crate) value: Value,
    pub(crate) external: bool,
}

impl JobOutput {
    /// An output value (stored, published in the job's `result`, readable as `${jobs.<id>.output}`).
    pub fn json(value: Value) -> Self {
        JobOutput { value, external: false }
    }

    /// No output (`null`).
    pub fn empty() -> Self {
        JobOutput::json(Value::Null)
    }

    /// The job stays `RUNNING` until `Engine::complete_job` / `fail_job` is called.
    pub fn await_external() -> Self {
        JobOutput { value: Value::Null, external: true }
    }

    /// The output value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Whether the job waits for an external completion.
    pub fn is_external(&self) -> bool {
        self.external
    }
}

/// A failed attempt: retryable (another attempt may succeed) or permanent.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{} job error: {message}", if *.retryable { "retryable" } else { "permanent" })]
pub struct JobError {
    retryable: bool,
    message: String,
    details: Option<Value>,
    rule: Option<String>,
}

impl JobError {
    /// A failure worth retrying (network error, 5xx, overload).
    pub fn retryable(err: impl fmt::Display) -> Self {
        JobError { retryable: true, message: err.to_string(), details: None, rule: None }
    }

    /// A failure that will not go away (bad config, 4xx, non-zero exit of a deterministic command).
    pub fn permanent(err: impl fmt::Display) -> Self {
        JobError { retryable: false, message: err.to_string(), details: None, rule: None }
    }

    /// A permanent failure because the job broke the host's policy rule `rule` (e.g.
    /// `shell.allowed_commands`); the engine records a `policy_violation` audit event.
    pub fn policy_violation(rule: impl Into<String>, err: impl fmt::Display) -> Self {
        JobError { retryable: false, message: err.to_string(), details: None, rule: Some(rule.into()) }
    }

    /// The policy rule broken, for a [`policy_violation`](Self::policy_violation).
    pub fn policy_rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// Attaches structured details (exit code, status, stderr tail); stored with the failure.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Structured details, if any.
    pub fn details(&self) -> Option<&Value> {
        self.details.as_ref()
    }
}

impl From<Error> for JobError {
    fn from(e: Error) -> Self {
        let retryable = e.is_retryable();
        JobError { retryable, message: e.to_string(), details: None, rule: None }
    }
}

/// Helper for `validate_config` implementations: an [`ErrorKind::InvalidTemplate`]
/// error naming the config field.
pub fn config_error(field: &str, message: impl fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidTemplate, format!("config.{field}: {message}"))
        .with_location(crate::error::Location::default().field(format!("config.{field}")))
}
