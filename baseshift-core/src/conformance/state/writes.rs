//! Versioned writes: version bumps, stale versions, races, atomicity, legal transitions.

use crate::conformance::check::{ensure, ensure_eq, expect_kind};
use crate::conformance::fixtures::{TestWorkflow, now_ms, write_job};
use crate::error::{ErrorKind, Result};
use crate::event::Event;
use crate::state::{JobStatus, WorkflowStatus};
use crate::store::{ParentOutcome, StateStore, Transition};

/// Each write of a job or a header stores it with `version` + 1.
pub async fn write_bumps_version_by_one(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;

    let mut job = store.job(&wf.key("a")).await?;
    job.priority = 4;
    job.status = JobStatus::Ready;
    job.ready_at = Some(now_ms());
    store.apply(write_job(job.clone())).await?;
    let stored = store.job(&wf.key("a")).await?;
    job.version += 1;
    ensure_eq!(stored, job, "job after one write");

    let mut header = store.workflow(wf.id()).await?;
    header.status = WorkflowStatus::Running;
    let mut step = Transition::new(wf.id().clone());
    step.header = Some(Box::new(header.clone()));
    store.apply(step).await?;
    let stored = store.workflow(wf.id()).await?;
    header.version += 1;
    ensure_eq!(stored, header, "header after one write");
    Ok(())
}

/// A write carrying a version other than the stored one fails with `Conflict`; the
/// record and the outbox are unchanged.
pub async fn stale_version_is_conflict_and_writes_nothing(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    let read = store.job(&wf.key("a")).await?;
    let mut first = read.clone();
    first.priority = 1;
    store.apply(write_job(first)).await?;
    let stored = store.job(&wf.key("a")).await?;
    let outbox = store.outbox_pending(100).await?;

    let mut stale = read.clone();
    stale.priority = 2;
    expect_kind(store.apply(write_job(stale)).await, ErrorKind::Conflict, "job write with the old version")?;
    let mut ahead = stored.clone();
    ahead.version += 5;
    expect_kind(store.apply(write_job(ahead)).await, ErrorKind::Conflict, "job write with a future version")?;
    ensure_eq!(store.job(&wf.key("a")).await?, stored, "job after refused writes");

    let header = store.workflow(wf.id()).await?;
    let mut step = Transition::new(wf.id().clone());
    let mut stale_header = header.clone();
    stale_header.version -= 1;
    stale_header.status = WorkflowStatus::Running;
    step.header = Some(Box::new(stale_header));
    step.events.push(Event::workflow(wf.id(), WorkflowStatus::Running, None));
    expect_kind(store.apply(step).await, ErrorKind::Conflict, "header write with an old version")?;
    ensure_eq!(store.workflow(wf.id()).await?, header, "header after a refused write");
    ensure_eq!(store.outbox_pending(100).await?, outbox, "outbox after refused writes");
    Ok(())
}

/// Two writes from the same read version race: exactly one succeeds, the other gets
/// `Conflict`, and the stored record is the winner's.
pub async fn racing_writes_have_one_winner(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    let read = store.job(&wf.key("a")).await?;
    let (mut left, mut right) = (read.clone(), read);
    left.priority = 10;
    right.priority = 20;
    let (l, r) = tokio::join!(store.apply(write_job(left)), store.apply(write_job(right)));
    let stored = store.job(&wf.key("a")).await?;
    match (l, r) {
        (Ok(_), Err(e)) => {
            ensure_eq!(e.kind(), ErrorKind::Conflict, "the losing write's error");
            ensure_eq!(stored.priority, 10, "stored priority (left won)");
        }
        (Err(e), Ok(_)) => {
            ensure_eq!(e.kind(), ErrorKind::Conflict, "the losing write's error");
            ensure_eq!(stored.priority, 20, "stored priority (right won)");
        }
        (l, r) => ensure!(false, "expected exactly one winner, got {l:?} and {r:?}"),
    }
    ensure_eq!(stored.version, 2, "version after one successful write");
    Ok(())
}

/// A step with one bad precondition (here a stale job version) writes nothing at all:
/// not its header, not its other jobs, not its parent outcomes, not its events.
pub async fn failed_step_writes_nothing(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &[]).job("c", &["a"]);
    wf.create(store).await?;
    let mut stale_b = store.job(&wf.key("b")).await?;
    let mut bump = stale_b.clone();
    bump.priority = 1;
    store.apply(write_job(bump)).await?;

    let header = store.workflow(wf.id()).await?;
    let jobs = store.jobs(wf.id(), None).await?;
    let outbox = store.outbox_pending(100).await?;

    let mut step = Transition::new(wf.id().clone());
    let mut new_header = header.clone();
    new_header.status = WorkflowStatus::Running;
    step.header = Some(Box::new(new_header));
    let mut a = jobs[0].clone();
    a.status = JobStatus::Skipped;
    stale_b.status = JobStatus::Skipped;
    step.jobs = vec![a, stale_b];
    step.parent_outcomes.push(ParentOutcome { child: "c".into(), status: JobStatus::Skipped });
    step.terminal_delta = 2;
    step.events.push(Event::job(wf.id(), "a", JobStatus::Skipped, 0, None));
    expect_kind(store.apply(step.clone()).await, ErrorKind::Conflict, "step with one stale job")?;

    ensure_eq!(store.workflow(wf.id()).await?, header, "header after the refused step");
    ensure_eq!(store.jobs(wf.id(), None).await?, jobs, "jobs after the refused step");
    ensure_eq!(store.outbox_pending(100).await?, outbox, "outbox after the refused step");

    // The same step with an illegal transition instead of a stale version.
    step.jobs[1] = jobs[1].clone();
    step.jobs[1].status = JobStatus::Succeeded;
    expect_kind(store.apply(step).await, ErrorKind::IllegalTransition, "step with one illegal transition")?;
    ensure_eq!(store.jobs(wf.id(), None).await?, jobs, "jobs after the second refused step");
    ensure_eq!(store.workflow(wf.id()).await?, header, "header after the second refused step");
    Ok(())
}

/// A status change the state machine forbids fails with `IllegalTransition` and writes
/// nothing; rewriting a record with its status unchanged is allowed.
pub async fn illegal_transition_is_rejected(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    let job = store.job(&wf.key("a")).await?;

    let mut leap = job.clone();
    leap.status = JobStatus::Succeeded;
    expect_kind(store.apply(write_job(leap)).await, ErrorKind::IllegalTransition, "job PENDING -> SUCCEEDED")?;
    let mut leap = job.clone();
    leap.status = JobStatus::Running;
    expect_kind(store.apply(write_job(leap)).await, ErrorKind::IllegalTransition, "job PENDING -> RUNNING")?;
    ensure_eq!(store.job(&wf.key("a")).await?, job, "job after refused transitions");

    let mut same = job.clone();
    same.priority = 9;
    store.apply(write_job(same)).await?;
    let mut cancelled = store.job(&wf.key("a")).await?;
    cancelled.status = JobStatus::Cancelled;
    store.apply(write_job(cancelled)).await?;
    let mut revived = store.job(&wf.key("a")).await?;
    let frozen = revived.clone();
    revived.status = JobStatus::Ready;
    expect_kind(store.apply(write_job(revived)).await, ErrorKind::IllegalTransition, "job CANCELLED -> READY")?;
    ensure_eq!(store.job(&wf.key("a")).await?, frozen, "terminal job after a refused transition");

    let header = store.workflow(wf.id()).await?;
    let mut done = header.clone();
    done.status = WorkflowStatus::Completed;
    let mut step = Transition::new(wf.id().clone());
    step.header = Some(Box::new(done));
    expect_kind(store.apply(step).await, ErrorKind::IllegalTransition, "workflow INITIALIZED -> COMPLETED")?;
    ensure_eq!(store.workflow(wf.id()).await?, header, "header after a refused transition");
    Ok(())
}

/// The store maintains `remaining`: a header write's `remaining` is ignored.
pub async fn header_write_keeps_remaining(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]);
    wf.create(store).await?;
    let mut header = store.workflow(wf.id()).await?;
    ensure_eq!(header.remaining, 2, "remaining after create");
    header.remaining = 999;
    header.status = WorkflowStatus::Running;
    let mut step = Transition::new(wf.id().clone());
    step.header = Some(Box::new(header));
    let applied = store.apply(step).await?;
    ensure_eq!(applied.remaining, 2, "remaining returned by apply");
    let stored = store.workflow(wf.id()).await?;
    ensure_eq!(stored.remaining, 2, "stored remaining");
    ensure_eq!(stored.status, WorkflowStatus::Running, "stored status");
    Ok(())
}
