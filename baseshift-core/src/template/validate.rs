//! Validation: every check a template must pass before it is stored or run.

mod concurrency;

use super::compile::{CompiledJob, InputSchema};
use super::graph::{Dag, find_cycle, missing_ancestors};
use super::{CompensationSpec, CompiledTemplate, DurationSpec, JobSpec, RetryPolicy, WorkflowTemplate};
use crate::error::{Error, Location, Result};
use crate::expr::{Condition, ConfigTemplate, Reference};
use crate::hash::{FastMap, map_with_capacity};
use crate::ids::Name;
use crate::runner::{JobRunner, RunnerRegistry};
use serde_json::Value;
use std::cell::Cell;
use std::collections::HashSet;
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
        let mut cx = Checker {
            v: self,
            t: template,
            index: FastMap::default(),
            build,
            runner: Cell::new(None),
            names: Vec::new(),
        };
        cx.index = cx.check_ids()?;
        let mut dag = cx.resolve_parents()?;
        if let Some(cycle) = find_cycle(&dag) {
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
        if build {
            dag.link_children();
            cx.names = template.jobs.iter().map(|j| Name::from(j.id.as_str())).collect();
        }
        let mut jobs = Vec::with_capacity(if build { template.jobs.len() } else { 0 });
        for (i, job) in template.jobs.iter().enumerate() {
            cx.compile_job(i, job, &dag, &mut jobs)?;
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
    // Bytes, not chars: every byte of a non-ASCII char fails this test too.
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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
    /// Whether the compiled jobs are wanted (else none is built:
    /// [`WorkflowTemplate::validate`] only checks).
    build: bool,
    /// The runner of the job type looked up last (consecutive jobs mostly share a type).
    runner: Cell<Option<(&'t str, &'v Arc<dyn JobRunner>)>>,
    /// Each job's id as the name its compiled job, parent and child lists share (when building).
    names: Vec<Name>,
}

impl<'v, 't> Checker<'v, 't> {
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

    /// The parents of every job, with the "follows the previous job" rule applied.
    fn resolve_parents(&self) -> Result<Dag> {
        let jobs = &self.t.jobs;
        let edges = jobs.iter().enumerate().map(|(i, j)| j.depends_on.as_ref().map_or(usize::from(i > 0), Vec::len));
        let mut dag = Dag::with_capacity(jobs.len(), edges.sum());
        // Which job last listed each parent: a fan-in of n parents must not cost n^2,
        // and one array serves every job (no set per job).
        let mut listed_by = vec![usize::MAX; jobs.len()];
        for (i, job) in jobs.iter().enumerate() {
            let Some(listed) = &job.depends_on else {
                // Ids are unique, so the previous job's id names the previous job.
                if i > 0 {
                    dag.add_parent(i - 1);
                }
                dag.end_job();
                continue;
            };
            let mut last = None;
            for (k, p) in listed.iter().enumerate() {
                // The field is named only when there is an error (no allocation per edge).
                let field = || format!("depends_on[{k}]");
                let Some(pi) = self.parent_index(i, k, last, &dag, p) else {
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
                dag.add_parent(pi);
                last = Some(pi);
            }
            dag.end_job();
        }
        Ok(dag)
    }

    /// The index of `id`, parent `k` of job `i` (`last`: the index of parent `k - 1`).
    ///
    /// Ids are unique, so a job whose id matches is the one: the usual places (the
    /// previous job, the job after parent `k - 1`, the previous job's parent `k`) are
    /// tried before the index.
    fn parent_index(&self, i: usize, k: usize, last: Option<usize>, dag: &Dag, id: &str) -> Option<usize> {
        let jobs = &self.t.jobs;
        let next = match last {
            Some(l) => Some(l + 1),
            None => i.checked_sub(1),
        };
        let previous_kth = i.checked_sub(1).and_then(|p| dag.parents(p).get(k).copied());
        [next, previous_kth]
            .into_iter()
            .flatten()
            .find(|&c| jobs.get(c).is_some_and(|j| j.id == id))
            .or_else(|| self.index.get(id).copied())
    }

    fn compile_schema(&self) -> Result<Option<InputSchema>> {
        let Some(schema) = &self.t.input_schema else {
            return Ok(None);
        };
        jsonschema::validator_for(schema)
            .map(|v| Some(InputSchema(Arc::new(v))))
            .map_err(|e| self.top_err("input_schema", format!("input_schema is not a valid JSON Schema: {e}")))
    }

    /// Checks job `i` and, when building, compiles it into `out`.
    fn compile_job(&self, i: usize, job: &'t JobSpec, dag: &Dag, out: &mut Vec<CompiledJob>) -> Result<()> {
        let defaults = &self.t.defaults;
        let condition = match &job.when {
            Some(src) => {
                let c = Condition::compile(src).map_err(|m| self.err(Some(i), Some("when"), m))?;
                let refs: Vec<&str> = c.job_refs().iter().map(String::as_str).collect();
                self.check_job_refs(i, false, dag, refs.iter().map(|r| ("when", *r)))?;
                Some(c)
            }
            None => None,
        };
        let config = self.compile_config(i, false, &job.job_type, &job.config, "config", dag)?;
        if let Some(r) = &job.retry {
            check_retry(r).map_err(|m| self.err(Some(i), Some("retry"), m))?;
        }
        if let Some(d) = job.timeout {
            check_timeout(d).map_err(|m| self.err(Some(i), Some("timeout"), m))?;
        }
        let compensation = match &job.compensate {
            Some(c) => self.compile_compensation(i, job, c, dag)?.map(Box::new),
            None => None,
        };
        let concurrency = self.compile_concurrency(i, job)?;
        let Some(config) = config else {
            return Ok(()); // only checking
        };
        let ids = |list: &[usize]| list.iter().map(|&j| self.names[j].clone()).collect();
        // Jobs of one type next to each other (the usual case) share its name.
        let job_type = match out.last() {
            Some(prev) if prev.job_type == job.job_type => prev.job_type.clone(),
            _ => Name::from(job.job_type.as_str()),
        };
        out.push(CompiledJob {
            id: self.names[i].clone(),
            job_type,
            parents: ids(dag.parents(i)),
            children: ids(dag.children(i)),
            trigger: job.trigger,
            priority: job.priority,
            retry: job.retry.clone().or_else(|| defaults.retry.clone()).unwrap_or_default(),
            timeout: job.timeout.or(defaults.timeout).map(|d| d.0),
            condition,
            config,
            compensation,
            compensates: None,
            concurrency,
        });
        Ok(())
    }

    fn compile_compensation(
        &self,
        i: usize,
        job: &JobSpec,
        c: &'t CompensationSpec,
        dag: &Dag,
    ) -> Result<Option<CompiledJob>> {
        let defaults = &self.t.defaults;
        let config = self.compile_config(i, true, &c.job_type, &c.config, "compensate.config", dag)?;
        if let Some(r) = &c.retry {
            check_retry(r).map_err(|m| self.err(Some(i), Some("compensate.retry"), m))?;
        }
        if let Some(d) = c.timeout {
            check_timeout(d).map_err(|m| self.err(Some(i), Some("compensate.timeout"), m))?;
        }
        let Some(config) = config else {
            return Ok(None); // only checking
        };
        Ok(Some(CompiledJob {
            id: CompiledJob::compensation_id(&job.id).into(),
            job_type: Name::from(c.job_type.as_str()),
            parents: Vec::new(),
            children: Vec::new(),
            trigger: super::Trigger::AllSuccess,
            priority: job.priority,
            retry: c.retry.clone().or_else(|| defaults.retry.clone()).unwrap_or_default(),
            timeout: c.timeout.or(defaults.timeout).map(|d| d.0),
            condition: None,
            config,
            compensation: None,
            compensates: Some(self.names[i].clone()),
            concurrency: None,
        }))
    }

    /// Parses a config, checks its references and, with a registry, its job type and
    /// config. `None` when only checking.
    fn compile_config(
        &self,
        i: usize,
        compensation: bool,
        job_type: &'t str,
        raw: &Value,
        root: &str,
        dag: &Dag,
    ) -> Result<Option<ConfigTemplate>> {
        // When only checking, a config without strings has nothing to parse.
        let plain = matches!(raw, Value::Null | Value::Bool(_) | Value::Number(_));
        if plain && !self.build && self.v.registry.is_none() {
            return Ok(None); // nor anything to check
        }
        let config = if self.build || !plain {
            Some(ConfigTemplate::parse_at(raw, root).map_err(|(field, m)| self.err(Some(i), Some(&field), m))?)
        } else {
            None
        };
        let mut job_refs = Vec::new();
        for (field, r) in config.iter().flat_map(ConfigTemplate::field_references) {
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
        self.check_job_refs(i, compensation, dag, job_refs.into_iter())?;
        if let Some(registry) = self.v.registry {
            let type_field = if compensation { "compensate.type" } else { "type" };
            let Some(runner) = self.runner_for(registry, job_type) else {
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
        Ok(config.filter(|_| self.build))
    }

    /// The runner of `job_type`, the last one found when the type is the same.
    fn runner_for(&self, registry: &'v RunnerRegistry, job_type: &'t str) -> Option<&'v Arc<dyn JobRunner>> {
        if let Some((last, runner)) = self.runner.get()
            && last == job_type
        {
            return Some(runner);
        }
        let runner = registry.get(job_type)?;
        self.runner.set(Some((job_type, runner)));
        Some(runner)
    }

    /// Each referenced job must exist and be an ancestor of job `i` (or, for a
    /// compensation, job `i` itself).
    fn check_job_refs<'r>(
        &self,
        i: usize,
        include_self: bool,
        dag: &Dag,
        refs: impl Iterator<Item = (&'r str, &'r str)>,
    ) -> Result<()> {
        // Each referenced job with the field of its first reference.
        let mut wanted: Vec<(usize, &str)> = Vec::new();
        for (field, id) in refs {
            let Some(&j) = self.index.get(id) else {
                return Err(self.err(Some(i), Some(field), format!("reference to unknown job `{id}`")));
            };
            wanted.push((j, field));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let jobs: Vec<usize> = wanted.iter().map(|&(j, _)| j).collect();
        if let Some(&bad) = missing_ancestors(dag, i, include_self, &jobs).first() {
            let field = wanted.iter().find(|&&(j, _)| j == bad).map_or("config", |&(_, f)| f);
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
