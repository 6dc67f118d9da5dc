//! The compiled DAG: what the engine executes.

use super::{RetryPolicy, Trigger, WorkflowTemplate};
use crate::error::{Error, ErrorKind, Location, Result};
use crate::expr::{Condition, ConfigTemplate};
use crate::ids::Name;
use hashbrown::HashTable;
use serde_json::Value;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

/// A validated template, compiled for execution. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct CompiledTemplate {
    template: Arc<WorkflowTemplate>,
    /// The template's version as text, as workflow records store it.
    version: String,
    jobs: Vec<CompiledJob>,
    index: JobIndex,
    schema: Option<InputSchema>,
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Main(usize),
    Compensation(usize),
}

impl Slot {
    /// The job this slot names.
    fn job(self, jobs: &[CompiledJob]) -> Option<&CompiledJob> {
        match self {
            Slot::Main(i) => jobs.get(i),
            Slot::Compensation(i) => jobs.get(i).and_then(|j| j.compensation.as_deref()),
        }
    }

    fn id(self, jobs: &[CompiledJob]) -> &str {
        self.job(jobs).map_or("", |j| j.id.as_str())
    }
}

/// Main and compensation jobs by id. The table holds slots only, hashed by their job's
/// id: no id is copied into it.
#[derive(Clone, Debug)]
struct JobIndex {
    slots: HashTable<Slot>,
    hasher: foldhash::fast::RandomState,
}

impl JobIndex {
    /// The index of `jobs` (validated: every id is unique).
    fn new(jobs: &[CompiledJob]) -> Self {
        let hasher = foldhash::fast::RandomState::default();
        let mut slots = HashTable::with_capacity(jobs.len());
        let mut add = |id: &str, slot: Slot| {
            slots.insert_unique(hasher.hash_one(id), slot, |s: &Slot| hasher.hash_one(s.id(jobs)));
        };
        for (i, job) in jobs.iter().enumerate() {
            add(&job.id, Slot::Main(i));
            if let Some(c) = &job.compensation {
                add(&c.id, Slot::Compensation(i));
            }
        }
        JobIndex { slots, hasher }
    }

    /// The job of `id` among `jobs` (those the index was made of).
    fn get<'j>(&self, jobs: &'j [CompiledJob], id: &str) -> Option<&'j CompiledJob> {
        let slot = self.slots.find(self.hasher.hash_one(id), |s| s.id(jobs) == id)?;
        slot.job(jobs)
    }

    /// The number of main and compensation jobs.
    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// The compiled `input_schema`.
#[derive(Clone)]
pub(super) struct InputSchema(pub(super) Arc<jsonschema::Validator>);

impl fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InputSchema(..)")
    }
}

/// One job, compiled: parents/children resolved, defaults applied, expressions parsed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CompiledJob {
    /// The job id.
    pub id: Name,
    /// The runner type.
    pub job_type: Name,
    /// Parents (with the "follows the previous job" rule applied), in template order.
    pub parents: Vec<Name>,
    /// Children, in template order.
    pub children: Vec<Name>,
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
    pub compensates: Option<Name>,
    /// The parsed `concurrency_key` and its limit (defaults applied).
    pub concurrency: Option<CompiledConcurrency>,
}

/// A job's compiled `concurrency_key` and limit.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CompiledConcurrency {
    /// The key, rendered against the workflow input when the workflow starts.
    pub key: ConfigTemplate,
    /// At most this many jobs with one rendered key run at once.
    pub limit: u32,
}

impl CompiledJob {
    /// Whether this is a compensation job (`<id>.compensate`).
    pub fn is_compensation(&self) -> bool {
        self.compensates.is_some()
    }

    /// The id of the compensation job of job `job_id`: `<job_id>.compensate`.
    pub fn compensation_id(job_id: &str) -> String {
        format!("{job_id}.compensate")
    }
}

impl CompiledTemplate {
    /// Assembles a compiled template; `jobs` must be validated and in template order.
    pub(super) fn assemble(
        template: Arc<WorkflowTemplate>,
        jobs: Vec<CompiledJob>,
        schema: Option<InputSchema>,
    ) -> Self {
        let index = JobIndex::new(&jobs);
        let version = template.version.to_string();
        CompiledTemplate { template, version, jobs, index, schema }
    }

    /// The source template.
    pub fn template(&self) -> &Arc<WorkflowTemplate> {
        &self.template
    }

    /// The template id.
    pub fn template_id(&self) -> &str {
        &self.template.template_id
    }

    /// The template's version as text (`1.2.0`), as a workflow record's
    /// `template_version` holds it: formatted once, when the template is compiled.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Main jobs in template order.
    pub fn jobs(&self) -> &[CompiledJob] {
        &self.jobs
    }

    /// A main job or a compensation job (`<id>.compensate`) by id.
    pub fn job(&self, id: &str) -> Option<&CompiledJob> {
        self.index.get(&self.jobs, id)
    }

    /// The jobs without parents, in template order: they are ready when a workflow starts.
    pub fn roots(&self) -> impl Iterator<Item = &CompiledJob> + '_ {
        self.jobs.iter().filter(|j| j.parents.is_empty())
    }

    /// Whether any job has a compensation job.
    pub fn has_compensations(&self) -> bool {
        self.index.len() > self.jobs.len()
    }

    /// The compensation jobs, in template order of the jobs they compensate (run them in
    /// reverse completion order).
    pub fn compensation_jobs(&self) -> impl Iterator<Item = &CompiledJob> + '_ {
        self.jobs.iter().filter_map(|j| j.compensation.as_deref())
    }

    /// The ids of the jobs whose outputs job `job_id`'s config and condition may read:
    /// its parents, `${jobs.X...}` references and CEL `jobs.X` references (for a
    /// compensation job: the compensated job and its references), without duplicates.
    /// Empty for an unknown id.
    pub fn ancestors_referenced(&self, job_id: &str) -> Vec<&str> {
        let Some(job) = self.job(job_id) else {
            return Vec::new();
        };
        let candidates = job
            .parents
            .iter()
            .map(Name::as_str)
            .chain(job.compensates.as_deref())
            .chain(job.config.job_refs())
            .chain(job.condition.iter().flat_map(|c| c.job_refs().iter().map(String::as_str)));
        let mut out: Vec<&str> = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for id in candidates {
            if let Some(j) = self.job(id)
                && seen.insert(j.id.as_str())
            {
                out.push(&j.id);
            }
        }
        out
    }

    /// Checks a workflow input against the template's `input_schema` (if any).
    ///
    /// A failure is an [`ErrorKind::InvalidInput`] error whose message names each failing
    /// JSON path of the input (as a JSON pointer, `/` for the whole input).
    pub fn validate_input(&self, input: &Value) -> Result<()> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let mut first_path = None;
        let problems: Vec<String> = schema
            .0
            .iter_errors(input)
            .take(10)
            .map(|e| {
                let pointer = e.instance_path().as_str().to_owned();
                let path = if pointer.is_empty() { "/".to_owned() } else { pointer.clone() };
                first_path.get_or_insert(pointer);
                let mut text = e.to_string();
                if text.len() > 200 {
                    let cut = (0..=200).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
                    text.truncate(cut);
                    text.push_str("...");
                }
                format!("at `{path}`: {text}")
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        let location = Location::template(self.template_id()).field(format!("input{}", first_path.unwrap_or_default()));
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "input does not match the input_schema of template `{}`: {}",
                self.template_id(),
                problems.join("; ")
            ),
        )
        .with_location(location))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_template_is_send_sync() {
        fn assert_traits<T: Clone + Send + Sync + 'static>() {}
        assert_traits::<CompiledTemplate>();
        assert_traits::<CompiledJob>();
    }
}
