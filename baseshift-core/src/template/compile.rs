//! STUB (helper B replaces): the compiled DAG.
use super::{RetryPolicy, Trigger, WorkflowTemplate};
use crate::error::Result;
use crate::expr::{Condition, ConfigTemplate};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A validated template, compiled for execution.
#[derive(Clone, Debug)]
pub struct CompiledTemplate {
    template: Arc<WorkflowTemplate>,
    jobs: Vec<CompiledJob>,
    index: HashMap<String, usize>,
}

/// One job, compiled: parents/children resolved, defaults applied, expressions parsed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CompiledJob {
    /// The job id.
    pub id: String,
    /// The runner type.
    pub job_type: String,
    /// Parents (with the "follows the previous job" rule applied), in template order.
    pub parents: Vec<String>,
    /// Children, in template order.
    pub children: Vec<String>,
    /// The join rule.
    pub trigger: Trigger,
    /// The base priority.
    pub priority: i32,
    /// The retry policy, defaults applied.
    pub retry: RetryPolicy,
    /// The per-attempt timeout, defaults applied.
    pub timeout: Option<Duration>,
    /// The parsed `when`.
    pub condition: Option<Condition>,
    /// The parsed config.
    pub config: ConfigTemplate,
    /// For a job with `compensate`: the compensation job (`<id>.compensate`).
    pub compensation: Option<Box<CompiledJob>>,
    /// For a compensation job: the job it compensates.
    pub compensates: Option<String>,
}

impl CompiledTemplate {
    /// The source template.
    pub fn template(&self) -> &Arc<WorkflowTemplate> {
        &self.template
    }

    /// Main jobs in template order.
    pub fn jobs(&self) -> &[CompiledJob] {
        &self.jobs
    }

    /// A main job or a compensation job (`<id>.compensate`) by id.
    pub fn job(&self, id: &str) -> Option<&CompiledJob> {
        let _ = (&self.index, id);
        todo!()
    }

    /// Jobs without parents.
    pub fn roots(&self) -> impl Iterator<Item = &CompiledJob> {
        self.jobs.iter().filter(|j| j.parents.is_empty())
    }

    /// Job ids whose outputs `job_id`'s config or condition may read.
    pub fn ancestors_referenced(&self, job_id: &str) -> Vec<String> {
        let _ = job_id;
        todo!()
    }

    /// Checks a workflow input against the template's `input_schema` (if any).
    pub fn validate_input(&self, input: &Value) -> Result<()> {
        let _ = input;
        todo!()
    }
}
