//! Planning: pure functions from (compiled DAG, records, what happened) to the next
//! atomic [`Transition`]. No I/O here; the engine calls the store at the edges.

use crate::error::{Error, Result};
use crate::event::Event;
use crate::expr::RenderScope;
use crate::ids::WorkflowId;
use crate::state::{ConcurrencyKey, JobFailure, JobRecord, JobStatus, WorkflowRecord, WorkflowStatus};
use crate::store::{ParentOutcome, Transition};
use crate::template::{CompiledJob, CompiledTemplate};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// How one attempt of a job ended, as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The runner returned an output.
    Succeeded(Value),
    /// The runner asked to wait for `complete_job` / `fail_job`.
    AwaitExternal,
    /// The attempt failed.
    Failed {
        /// Why.
        failure: JobFailure,
        /// Whether another attempt may succeed.
        retryable: bool,
        /// The backoff before the next attempt, if one is allowed.
        backoff: Duration,
    },
}

/// The initial job records of a new workflow: main jobs then compensations, all `PENDING`.
pub fn initial_records(compiled: &CompiledTemplate, workflow_id: &WorkflowId) -> Vec<JobRecord> {
    let mut out = Vec::with_capacity(compiled.jobs().len());
    for job in compiled.jobs() {
        out.push(pending_record(workflow_id, job, job.parents.len() as u32));
    }
    for job in compiled.jobs() {
        if let Some(comp) = &job.compensation {
            out.push(pending_record(workflow_id, comp, 0));
        }
    }
    out
}

/// Renders each job's `concurrency_key` against the workflow `input` into its record.
/// A key that cannot be rendered (a missing input field) is an `InvalidInput` error
/// naming the job.
pub fn render_concurrency(compiled: &CompiledTemplate, records: &mut [JobRecord], input: &Value) -> Result<()> {
    for rec in records.iter_mut() {
        let Some(c) = compiled.job(&rec.job_id).and_then(|j| j.concurrency.as_ref()) else { continue };
        let scope = RenderScope {
            input,
            outputs: &HashMap::new(),
            workflow_id: rec.workflow_id.as_str(),
            env: &|_| None,
            secrets: &HashMap::new(),
        };
        let key = match c.key.render(&scope) {
            Ok(Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(e) => {
                return Err(Error::invalid_input(format!("concurrency_key of job `{}`: {}", rec.job_id, e.message()))
                    .with_workflow(rec.workflow_id.as_str())
                    .with_job(rec.job_id.clone()));
            }
        };
        rec.concurrency = Some(ConcurrencyKey { key, limit: c.limit });
    }
    Ok(())
}

fn pending_record(workflow_id: &WorkflowId, job: &CompiledJob, parents: u32) -> JobRecord {
    let mut rec = JobRecord::pending(workflow_id.clone(), job.id.clone(), job.job_type.clone(), parents);
    rec.priority = job.priority;
    rec.trigger = job.trigger;
    rec.has_condition = job.condition.is_some();
    rec.compensation_of = job.compensates.clone();
    rec
}

/// Folds [`start`] into the create step when no root job has a condition: the header
/// becomes `RUNNING` and the roots `READY`, and the events `start` would have written
/// (`workflow_running`, then `job_ready` per root) are returned, to be appended after
/// `workflow_initialized`. Returns `None`, changing nothing, when a root has a
/// condition: it must be evaluated first, by [`start`] after the workflow is created.
pub fn begin_at_create(
    compiled: &CompiledTemplate,
    header: &mut WorkflowRecord,
    jobs: &mut [JobRecord],
    now: DateTime<Utc>,
) -> Option<Vec<Event>> {
    if compiled.roots().any(|j| j.condition.is_some()) {
        return None;
    }
    header.status = WorkflowStatus::Running;
    header.updated_at = now;
    let mut events = vec![Event::workflow(&header.id, WorkflowStatus::Running, None)];
    for rec in jobs.iter_mut().filter(|r| r.compensation_of.is_none() && r.deps.total == 0) {
        rec.status = JobStatus::Ready;
        rec.ready_at = Some(now);
        events.push(Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Ready, 0, None));
    }
    Some(events)
}

/// A step on a workflow of `compiled`, at `now`: on a template without compensations the
/// store completes the workflow in the same step when the step leaves it done
/// (`Transition::complete_at_zero`); with compensations the engine's finalize decides.
fn step_on(compiled: &CompiledTemplate, workflow_id: WorkflowId, now: DateTime<Utc>) -> Transition {
    let mut t = Transition::new(workflow_id);
    if !compiled.has_compensations() {
        t.complete_at_zero = Some(now);
    }
    t
}

/// Marks `rec` terminal with `status` and adds its outcome to its children's counters;
/// `job` is `rec`'s compiled job (`None`: not in the template, no children).
fn finish(t: &mut Transition, job: Option<&CompiledJob>, mut rec: JobRecord, status: JobStatus, now: DateTime<Utc>) {
    let main = rec.compensation_of.is_none();
    rec.status = status;
    rec.finished_at = Some(now);
    rec.lease = None;
    rec.awaiting_external = false;
    rec.eligible = false;
    rec.propagated = true;
    if main {
        t.terminal_delta += 1;
        if let Some(job) = job
            && !job.children.is_empty()
        {
            let mut outcomes = Vec::with_capacity(t.parent_outcomes.len() + job.children.len());
            outcomes.append(&mut t.parent_outcomes);
            outcomes.extend(job.children.iter().map(|child| ParentOutcome { child: child.clone(), status }));
            t.parent_outcomes = outcomes;
        }
    }
    if t.jobs.capacity() == 0 {
        t.jobs = Vec::with_capacity(1);
    }
    t.jobs.push(rec);
}

/// The first step of a workflow: `INITIALIZED -> RUNNING`, roots made `READY` (or
/// `SKIPPED` when their condition, already evaluated into `root_conditions`, is false).
pub fn start(
    compiled: &CompiledTemplate,
    mut header: WorkflowRecord,
    roots: Vec<JobRecord>,
    root_conditions: &dyn Fn(&str) -> bool,
    now: DateTime<Utc>,
) -> Transition {
    let mut t = step_on(compiled, header.id.clone(), now);
    header.status = WorkflowStatus::Running;
    header.updated_at = now;
    t.events.push(Event::workflow(&header.id, WorkflowStatus::Running, None));
    for mut rec in roots {
        if rec.status != JobStatus::Pending {
            continue;
        }
        if rec.has_condition && !root_conditions(&rec.job_id) {
            t.events.push(Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Skipped, 0, None));
            finish(&mut t, compiled.job(&rec.job_id), rec, JobStatus::Skipped, now);
        } else {
            rec.status = JobStatus::Ready;
            rec.ready_at = Some(now);
            t.events.push(Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Ready, 0, None));
            t.jobs.push(rec);
        }
    }
    t.header = Some(Box::new(header));
    t
}

/// Records how an attempt ended: success, external wait, retry or failure.
pub fn complete(
    compiled: &CompiledTemplate,
    rec: JobRecord,
    outcome: Outcome,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> Transition {
    let job = compiled.job(&rec.job_id);
    complete_of(compiled, job, rec, outcome, max_attempts, now)
}

/// [`complete`] for a caller that has `rec`'s compiled job at hand (`job`, `None` when the
/// template has no such job): no second lookup of it in a template of many jobs.
pub(crate) fn complete_of(
    compiled: &CompiledTemplate,
    job: Option<&CompiledJob>,
    mut rec: JobRecord,
    outcome: Outcome,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> Transition {
    let mut t = step_on(compiled, rec.workflow_id.clone(), now);
    // One job and its event or two: allocated at their size rather than grown.
    t.events = Vec::with_capacity(2);
    let attempt = rec.attempt;
    // Events are built from the record before it changes: no copies of its ids.
    let event = |rec: &JobRecord, status: JobStatus, result: Option<Value>| {
        let mut ev = Event::job_at(now, &rec.workflow_id, &rec.job_id, status, attempt, result);
        timed(&mut ev, rec, now);
        ev
    };
    match outcome {
        Outcome::Succeeded(output) => {
            let mut ev = event(&rec, JobStatus::Succeeded, Some(output.clone()));
            ev.payload.resource_usage = output.get("resource_usage").filter(|u| u.is_object()).cloned();
            rec.output = Some(output);
            rec.error = None;
            t.events.push(ev);
            finish(&mut t, job, rec, JobStatus::Succeeded, now);
        }
        Outcome::AwaitExternal => {
            rec.lease = None;
            rec.awaiting_external = true;
            t.jobs.push(rec);
        }
        Outcome::Failed { failure, retryable, backoff } => {
            let detail = json!({ "error": failure.kind, "message": failure.message });
            if retryable && attempt < max_attempts {
                let mut ev = Event::job_retrying(&rec.workflow_id, &rec.job_id, attempt, detail);
                timed(&mut ev, &rec, now);
                rec.status = JobStatus::Ready;
                rec.lease = None;
                rec.ready_at = Some(now + chrono::Duration::from_std(backoff).unwrap_or_default());
                rec.error = Some(failure);
                t.events.push(ev);
                t.jobs.push(rec);
            } else {
                t.events.push(event(&rec, JobStatus::Failed, Some(detail.clone())));
                // Out of attempts or failed for good: the record is now a dead letter.
                let mut dead =
                    Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Failed, attempt, Some(detail));
                dead.event_type = "job_dead_lettered".into();
                t.events.push(dead);
                rec.error = Some(failure);
                finish(&mut t, job, rec, JobStatus::Failed, now);
            }
        }
    }
    t
}

/// Sets an attempt's `duration_ms` on its event: from the record's `started_at` to `now`.
fn timed(ev: &mut Event, rec: &JobRecord, now: DateTime<Utc>) {
    ev.payload.duration_ms = rec.started_at.map(|s| (now - s).num_milliseconds().max(0));
}

/// Delivers the outcome of a job the store skipped to its children.
pub fn propagate(compiled: &CompiledTemplate, rec: JobRecord, now: DateTime<Utc>) -> Transition {
    let mut t = step_on(compiled, rec.workflow_id.clone(), now);
    if let Some(job) = compiled.job(&rec.job_id) {
        for child in &job.children {
            t.parent_outcomes.push(ParentOutcome { child: child.clone(), status: rec.status });
        }
    }
    let mut rec = rec;
    rec.propagated = true;
    t.jobs.push(rec);
    t
}

/// Decides an eligible job whose condition evaluated to `run`.
pub fn decide_eligible(compiled: &CompiledTemplate, mut rec: JobRecord, run: bool, now: DateTime<Utc>) -> Transition {
    let mut t = step_on(compiled, rec.workflow_id.clone(), now);
    rec.eligible = false;
    if run {
        rec.status = JobStatus::Ready;
        rec.ready_at = Some(now);
        t.events.push(Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Ready, 0, None));
        t.jobs.push(rec);
    } else {
        t.events.push(Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Skipped, 0, None));
        finish(&mut t, compiled.job(&rec.job_id), rec, JobStatus::Skipped, now);
    }
    t
}

/// The step once every main job is terminal: `COMPLETED`, or the first compensation,
/// or `FAILED`. Left-over compensation records are skipped.
pub fn finalize(mut header: WorkflowRecord, jobs: &[JobRecord], now: DateTime<Utc>) -> Transition {
    let mut t = Transition::new(header.id.clone());
    // Read in place: a workflow of many jobs completes without a list of them first.
    let mains = || jobs.iter().filter(|j| j.compensation_of.is_none());
    header.updated_at = now;
    let Some(first) = mains().find(|j| j.status == JobStatus::Failed) else {
        // Collected rather than inserted one by one: the map sorts the pairs once and
        // builds its tree in bulk.
        let outputs: Map<String, Value> = mains()
            .filter(|j| j.status == JobStatus::Succeeded)
            .map(|j| (String::from(&j.job_id), j.output.clone().unwrap_or(Value::Null)))
            .collect();
        // Built directly: `json!` would serialize the whole map again.
        let result = Value::Object(Map::from_iter([("outputs".to_owned(), Value::Object(outputs))]));
        close(&mut t, &mut header, jobs, WorkflowStatus::Completed, Some(result), now);
        t.header = Some(Box::new(header));
        return t;
    };
    let reason = format!(
        "job `{}` failed: {}",
        first.job_id,
        first.error.as_ref().map(|e| e.message.as_str()).unwrap_or("unknown error")
    );
    header.error = Some(reason.clone());
    // Compensations run for succeeded jobs, most recently finished first.
    let mut done: Vec<&JobRecord> = mains().filter(|j| j.status == JobStatus::Succeeded).collect();
    done.sort_by(|a, b| b.finished_at.cmp(&a.finished_at).then_with(|| b.job_id.cmp(&a.job_id)));
    let queue: Vec<String> = done
        .iter()
        .filter_map(|j| jobs.iter().find(|c| c.compensation_of.as_deref() == Some(j.job_id.as_str())))
        .map(|c| String::from(&c.job_id))
        .collect();
    if queue.is_empty() {
        close(&mut t, &mut header, jobs, WorkflowStatus::Failed, Some(json!({ "error": reason })), now);
    } else {
        let mut ev = Event::workflow(&header.id, WorkflowStatus::Running, Some(json!({ "compensating": queue })));
        ev.event_type = "workflow_compensating".into();
        t.events.push(ev);
        if let Some(next) = jobs.iter().find(|j| j.job_id == queue[0]) {
            t.jobs.push(ready(next.clone(), now, &mut t.events));
        }
        header.compensation_queue = queue;
    }
    t.header = Some(Box::new(header));
    t
}

/// The step after compensation job `finished` ended: the next one, or `FAILED`.
pub fn next_compensation(
    mut header: WorkflowRecord,
    jobs: &[JobRecord],
    finished: &str,
    now: DateTime<Utc>,
) -> Option<Transition> {
    if header.compensation_queue.first().map(String::as_str) != Some(finished) {
        return None;
    }
    header.compensation_queue.remove(0);
    header.updated_at = now;
    let mut t = Transition::new(header.id.clone());
    match header.compensation_queue.first().and_then(|n| jobs.iter().find(|j| &j.job_id == n)) {
        Some(next) if next.status == JobStatus::Pending => {
            t.jobs.push(ready(next.clone(), now, &mut t.events));
        }
        _ => {
            header.compensation_queue.clear();
            let failed_comps: Vec<&str> = jobs
                .iter()
                .filter(|j| j.compensation_of.is_some() && j.status == JobStatus::Failed)
                .map(|j| j.job_id.as_str())
                .collect();
            let mut result = json!({ "error": header.error.clone().unwrap_or_default() });
            if !failed_comps.is_empty() {
                result["failed_compensations"] = json!(failed_comps);
            }
            close(&mut t, &mut header, jobs, WorkflowStatus::Failed, Some(result), now);
        }
    }
    t.header = Some(Box::new(header));
    Some(t)
}

/// Cancels a workflow: the header and every non-terminal job become `CANCELLED`.
pub fn cancel(mut header: WorkflowRecord, jobs: &[JobRecord], reason: &str, now: DateTime<Utc>) -> Transition {
    let mut t = Transition::new(header.id.clone());
    header.error = Some(reason.to_owned());
    header.compensation_queue.clear();
    for j in jobs.iter().filter(|j| !j.status.is_terminal()) {
        let mut rec = j.clone();
        if rec.compensation_of.is_none() {
            t.terminal_delta += 1;
        }
        rec.status = JobStatus::Cancelled;
        rec.lease = None;
        rec.awaiting_external = false;
        rec.eligible = false;
        rec.propagated = true;
        rec.finished_at = Some(now);
        t.events.push(Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Cancelled, rec.attempt, None));
        t.jobs.push(rec);
    }
    header.status = WorkflowStatus::Cancelled;
    header.updated_at = now;
    header.finished_at = Some(now);
    t.events.push(Event::workflow(&header.id, WorkflowStatus::Cancelled, Some(json!({ "reason": reason }))));
    t.header = Some(Box::new(header));
    t
}

fn ready(mut rec: JobRecord, now: DateTime<Utc>, events: &mut Vec<Event>) -> JobRecord {
    rec.status = JobStatus::Ready;
    rec.ready_at = Some(now);
    events.push(Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Ready, 0, None));
    rec
}

fn close(
    t: &mut Transition,
    header: &mut WorkflowRecord,
    jobs: &[JobRecord],
    status: WorkflowStatus,
    result: Option<Value>,
    now: DateTime<Utc>,
) {
    for j in jobs.iter().filter(|j| j.compensation_of.is_some() && j.status == JobStatus::Pending) {
        let mut rec = j.clone();
        rec.status = JobStatus::Skipped;
        rec.propagated = true;
        rec.finished_at = Some(now);
        t.events.push(Event::job_at(now, &rec.workflow_id, &rec.job_id, JobStatus::Skipped, 0, None));
        t.jobs.push(rec);
    }
    header.status = status;
    header.finished_at = Some(now);
    t.events.push(Event::workflow(&header.id, status, result));
}
