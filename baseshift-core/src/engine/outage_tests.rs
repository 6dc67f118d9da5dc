//! The engine when the store fails: a launch whose recovery failed can be retried, and a
//! step applied whose reply was lost still gets its follow-up steps. Also local dispatch,
//! on the same store posing as a durable one.

use super::*;
use crate::state::WorkflowStatus;
use crate::store::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, StoreCapabilities,
    Transition,
};
use crate::template::JobSpec;
use crate::{MemoryStateStore, WorkflowId};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The memory store, except that `list_workflows` fails while `down` is set (as an
/// unreachable backend does during `recover`), the `lose_reply`-th `apply` from now is
/// applied but answers `Unavailable` (a connection cut before the reply), and the
/// `refuse`-th is not applied and answers `Unavailable`. With `durable` it reports itself
/// durable; `claimed` counts the jobs its claims returned.
struct Flaky {
    inner: MemoryStateStore,
    down: AtomicBool,
    lose_reply: AtomicUsize,
    refuse: AtomicUsize,
    durable: AtomicBool,
    claimed: AtomicUsize,
}

/// Counts `n` down; true when it reaches zero now.
fn due(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) == Ok(1)
}

impl Flaky {
    fn new(down: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: MemoryStateStore::new(),
            down: AtomicBool::new(down),
            lose_reply: AtomicUsize::new(0),
            refuse: AtomicUsize::new(0),
            durable: AtomicBool::new(false),
            claimed: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl StateStore for Flaky {
    fn capabilities(&self) -> StoreCapabilities {
        let caps = self.inner.capabilities();
        if self.durable.load(Ordering::SeqCst) { StoreCapabilities::new(caps.name, true, caps.shared) } else { caps }
    }
    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        self.inner.create_workflow(new).await
    }
    async fn create_workflows(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        self.inner.create_workflows(news).await
    }
    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        self.inner.workflow(id).await
    }
    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        self.inner.workflows(ids).await
    }
    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        self.inner.job(key).await
    }
    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        self.inner.jobs(id, ids).await
    }
    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        self.inner.jobs_of(ids).await
    }
    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        self.inner.template(template_id, version).await
    }
    async fn apply(&self, step: Transition) -> Result<Applied> {
        if due(&self.refuse) {
            return Err(Error::new(ErrorKind::Unavailable, "connection refused"));
        }
        let applied = self.inner.apply(step).await?;
        if due(&self.lose_reply) {
            return Err(Error::new(ErrorKind::Unavailable, "connection reset before the reply"));
        }
        Ok(applied)
    }
    async fn claim(&self, req: ClaimRequest) -> Result<Claimed> {
        let claimed = self.inner.claim(req).await?;
        self.claimed.fetch_add(claimed.jobs.len(), Ordering::SeqCst);
        Ok(claimed)
    }
    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        self.inner.renew_lease(key, token, ttl).await
    }
    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Unavailable, "the store is down"));
        }
        self.inner.list_workflows(filter).await
    }
    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
        self.inner.dead_letters(filter).await
    }
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.inner.outbox_pending(limit).await
    }
    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()> {
        self.inner.outbox_ack(seqs).await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        self.inner.wait_for_work(timeout).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_after_a_failed_recovery_starts_the_workers() {
    let store = Flaky::new(true);
    let engine = Engine::builder().state_store(store.clone()).build().unwrap();
    let err = engine.launch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    store.down.store(false, Ordering::SeqCst);
    engine.launch().await.unwrap();
    let t = WorkflowTemplate::new("one", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "noop"));
    engine.register_template(t).await.unwrap();
    let id = engine.start("one", serde_json::json!({})).await.unwrap();
    let done = engine.wait_timeout(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.status, WorkflowStatus::Completed, "the second launch started the workers");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_on_the_last_job_still_finalizes_the_workflow() {
    let store = Flaky::new(false);
    let config = EngineConfig { poll_interval: Duration::from_millis(50), ..EngineConfig::default() };
    let engine = Engine::builder().config(config).state_store(store.clone()).build().unwrap();
    engine.launch().await.unwrap();
    let t = WorkflowTemplate::new("one", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "noop"));
    engine.register_template(t).await.unwrap();
    // The workflow is created already begun, so apply #1 records `a`'s success: its reply
    // is lost, so the worker never finalizes; the repair does.
    store.lose_reply.store(1, Ordering::SeqCst);
    let id = engine.start("one", serde_json::json!({})).await.unwrap();
    let done = engine.wait_timeout(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.status, WorkflowStatus::Completed);
    assert_eq!(store.lose_reply.load(Ordering::SeqCst), 0, "the reply was lost");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_retried_with_its_key_begins_the_workflow_the_first_could_not() {
    let store = Flaky::new(false);
    let engine = Engine::builder().state_store(store.clone()).build().unwrap();
    // A root condition keeps `begin` a step of its own after the create (apply #1).
    let t = WorkflowTemplate::new("one", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "noop").when("true"));
    engine.register_template(t).await.unwrap();
    store.refuse.store(1, Ordering::SeqCst);
    let req = StartRequest::new("one").idempotency_key("k");
    let err = engine.start_with(req.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let id = engine.start_with(req).await.unwrap();
    assert_eq!(engine.status(&id).await.unwrap().workflow.status, WorkflowStatus::Running, "begun by the retry");
    engine.launch().await.unwrap();
    let done = engine.wait_timeout(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.status, WorkflowStatus::Completed);
    engine.shutdown().await;
}

/// Runs `n` one-job workflows, one after another, on a store posing as durable; returns
/// how many jobs claims returned, and checks every job ran once.
async fn run_started_here(local_dispatch: bool, n: usize) -> usize {
    let store = Flaky::new(false);
    store.durable.store(true, Ordering::SeqCst);
    let config = EngineConfig { local_dispatch, ..EngineConfig::default() };
    let engine = Engine::builder().config(config).state_store(store.clone()).build().unwrap();
    let t = WorkflowTemplate::new("one", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "noop"));
    engine.register_template(t).await.unwrap();
    engine.launch().await.unwrap();
    // Local dispatch waits for a claim that found no backlog.
    while !engine.inner.drained.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..n {
        let id = engine.start("one", serde_json::json!({})).await.unwrap();
        let done = engine.wait_timeout(&id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(done.status, WorkflowStatus::Completed);
        let job = store.inner.job(&crate::JobKey::new(id.clone(), "a")).await.unwrap();
        assert_eq!((job.status, job.attempt), (crate::JobStatus::Succeeded, 1), "{id}");
    }
    // The waiter may wake before the worker frees its slot.
    let freed = tokio::time::timeout(Duration::from_secs(5), async {
        while engine.inner.total_running.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert!(freed.await.is_ok(), "every reserved slot was freed");
    engine.shutdown().await;
    store.claimed.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dispatch_runs_the_roots_a_start_claimed_without_a_claim() {
    assert_eq!(run_started_here(true, 5).await, 0, "with local dispatch no claim returned a job");
    assert_eq!(run_started_here(false, 5).await, 5, "without it every job came from a claim");
}
