//! Dead letters: jobs that ran out of attempts or failed permanently. They are not a
//! separate store: a dead letter is a `FAILED` job record whose failure was not discarded
//! ([`JobRecord::is_dead_letter`]); replaying and discarding are ordinary version-checked
//! steps through [`StateStore::apply`](crate::StateStore::apply).

use super::{Inner, illegal};
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::ids::{JobKey, Name, WorkflowId};
use crate::state::{DepCounts, JobFailure, JobRecord, JobStatus, WorkflowRecord, WorkflowStatus};
use crate::store::{DeadLetterFilter, Transition};
use crate::template::CompiledTemplate;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};

/// How many times a replay or discard is re-planned after a version conflict.
const CONFLICT_RETRIES: usize = 20;

/// A job that ran out of attempts or failed permanently, as [`Engine::dead_letters`](super::Engine::dead_letters)
/// lists it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// The job.
    pub job_id: Name,
    /// Its runner type.
    pub job_type: Name,
    /// Attempts it made.
    pub attempts: u32,
    /// Its last error.
    pub error: Option<JobFailure>,
    /// When its last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it failed.
    pub failed_at: Option<DateTime<Utc>>,
    /// Whether it is a compensation job (those can be discarded, not replayed).
    pub is_compensation: bool,
}

impl DeadLetter {
    /// The dead letter a `FAILED` job record describes.
    pub fn from_record(rec: JobRecord) -> Self {
        DeadLetter {
            is_compensation: rec.compensation_of.is_some(),
            workflow_id: rec.workflow_id,
            job_id: rec.job_id,
            job_type: rec.job_type,
            attempts: rec.attempt,
            error: rec.error,
            started_at: rec.started_at,
            failed_at: rec.finished_at,
        }
    }

    /// The job's key.
    pub fn key(&self) -> JobKey {
        JobKey::new(self.workflow_id.clone(), self.job_id.clone())
    }
}

fn refused(header: &WorkflowRecord, job_id: &str, why: String) -> Error {
    illegal(format!("cannot replay job `{job_id}`: {why}")).with_workflow(header.id.as_str()).with_job(job_id)
}

/// Plans the replay of dead letter `job_id`: the job goes back to `READY` with fresh
/// attempts; its downstream jobs that failed or were skipped go back to `PENDING` (with
/// their parent counters recomputed), as do compensations that never ran; a `FAILED`
/// workflow becomes `RUNNING` again. Refused when the workflow was cancelled, is
/// compensating, or already ran a compensation (its effects were undone; replaying would
/// redo work on top of the undo).
pub(crate) fn plan_replay(
    compiled: &CompiledTemplate,
    mut header: WorkflowRecord,
    jobs: &[JobRecord],
    job_id: &str,
    now: DateTime<Utc>,
) -> Result<Transition> {
    let by_id: HashMap<&str, &JobRecord> = jobs.iter().map(|j| (j.job_id.as_str(), j)).collect();
    let rec = by_id.get(job_id).copied().ok_or_else(|| {
        Error::not_found(format!("no job `{job_id}` in workflow {}", header.id))
            .with_workflow(header.id.as_str())
            .with_job(job_id)
    })?;
    if !rec.is_dead_letter() {
        let what = if rec.status == JobStatus::Failed {
            "its dead letter was discarded".to_owned()
        } else {
            format!("it is {}", rec.status)
        };
        return Err(Error::not_found(format!("job `{job_id}` is not a dead letter: {what}"))
            .with_workflow(header.id.as_str())
            .with_job(job_id));
    }
    if rec.compensation_of.is_some() {
        return Err(refused(&header, job_id, "it is a compensation job; discard its dead letter instead".into()));
    }
    match header.status {
        WorkflowStatus::Failed => {}
        WorkflowStatus::Running if header.compensation_queue.is_empty() => {}
        WorkflowStatus::Running => {
            return Err(refused(&header, job_id, "the workflow is running its compensations".into()));
        }
        other => return Err(refused(&header, job_id, format!("the workflow is {other}"))),
    }
    if let Some(ran) = jobs
        .iter()
        .find(|j| j.compensation_of.is_some() && !matches!(j.status, JobStatus::Pending | JobStatus::Skipped))
    {
        return Err(refused(
            &header,
            job_id,
            format!("compensation `{}` already ran ({}): the workflow's effects were undone", ran.job_id, ran.status),
        ));
    }

    // Every job downstream of the replayed one, and the ones to reset (FAILED or SKIPPED).
    let mut downstream: Vec<&str> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut queue: VecDeque<&str> =
        compiled.job(job_id).map(|j| j.children.iter().map(Name::as_str).collect()).unwrap_or_default();
    while let Some(d) = queue.pop_front() {
        if seen.insert(d) {
            downstream.push(d);
            if let Some(job) = compiled.job(d) {
                queue.extend(job.children.iter().map(Name::as_str));
            }
        }
    }
    let mut reset: HashSet<&str> = HashSet::from([job_id]);
    reset.extend(
        downstream
            .iter()
            .copied()
            .filter(|d| by_id.get(d).is_some_and(|r| matches!(r.status, JobStatus::Failed | JobStatus::Skipped))),
    );

    let mut t = Transition::new(header.id.clone());
    t.replay = true;
    let mut again = rec.clone();
    again.status = JobStatus::Ready;
    again.attempt = 0;
    again.ready_at = Some(now);
    again.lease = None;
    again.output = None;
    again.started_at = None;
    again.finished_at = None;
    again.propagated = false;
    let detail = json!({ "previous_attempts": rec.attempt, "previous_error": rec.error });
    let mut ev = Event::job(&header.id, job_id, JobStatus::Ready, 0, Some(detail));
    ev.event_type = "job_replayed".into();
    t.events.push(ev);
    t.jobs.push(again);
    t.reopened = 1;

    for d in downstream {
        let (Some(old), Some(job)) = (by_id.get(d), compiled.job(d)) else { continue };
        let is_reset = reset.contains(d);
        if !is_reset && old.status != JobStatus::Pending {
            continue; // running, ready or succeeded: left as it is
        }
        let mut deps = DepCounts { total: job.parents.len() as u32, ..DepCounts::default() };
        for p in &job.parents {
            if let Some(pr) = by_id.get(p.as_str())
                && !reset.contains(p.as_str())
                && pr.status.is_terminal()
                && pr.propagated
            {
                deps.record(pr.status);
            }
        }
        let mut new = (*old).clone();
        new.deps = deps;
        new.eligible = old.eligible && deps.is_complete();
        if is_reset {
            new.status = JobStatus::Pending;
            new.attempt = 0;
            new.error = None;
            new.output = None;
            new.ready_at = None;
            new.started_at = None;
            new.finished_at = None;
            new.propagated = false;
            new.eligible = false;
            t.reopened += 1;
            t.events.push(Event::job(&header.id, d, JobStatus::Pending, 0, None));
        }
        if new != **old {
            t.jobs.push(new);
        }
    }
    for comp in jobs.iter().filter(|j| j.compensation_of.is_some() && j.status == JobStatus::Skipped) {
        let mut new = comp.clone();
        new.status = JobStatus::Pending;
        new.finished_at = None;
        new.propagated = false;
        t.events.push(Event::job(&header.id, &comp.job_id, JobStatus::Pending, 0, None));
        t.jobs.push(new);
    }
    // Always written, so a concurrent finalize (version-checked on the header) conflicts.
    if header.status == WorkflowStatus::Failed {
        header.status = WorkflowStatus::Running;
        header.error = None;
        header.finished_at = None;
        header.compensation_queue.clear();
        t.events.push(Event::workflow(&header.id, WorkflowStatus::Running, Some(json!({ "replayed": job_id }))));
    }
    header.updated_at = now;
    t.header = Some(Box::new(header));
    Ok(t)
}

/// Plans discarding dead letter `rec`: its failure gets `discarded_at`; it stays `FAILED`.
pub(crate) fn plan_discard(mut rec: JobRecord, now: DateTime<Utc>) -> Result<Transition> {
    if !rec.is_dead_letter() {
        return Err(Error::not_found(format!("job `{}` is not a dead letter ({})", rec.job_id, rec.status))
            .with_workflow(rec.workflow_id.as_str())
            .with_job(rec.job_id.clone()));
    }
    let mut t = Transition::new(rec.workflow_id.clone());
    let mut ev = Event::job(&rec.workflow_id, &rec.job_id, JobStatus::Failed, rec.attempt, None);
    ev.event_type = "job_discarded".into();
    t.events.push(ev);
    let failure = rec.error.get_or_insert_with(|| JobFailure::new("unknown", "no error recorded"));
    failure.discarded_at = Some(now);
    t.jobs.push(rec);
    Ok(t)
}

impl Inner {
    /// See [`Engine::dead_letters`](super::Engine::dead_letters).
    pub async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        Ok(self.store.dead_letters(filter).await?.into_iter().map(DeadLetter::from_record).collect())
    }

    /// See [`Engine::dead_letter`](super::Engine::dead_letter).
    pub async fn dead_letter(&self, key: &JobKey) -> Result<DeadLetter> {
        let rec = self.store.job(key).await?;
        if !rec.is_dead_letter() {
            return Err(Error::not_found(format!("job `{}` is not a dead letter ({})", key.job_id, rec.status))
                .with_workflow(key.workflow_id.as_str())
                .with_job(key.job_id.clone()));
        }
        Ok(DeadLetter::from_record(rec))
    }

    /// See [`Engine::replay`](super::Engine::replay).
    pub async fn replay(&self, key: &JobKey) -> Result<()> {
        let id = &key.workflow_id;
        for _ in 0..CONFLICT_RETRIES {
            let header = self.store.workflow(id).await?;
            let compiled = self.compiled_for(&header).await?;
            let jobs = self.store.jobs(id, None).await?;
            let step = plan_replay(&compiled, header, &jobs, &key.job_id, Utc::now())?;
            match self.apply(step).await {
                Ok(applied) => {
                    tracing::info!(job = %key, "dead letter replayed");
                    return self.settle(&compiled, id, applied).await;
                }
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!("workflow {id} kept changing while replaying `{}`; try again", key.job_id)))
    }

    /// See [`Engine::discard`](super::Engine::discard).
    pub async fn discard(&self, key: &JobKey) -> Result<()> {
        for _ in 0..CONFLICT_RETRIES {
            let rec = self.store.job(key).await?;
            match self.apply(plan_discard(rec, Utc::now())?).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!("job `{}` kept changing while being discarded; try again", key.job_id)))
    }
}
