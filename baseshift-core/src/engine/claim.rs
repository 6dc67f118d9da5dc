//! Claiming ready jobs: the claim loop, and the one-more-job continuation of a worker
//! whose step made jobs ready (or that works off a backlog of an in-process store).

use super::Inner;
use super::worker::run_claimed;
use crate::state::JobRecord;
use crate::store::{ClaimRequest, Claimed};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Claims jobs while there are free slots, and spawns one task per claimed job.
pub(crate) async fn claim_loop(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    let lingers = inner.store.capabilities().durable && !inner.config.claim_linger.is_zero();
    while !inner.stop.is_cancelled() {
        let free = inner.config.concurrency.saturating_sub(inner.total_running.load(Ordering::SeqCst));
        if free == 0 {
            tokio::select! {
                _ = inner.slot_freed.notified() => {}
                _ = inner.stop.cancelled() => break,
                _ = tokio::time::sleep(inner.config.poll_interval) => {}
            }
            continue;
        }
        let free = if lingers { linger(&inner, free).await } else { free };
        match claim(&inner, free).await {
            Ok((claimed, jobs)) => {
                backoff = Duration::from_millis(50);
                inner.outbox_wake.notify_one();
                let got = jobs.len();
                inner.drained.store(got < free, Ordering::SeqCst);
                // A full claim means a backlog: on an in-process store its workers claim
                // on by themselves (see `run_claimed`).
                let backlog = got == free;
                for rec in jobs {
                    inner.total_running.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(run_claimed(inner.clone(), rec, backlog));
                }
                if got == 0 {
                    let mut wait = inner.config.poll_interval;
                    if let Some(at) = claimed.next_ready_at {
                        let until = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                        wait = wait.min(until.max(Duration::from_millis(1)));
                    }
                    if let Some(at) = inner.flow.next_change(tokio::time::Instant::now()) {
                        let until = at.saturating_duration_since(tokio::time::Instant::now());
                        wait = wait.min(until.max(Duration::from_millis(1)));
                    }
                    // Nothing was claimable: a freed slot makes nothing claimable unless a
                    // per-type limit held jobs back; new work wakes `wait_for_work`.
                    let held_back = inner.limits_types();
                    tokio::select! {
                        _ = inner.store.wait_for_work(wait) => {}
                        _ = inner.slot_freed.notified(), if held_back => {}
                        _ = inner.stop.cancelled() => break,
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming jobs failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = inner.stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// On a durable store a claim is a round trip: while jobs run and fewer than half the
/// slots are free, waits up to `claim_linger` for more to free, so that one claim fills
/// several. Returns the free slots then.
async fn linger(inner: &Inner, mut free: usize) -> usize {
    let concurrency = inner.config.concurrency;
    let deadline = tokio::time::Instant::now() + inner.config.claim_linger;
    while free < concurrency.div_ceil(2) && free < concurrency {
        tokio::select! {
            _ = inner.slot_freed.notified() => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = inner.stop.cancelled() => break,
        }
        free = concurrency.saturating_sub(inner.total_running.load(Ordering::SeqCst));
    }
    concurrency.saturating_sub(inner.total_running.load(Ordering::SeqCst))
}

/// One more job for a worker whose slot is still held, asked for when its last step
/// made jobs ready or it works off a backlog: a chain or a fan-out runs on in the same
/// tasks, without a round through the claim loop and a task spawn per job. `None` when
/// nothing was claimed or claiming failed (the claim loop, woken by the same step,
/// picks the work up).
pub(crate) async fn one_more(inner: &Arc<Inner>) -> Option<JobRecord> {
    if inner.stop.is_cancelled() {
        return None;
    }
    let (_, mut jobs) = claim(inner, 1).await.ok()?;
    inner.outbox_wake.notify_one();
    jobs.pop()
}

/// Claims up to `limit` jobs within the room of this instance's type and rate limits, and
/// counts them, as one critical section (see `Inner::claiming`).
async fn claim(inner: &Inner, limit: usize) -> crate::Result<(Claimed, Vec<JobRecord>)> {
    let _turn = inner.claiming.lock().await;
    let mut claimed = inner.store.claim(request(inner, limit)).await?;
    let jobs = taken(inner, std::mem::take(&mut claimed.jobs));
    Ok((claimed, jobs))
}

pub(crate) fn request(inner: &Inner, limit: usize) -> ClaimRequest {
    ClaimRequest {
        owner: inner.config.instance_id.clone(),
        limit,
        lease_ttl: inner.config.lease_ttl,
        exclude_types: Vec::new(),
        type_limits: type_room(inner),
    }
}

/// Counts claimed jobs against their types' flow control and running totals.
/// Nothing to count without type limits, rate limits or a breaker (see `Inner::limits_types`).
fn taken(inner: &Inner, jobs: Vec<JobRecord>) -> Vec<JobRecord> {
    if !inner.limits_types() {
        return jobs;
    }
    let now = tokio::time::Instant::now();
    let mut per_type: HashMap<&str, usize> = HashMap::new();
    for rec in &jobs {
        *per_type.entry(rec.job_type.as_str()).or_default() += 1;
    }
    for (ty, n) in per_type {
        inner.flow.claimed(ty, n, now);
    }
    let mut running = inner.type_running.lock();
    for rec in &jobs {
        *running.entry(rec.job_type.clone()).or_default() += 1;
    }
    drop(running);
    jobs
}

/// How many more jobs of each limited type this instance may start now: the room under
/// its concurrency limit, its rate limit and its circuit breaker, whichever is least.
fn type_room(inner: &Inner) -> HashMap<String, usize> {
    if !inner.limits_types() {
        return HashMap::new();
    }
    let running = inner.type_running.lock();
    let now = tokio::time::Instant::now();
    let mut room = HashMap::new();
    for ty in inner.registry.job_types() {
        let by_limit =
            inner.config.type_limits.get(ty).map(|limit| limit.saturating_sub(running.get(ty).copied().unwrap_or(0)));
        let by_flow = inner.flow.room(ty, now);
        let least = match (by_limit, by_flow) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(n) = least {
            room.insert(ty.to_owned(), n);
        }
    }
    room
}
