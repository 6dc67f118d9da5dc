//! Applying steps and finishing what they set in motion: propagating skips,
//! evaluating conditions of eligible jobs, finalizing and compensating.

use super::{Inner, plan};
use crate::error::{Error, ErrorKind, Result};
use crate::expr::ConditionVars;
use crate::ids::{JobKey, Name, WorkflowId};
use crate::state::{JobRecord, JobStatus, WorkflowRecord, WorkflowStatus};
use crate::store::{Applied, Transition};
use crate::template::CompiledTemplate;
use chrono::Utc;
use serde_json::{Map, Value, json};
use std::collections::VecDeque;

/// How many times a step is re-planned after a version conflict before giving up.
const CONFLICT_RETRIES: usize = 20;

#[derive(Debug)]
enum Pending {
    Propagate(Name),
    Decide(Name),
}

impl Inner {
    /// Applies a step and wakes the relay. A step that made jobs ready queued work: local
    /// dispatch waits until a claim finds the queue drained again, so new workflows do not
    /// pass those jobs over.
    pub async fn apply(&self, step: Transition) -> Result<Applied> {
        let r = self.store.apply(step).await;
        self.outbox_wake.notify_one();
        if r.as_ref().is_ok_and(|a| !a.ready.is_empty()) {
            self.drained.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }

    /// After a job's own step: follow-ups, then the compensation chain if it was one.
    /// `compensation`: whether the job was a compensation job.
    pub async fn after_job(
        &self,
        compiled: &CompiledTemplate,
        key: &JobKey,
        compensation: bool,
        applied: Applied,
    ) -> Result<()> {
        self.settle(compiled, &key.workflow_id, applied).await?;
        if compensation {
            self.advance_compensation(&key.workflow_id, &key.job_id).await?;
        }
        Ok(())
    }

    /// Processes what a step left to do until nothing is left; finalizes at zero remaining.
    pub async fn settle(&self, compiled: &CompiledTemplate, id: &WorkflowId, applied: Applied) -> Result<()> {
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let (mut remaining, mut completed) = (applied.remaining, applied.completed);
        enqueue(&mut queue, applied);
        while let Some(item) = queue.pop_front() {
            let next = match item {
                Pending::Propagate(job) => self.propagate(compiled, id, &job).await?,
                Pending::Decide(job) => self.decide(compiled, id, &job).await?,
            };
            if let Some(a) = next {
                remaining = a.remaining;
                completed |= a.completed;
                enqueue(&mut queue, a);
            }
        }
        if completed {
            // The store completed the workflow in the step (`Transition::complete_at_zero`).
            self.after_finalize(id, true);
        } else if remaining == 0 {
            self.finalize(id).await?;
        }
        Ok(())
    }

    async fn propagate(&self, compiled: &CompiledTemplate, id: &WorkflowId, job: &str) -> Result<Option<Applied>> {
        for _ in 0..CONFLICT_RETRIES {
            let rec = self.store.job(&JobKey::new(id.clone(), job)).await?;
            if !rec.status.is_terminal() || rec.propagated {
                return Ok(None);
            }
            match self.apply(plan::propagate(compiled, rec, Utc::now())).await {
                Ok(a) => return Ok(Some(a)),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(conflict(id, job))
    }

    async fn decide(&self, compiled: &CompiledTemplate, id: &WorkflowId, job: &str) -> Result<Option<Applied>> {
        for _ in 0..CONFLICT_RETRIES {
            let rec = self.store.job(&JobKey::new(id.clone(), job)).await?;
            if rec.status != JobStatus::Pending || !rec.eligible {
                return Ok(None);
            }
            let run = self.evaluate_condition(compiled, id, &rec).await?;
            match self.apply(plan::decide_eligible(compiled, rec, run, Utc::now())).await {
                Ok(a) => return Ok(Some(a)),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(conflict(id, job))
    }

    /// Evaluates a job's `when` with the workflow input and the outputs it may read.
    /// A condition that cannot be evaluated (e.g. a missing field) counts as false and
    /// is logged: the branch is skipped rather than the workflow stalled.
    async fn evaluate_condition(&self, compiled: &CompiledTemplate, id: &WorkflowId, rec: &JobRecord) -> Result<bool> {
        let Some(cond) = compiled.job(&rec.job_id).and_then(|j| j.condition.clone()) else {
            return Ok(true);
        };
        let basics = self.basics(id).await?;
        let refs = compiled.ancestors_referenced(&rec.job_id).into_iter().map(str::to_owned).collect::<Vec<_>>();
        let upstream = self.store.jobs(id, Some(&refs)).await?;
        let jobs = jobs_value(&upstream);
        let wf = json!({ "id": id.as_str() });
        let vars = ConditionVars { input: &basics.input, jobs: &jobs, workflow: &wf };
        Ok(cond.evaluate(&vars).unwrap_or_else(|m| {
            tracing::warn!(workflow = %id, job = %rec.job_id, error = %m, "condition could not be evaluated; skipping the job");
            false
        }))
    }

    /// Completes, fails or starts compensating a workflow whose main jobs are all terminal.
    pub async fn finalize(&self, id: &WorkflowId) -> Result<()> {
        for _ in 0..CONFLICT_RETRIES {
            let header = self.store.workflow(id).await?;
            if header.status != WorkflowStatus::Running || !header.compensation_queue.is_empty() {
                return Ok(());
            }
            let jobs = self.store.jobs(id, None).await?;
            if jobs.iter().any(|j| j.compensation_of.is_none() && !j.status.is_terminal()) {
                return Ok(());
            }
            let step = plan::finalize(header, &jobs, Utc::now());
            let ended = ends_workflow(&step);
            match self.apply(step).await {
                Ok(_) => {
                    self.after_finalize(id, ended);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(conflict(id, "<finalize>"))
    }

    async fn advance_compensation(&self, id: &WorkflowId, finished: &str) -> Result<()> {
        for _ in 0..CONFLICT_RETRIES {
            let header = self.store.workflow(id).await?;
            if header.status != WorkflowStatus::Running {
                return Ok(());
            }
            let jobs = self.store.jobs(id, None).await?;
            if !jobs.iter().any(|j| j.job_id == finished && j.status.is_terminal()) {
                return Ok(());
            }
            let Some(step) = plan::next_compensation(header, &jobs, finished, Utc::now()) else {
                return Ok(());
            };
            let ended = ends_workflow(&step);
            match self.apply(step).await {
                Ok(_) => {
                    self.after_finalize(id, ended);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(conflict(id, finished))
    }

    /// After an applied finalize or compensation step: a step that `ended` the workflow
    /// (the store applied it as planned, or it would have been refused) drops its cached
    /// basics and wakes its waiters, without reading the header back.
    fn after_finalize(&self, id: &WorkflowId, ended: bool) {
        if ended {
            self.basics.lock().remove(id);
            self.waiters.finished(id);
        }
    }

    /// Completes the half-done steps of one running workflow (see `Engine::recover`), given
    /// its job records as read after `header` (all of them, in template order).
    pub async fn resume(&self, header: &WorkflowRecord, jobs: &[JobRecord]) -> Result<usize> {
        let compiled = self.compiled_for(header).await?;
        let mut applied = Applied { remaining: u64::MAX, ..Default::default() };
        let mut steps = 0;
        for j in jobs {
            if j.status.is_terminal() && !j.propagated {
                applied.skipped.push(j.job_id.clone());
                steps += 1;
            } else if j.status == JobStatus::Pending && j.eligible {
                applied.eligible.push(j.job_id.clone());
                steps += 1;
            }
        }
        self.settle(&compiled, &header.id, applied).await?;
        let all_done = jobs.iter().all(|j| j.compensation_of.is_some() || j.status.is_terminal());
        if all_done && header.compensation_queue.is_empty() {
            self.finalize(&header.id).await?;
            steps += 1;
        } else if let Some(first) = header.compensation_queue.first()
            && jobs.iter().any(|j| &j.job_id == first && j.status.is_terminal())
        {
            self.advance_compensation(&header.id, first).await?;
            steps += 1;
        }
        Ok(steps)
    }
}

/// Whether `step` makes its workflow terminal.
fn ends_workflow(step: &Transition) -> bool {
    step.header.as_ref().is_some_and(|h| h.status.is_terminal())
}

fn enqueue(queue: &mut VecDeque<Pending>, applied: Applied) {
    queue.extend(applied.skipped.into_iter().map(Pending::Propagate));
    queue.extend(applied.eligible.into_iter().map(Pending::Decide));
}

fn conflict(id: &WorkflowId, job: &str) -> Error {
    Error::conflict(format!("step on job `{job}` kept conflicting")).with_workflow(id.as_str()).with_job(job)
}

/// `{ "<id>": { "output": ..., "status": "..." } }` for condition evaluation.
pub(crate) fn jobs_value(records: &[JobRecord]) -> Value {
    let mut m = Map::new();
    for r in records {
        m.insert(
            String::from(&r.job_id),
            json!({ "output": r.output.clone().unwrap_or(Value::Null), "status": r.status.as_str() }),
        );
    }
    Value::Object(m)
}
