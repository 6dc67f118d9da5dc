//! Validation: every check a template must pass before it is stored or run.

mod concurrency;

use super::compile::{CompiledJob, InputSchema};
use super::graph::{find_cycle, missing_ancestors};
use super::{CompensationSpec, CompiledTemplate, DurationSpec, JobSpec, RetryPolicy, WorkflowTemplate};
use crate::error::{Error, Location, Result};
use crate::expr::{Condition, ConfigTemplate, Reference};
use crate::hash::{FastMap, map_with_capacity};
use crate::runner::RunnerRegistry;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Validates templates and compiles them into a [`CompiledTemplate`].
///
/// Every failure is an [`ErrorKind::InvalidTemplate`](crate::ErrorKind::InvalidTemplate)
/// error whose [`Location`] names the template, job and field, plus the line and column
/// when the template was loaded from YAML.
#[derive(Clone, Copy, Debug, Default)]
pub struct Validator<'a> {
    registry: Option<&'a RunnerRegistry>,
    env_allowlist: Option<&'a HashSet<String>>,
}

impl<'a> Validator<'a> {
    /// Structure-only validation (no runner or env checks).
    pub fn new() -> Self {
        Validator::default()
    }

    /// Also check job types against `registry` and call each runner's `validate_config`.
    #[must_use]
    pub fn registry(mut self, registry: &'a RunnerRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Also check `${env.NAME}` references against the host's allowlist.
    #[must_use]
    pub fn env_allowlist(mut self, allow: &'a HashSet<String>) -> Self {
        self.env_allowlist = Some(allow);
        self
    }

    /// Validates `template` and compiles it.
    pub fn compile(&self, template: &WorkflowTemplate) -> Result<CompiledTemplate> {
        self.check(template, true)
            .map(|(jobs, schema)| CompiledTemplate::assemble(Arc::new(template.clone()), jobs, schema))
    }

    /// [`compile`](Self::compile) for a shared template: the compiled form keeps `template`
    /// itself instead of a copy.
    pub fn compile_shared(&self, template: Arc<WorkflowTemplate>) -> Result<CompiledTemplate> {
        self.check(&template, true).map(|(jobs, schema)| CompiledTemplate::assemble(template, jobs, schema))
    }

    fn check(&self, template: &WorkflowTemplate, build: bool) -> Result<(Vec<CompiledJob>, Option<InputSchema>)> {
        let mut cx = Checker { v: self, t: template, index: FastMap::default(), build };
        cx.index = cx.check_ids()?;
        let parents = cx.resolve_parents()?;
        if let Some(cycle) = find_cycle(&parents) {
            let names: Vec<&str> = cycle.iter().map(|&i| template.jobs[i].id.as_str()).collect();
            return Err(cx.err(Some(cycle[0]), Some("depends_on"), format!("cycle: {}", names.join(" -> "))));
        }
        if let Some(r) = &template.defaults.retry {
            check_retry(r).map_err(|m| cx.top_err("defaults.retry", m))?;
        }
        if let Some(d) = template.defaults.timeout {
            check_timeout(d).map_err(|m| cx.top_err("defaults.timeout", m))?;
        }
        let schema = cx.compile_schema()?;
        let mut children: Vec<Vec<String>> = vec![Vec::new(); template.jobs.len()];
        if build {
            for (i, ps) in parents.iter().enumerate() {
                for &p in ps {
                    children[p].push(template.jobs[i].id.clone());
                }
            }
        }
        let mut jobs = Vec::with_capacity(template.jobs.len());
        for ((i, job), children) in template.jobs.iter().enumerate().zip(children) {
            jobs.push(cx.compile_job(i, job, &parents, children)?);
        }
        Ok((jobs, schema))
    }
}

impl WorkflowTemplate {
    /// Validates the structure: ids, parents, cycles, expressions, schema.
    pub fn validate(&self) -> Result<()> {
        Validator::new().check(self, false).map(|_| ())
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn check_retry(r: &RetryPolicy) -> std::result::Result<(), String> {
    if r.max_attempts < 1 {
        return Err("max_attempts must be at least 1".to_owned());
    }
    if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
        return Err(format!("multiplier must be at least 1, not {}", r.multiplier));
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        return Err(format!("jitter must be between 0 and 1, not {}", r.jitter));
    }
    if r.initial_delay > r.max_delay {
        return Err(format!("initial_delay ({}) must not exceed max_delay ({})", r.initial_delay, r.max_delay));
    }
    Ok(())
}

fn check_timeout(d: DurationSpec) -> std::result::Result<(), String> {
    if d.0.is_zero() { Err("timeout must be greater than zero".to_owned()) } else { Ok(()) }
}

struct Checker<'v, 't> {
    v: &'v Validator<'v>,
    t: &'t WorkflowTemplate,
    /// Job index by id (filled once ids are known to be unique).
    index: FastMap<&'t str, usize>,
    /// Whether the compiled jobs are wanted (else their parent and child lists are left
    /// empty: [`WorkflowTemplate::validate`] only checks).
    build: bool,
}

impl<'t> Checker<'_, 't> {
    /// An error about job `index` (or the template) at `field`, located through the source map.
    fn err(&self, index: Option<usize>, field: Option<&str>, message: impl Into<String>) -> Error {
        let mut loc = Location::template(self.t.template_id.clone());
        loc.field = field.map(str::to_owned);
        let pos = match index {
            Some(i) => {
                loc.job = self.t.jobs.get(i).map(|j| j.id.clone());
                self.t.source_map.as_ref().and_then(|m| m.locate_at(i, field))
            }
            None => self.t.source_map.as_ref().and_then(|m| m.locate(None, field)),
        };
        if let Some((l, c)) = pos {
            loc = loc.at(l, c);
        }
        Error::invalid_template(loc, message)
    }

    fn top_err(&self, field: &str, message: impl Into<String>) -> Error {
        self.err(None, Some(field), message)
    }

    /// Checks every id and returns the job index by id.
    fn check_ids(&self) -> Result<FastMap<&'t str, usize>> {
        let t = self.t;
        if !valid_id(&t.template_id) {
            return Err(self.top_err(
                "template_id",
                format!(
                    "template_id `{}` must be non-empty and use only letters, digits, `_`, `.` and `-`",
                    t.template_id
                ),
            ));
        }
        if t.jobs.is_empty() {
            return Err(self.top_err("jobs", "a template needs at least one job"));
        }
        let mut seen: FastMap<&'t str, usize> = map_with_capacity(t.jobs.len());
        for (i, job) in t.jobs.iter().enumerate() {
            if !valid_id(&job.id) {
                return Err(self.err(
                    Some(i),
                    Some("id"),
                    format!("job id `{}` must be non-empty and use only letters, digits, `_`, `.` and `-`", job.id),
                ));
            }
            if job.id.ends_with(".compensate") {
                return Err(self.err(
                    Some(i),
                    Some("id"),
                    format!("job id `{}`: ids ending in `.compensate` are reserved for compensation jobs", job.id),
                ));
            }
            if let Some(first) = seen.insert(&job.id, i) {
                return Err(self.err(
                    Some(i),
                    Some("id"),
                    format!("duplicate job id `{}` (first used by job #{})", job.id, first + 1),
                ));
            }
        }
        Ok(seen)
    }

    /// Parent indices per job, with the "follows the previous job" rule applied.
    fn resolve_parents(&self) -> Result<Vec<Vec<usize>>> {
        let mut all = Vec::with_capacity(self.t.jobs.len());
        // Which job last listed each parent: a fan-in of n parents must not cost n^2,
        // and one array serves every job (no set per job).
        let mut listed_by = vec![usize::MAX; self.t.jobs.len()];
        for (i, job) in self.t.jobs.iter().enumerate() {
            let mut parents: Vec<usize> = Vec::new();
            for (k, p) in self.t.parents_of(i).into_iter().enumerate() {
                // The field is named only when there is an error (no allocation per edge).
                let field = || format!("depends_on[{k}]");
                let Some(&pi) = self.index.get(p) else {
                    return Err(self.err(
                        Some(i),
                        Some(&field()),
                        format!("job `{}` depends on unknown job `{p}`", job.id),
                    ));
                };
                if pi == i {
                    return Err(self.err(Some(i), Some(&field()), format!("job `{}` depends on itself", job.id)));
                }
                if listed_by[pi] == i {
                    return Err(self.err(
                        Some(i),
                        Some(&field()),
                        format!("job `{}` lists parent `{p}` twice", job.id),
                    ));
                }
                listed_by[pi] = i;
                parents.push(pi);
            }
            all.push(parents);
        }
        Ok(all)
    }

    fn compile_schema(&self) -> Result<Option<InputSchema>> {
        let Some(schema) = &self.t.input_schema else {
            return Ok(None);
        };
        jsonschema::validator_for(schema)
            .map(|v| Some(InputSchema(Arc::new(v))))
            .map_err(|e| self.top_err("input_schema", format!("input_schema is not a valid JSON Schema: {e}")))
    }

    fn compile_job(
        &self,
        i: usize,
        job: &JobSpec,
        parents: &[Vec<usize>],
        children: Vec<String>,
    ) -> Result<CompiledJob> {
        let defaults = &self.t.defaults;
        let condition = match &job.when {
            Some(src) => {
                let c = Condition::compile(src).map_err(|m| self.err(Some(i), Some("when"), m))?;
                let refs: Vec<&str> = c.job_refs().iter().map(String::as_str).collect();
                self.check_job_refs(i, false, parents, refs.iter().map(|r| ("when", *r)))?;
                Some(c)
            }
            None => None,
        };
        let config = self.compile_config(i, false, &job.job_type, &job.config, "config", parents)?;
        if let Some(r) = &job.retry {
            check_retry(r).map_err(|m| self.err(Some(i), Some("retry"), m))?;
        }
        if let Some(d) = job.timeout {
            check_timeout(d).map_err(|m| self.err(Some(i), Some("timeout"), m))?;
        }
        let compensation = match &job.compensate {
            Some(c) => Some(Box::new(self.compile_compensation(i, job, c, parents)?)),
            None => None,
        };
        let concurrency = self.compile_concurrency(i, job)?;
        Ok(CompiledJob {
            id: job.id.clone(),
            job_type: job.job_type.clone(),
            parents: if self.build {
                parents[i].iter().map(|&p| self.t.jobs[p].id.clone()).collect()
            } else {
                Vec::new()
            },
            children,
            trigger: job.trigger,
            priority: job.priority,
            retry: job.retry.clone().or_else(|| defaults.retry.clone()).unwrap_or_default(),
            timeout: job.timeout.or(defaults.timeout).map(|d| d.0),
            condition,
            config,
            compensation,
            compensates: None,
            concurrency,
        })
    }

    fn compile_compensation(
        &self,
        i: usize,
        job: &JobSpec,
        c: &CompensationSpec,
        parents: &[Vec<usize>],
    ) -> Result<CompiledJob> {
        let defaults = &self.t.defaults;
        let config = self.compile_config(i, true, &c.job_type, &c.config, "compensate.config", parents)?;
        if let Some(r) = &c.retry {
            check_retry(r).map_err(|m| self.err(Some(i), Some("compensate.retry"), m))?;
        }
        if let Some(d) = c.timeout {
            check_timeout(d).map_err(|m| self.err(Some(i), Some("compensate.timeout"), m))?;
        }
        Ok(CompiledJob {
            id: CompiledJob::compensation_id(&job.id),
            job_type: c.job_type.clone(),
            parents: Vec::new(),
            children: Vec::new(),
            trigger: super::Trigger::AllSuccess,
            priority: job.priority,
            retry: c.retry.clone().or_else(|| defaults.retry.clone()).unwrap_or_default(),
            timeout: c.timeout.or(defaults.timeout).map(|d| d.0),
            condition: None,
            config,
            compensation: None,
            compensates: Some(job.id.clone()),
            concurrency: None,
        })
    }

    /// Parses a config, checks its references and, with a registry, its job type and config.
    fn compile_config(
        &self,
        i: usize,
        compensation: bool,
        job_type: &str,
        raw: &Value,
        root: &str,
        parents: &[Vec<usize>],
    ) -> Result<ConfigTemplate> {
        let config = ConfigTemplate::parse_at(raw, root).map_err(|(field, m)| self.err(Some(i), Some(&field), m))?;
        let mut job_refs = Vec::new();
        for (field, r) in config.field_references() {
            match r {
                Reference::JobOutput { job, .. } => job_refs.push((field, job.as_str())),
                Reference::Env(name) => {
                    if let Some(allow) = self.v.env_allowlist
                        && !allow.contains(name)
                    {
                        return Err(self.err(
                            Some(i),
                            Some(field),
                            format!("{r}: environment variable `{name}` is not on the host's allowlist"),
                        ));
                    }
                }
                Reference::Input(_) | Reference::WorkflowId | Reference::Secret(_) => {}
            }
        }
        self.check_job_refs(i, compensation, parents, job_refs.into_iter())?;
        if let Some(registry) = self.v.registry {
            let type_field = if compensation { "compensate.type" } else { "type" };
            let Some(runner) = registry.get(job_type) else {
                return Err(self.err(
                    Some(i),
                    Some(type_field),
                    format!("unknown job type `{job_type}` (registered: {})", registry.job_types().join(", ")),
                ));
            };
            runner.validate_config(raw).map_err(|e| {
                let field = match e.location().and_then(|l| l.field.as_deref()) {
                    Some(f) if f == "config" || f.starts_with("config.") || f.starts_with("config[") => {
                        format!("{root}{}", &f["config".len()..])
                    }
                    Some(f) => format!("{root}.{f}"),
                    None => root.to_owned(),
                };
                self.err(Some(i), Some(&field), format!("invalid config for job type `{job_type}`: {}", e.message()))
            })?;
        }
        Ok(config)
    }

    /// Each referenced job must exist and be an ancestor of job `i` (or, for a
    /// compensation, job `i` itself).
    fn check_job_refs<'r>(
        &self,
        i: usize,
        include_self: bool,
        parents: &[Vec<usize>],
        refs: impl Iterator<Item = (&'r str, &'r str)>,
    ) -> Result<()> {
        let mut wanted = Vec::new();
        let mut fields: HashMap<usize, &str> = HashMap::new();
        for (field, id) in refs {
            let Some(&j) = self.index.get(id) else {
                return Err(self.err(Some(i), Some(field), format!("reference to unknown job `{id}`")));
            };
            fields.entry(j).or_insert(field);
            wanted.push(j);
        }
        if let Some(&bad) = missing_ancestors(parents, i, include_self, &wanted).first() {
            let field = fields.get(&bad).copied().unwrap_or("config");
            let whose =
                if include_self { "neither the compensated job nor one of its ancestors" } else { "not an ancestor" };
            return Err(self.err(
                Some(i),
                Some(field),
                format!(
                    "job `{}` reads the output of job `{}`, which is {whose}: its output may not exist yet",
                    self.t.jobs[i].id, self.t.jobs[bad].id
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
