//! Completion at zero: the step that leaves a workflow done also completes it.

use crate::conformance::check::{ensure, ensure_eq};
use crate::conformance::fixtures::{TestWorkflow, finish, now_ms, succeed_step, write_job};
use crate::error::Result;
use crate::state::{JobStatus, WorkflowStatus};
use crate::store::{StateStore, Transition};
use serde_json::json;

/// Makes the header `RUNNING`; returns its version after the write.
async fn run(store: &dyn StateStore, wf: &TestWorkflow) -> Result<u64> {
    let mut header = store.workflow(wf.id()).await?;
    header.status = WorkflowStatus::Running;
    let mut step = Transition::new(wf.id().clone());
    step.header = Some(Box::new(header));
    store.apply(step).await?;
    Ok(store.workflow(wf.id()).await?.version)
}

/// A step with `complete_at_zero` that leaves `remaining` at 0 on a `RUNNING` workflow
/// whose jobs all succeeded completes it in the same step: header `COMPLETED` (version + 1,
/// `updated_at` = `finished_at` = the time asked), `completed: true`, and a
/// `workflow_completed` event after the step's own, whose result holds every output
/// exactly (large integers included). A step that leaves jobs to run does not.
pub async fn complete_at_zero_completes_in_the_step(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]);
    wf.create(store).await?;
    run(store, &wf).await?;
    let mut first =
        succeed_step(store, &wf, "a", Some(json!({"big": 12345678901234567890u64, "f": 0.1})), now_ms()).await?;
    first.parent_outcomes.push(crate::store::ParentOutcome { child: "b".into(), status: JobStatus::Succeeded });
    let applied = store.apply(first).await?;
    ensure_eq!((applied.remaining, applied.completed), (1, false), "a step leaving a job to run");
    let running = store.workflow(wf.id()).await?.status;
    ensure_eq!(running, WorkflowStatus::Running, "header after a step leaving a job to run");

    let at = now_ms();
    let step = succeed_step(store, &wf, "b", Some(json!(["x", {}])), at).await?;
    let before = store.workflow(wf.id()).await?;
    let seen = store.outbox_pending(1000).await?.len();
    let applied = store.apply(step).await?;
    ensure_eq!((applied.remaining, applied.completed), (0, true), "the step leaving the workflow done");
    let header = store.workflow(wf.id()).await?;
    ensure_eq!(header.status, WorkflowStatus::Completed, "header status after completion at zero");
    ensure_eq!(header.version, before.version + 1, "header version after completion at zero");
    ensure_eq!((header.updated_at, header.finished_at), (at, Some(at)), "header times after completion at zero");
    let mut expected = before.clone();
    expected.status = WorkflowStatus::Completed;
    expected.version += 1;
    expected.remaining = 0;
    expected.updated_at = at;
    expected.finished_at = Some(at);
    ensure_eq!(header, expected, "the rest of the header is unchanged");

    let events = store.outbox_pending(1000).await?;
    let new: Vec<_> = events[seen..].iter().map(|e| e.event.event_type.as_str()).collect();
    ensure_eq!(new, vec!["job_succeeded", "workflow_completed"], "events of the completing step, in order");
    let done = &events[events.len() - 1].event;
    ensure_eq!(done.payload.workflow_id, *wf.id(), "workflow_completed names its workflow");
    ensure_eq!(done.payload.status, "COMPLETED", "workflow_completed status");
    ensure_eq!(done.timestamp, at, "workflow_completed is stamped with the completion time");
    let result = json!({"outputs": {"a": {"big": 12345678901234567890u64, "f": 0.1}, "b": ["x", {}]}});
    ensure_eq!(done.payload.result, Some(result), "workflow_completed result");
    Ok(())
}

/// Completion at zero leaves the workflow `RUNNING` (`completed: false`, nothing more
/// written) when a job failed, when a skipped job's outcome is not yet propagated, or when
/// the step does not ask for it; the step that propagates the last skip completes it.
pub async fn complete_at_zero_waits_for_failures_and_skips(store: &dyn StateStore) -> Result<()> {
    // A failed job: the engine's finalize decides (compensation or FAILED).
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    run(store, &wf).await?;
    finish(store, wf.id(), "a", JobStatus::Failed, &[]).await?;
    let header = store.workflow(wf.id()).await?;
    let mut job = store.job(&wf.key("a")).await?;
    job.priority += 1;
    let mut step = write_job(job);
    step.complete_at_zero = Some(now_ms());
    let applied = store.apply(step).await?;
    ensure_eq!((applied.remaining, applied.completed), (0, false), "a step on a workflow with a failed job");
    let after = store.workflow(wf.id()).await?;
    ensure_eq!(after, header, "header of a workflow with a failed job");

    // Without `complete_at_zero`, nothing more happens.
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    let version = run(store, &wf).await?;
    let mut step = succeed_step(store, &wf, "a", None, now_ms()).await?;
    step.complete_at_zero = None;
    let applied = store.apply(step).await?;
    ensure_eq!((applied.remaining, applied.completed), (0, false), "a step without complete_at_zero");
    let header = store.workflow(wf.id()).await?;
    ensure!(header.status == WorkflowStatus::Running && header.version == version, "header changed: {header:?}");

    // A skip not yet propagated holds completion back until its propagation step.
    let wf = TestWorkflow::new().job("a", &[]).job("b", &[]);
    wf.create(store).await?;
    run(store, &wf).await?;
    let mut skipped = store.job(&wf.key("a")).await?;
    skipped.status = JobStatus::Skipped;
    skipped.finished_at = Some(now_ms());
    skipped.propagated = false;
    let mut step = write_job(skipped);
    step.terminal_delta = 1;
    store.apply(step).await?;
    let applied = store.apply(succeed_step(store, &wf, "b", Some(json!(1)), now_ms()).await?).await?;
    ensure_eq!((applied.remaining, applied.completed), (0, false), "a step while a skip is unpropagated");
    ensure_eq!(store.workflow(wf.id()).await?.status, WorkflowStatus::Running, "header while a skip is unpropagated");
    let mut propagated = store.job(&wf.key("a")).await?;
    propagated.propagated = true;
    let mut step = Transition::new(wf.id().clone());
    step.jobs.push(propagated);
    step.complete_at_zero = Some(now_ms());
    let applied = store.apply(step).await?;
    ensure_eq!((applied.remaining, applied.completed), (0, true), "the step propagating the last skip");
    let events = store.outbox_pending(1000).await?;
    let done = &events[events.len() - 1].event;
    ensure_eq!(done.event_type, "workflow_completed", "last event after the propagating step");
    ensure_eq!(done.payload.result, Some(json!({"outputs": {"b": 1}})), "result leaves skipped jobs out");
    Ok(())
}
