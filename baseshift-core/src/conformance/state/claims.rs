//! Claims and leases: order, limits, exclusions, delays, expiry, renewal, waking.

use crate::conformance::check::{ensure, ensure_eq, expect_kind, failure};
use crate::conformance::fixtures::{TestWorkflow, claim_request, make_ready, now_ms, write_job};
use crate::error::{ErrorKind, Result};
use crate::state::{JobRecord, JobStatus, WorkflowStatus};
use crate::store::{CreateOutcome, StateStore, WorkflowFilter};
use chrono::TimeDelta;
use futures_util::future::join_all;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);
/// Long enough for a few round trips to a loaded server, short enough to wait out.
const SHORT: Duration = Duration::from_millis(400);
/// Waiting this long after a claim of [`SHORT`] lets the lease lapse.
const LAPSE: Duration = Duration::from_millis(650);

fn ids(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|j| j.job_id.as_str()).collect()
}

/// A claimed job is `RUNNING` with `attempt + 1`, a lease for the owner, `started_at`,
/// `version + 1`, as stored; a `job_running` event is appended; it is not claimed again.
pub async fn claim_marks_job_running_under_lease(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    make_ready(store, wf.id(), &["a"], now_ms()).await?;
    let before = store.job(&wf.key("a")).await?;
    let outbox = store.outbox_pending(1000).await?.len();

    let start = now_ms();
    let claimed = store.claim(claim_request("worker-1", 5, LONG)).await?;
    ensure_eq!(ids(&claimed.jobs), vec!["a"], "claimed jobs");
    let job = &claimed.jobs[0];
    ensure_eq!(job.status, JobStatus::Running, "claimed status");
    ensure_eq!(job.attempt, before.attempt + 1, "claimed attempt");
    ensure_eq!(job.version, before.version + 1, "claimed version");
    ensure!(job.started_at.is_some_and(|t| t >= start), "started_at set by the claim: {:?}", job.started_at);
    let lease = job.lease.as_ref().ok_or_else(|| failure("a claimed job has a lease"))?;
    ensure_eq!(lease.owner, "worker-1", "lease owner");
    ensure!(!lease.token.is_empty(), "the lease has a token");
    let min = start + TimeDelta::seconds(50);
    ensure!(lease.expires_at >= min, "lease expiry {} is about now + 60 s", lease.expires_at);
    ensure_eq!(store.job(&wf.key("a")).await?, *job, "stored record equals the claimed one");

    let events = store.outbox_pending(1000).await?;
    ensure_eq!(events.len(), outbox + 1, "events appended by the claim");
    let last = &events[events.len() - 1].event;
    ensure_eq!(last.event_type, "job_running", "the claim's event");
    ensure_eq!(last.payload.job_id.as_deref(), Some("a"), "the claim event's job");
    ensure_eq!(last.payload.attempt, Some(job.attempt), "the claim event's attempt");

    let again = store.claim(claim_request("worker-2", 5, LONG)).await?;
    ensure!(again.jobs.is_empty(), "a leased job is not claimed again: {:?}", ids(&again.jobs));
    Ok(())
}

/// A workflow may be created already begun, its header `RUNNING` and its roots `READY`
/// (what the engine writes when no root has a condition): the header is listed as
/// `RUNNING` and the root is claimable at once, its child not.
pub async fn jobs_created_ready_are_claimable(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]);
    let mut new = wf.build();
    new.header.status = WorkflowStatus::Running;
    new.jobs[0].status = JobStatus::Ready;
    new.jobs[0].ready_at = Some(now_ms());
    match store.create_workflow(new).await? {
        CreateOutcome::Created(id) => ensure_eq!(&id, wf.id(), "created id"),
        other => return Err(failure(format!("create_workflow of a new workflow returned {other:?}"))),
    }
    ensure_eq!(store.workflow(wf.id()).await?.status, WorkflowStatus::Running, "stored header status");
    let running = WorkflowFilter { statuses: vec![WorkflowStatus::Running], ..Default::default() };
    let listed: Vec<_> = store.list_workflows(running).await?.into_iter().map(|h| h.id).collect();
    ensure_eq!(listed, vec![wf.id().clone()], "workflows listed as RUNNING");
    let claimed = store.claim(claim_request("w", 5, LONG)).await?;
    ensure_eq!(ids(&claimed.jobs), vec!["a"], "claimed at once: the root, not its child");
    Ok(())
}

/// A workflow may be created with roots already `RUNNING` under a lease (the engine's
/// local dispatch claims them in the create step): such a job reads back as written
/// (version 1), is not claimable while its lease is valid, renews with its token, is
/// re-claimed once the lease expired (attempt + 1, a new token), and its holder's
/// completion write, carrying version 1, applies.
pub async fn jobs_created_running_keep_their_lease(store: &dyn StateStore) -> Result<()> {
    let now = now_ms();
    let lease = |token: &str, ms: i64| crate::state::Lease {
        owner: "creator".into(),
        token: token.into(),
        expires_at: now + chrono::Duration::milliseconds(ms),
    };
    let running = |j: &mut JobRecord, l: crate::state::Lease| {
        j.status = JobStatus::Running;
        j.attempt = 1;
        j.ready_at = Some(now);
        j.started_at = Some(now);
        j.lease = Some(l);
    };
    let wf = TestWorkflow::new()
        .job("a", &[])
        .job("b", &[])
        .with_job("a", |j| running(j, lease("token-a", 60_000)))
        .with_job("b", |j| running(j, lease("token-b", 300)));
    let mut new = wf.build();
    new.header.status = WorkflowStatus::Running;
    let expected = new.jobs[0].clone();
    store.create_workflow(new).await?;
    let mut a = store.job(&wf.key("a")).await?;
    let mut want = expected;
    want.version = 1;
    ensure_eq!(a, want, "a job created RUNNING reads back as written");
    ensure!(store.claim(claim_request("other", 5, LONG)).await?.jobs.is_empty(), "leases valid: nothing to claim");
    store.renew_lease(&wf.key("a"), "token-a", LONG).await?;
    expect_kind(
        store.renew_lease(&wf.key("b"), "token-a", LONG).await,
        ErrorKind::Conflict,
        "renew with another job's token",
    )?;

    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let claimed = store.claim(claim_request("other", 5, LONG)).await?;
    ensure_eq!(ids(&claimed.jobs), vec!["b"], "the job whose lease expired, re-claimed");
    let b = &claimed.jobs[0];
    ensure!(
        b.attempt == 2 && b.lease.as_ref().is_some_and(|l| l.token != "token-b" && l.owner == "other"),
        "re-claim of b: {b:?}"
    );

    a.status = JobStatus::Succeeded;
    a.lease = None;
    a.propagated = true;
    a.finished_at = Some(now_ms());
    let mut step = write_job(a);
    step.terminal_delta = 1;
    store.apply(step).await?;
    ensure_eq!(store.job(&wf.key("a")).await?.status, JobStatus::Succeeded, "the holder's completion applied");
    Ok(())
}

/// Ready jobs are claimed by priority, then by age (older `ready_at` first), across
/// workflows: the order of [`JobRecord::queue_score`].
pub async fn claim_orders_by_priority_then_age(store: &dyn StateStore) -> Result<()> {
    let now = now_ms();
    let wf1 = TestWorkflow::new().job("low", &[]).job("urgent", &[]).with_job("urgent", |j| j.priority = 5);
    let wf2 = TestWorkflow::new()
        .job("young", &[])
        .job("old", &[])
        .with_job("young", |j| j.priority = 1)
        .with_job("old", |j| j.priority = 1);
    wf1.create(store).await?;
    wf2.create(store).await?;
    // Scores: urgent -5, old -1.2, young -1.1, low -0.3 (relative to 0.1 * now).
    make_ready(store, wf1.id(), &["urgent"], now).await?;
    make_ready(store, wf2.id(), &["young"], now - TimeDelta::seconds(1)).await?;
    make_ready(store, wf2.id(), &["old"], now - TimeDelta::seconds(2)).await?;
    make_ready(store, wf1.id(), &["low"], now - TimeDelta::seconds(3)).await?;

    let mut order = Vec::new();
    for _ in 0..4 {
        let claimed = store.claim(claim_request("w", 1, LONG)).await?;
        ensure_eq!(claimed.jobs.len(), 1, "one job per claim of limit 1 (after {order:?})");
        order.push(claimed.jobs[0].job_id.clone());
    }
    ensure_eq!(order, vec!["urgent", "old", "young", "low"], "claim order");
    Ok(())
}

/// A claim returns at most `limit` jobs and none of `exclude_types`; excluded jobs stay
/// queued for a later claim.
pub async fn claim_respects_limit_and_exclude_types(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new()
        .job("n1", &[])
        .job("s1", &[])
        .job("n2", &[])
        .job("s2", &[])
        .job("n3", &[])
        .with_job("s1", |j| j.job_type = "slow".into())
        .with_job("s2", |j| j.job_type = "slow".into());
    wf.create(store).await?;
    let now = now_ms();
    make_ready(store, wf.id(), &["s1"], now - TimeDelta::seconds(5)).await?;
    make_ready(store, wf.id(), &["s2"], now - TimeDelta::seconds(4)).await?;
    make_ready(store, wf.id(), &["n1", "n2", "n3"], now).await?;

    let mut req = claim_request("w", 2, LONG);
    req.exclude_types = vec!["slow".into()];
    let first = store.claim(req.clone()).await?;
    ensure_eq!(first.jobs.len(), 2, "jobs claimed with limit 2");
    ensure!(first.jobs.iter().all(|j| j.job_type == "noop"), "no excluded type claimed: {:?}", ids(&first.jobs));
    req.limit = 10;
    let second = store.claim(req).await?;
    ensure_eq!(second.jobs.len(), 1, "the last noop job");
    ensure_eq!(second.jobs[0].job_type, "noop", "type of the last claimed job");
    let third = store.claim(claim_request("w", 10, LONG)).await?;
    let mut slow = ids(&third.jobs);
    slow.sort();
    ensure_eq!(slow, vec!["s1", "s2"], "excluded jobs, claimed once no longer excluded");
    let none = store.claim(claim_request("w", 0, LONG)).await?;
    ensure!(none.jobs.is_empty(), "limit 0 claims nothing");
    Ok(())
}

/// `type_limits` caps how many jobs of a type one claim takes; the rest stay queued, in order.
pub async fn claim_respects_type_limits(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new()
        .job("s1", &[])
        .job("s2", &[])
        .job("s3", &[])
        .job("n1", &[])
        .with_job("s1", |j| j.job_type = "slow".into())
        .with_job("s2", |j| j.job_type = "slow".into())
        .with_job("s3", |j| j.job_type = "slow".into());
    wf.create(store).await?;
    let now = now_ms();
    make_ready(store, wf.id(), &["s1"], now - TimeDelta::seconds(3)).await?;
    make_ready(store, wf.id(), &["s2"], now - TimeDelta::seconds(2)).await?;
    make_ready(store, wf.id(), &["s3"], now - TimeDelta::seconds(1)).await?;
    make_ready(store, wf.id(), &["n1"], now).await?;

    let mut req = claim_request("w", 10, LONG);
    req.type_limits.insert("slow".into(), 1);
    let first = store.claim(req.clone()).await?;
    let mut got = ids(&first.jobs);
    got.sort();
    ensure_eq!(got, vec!["n1", "s1"], "one slow job (the oldest) and the unlimited one");
    req.type_limits.insert("slow".into(), 0);
    ensure!(store.claim(req.clone()).await?.jobs.is_empty(), "a cap of 0 claims none of the type");
    req.type_limits.insert("slow".into(), 5);
    let rest = store.claim(req).await?;
    ensure_eq!(ids(&rest.jobs), vec!["s2", "s3"], "the capped jobs stayed queued in order");
    Ok(())
}

/// Concurrent claims never return the same job; together they take every ready job once.
pub async fn concurrent_claims_never_share_a_job(store: &dyn StateStore) -> Result<()> {
    let mut wf = TestWorkflow::new();
    let names: Vec<String> = (0..20).map(|i| format!("j{i:02}")).collect();
    for name in &names {
        wf = wf.job(name, &[]);
    }
    wf.create(store).await?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    make_ready(store, wf.id(), &refs, now_ms()).await?;

    let claims = join_all((0..4).map(|i| store.claim(claim_request(&format!("w{i}"), 8, LONG)))).await;
    let mut seen = HashSet::new();
    for claim in claims {
        for job in claim?.jobs {
            ensure!(seen.insert(job.job_id.clone()), "job {} returned by two claims", job.job_id);
        }
    }
    let rest = store.claim(claim_request("late", 100, LONG)).await?;
    for job in rest.jobs {
        ensure!(seen.insert(job.job_id.clone()), "job {} claimed twice", job.job_id);
    }
    ensure_eq!(seen.len(), 20, "distinct jobs claimed in all");
    Ok(())
}

/// A `READY` job whose `ready_at` is in the future is not claimed before it is due;
/// the claim reports it as `next_ready_at`; once due it is claimed.
pub async fn delayed_job_waits_until_due(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("later", &[]).job("now", &[]);
    wf.create(store).await?;
    let due = now_ms() + TimeDelta::milliseconds(800);
    make_ready(store, wf.id(), &["later"], due).await?;
    make_ready(store, wf.id(), &["now"], now_ms()).await?;

    let claimed = store.claim(claim_request("w", 10, LONG)).await?;
    ensure_eq!(ids(&claimed.jobs), vec!["now"], "jobs claimable before the delay ends");
    let next = claimed.next_ready_at.ok_or_else(|| failure("next_ready_at reported for the delayed job"))?;
    ensure!((next - due).num_milliseconds().abs() <= 1, "next_ready_at {next} equals the job's ready_at {due}");

    let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(100);
    tokio::time::sleep(wait).await;
    let claimed = store.claim(claim_request("w", 10, LONG)).await?;
    ensure_eq!(ids(&claimed.jobs), vec!["later"], "jobs claimable once due");
    ensure_eq!(claimed.next_ready_at, None, "next_ready_at with nothing delayed");
    Ok(())
}

/// A `RUNNING` job whose lease expired is claimed again, before any ready job, with
/// `attempt + 1` and a new token; the old holder's writes conflict.
pub async fn expired_lease_is_reclaimed(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &[]).with_job("b", |j| j.priority = 100);
    wf.create(store).await?;
    make_ready(store, wf.id(), &["a"], now_ms()).await?;
    let first = store.claim(claim_request("w1", 1, SHORT)).await?;
    let held = first.jobs.first().cloned().ok_or_else(|| failure("first claim"))?;
    let held_token = held.lease.as_ref().map(|l| l.token.clone()).unwrap_or_default();
    ensure!(store.claim(claim_request("w2", 1, SHORT)).await?.jobs.is_empty(), "no re-claim while the lease is valid");
    make_ready(store, wf.id(), &["b"], now_ms() - TimeDelta::seconds(10)).await?;

    tokio::time::sleep(LAPSE).await;
    let second = store.claim(claim_request("w2", 1, LONG)).await?;
    let job = second.jobs.first().ok_or_else(|| failure("the expired job is claimed again"))?;
    ensure_eq!(job.job_id, "a", "re-claimed job");
    ensure_eq!(job.status, JobStatus::Running, "re-claimed status");
    ensure_eq!(job.attempt, held.attempt + 1, "re-claimed attempt");
    ensure_eq!(job.version, held.version + 1, "re-claimed version");
    let lease = job.lease.as_ref().ok_or_else(|| failure("the re-claimed job has a lease"))?;
    ensure_eq!(lease.owner, "w2", "new lease owner");
    ensure!(lease.token != held_token, "the re-claim gets a new token");

    let mut late = held;
    late.status = JobStatus::Succeeded;
    late.lease = None;
    expect_kind(store.apply(write_job(late)).await, ErrorKind::Conflict, "the old holder's completion")?;
    ensure_eq!(store.job(&wf.key("a")).await?, *job, "record after the old holder's write");
    let third = store.claim(claim_request("w3", 10, LONG)).await?;
    ensure_eq!(ids(&third.jobs), vec!["b"], "the ready job, after the expired one");
    Ok(())
}

/// `renew_lease` by the holder extends the lease (the job is not re-claimed after the
/// original expiry) and leaves the holder's version valid for its completion.
pub async fn renew_extends_lease(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    make_ready(store, wf.id(), &["a"], now_ms()).await?;
    let claimed = store.claim(claim_request("w1", 1, SHORT)).await?;
    let held = claimed.jobs.first().cloned().ok_or_else(|| failure("claim"))?;
    let token = held.lease.as_ref().map(|l| l.token.clone()).unwrap_or_default();

    let start = now_ms();
    let expiry = store.renew_lease(&held.key(), &token, LONG).await?;
    ensure!(expiry >= start + TimeDelta::seconds(50), "renewed expiry {expiry} is about now + 60 s");
    let stored = store.job(&held.key()).await?;
    let stored_expiry = stored.lease.as_ref().map(|l| l.expires_at);
    ensure!(
        stored_expiry.is_some_and(|t| (t - expiry).num_milliseconds().abs() <= 1),
        "stored expiry {stored_expiry:?} equals the returned {expiry}"
    );

    tokio::time::sleep(LAPSE).await;
    let other = store.claim(claim_request("w2", 1, LONG)).await?;
    ensure!(other.jobs.is_empty(), "a renewed lease is not re-claimed: {:?}", ids(&other.jobs));

    let mut done = held;
    done.status = JobStatus::Succeeded;
    done.lease = None;
    done.finished_at = Some(now_ms());
    store.apply(write_job(done)).await?;
    ensure_eq!(store.job(&wf.key("a")).await?.status, JobStatus::Succeeded, "completed after renewals");
    expect_kind(store.renew_lease(&wf.key("a"), &token, LONG).await, ErrorKind::Conflict, "renew of a finished job")?;
    Ok(())
}

/// `renew_lease` with a token that no longer holds the job (it was re-claimed) fails
/// with `Conflict` and leaves the new lease alone.
pub async fn renew_with_stale_token_conflicts(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    make_ready(store, wf.id(), &["a"], now_ms()).await?;
    let first = store.claim(claim_request("w1", 1, SHORT)).await?;
    let old = first.jobs.first().and_then(|j| j.lease.clone()).ok_or_else(|| failure("first claim"))?;
    tokio::time::sleep(LAPSE).await;
    let second = store.claim(claim_request("w2", 1, LONG)).await?;
    let job = second.jobs.first().cloned().ok_or_else(|| failure("re-claim after expiry"))?;

    let renewed = store.renew_lease(&wf.key("a"), &old.token, LONG).await;
    expect_kind(renewed, ErrorKind::Conflict, "renew with the token of the expired claim")?;
    expect_kind(
        store.renew_lease(&wf.key("a"), "not-a-token", LONG).await,
        ErrorKind::Conflict,
        "renew with a made-up token",
    )?;
    ensure_eq!(store.job(&wf.key("a")).await?, job, "record after refused renewals");
    Ok(())
}

/// A `RUNNING` job `awaiting_external` completion is not re-claimed when its lease lapses.
pub async fn awaiting_external_job_is_not_reclaimed(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("manual", &[]);
    wf.create(store).await?;
    make_ready(store, wf.id(), &["manual"], now_ms()).await?;
    let claimed = store.claim(claim_request("w1", 1, SHORT)).await?;
    let mut job = claimed.jobs.first().cloned().ok_or_else(|| failure("claim"))?;
    job.awaiting_external = true;
    let mut step = write_job(job);
    step.events.clear();
    store.apply(step).await?;

    tokio::time::sleep(LAPSE).await;
    let again = store.claim(claim_request("w2", 10, LONG)).await?;
    ensure!(again.jobs.is_empty(), "a job awaiting an external completion is not re-claimed");
    ensure_eq!(store.job(&wf.key("manual")).await?.status, JobStatus::Running, "its status");
    Ok(())
}

/// `wait_for_work` returns promptly when another task makes a job ready.
pub async fn wait_for_work_wakes_on_ready(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    // Use up any wake-up left by the create.
    store.wait_for_work(Duration::from_millis(50)).await;

    let (waited, readied) = tokio::join!(
        async {
            let start = Instant::now();
            store.wait_for_work(Duration::from_secs(20)).await;
            start.elapsed()
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            make_ready(store, wf.id(), &["a"], now_ms()).await
        }
    );
    readied?;
    ensure!(waited < Duration::from_secs(10), "wait_for_work woke after {waited:?}, long after the job became ready");
    let claimed = store.claim(claim_request("w", 1, LONG)).await?;
    ensure_eq!(ids(&claimed.jobs), vec!["a"], "the job that woke the waiter");
    Ok(())
}
