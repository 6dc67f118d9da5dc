//! Dead letters and replay steps: listing `FAILED` jobs, the replay-only transitions,
//! `reopened`, and discarding.

use crate::conformance::check::{ensure, ensure_eq, expect_kind};
use crate::conformance::fixtures::{TestWorkflow, finish, make_ready, now_ms, write_job};
use crate::error::{ErrorKind, Result};
use crate::ids::JobKey;
use crate::state::{JobFailure, JobStatus, WorkflowStatus};
use crate::store::{DeadLetterFilter, StateStore, Transition};

fn keys(records: &[crate::JobRecord]) -> Vec<(String, String)> {
    records.iter().map(|r| (r.workflow_id.to_string(), r.job_id.to_string())).collect()
}

/// `dead_letters` lists `FAILED`, not discarded jobs ordered by (workflow id, job id),
/// filtered by workflow, type and `after`, at most `limit`; a discarded one is not listed.
pub async fn dead_letters_list_failed_jobs(store: &dyn StateStore) -> Result<()> {
    let mut wfs = vec![
        TestWorkflow::new().job("a", &[]).job("b", &[]).job("c", &[]).with_job("c", |j| j.job_type = "other".into()),
        TestWorkflow::new().job("a", &[]).job("ok", &[]),
    ];
    wfs.sort_by(|x, y| x.id().cmp(y.id()));
    for wf in &wfs {
        wf.create(store).await?;
    }
    for (wf, jobs) in [(&wfs[0], &["a", "b", "c"][..]), (&wfs[1], &["a"][..])] {
        for job in jobs {
            let mut rec = store.job(&wf.key(job)).await?;
            rec.error = Some(JobFailure::new("permanent", format!("{job} failed")));
            rec.attempt = 3;
            store.apply(write_job(rec)).await?;
            finish(store, wf.id(), job, JobStatus::Failed, &[]).await?;
        }
    }
    finish(store, wfs[1].id(), "ok", JobStatus::Succeeded, &[]).await?;
    let all = store.dead_letters(DeadLetterFilter::default()).await?;
    let (w0, w1) = (wfs[0].id().to_string(), wfs[1].id().to_string());
    let expected = vec![
        (w0.clone(), "a".to_owned()),
        (w0.clone(), "b".to_owned()),
        (w0.clone(), "c".to_owned()),
        (w1.clone(), "a".to_owned()),
    ];
    ensure_eq!(keys(&all), expected, "every dead letter, in key order");
    ensure!(
        all[1].error.as_ref().is_some_and(|e| e.message == "b failed") && all[1].attempt == 3,
        "a dead letter keeps its error and attempts: {:?}",
        all[1]
    );
    let page = store
        .dead_letters(DeadLetterFilter {
            after: Some(JobKey::new(wfs[0].id().clone(), "a")),
            limit: 2,
            ..Default::default()
        })
        .await?;
    ensure_eq!(keys(&page), expected[1..3].to_vec(), "a page after (w0, a)");
    let of_type = store.dead_letters(DeadLetterFilter { job_type: Some("other".into()), ..Default::default() }).await?;
    ensure_eq!(keys(&of_type), vec![(w0.clone(), "c".to_owned())], "dead letters of type `other`");
    let of_wf =
        store.dead_letters(DeadLetterFilter { workflow_id: Some(wfs[1].id().clone()), ..Default::default() }).await?;
    ensure_eq!(keys(&of_wf), vec![(w1, "a".to_owned())], "dead letters of the second workflow");

    let mut rec = store.job(&wfs[0].key("b")).await?;
    if let Some(e) = rec.error.as_mut() {
        e.discarded_at = Some(now_ms());
    }
    store.apply(write_job(rec)).await?;
    let left =
        store.dead_letters(DeadLetterFilter { workflow_id: Some(wfs[0].id().clone()), ..Default::default() }).await?;
    ensure_eq!(keys(&left), vec![(w0.clone(), "a".to_owned()), (w0, "c".to_owned())], "after discarding b");
    ensure_eq!(store.job(&wfs[0].key("b")).await?.status, JobStatus::Failed, "a discarded job stays FAILED");
    Ok(())
}

/// `FAILED -> READY`, `SKIPPED -> PENDING` and workflow `FAILED -> RUNNING` are refused
/// without `replay` (writing nothing) and made with it; `reopened` grows `remaining`, and
/// the replayed job leaves the dead letters.
pub async fn replay_step_reopens_a_failed_workflow(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]);
    wf.create(store).await?;
    let mut header = store.workflow(wf.id()).await?;
    header.status = WorkflowStatus::Running;
    let mut start = Transition::new(wf.id().clone());
    start.header = Some(Box::new(header));
    store.apply(start).await?;
    make_ready(store, wf.id(), &["a"], now_ms()).await?;
    let applied = finish(store, wf.id(), "a", JobStatus::Failed, &["b"]).await?;
    ensure_eq!(applied.skipped, vec!["b".to_owned()], "b skipped by a's failure");
    let mut b = store.job(&wf.key("b")).await?;
    b.propagated = true;
    store.apply(write_job(b)).await?;
    let mut header = store.workflow(wf.id()).await?;
    ensure_eq!(header.remaining, 0, "remaining once both are terminal");
    header.status = WorkflowStatus::Failed;
    header.finished_at = Some(now_ms());
    let mut fail = Transition::new(wf.id().clone());
    fail.header = Some(Box::new(header));
    store.apply(fail).await?;

    let (header, a, b) =
        (store.workflow(wf.id()).await?, store.job(&wf.key("a")).await?, store.job(&wf.key("b")).await?);
    let outbox = store.outbox_pending(1000).await?.len();
    let mut step = Transition::new(wf.id().clone());
    let mut h = header.clone();
    h.status = WorkflowStatus::Running;
    h.finished_at = None;
    step.header = Some(Box::new(h));
    let mut ra = a.clone();
    ra.status = JobStatus::Ready;
    ra.attempt = 0;
    ra.ready_at = Some(now_ms());
    ra.finished_at = None;
    let mut rb = b.clone();
    rb.status = JobStatus::Pending;
    rb.deps.failed = 0;
    rb.finished_at = None;
    step.jobs = vec![ra.clone(), rb.clone()];
    step.reopened = 2;
    expect_kind(store.apply(step.clone()).await, ErrorKind::IllegalTransition, "a replay step without `replay`")?;
    ensure_eq!(store.job(&wf.key("a")).await?, a, "job a after the refused step");
    ensure_eq!(store.workflow(wf.id()).await?, header, "header after the refused step");
    ensure_eq!(store.outbox_pending(1000).await?.len(), outbox, "outbox after the refused step");
    ensure_eq!(
        store.dead_letters(DeadLetterFilter::default()).await?.len(),
        1,
        "the failed job is a dead letter before the replay"
    );

    step.replay = true;
    let applied = store.apply(step).await?;
    ensure_eq!(applied.remaining, 2, "remaining after reopening two jobs");
    let stored = store.workflow(wf.id()).await?;
    ensure_eq!((stored.status, stored.remaining), (WorkflowStatus::Running, 2), "header after the replay");
    ensure_eq!(store.job(&wf.key("a")).await?.status, JobStatus::Ready, "replayed job");
    let b = store.job(&wf.key("b")).await?;
    ensure_eq!((b.status, b.deps.failed), (JobStatus::Pending, 0), "reset child");
    ensure!(store.dead_letters(DeadLetterFilter::default()).await?.is_empty(), "no dead letter after the replay");
    Ok(())
}
