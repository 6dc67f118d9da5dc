//! The preconditions of [`StateStore::apply`](crate::StateStore::apply), all checked
//! before anything is written.

use super::entry::WorkflowEntry;
use crate::error::{Error, Result};
use crate::hash::SeenSet;
use crate::store::Transition;

/// Checks every precondition of `step` against `wf` without writing anything. Returns
/// the positions of the records the step names: those of `step.jobs`, then those of the
/// children of `step.parent_outcomes`, each in the step's order.
pub(super) fn validate_step(wf: &WorkflowEntry, step: &Transition) -> Result<Vec<usize>> {
    if let Some(header) = &step.header {
        if header.id != wf.header.id {
            return Err(Error::invalid_input(format!(
                "header of workflow `{}` in a step on another workflow",
                header.id
            )));
        }
        if header.version != wf.header.version {
            return Err(Error::conflict(format!(
                "stale workflow version {} (stored {})",
                header.version, wf.header.version
            )));
        }
        if header.status != wf.header.status {
            wf.header.status.check_step(header.status, step.replay)?;
        }
    }
    let mut positions = Vec::with_capacity(step.jobs.len() + step.parent_outcomes.len());
    let mut seen = SeenSet::with_capacity(step.jobs.len());
    for job in &step.jobs {
        let with_job = |e: Error| e.with_job(job.job_id.as_str());
        if job.workflow_id != wf.header.id {
            return Err(with_job(Error::invalid_input("job record belongs to another workflow")));
        }
        if !seen.insert(job.job_id.as_str()) {
            return Err(with_job(Error::invalid_input("job written twice in one step")));
        }
        let pos = wf.position(&job.job_id).ok_or_else(|| with_job(Error::not_found("no such job")))?;
        let stored = &wf.jobs[pos];
        positions.push(pos);
        if job.version != stored.version {
            return Err(with_job(Error::conflict(format!(
                "stale job version {} (stored {})",
                job.version, stored.version
            ))));
        }
        if job.status != stored.status {
            stored.status.check_step(job.status, step.replay).map_err(with_job)?;
        }
    }
    for outcome in &step.parent_outcomes {
        let with_job = |e: Error| e.with_job(outcome.child.as_str());
        positions.push(wf.position(&outcome.child).ok_or_else(|| with_job(Error::not_found("no such child job")))?);
        if !outcome.status.is_terminal() {
            return Err(with_job(Error::invalid_input(format!(
                "parent outcome {} is not a terminal status",
                outcome.status
            ))));
        }
    }
    Ok(positions)
}
