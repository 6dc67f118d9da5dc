//! Parent outcomes: join rules, store-made skips, conditions and `remaining`.

use crate::conformance::check::{ensure, ensure_eq, failure};
use crate::conformance::fixtures::{TestWorkflow, claim_request, finish, make_ready, now_ms, write_job};
use crate::error::Result;
use crate::state::{JobRecord, JobStatus};
use crate::store::{Applied, StateStore};
use crate::template::Trigger;
use std::time::Duration;

/// What a child ends as once all its parents are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Ready,
    Skipped,
}

/// Runs one join: parents `p0..pn` end in `outcomes` (in order), child `c` has `trigger`.
/// Checks that the child waits until the last parent, then ends as `expect`.
async fn join_case(store: &dyn StateStore, trigger: Trigger, outcomes: &[JobStatus], expect: Expect) -> Result<()> {
    let parents: Vec<String> = (0..outcomes.len()).map(|i| format!("p{i}")).collect();
    let parent_refs: Vec<&str> = parents.iter().map(String::as_str).collect();
    let mut wf = TestWorkflow::new();
    for p in &parent_refs {
        wf = wf.job(p, &[]);
    }
    let wf = wf.job("c", &parent_refs).with_job("c", |j| j.trigger = trigger);
    wf.create(store).await?;
    let case = format!("{trigger:?} with parents {outcomes:?}");

    let mut last = Applied::default();
    for (i, (parent, status)) in parent_refs.iter().zip(outcomes).enumerate() {
        let before = store.job(&wf.key("c")).await?;
        last = finish(store, wf.id(), parent, *status, &["c"]).await?;
        let child = store.job(&wf.key("c")).await?;
        ensure_eq!(child.deps.done(), i as u32 + 1, "{case}: parents counted after {parent}");
        ensure!(child.version > before.version, "{case}: the child's version grows when its counters change");
        if i + 1 < outcomes.len() {
            ensure_eq!(child.status, JobStatus::Pending, "{case}: child status before its last parent ends");
            ensure!(last.ready.is_empty() && last.skipped.is_empty(), "{case}: nothing decided yet: {last:?}");
        }
    }

    let child = store.job(&wf.key("c")).await?;
    let events = store.outbox_pending(1000).await?;
    let child_events: Vec<_> = events
        .iter()
        .filter(|e| e.event.payload.workflow_id == *wf.id() && e.event.payload.job_id.as_deref() == Some("c"))
        .map(|e| e.event.event_type.as_str())
        .collect();
    match expect {
        Expect::Ready => {
            ensure_eq!(child.status, JobStatus::Ready, "{case}: child status");
            ensure!(child.ready_at.is_some(), "{case}: a READY child has ready_at");
            ensure_eq!(last.ready, vec!["c".to_owned()], "{case}: Applied::ready");
            ensure!(last.skipped.is_empty() && last.eligible.is_empty(), "{case}: {last:?}");
            ensure_eq!(child_events, vec!["job_ready"], "{case}: the child's events");
            ensure_eq!(last.remaining, 1, "{case}: remaining (only the child left)");
        }
        Expect::Skipped => {
            ensure_eq!(child.status, JobStatus::Skipped, "{case}: child status");
            ensure!(!child.propagated, "{case}: a store-skipped child still has to propagate");
            ensure!(child.finished_at.is_some(), "{case}: a skipped child has finished_at");
            ensure_eq!(last.skipped, vec!["c".to_owned()], "{case}: Applied::skipped");
            ensure!(last.ready.is_empty() && last.eligible.is_empty(), "{case}: {last:?}");
            ensure_eq!(child_events, vec!["job_skipped"], "{case}: the child's events");
            ensure_eq!(last.remaining, 0, "{case}: remaining (the skip counts)");
        }
    }
    ensure_eq!(store.workflow(wf.id()).await?.remaining, last.remaining, "{case}: stored remaining");
    Ok(())
}

/// A child stays `PENDING` (counting outcomes, version growing) until every parent is
/// done, and is not claimable meanwhile.
pub async fn child_waits_for_all_parents(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &[]).job("c", &[]).job("join", &["a", "b", "c"]);
    wf.create(store).await?;
    finish(store, wf.id(), "a", JobStatus::Succeeded, &["join"]).await?;
    let applied = finish(store, wf.id(), "b", JobStatus::Succeeded, &["join"]).await?;
    let join = store.job(&wf.key("join")).await?;
    ensure_eq!(join.status, JobStatus::Pending, "join after two of three parents");
    ensure_eq!(join.deps.succeeded, 2, "join's succeeded count");
    ensure!(applied.ready.is_empty(), "nothing ready yet: {applied:?}");
    ensure_eq!(applied.remaining, 2, "remaining after two parents");
    let claimed = store.claim(claim_request("w", 10, Duration::from_secs(30))).await?;
    ensure!(claimed.jobs.is_empty(), "a pending join is not claimable: {:?}", claimed.jobs);

    let applied = finish(store, wf.id(), "c", JobStatus::Succeeded, &["join"]).await?;
    ensure_eq!(applied.ready, vec!["join".to_owned()], "ready after the last parent");
    let claimed = store.claim(claim_request("w", 10, Duration::from_secs(30))).await?;
    let ids: Vec<_> = claimed.jobs.iter().map(|j| j.job_id.as_str()).collect();
    ensure_eq!(ids, vec!["join"], "claimable after the last parent");
    Ok(())
}

/// `all_success`: ready when every parent succeeded; a failed, cancelled or skipped
/// parent skips the child.
pub async fn trigger_all_success(store: &dyn StateStore) -> Result<()> {
    use JobStatus::*;
    join_case(store, Trigger::AllSuccess, &[Succeeded, Succeeded], Expect::Ready).await?;
    join_case(store, Trigger::AllSuccess, &[Succeeded, Failed], Expect::Skipped).await?;
    join_case(store, Trigger::AllSuccess, &[Skipped, Succeeded], Expect::Skipped).await?;
    join_case(store, Trigger::AllSuccess, &[Cancelled], Expect::Skipped).await
}

/// `all_done`: ready once every parent finished, however.
pub async fn trigger_all_done(store: &dyn StateStore) -> Result<()> {
    use JobStatus::*;
    join_case(store, Trigger::AllDone, &[Failed, Skipped], Expect::Ready).await?;
    join_case(store, Trigger::AllDone, &[Succeeded, Failed, Cancelled], Expect::Ready).await
}

/// `one_success`: ready when at least one parent succeeded (decided when all are done).
pub async fn trigger_one_success(store: &dyn StateStore) -> Result<()> {
    use JobStatus::*;
    join_case(store, Trigger::OneSuccess, &[Failed, Succeeded], Expect::Ready).await?;
    join_case(store, Trigger::OneSuccess, &[Succeeded, Failed], Expect::Ready).await?;
    join_case(store, Trigger::OneSuccess, &[Failed, Skipped], Expect::Skipped).await
}

/// `none_failed`: ready unless a parent failed or was cancelled; skipped parents are fine.
pub async fn trigger_none_failed(store: &dyn StateStore) -> Result<()> {
    use JobStatus::*;
    join_case(store, Trigger::NoneFailed, &[Succeeded, Skipped], Expect::Ready).await?;
    join_case(store, Trigger::NoneFailed, &[Skipped, Skipped], Expect::Ready).await?;
    join_case(store, Trigger::NoneFailed, &[Succeeded, Failed], Expect::Skipped).await?;
    join_case(store, Trigger::NoneFailed, &[Cancelled, Succeeded], Expect::Skipped).await
}

/// `remaining` drops by `terminal_delta` and by store-made skips of main jobs; skipped
/// compensation jobs do not count.
pub async fn skips_count_in_remaining(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new()
        .job("a", &[])
        .job("b", &["a"])
        .job("c", &["b"])
        .job("a.compensate", &["a"])
        .with_job("a.compensate", |j| j.compensation_of = Some("a".into()));
    wf.create(store).await?;
    ensure_eq!(store.workflow(wf.id()).await?.remaining, 3, "remaining after create (compensation excluded)");

    let applied = finish(store, wf.id(), "a", JobStatus::Failed, &["b", "a.compensate"]).await?;
    let mut skipped = applied.skipped.clone();
    skipped.sort();
    ensure_eq!(skipped, vec!["a.compensate".to_owned(), "b".to_owned()], "skipped by a's failure");
    ensure_eq!(applied.remaining, 1, "remaining: 3 - a - b (the compensation does not count)");

    // The engine propagates b's skip; the store then skips c.
    let b = store.job(&wf.key("b")).await?;
    let mut propagated = b.clone();
    propagated.propagated = true;
    let mut step = write_job(propagated);
    step.events.clear();
    step.parent_outcomes.push(crate::store::ParentOutcome { child: "c".into(), status: JobStatus::Skipped });
    let applied = store.apply(step).await?;
    ensure_eq!(applied.skipped, vec!["c".to_owned()], "skipped by b's skip");
    ensure_eq!(applied.remaining, 0, "remaining after the cascade");
    ensure_eq!(store.workflow(wf.id()).await?.remaining, 0, "stored remaining");
    Ok(())
}

/// A child with a condition becomes `eligible` (still `PENDING`, not claimable, no
/// `job_ready` event) when its join rule holds; the engine then readies or skips it.
pub async fn conditional_child_becomes_eligible(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("c", &["a"]).with_job("c", |j| j.has_condition = true);
    wf.create(store).await?;
    let applied = finish(store, wf.id(), "a", JobStatus::Succeeded, &["c"]).await?;
    ensure_eq!(applied.eligible, vec!["c".to_owned()], "Applied::eligible");
    ensure!(applied.ready.is_empty() && applied.skipped.is_empty(), "only eligible: {applied:?}");
    let child: JobRecord = store.job(&wf.key("c")).await?;
    ensure_eq!(child.status, JobStatus::Pending, "an eligible child's status");
    ensure!(child.eligible, "the child is marked eligible");
    let events = store.outbox_pending(1000).await?;
    ensure!(
        !events.iter().any(|e| e.event.payload.job_id.as_deref() == Some("c")),
        "no event for an eligible child: {events:?}"
    );
    let claimed = store.claim(claim_request("w", 10, Duration::from_secs(30))).await?;
    ensure!(claimed.jobs.is_empty(), "an eligible child is not claimable");

    make_ready(store, wf.id(), &["c"], now_ms()).await?;
    let claimed = store.claim(claim_request("w", 10, Duration::from_secs(30))).await?;
    let job = claimed.jobs.first().ok_or_else(|| failure("the child, once READY, is claimable"))?;
    ensure_eq!(job.job_id, "c", "claimed job");
    Ok(())
}
