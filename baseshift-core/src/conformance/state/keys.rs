//! Concurrency keys: claims never make more than a key's limit of jobs `RUNNING`.

use crate::conformance::check::{ensure, ensure_eq};
use crate::conformance::fixtures::{TestWorkflow, claim_request, finish, make_ready, now_ms, write_job};
use crate::error::Result;
use crate::state::{ConcurrencyKey, JobRecord, JobStatus};
use crate::store::StateStore;
use futures_util::future::join_all;
use std::collections::HashMap;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn keyed(key: &str, limit: u32) -> impl FnOnce(&mut JobRecord) {
    let key = key.to_owned();
    move |j| j.concurrency = Some(ConcurrencyKey { key, limit })
}

fn running_per_key(jobs: &[JobRecord]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for j in jobs.iter().filter(|j| j.status == JobStatus::Running) {
        if let Some(c) = &j.concurrency {
            *m.entry(c.key.clone()).or_default() += 1;
        }
    }
    m
}

/// Claims take at most `limit` jobs of one concurrency key, counting the ones already
/// `RUNNING` (across workflows, and awaiting an external call included); held-back jobs
/// stay `READY` and are claimed once a job of their key leaves `RUNNING`. Jobs without
/// a key are not held back.
pub async fn claim_respects_concurrency_keys(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new()
        .job("k1", &[])
        .job("k2", &[])
        .job("k3", &[])
        .job("j1", &[])
        .job("free", &[])
        .with_job("k1", keyed("cust-1", 2))
        .with_job("k2", keyed("cust-1", 2))
        .with_job("k3", keyed("cust-1", 2))
        .with_job("j1", keyed("cust-2", 1));
    let other = TestWorkflow::new().job("k4", &[]).with_job("k4", keyed("cust-1", 2));
    wf.create(store).await?;
    other.create(store).await?;
    ensure_eq!(
        store.job(&wf.key("k1")).await?.concurrency,
        Some(ConcurrencyKey { key: "cust-1".into(), limit: 2 }),
        "the key reads back"
    );
    make_ready(store, wf.id(), &["k1", "k2", "k3", "j1", "free"], now_ms()).await?;
    make_ready(store, other.id(), &["k4"], now_ms()).await?;

    let first = store.claim(claim_request("w", 10, LONG)).await?;
    let per_key = running_per_key(&first.jobs);
    ensure_eq!(first.jobs.len(), 4, "claimed: two of cust-1, one of cust-2, the free job");
    ensure_eq!(per_key.get("cust-1").copied(), Some(2), "cust-1 jobs claimed");
    ensure_eq!(per_key.get("cust-2").copied(), Some(1), "cust-2 jobs claimed");
    ensure!(first.jobs.iter().any(|j| j.job_id == "free"), "the job without a key is claimed");
    ensure!(store.claim(claim_request("w", 10, LONG)).await?.jobs.is_empty(), "every key is at its limit");

    // An external wait still holds its slot; finishing a job frees it.
    let held = first.jobs.iter().find(|j| j.concurrency.as_ref().is_some_and(|c| c.key == "cust-1"));
    let Some(held) = held else { return Ok(()) };
    let mut waiting = store.job(&held.key()).await?;
    waiting.lease = None;
    waiting.awaiting_external = true;
    store.apply(write_job(waiting)).await?;
    ensure!(store.claim(claim_request("w", 10, LONG)).await?.jobs.is_empty(), "an external wait holds its slot");
    finish(store, &held.workflow_id, &held.job_id, JobStatus::Succeeded, &[]).await?;
    let next = store.claim(claim_request("w", 10, LONG)).await?;
    ensure_eq!(next.jobs.len(), 1, "one cust-1 job after one finished");
    ensure_eq!(next.jobs[0].concurrency.as_ref().map(|c| c.key.as_str()), Some("cust-1"), "the next job's key");
    Ok(())
}

/// Concurrent claims by several owners together never exceed a key's limit.
pub async fn concurrent_claims_respect_concurrency_keys(store: &dyn StateStore) -> Result<()> {
    let mut wf = TestWorkflow::new();
    let ids: Vec<String> = (0..24).map(|i| format!("j{i}")).collect();
    for id in &ids {
        wf = wf.job(id, &[]).with_job(id, keyed("shared", 3));
    }
    wf.create(store).await?;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    make_ready(store, wf.id(), &refs, now_ms()).await?;
    let claims = join_all((0..6).map(|i| store.claim(claim_request(&format!("w{i}"), 4, LONG)))).await;
    let mut total = 0;
    for c in claims {
        total += c?.jobs.len();
    }
    ensure_eq!(total, 3, "jobs claimed by six concurrent claims under a limit of 3");
    let running = running_per_key(&store.jobs(wf.id(), None).await?);
    ensure_eq!(running.get("shared").copied(), Some(3), "jobs RUNNING with the key");
    Ok(())
}
