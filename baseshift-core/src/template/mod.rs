//! The workflow template model, its YAML/JSON loading, validation and compilation to a DAG.

mod compile;
mod duration;
mod graph;
mod parse;
mod tree;
mod validate;
mod version;

pub use compile::{CompiledConcurrency, CompiledJob, CompiledTemplate};
pub use duration::DurationSpec;
pub use parse::SourceMap;
pub use validate::Validator;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A workflow template: the DAG of jobs a workflow run executes.
///
/// Load one with [`WorkflowTemplate::from_yaml`] or [`WorkflowTemplate::from_json`];
/// both validate the structure (ids, parents, cycles, expressions, schema) and report
/// errors with the template id, job id, field and, for YAML, line and column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkflowTemplate {
    /// The template's id (stable across versions).
    pub template_id: String,
    /// A human-readable name.
    #[serde(default)]
    pub name: String,
    /// The semantic version. `1.0` (a YAML number) and `"1.0"` are read as `1.0.0`.
    #[serde(with = "version")]
    pub version: semver::Version,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema the workflow input must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Defaults for every job.
    #[serde(default)]
    pub defaults: JobDefaults,
    /// The jobs, in list order.
    pub jobs: Vec<JobSpec>,
    /// Where each part was written, when loaded from YAML (not serialized).
    #[serde(skip)]
    pub source_map: Option<Arc<SourceMap>>,
}

/// Defaults applied to every job that does not set its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct JobDefaults {
    /// The retry policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The per-attempt timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// The limit of jobs with a `concurrency_key` and no `concurrency_limit` of their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<u32>,
}

/// One job of a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobSpec {
    /// Unique within the template.
    pub id: String,
    /// The runner type, e.g. `http_request`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// The runner's config; strings may hold `${...}` references.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
    /// Parents. Absent: the job listed before this one (none for the first job).
    /// `[]`: a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    /// A CEL condition over `input`, `jobs` and `workflow`; false skips the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The join rule.
    #[serde(default)]
    pub trigger: Trigger,
    /// The retry policy (else the template default, else one attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The per-attempt timeout (else the template default, else none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Higher runs first among ready jobs; waiting raises it by 0.1 per second.
    #[serde(default)]
    pub priority: i32,
    /// A job to run if the workflow later fails after this job succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<CompensationSpec>,
    /// A concurrency key (e.g. `"customer-${input.customer_id}"`): at most
    /// `concurrency_limit` jobs with the same rendered key run at once. It may use
    /// `${input...}` and `${workflow.id}` only: it is fixed when the workflow starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// The limit for `concurrency_key` (else `defaults.concurrency_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<u32>,
}

impl JobSpec {
    /// A job with an id and a type; everything else default.
    pub fn new(id: impl Into<String>, job_type: impl Into<String>) -> Self {
        JobSpec {
            id: id.into(),
            job_type: job_type.into(),
            config: Value::Null,
            depends_on: None,
            when: None,
            trigger: Trigger::default(),
            retry: None,
            timeout: None,
            priority: 0,
            compensate: None,
            concurrency_key: None,
            concurrency_limit: None,
        }
    }

    /// Sets the config.
    #[must_use]
    pub fn config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// Sets the parents explicitly (`[]` for a root).
    #[must_use]
    pub fn depends_on<I, S>(mut self, parents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.depends_on = Some(parents.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the `when` condition.
    #[must_use]
    pub fn when(mut self, condition: impl Into<String>) -> Self {
        self.when = Some(condition.into());
        self
    }

    /// Sets the join rule.
    #[must_use]
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(DurationSpec(timeout));
        self
    }

    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the compensation.
    #[must_use]
    pub fn compensate(mut self, compensate: CompensationSpec) -> Self {
        self.compensate = Some(compensate);
        self
    }

    /// At most `limit` jobs sharing the rendered `key` run at once.
    #[must_use]
    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.concurrency_key = Some(key.into());
        self.concurrency_limit = Some(limit);
        self
    }
}

/// The job run to undo a succeeded job when its workflow fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompensationSpec {
    /// The runner type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// The runner's config; may reference `${jobs.<id>.output...}` of the compensated job.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
    /// The retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The per-attempt timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
}

impl CompensationSpec {
    /// A compensation of `job_type` with `config`.
    pub fn new(job_type: impl Into<String>, config: Value) -> Self {
        CompensationSpec { job_type: job_type.into(), config, retry: None, timeout: None }
    }
}

/// The join rule: when a job may run, given how its parents ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Every parent succeeded (a failed or skipped parent skips the job).
    #[default]
    AllSuccess,
    /// Every parent finished, however.
    AllDone,
    /// At least one parent succeeded (decided when all have finished).
    OneSuccess,
    /// No parent failed; skipped parents are fine (joins after a `when` branch).
    NoneFailed,
}

/// Retries with exponential backoff and jitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_delay: DurationSpec,
    /// Factor applied per further retry.
    pub multiplier: f64,
    /// Upper bound of one delay.
    pub max_delay: DurationSpec,
    /// Random spread, as a fraction of the delay (0.2 = +/-20%).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_delay: DurationSpec(Duration::from_secs(1)),
            multiplier: 2.0,
            max_delay: DurationSpec(Duration::from_secs(300)),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts with the default backoff (1 s doubling, at most 5 min, 20% jitter).
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy { max_attempts, ..Default::default() }
    }

    /// Sets the first delay.
    #[must_use]
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = DurationSpec(d);
        self
    }

    /// Sets the cap of one delay.
    #[must_use]
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = DurationSpec(d);
        self
    }

    /// Sets the jitter fraction.
    #[must_use]
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = j;
        self
    }

    /// The delay before the retry that follows failed attempt `attempt` (1-based), jitter applied.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.max(1.0).powi(attempt.saturating_sub(1).min(64) as i32);
        let base = (self.initial_delay.0.as_secs_f64() * exp).min(self.max_delay.0.as_secs_f64());
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + j * (fastrand::f64() * 2.0 - 1.0);
        Duration::from_secs_f64((base * factor).clamp(0.0, self.max_delay.0.as_secs_f64()))
    }
}

impl WorkflowTemplate {
    /// A template with an id and a version, and no jobs.
    pub fn new(template_id: impl Into<String>, version: semver::Version) -> Self {
        WorkflowTemplate {
            template_id: template_id.into(),
            name: String::new(),
            version,
            description: None,
            input_schema: None,
            defaults: JobDefaults::default(),
            jobs: Vec::new(),
            source_map: None,
        }
    }

    /// Adds a job.
    #[must_use]
    pub fn job(mut self, job: JobSpec) -> Self {
        self.jobs.push(job);
        self
    }

    /// Sets the input schema.
    #[must_use]
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.input_schema = Some(schema);
        self
    }

    /// The parents of job `index`, with the "follows the previous job" rule applied.
    pub fn parents_of(&self, index: usize) -> Vec<&str> {
        match &self.jobs[index].depends_on {
            Some(p) => p.iter().map(String::as_str).collect(),
            None if index == 0 => Vec::new(),
            None => vec![self.jobs[index - 1].id.as_str()],
        }
    }
}
