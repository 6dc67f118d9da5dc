//! The claim and lease floors (migrations 0004, 0005): the claim's scans start at a lower
//! bound on the `READY` jobs' scores and on the leases' expiry; writes that ready a job or
//! give out a lease lower them, whichever store instance makes them, and a raise never
//! overtakes a write that has not committed.

use super::raw;
use crate::common::{connect, fresh};
use baseshift_core::conformance::fixtures::{TestWorkflow, claim_request, make_ready, now_ms};
use baseshift_core::state::Lease;
use baseshift_core::{JobStatus, StateStore, WorkflowStatus};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgConnection;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);

/// Creates a one-job workflow whose job is `READY` since `at` (in the past: due) with
/// `priority`; returns the workflow id and the job's queue score.
async fn ready_job(store: &dyn StateStore, at: DateTime<Utc>, priority: i32) -> (String, f64) {
    let wf = TestWorkflow::new().job("a", &[]).with_job("a", |j| {
        j.status = JobStatus::Ready;
        j.ready_at = Some(at);
        j.priority = priority;
    });
    let mut new = wf.build();
    new.header.status = WorkflowStatus::Running;
    let score = new.jobs[0].queue_score();
    store.create_workflow(new).await.unwrap();
    (wf.id().to_string(), score)
}

async fn claim_ids(store: &dyn StateStore, limit: usize) -> Vec<String> {
    let claimed = store.claim(claim_request("w", limit, LEASE)).await.unwrap();
    claimed.jobs.into_iter().map(|j| j.workflow_id.to_string()).collect()
}

async fn floor(conn: &mut PgConnection) -> f64 {
    sqlx::query_scalar("SELECT floor FROM claim_floor").fetch_one(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_floor_never_hides_a_better_job() {
    let scoped = fresh(4).await;
    let store = scoped.pg.state_store();
    // A second connection (its own pool) stands for another store instance.
    let other_pg = connect(scoped.pg.config()).await;
    let other = other_pg.state_store();
    let t0 = now_ms();
    let mut queued = Vec::new();
    for i in 0..10 {
        queued.push(ready_job(&store, t0 - TimeDelta::seconds(100 - i), 0).await);
    }
    let ids = |q: &[(String, f64)]| q.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    assert_eq!(claim_ids(&store, 3).await, ids(&queued[..3]));
    assert_eq!(store.raise_claim_floor().await.unwrap(), Some(queued[3].1), "the best ready score");

    // Readied later but waiting since before the floor: by another instance, through a
    // write of an existing job (an UPDATE).
    let late = TestWorkflow::new().job("a", &[]);
    late.create(&other).await.unwrap();
    make_ready(&other, late.id(), &["a"], t0 - TimeDelta::seconds(200)).await.unwrap();
    let late_score = other.job(&late.key("a")).await.unwrap().queue_score();
    // Created ready with a higher priority (an INSERT), by this instance.
    let (urgent, urgent_score) = ready_job(&store, now_ms(), 15).await;
    assert!(late_score < urgent_score && urgent_score < queued[3].1, "{late_score} {urgent_score} {}", queued[3].1);
    let mut conn = raw(scoped.pg.config()).await;
    assert_eq!(floor(&mut conn).await, late_score, "the writes lowered the floor");

    assert_eq!(claim_ids(&store, 1).await, vec![late.id().to_string()], "the oldest first");
    assert_eq!(claim_ids(&store, 1).await, vec![urgent], "then the urgent one");
    assert_eq!(claim_ids(&other, 10).await, ids(&queued[3..]), "then the rest in score order");
    assert_eq!(store.raise_claim_floor().await.unwrap(), Some(f64::INFINITY), "nothing is ready");
    let (fresh_job, _) = ready_job(&other, now_ms(), 0).await;
    assert_eq!(claim_ids(&store, 5).await, vec![fresh_job], "a job readied after an empty raise");
    other_pg.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raise_never_overtakes_an_uncommitted_ready_write() {
    let scoped = fresh(4).await;
    let store = scoped.pg.state_store();
    let t0 = now_ms();
    let (first, _) = ready_job(&store, t0 - TimeDelta::seconds(2), 0).await;
    let (second, second_score) = ready_job(&store, t0 - TimeDelta::seconds(1), 0).await;
    let pending = TestWorkflow::new().job("a", &[]);
    pending.create(&store).await.unwrap();

    // Another session makes the pending job ready, scoring below everything, and has not
    // committed yet.
    let mut writer = raw(scoped.pg.config()).await;
    sqlx::query("BEGIN").execute(&mut writer).await.unwrap();
    sqlx::query("UPDATE jobs SET status = 'READY', ready_at = now(), queue_score = -1e12 WHERE workflow_id = $1")
        .bind(pending.id().as_str())
        .execute(&mut writer)
        .await
        .unwrap();
    assert_eq!(claim_ids(&store, 1).await, vec![first.clone()]);
    assert_eq!(store.raise_claim_floor().await.unwrap(), None, "the uncommitted write holds the floor");
    let mut conn = raw(scoped.pg.config()).await;
    assert!(floor(&mut conn).await <= second_score);
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    assert_eq!(floor(&mut conn).await, -1e12, "the write lowered the floor");
    assert_eq!(claim_ids(&store, 1).await, vec![pending.id().to_string()]);
    assert_eq!(store.raise_claim_floor().await.unwrap(), Some(second_score));
    assert_eq!(claim_ids(&store, 5).await, vec![second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_raise_the_floor_as_they_go() {
    let scoped = fresh(4).await;
    let store = scoped.pg.state_store();
    let t0 = now_ms();
    let mut news = Vec::new();
    let mut scores = Vec::new();
    for i in 0..200 {
        let wf = TestWorkflow::new().job("a", &[]).with_job("a", |j| {
            j.status = JobStatus::Ready;
            j.ready_at = Some(t0 - TimeDelta::milliseconds(1_000 - i));
        });
        let mut new = wf.build();
        new.header.status = WorkflowStatus::Running;
        scores.push(new.jobs[0].queue_score());
        news.push(new);
    }
    for created in store.create_workflows(news).await {
        created.unwrap();
    }
    let mut conn = raw(scoped.pg.config()).await;
    assert_eq!(floor(&mut conn).await, scores[0]);
    let mut claimed = 0;
    while claimed < 150 {
        claimed += claim_ids(&store, 50).await.len();
    }
    // Raised by the claim that passed 128 jobs: to the best ready score (job 150), but
    // not above the best score that claim took (job 149).
    assert_eq!(floor(&mut conn).await, scores[149], "raised by the claim that passed 128 jobs");
    let rest = claim_ids(&store, 100).await;
    assert_eq!(rest.len(), 50);
    // The queue is empty: a raise with a hint stops at the hint, without one at +inf.
    let mut conn = raw(scoped.pg.config()).await;
    let hinted: f64 =
        sqlx::query_scalar("SELECT claim_floor_raise($1)").bind(scores[199]).fetch_one(&mut conn).await.unwrap();
    assert_eq!(hinted, scores[199]);
    assert_eq!(store.raise_claim_floor().await.unwrap(), Some(f64::INFINITY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_floor_never_hides_an_expired_lease() {
    let scoped = fresh(4).await;
    let store = scoped.pg.state_store();
    let other_pg = connect(scoped.pg.config()).await;
    let other = other_pg.state_store();
    let (first, _) = ready_job(&store, now_ms() - TimeDelta::seconds(1), 0).await;
    let claimed = store.claim(claim_request("w", 1, Duration::from_millis(300))).await.unwrap();
    let expiry = claimed.jobs[0].lease.as_ref().unwrap().expires_at;
    let raised = store.raise_lease_floor().await.unwrap();
    assert_eq!(raised, Some(expiry.timestamp_micros() as f64 / 1e6), "the only lease");

    // Another instance creates a job already RUNNING under a lease that lapsed a minute
    // ago (an INSERT below the floor).
    let lapsed = now_ms() - TimeDelta::seconds(60);
    let wf = TestWorkflow::new().job("a", &[]).with_job("a", |j| {
        j.status = JobStatus::Running;
        j.attempt = 1;
        j.ready_at = Some(lapsed);
        j.started_at = Some(lapsed);
        j.lease = Some(Lease { owner: "gone".into(), token: "t".into(), expires_at: lapsed });
    });
    let mut new = wf.build();
    new.header.status = WorkflowStatus::Running;
    other.create_workflow(new).await.unwrap();
    assert_eq!(claim_ids(&store, 5).await, vec![wf.id().to_string()], "the lapsed lease, below the floor");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(claim_ids(&other, 5).await, vec![first], "the first lease, once lapsed");
    let raised = store.raise_lease_floor().await.unwrap().unwrap();
    assert!(raised > (now_ms() + TimeDelta::seconds(30)).timestamp() as f64, "both leases renewed by the claims");
    other_pg.close().await;
}
