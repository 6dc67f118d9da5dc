//! Coalesced [`StateStore::apply`](baseshift_core::StateStore::apply): concurrent steps
//! queue up, and a few writer tasks each take everything queued (up to [`MAX_BATCH`]
//! steps, [`MAX_BYTES`] of arguments) and send it as one apply script call.
//!
//! Redis runs one script at a time, and a script call has fixed costs (the call, its
//! argument tables, the shared helpers' definitions) that a batch pays once; it is also one
//! round trip for all its steps.
//!
//! - **No added latency**: a step that finds nothing queued and a writer slot free is sent
//!   at once from its caller's task (no task hop); there is no timer. Batches form only
//!   while every slot has a call in flight, and the first call to finish hands its slot to
//!   a writer task that takes them.
//! - **Each caller gets its own result**: the script checks and applies (or refuses) each
//!   step on its own, in queue order, each seeing the writes of the steps before it, so a
//!   stale step is refused without disturbing the others. A call that fails as a whole
//!   (connection, timeout) fails each of its steps with that error.
//! - The queue, its writers and their slots are baseshift-core's
//!   [`Batcher`](baseshift_core::store::batch::Batcher) (the PostgreSQL store's group
//!   commit runs on it too); this module says how a batch is sent. A step sent from its
//!   caller's task carries no one else's.

use super::write::{EncodedStep, apply_steps, encode_step};
use crate::connection::Conn;
use crate::keys::Keys;
use baseshift_core::Result;
use baseshift_core::store::batch::{BatchLimits, BatchWrite, Batcher, submit};
use baseshift_core::store::{Applied, Transition};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most steps one script call applies.
pub(crate) const MAX_BATCH: usize = 64;

/// The most argument bytes one script call takes (a larger step goes alone), so one call
/// never holds the server for long.
pub(crate) const MAX_BYTES: usize = 512 * 1024;

/// Script calls in flight at once: one runs on the server while the next batch gathers.
const WRITERS: usize = 2;

/// The apply queue of one store (and its clones), with what its writers need.
pub(crate) struct Applier {
    conn: Conn,
    keys: Keys,
    batcher: Batcher<EncodedStep>,
    /// Script calls sent so far.
    calls: AtomicU64,
}

impl Applier {
    /// An applier sending on `conn` under `keys`.
    pub(crate) fn new(conn: Conn, keys: Keys) -> Applier {
        let limits =
            BatchLimits { writers: WRITERS, max_steps: MAX_BATCH, max_bytes: MAX_BYTES, inline_when_idle: true };
        Applier { conn, keys, batcher: Batcher::new(limits), calls: AtomicU64::new(0) }
    }

    /// Apply script calls sent so far.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl BatchWrite for Applier {
    type Step = EncodedStep;
    const BACKEND: &'static str = crate::BACKEND;

    fn batcher(&self) -> &Batcher<EncodedStep> {
        &self.batcher
    }

    fn size(step: &EncodedStep) -> usize {
        step.size()
    }

    async fn write(self: Arc<Self>, steps: Vec<EncodedStep>) -> Vec<Result<Applied>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        apply_steps(&self.conn, &self.keys, &steps).await
    }
}

/// Checks and encodes `step`, then applies it through the store's batcher: at once from
/// the caller's task on an idle applier, else in the next batch.
pub(crate) async fn apply(applier: &Arc<Applier>, step: Transition) -> Result<Applied> {
    let step = encode_step(&applier.keys, step)?;
    submit(applier, step).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RedisConfig, RedisStateStore};
    use baseshift_core::conformance::fixtures::{TestWorkflow, make_ready, now_ms, write_job};
    use baseshift_core::store::ParentOutcome;
    use baseshift_core::{ErrorKind, JobStatus, StateStore};

    async fn store() -> RedisStateStore {
        let config = RedisConfig::builder()
            .key_prefix(format!("bstest-{}", uuid::Uuid::now_v7().simple()))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        RedisStateStore::connect(&config).await.unwrap_or_else(|e| panic!("Redis is not reachable: {e}"))
    }

    /// One script call of four steps: the stale one is refused (`Conflict`, nothing of it
    /// written) while the others apply; two steps on one workflow run in their order, the
    /// second seeing the first's write; each result goes to its own step.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_call_applies_or_refuses_each_step_on_its_own() -> Result<()> {
        let store = store().await;
        let (a, b) = (TestWorkflow::new().job("x", &[]).job("y", &["x"]), TestWorkflow::new().job("x", &[]));
        a.create(&store).await?;
        b.create(&store).await?;
        make_ready(&store, a.id(), &["x"], now_ms()).await?;
        make_ready(&store, b.id(), &["x"], now_ms()).await?;
        let ax = store.job(&a.key("x")).await?;
        let bx = store.job(&b.key("x")).await?;
        let earlier: Vec<u64> = store.outbox_pending(100).await?.iter().map(|e| e.seq).collect();
        store.outbox_ack(&earlier).await?;

        let mut running = ax.clone();
        running.status = JobStatus::Running;
        let mut done = running.clone();
        done.version += 1;
        done.status = JobStatus::Succeeded;
        done.propagated = true;
        let mut finish = write_job(done);
        finish.parent_outcomes.push(ParentOutcome { child: "y".into(), status: JobStatus::Succeeded });
        finish.terminal_delta = 1;
        let mut stale = bx.clone();
        stale.version -= 1;
        stale.status = JobStatus::Running;
        let mut fresh = bx.clone();
        fresh.status = JobStatus::Cancelled;
        let steps = [write_job(running), finish, write_job(stale), write_job(fresh)]
            .into_iter()
            .map(|s| encode_step(&store.keys, s))
            .collect::<Result<Vec<_>>>()?;
        let mut results = apply_steps(&store.conn, &store.keys, &steps).await.into_iter();

        let first = results.next().expect("four results")?;
        assert_eq!((first.remaining, first.ready.len()), (2, 0));
        let second = results.next().expect("four results")?;
        assert_eq!(
            (second.remaining, second.ready.clone()),
            (1, vec![baseshift_core::Name::from("y")]),
            "it saw the first write"
        );
        let refused = results.next().expect("four results").expect_err("a stale version");
        assert_eq!(refused.kind(), ErrorKind::Conflict);
        assert_eq!(refused.workflow_id(), Some(b.id().as_str()));
        let cancelled = results.next().expect("four results")?;
        assert_eq!(cancelled.remaining, 1, "no terminal delta in this step");
        assert!(results.next().is_none());

        assert_eq!(store.job(&a.key("x")).await?.status, JobStatus::Succeeded);
        assert_eq!(store.job(&a.key("y")).await?.status, JobStatus::Ready);
        let bx_now = store.job(&b.key("x")).await?;
        assert_eq!((bx_now.status, bx_now.version), (JobStatus::Cancelled, bx.version + 1));
        // The events of the applied steps only, in step order.
        let kinds: Vec<String> = store
            .outbox_pending(100)
            .await?
            .into_iter()
            .map(|e| format!("{}:{}", e.event.event_type, e.event.payload.job_id.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(kinds, ["job_running:x", "job_succeeded:x", "job_ready:y", "job_cancelled:x"]);
        store.purge().await?;
        Ok(())
    }

    /// A runtime error inside one step (a stored child record that does not parse) fails
    /// that step only, as `Internal`; the step after it in the same call still applies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runtime_error_fails_only_its_own_step() -> Result<()> {
        let store = store().await;
        let (a, b) = (TestWorkflow::new().job("x", &[]).job("y", &["x"]), TestWorkflow::new().job("x", &[]));
        a.create(&store).await?;
        b.create(&store).await?;
        let config = RedisConfig::from_env();
        let client = redis::Client::open(config.url.as_str()).unwrap_or_else(|e| panic!("{e}"));
        let mut raw = client.get_multiplexed_async_connection().await.unwrap_or_else(|e| panic!("{e}"));
        let _: i64 = redis::cmd("HSET")
            .arg(store.keys.jobs(a.id()))
            .arg("y")
            .arg("not json")
            .query_async(&mut raw)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut done = store.job(&a.key("x")).await?;
        done.status = JobStatus::Skipped;
        done.propagated = true;
        let mut broken = write_job(done);
        broken.parent_outcomes.push(ParentOutcome { child: "y".into(), status: JobStatus::Skipped });
        let mut ready = store.job(&b.key("x")).await?;
        ready.status = JobStatus::Ready;
        ready.ready_at = Some(now_ms());
        let steps =
            [broken, write_job(ready)].into_iter().map(|s| encode_step(&store.keys, s)).collect::<Result<Vec<_>>>()?;
        let mut results = apply_steps(&store.conn, &store.keys, &steps).await.into_iter();
        let err = results.next().expect("two results").expect_err("the child does not parse");
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        assert_eq!(err.workflow_id(), Some(a.id().as_str()));
        assert!(err.message().contains("apply script error"), "{err}");
        results.next().expect("two results")?;
        assert_eq!(store.job(&b.key("x")).await?.status, JobStatus::Ready);
        store.purge().await?;
        Ok(())
    }

    /// Concurrent applies through the store (queued behind the writers, so batched) each
    /// get their own result: one step per workflow applies, a second stale step per
    /// workflow is refused, whatever batch they shared.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_get_their_own_results() -> Result<()> {
        let store = store().await;
        let flows: Vec<TestWorkflow> = (0..40).map(|_| TestWorkflow::new().job("x", &[])).collect();
        for wf in &flows {
            wf.create(&store).await?;
        }
        let mut calls = Vec::new();
        for wf in &flows {
            let job = store.job(&wf.key("x")).await?;
            for _ in 0..2 {
                let mut ready = job.clone();
                ready.status = JobStatus::Ready;
                ready.ready_at = Some(now_ms());
                let store = store.clone();
                calls.push(tokio::spawn(async move { store.apply(write_job(ready)).await }));
            }
        }
        let mut applied = 0;
        for (i, call) in calls.into_iter().enumerate() {
            match call.await.unwrap_or_else(|e| panic!("{e}")) {
                Ok(_) => applied += 1,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                    assert_eq!(e.workflow_id(), Some(flows[i / 2].id().as_str()));
                }
            }
        }
        assert_eq!(applied, flows.len(), "one step per workflow applied");
        for wf in &flows {
            let job = store.job(&wf.key("x")).await?;
            assert_eq!((job.status, job.version), (JobStatus::Ready, 2));
        }
        store.purge().await?;
        Ok(())
    }
}
