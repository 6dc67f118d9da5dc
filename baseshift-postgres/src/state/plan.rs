//! The decisions of [`StateStore::apply`](baseshift_core::StateStore::apply), made in Rust
//! on the rows the transaction locked: every precondition first, then the new records,
//! the children's counters and the events, exactly as the contract says, and the
//! completion at zero when the step leaves the workflow done.

use crate::rows::{micros, normalize_job};
use baseshift_core::store::{Applied, Transition, completes, completion};
use baseshift_core::{Error, Event, JobRecord, JobStatus, Name, Result, WorkflowRecord};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

/// What one step writes.
#[derive(Debug)]
pub(crate) struct Planned {
    /// The header to store (the step's, or the stored one with the new `remaining`).
    pub(crate) header: WorkflowRecord,
    /// Whether the header row changes at all.
    pub(crate) touch_header: bool,
    /// Changed job records (version bumped) with their ordinals.
    pub(crate) jobs: Vec<(JobRecord, i32)>,
    /// The step's own events, then the ones for store-made changes.
    pub(crate) events: Vec<Event>,
    /// What the step returns.
    pub(crate) applied: Applied,
    /// Whether a job became `READY` (waiting engines should look).
    pub(crate) wake: bool,
}

/// For a step asking for [completion at zero](Transition::complete_at_zero): the largest
/// stored `remaining` the step can bring to 0 (`terminal_delta` plus one skip per child
/// it sends an outcome to, less `reopened`). The locking read takes every job row of the
/// workflow when the stored `remaining` is at most this, so that [`plan`] can decide the
/// completion on all of them; any other step cannot leave the workflow done and reads
/// only the rows it names. `None` for a step not asking for completion.
pub(crate) fn read_all_below(step: &Transition) -> Option<i64> {
    step.complete_at_zero?;
    let children: HashSet<&str> = step.parent_outcomes.iter().map(|o| o.child.as_str()).collect();
    let drop = i128::from(step.terminal_delta) + children.len() as i128 - i128::from(step.reopened);
    Some(i64::try_from(drop).unwrap_or(if drop < 0 { i64::MIN } else { i64::MAX }))
}

/// Checks `step` against the locked header and job rows, then computes every write.
/// `all_jobs`: `rows` holds every job of the workflow (see [`read_all_below`]), so a step
/// asking for completion at zero can complete it. A failed check returns the error and
/// nothing is written.
pub(crate) fn plan(
    stored: WorkflowRecord,
    mut rows: HashMap<Name, (JobRecord, i32)>,
    step: Transition,
    now: DateTime<Utc>,
    all_jobs: bool,
) -> Result<Planned> {
    validate(&stored, &rows, &step)?;
    let Transition { header, jobs, parent_outcomes, terminal_delta, reopened, events, complete_at_zero, .. } = step;

    let mut changed: Vec<Name> = Vec::with_capacity(jobs.len() + parent_outcomes.len());
    let mut written = HashSet::with_capacity(changed.capacity());
    let mut released = false;
    for job in jobs {
        let Some((old, _)) = rows.get_mut(&job.job_id) else { continue };
        // A job leaving RUNNING frees its concurrency key's slot.
        released |= old.status == JobStatus::Running && old.concurrency.is_some() && job.status != JobStatus::Running;
        let mut job = normalize_job(job);
        job.version = old.version + 1;
        *old = job;
        if written.insert(old.job_id.clone()) {
            changed.push(old.job_id.clone());
        }
    }

    let mut applied = Applied::default();
    let mut derived = Vec::new();
    let mut skipped_main = 0u64;
    for outcome in parent_outcomes {
        let Some((child, _)) = rows.get_mut(outcome.child.as_str()) else { continue };
        let change = child.record_parent(outcome.status, now);
        if written.insert(child.job_id.clone()) {
            child.version += 1;
            changed.push(child.job_id.clone());
        }
        skipped_main += change.report(child, now, &mut applied, &mut derived);
    }

    let remaining = (stored.remaining + reopened).saturating_sub(skipped_main).saturating_sub(terminal_delta);
    applied.remaining = remaining;
    let (header, touch_header) = match header {
        Some(mut header) => {
            header.remaining = remaining;
            header.version = stored.version + 1;
            (*header, true)
        }
        None => {
            let touch = remaining != stored.remaining;
            let mut header = stored;
            header.remaining = remaining;
            (header, touch)
        }
    };
    let (header, touch_header) = match complete_at_zero.filter(|_| all_jobs).and_then(|at| complete(&header, &rows, at))
    {
        Some((done, event)) => {
            derived.push(event);
            applied.completed = true;
            (done, true)
        }
        None => (header, touch_header),
    };
    let jobs: Vec<(JobRecord, i32)> = changed.iter().filter_map(|id| rows.remove(id)).collect();
    let wake = released || jobs.iter().any(|(j, _)| j.status == JobStatus::Ready);
    let mut all_events = events;
    all_events.extend(derived);
    Ok(Planned { header, touch_header, jobs, events: all_events, applied, wake })
}

/// The completion at zero of a workflow whose header (after the step) is `header` and
/// whose every job record (after the step) is in `rows`: the completed header, version
/// bumped, and its `workflow_completed` event; `None` if the workflow is not done.
fn complete(
    header: &WorkflowRecord,
    rows: &HashMap<Name, (JobRecord, i32)>,
    at: DateTime<Utc>,
) -> Option<(WorkflowRecord, Event)> {
    // The check first: the records are copied only for a workflow that is done.
    if !completes(header, rows.values().map(|(j, _)| j)) {
        return None;
    }
    let mut ordered: Vec<&(JobRecord, i32)> = rows.values().collect();
    ordered.sort_unstable_by_key(|(_, ordinal)| *ordinal);
    let records: Vec<JobRecord> = ordered.into_iter().map(|(j, _)| j.clone()).collect();
    let (mut done, event) = completion(header, &records, micros(at))?;
    done.version = header.version + 1;
    Some((done, event))
}

/// Every precondition of the step, checked before anything is computed.
fn validate(stored: &WorkflowRecord, rows: &HashMap<Name, (JobRecord, i32)>, step: &Transition) -> Result<()> {
    if let Some(header) = &step.header {
        if header.id != stored.id {
            return Err(Error::invalid_input(format!(
                "header of workflow `{}` in a step on another workflow",
                header.id
            )));
        }
        if header.version != stored.version {
            return Err(Error::conflict(format!(
                "stale workflow version {} (stored {})",
                header.version, stored.version
            )));
        }
        if header.status != stored.status {
            stored.status.check_step(header.status, step.replay)?;
        }
    }
    let mut seen = HashSet::with_capacity(step.jobs.len());
    for job in &step.jobs {
        let with_job = |e: Error| e.with_job(job.job_id.as_str());
        if job.workflow_id != stored.id {
            return Err(with_job(Error::invalid_input("job record belongs to another workflow")));
        }
        if !seen.insert(job.job_id.as_str()) {
            return Err(with_job(Error::invalid_input("job written twice in one step")));
        }
        let (old, _) = rows.get(&job.job_id).ok_or_else(|| with_job(Error::not_found("no such job")))?;
        if job.version != old.version {
            return Err(with_job(Error::conflict(format!(
                "stale job version {} (stored {})",
                job.version, old.version
            ))));
        }
        if job.status != old.status {
            old.status.check_step(job.status, step.replay).map_err(with_job)?;
        }
    }
    for outcome in &step.parent_outcomes {
        let with_job = |e: Error| e.with_job(outcome.child.as_str());
        if !rows.contains_key(outcome.child.as_str()) {
            return Err(with_job(Error::not_found("no such child job")));
        }
        if !outcome.status.is_terminal() {
            return Err(with_job(Error::invalid_input(format!(
                "parent outcome {} is not a terminal status",
                outcome.status
            ))));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
