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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The memory store, except that `list_workflows` fails while `down` is set (as an
/// unreachable backend does during `recover`), the `lose_reply`-th `apply` from now is
/// applied but answers `Unavailable` (a connection cut before the reply), and the
/// `refuse`-th is not applied and answers `Unavailable`. With `durable` it reports itself
/// durable; `claimed` counts the jobs its claims returned. `jobs_of` fails with
/// `batch_error` while it is set; `vanished` workflows read as absent in `jobs_of` and
/// `jobs` (removed after they were listed); `batch_reads` and `job_reads` count the
/// `jobs_of` and `jobs` calls.
struct Flaky {
    inner: MemoryStateStore,
    down: AtomicBool,
    lose_reply: AtomicUsize,
    refuse: AtomicUsize,
    durable: AtomicBool,
    claimed: AtomicUsize,
    batch_error: Mutex<Option<ErrorKind>>,
    vanished: Mutex<Vec<WorkflowId>>,
    batch_reads: AtomicUsize,
    job_reads: AtomicUsize,
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
            batch_error: Mutex::new(None),
            vanished: Mutex::new(Vec::new()),
            batch_reads: AtomicUsize::new(0),
            job_reads: AtomicUsize::new(0),
        })
    }

    fn vanished(&self, id: &WorkflowId) -> bool {
        self.vanished.lock().unwrap().contains(id)
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
        self.job_reads.fetch_add(1, Ordering::SeqCst);
        if self.vanished(id) {
            return Err(Error::not_found("no such workflow").with_workflow(id.as_str()));
        }
        self.inner.jobs(id, ids).await
    }
    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        self.batch_reads.fetch_add(1, Ordering::SeqCst);
        if let Some(kind) = *self.batch_error.lock().unwrap() {
            return Err(Error::new(kind, "the batch read failed"));
        }
        let mut all = self.inner.jobs_of(ids).await?;
        for (id, jobs) in ids.iter().zip(&mut all) {
            if self.vanished(id) {
                jobs.clear();
            }
        }
        Ok(all)
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

/// Writes `rec` (with its stored version) as a step of its own, counting a main job that
/// becomes terminal.
async fn write(store: &Flaky, rec: JobRecord) {
    let mut step = Transition::new(rec.workflow_id.clone());
    step.terminal_delta = u64::from(rec.status.is_terminal() && rec.compensation_of.is_none());
    step.jobs.push(rec);
    store.inner.apply(step).await.unwrap();
}

/// A workflow of `two` (`a -> b`) begun on `engine` (not launched) whose root then
/// `SUCCEEDED` without its outcome delivered to `b`: the half-done step `recover` finishes.
async fn half_done(engine: &Engine, store: &Flaky) -> WorkflowId {
    let id = engine.start("two", serde_json::json!({})).await.unwrap();
    let key = crate::JobKey::new(id.clone(), "a");
    let mut a = store.inner.job(&key).await.unwrap();
    assert_eq!(a.status, crate::JobStatus::Ready, "begun, not run: the engine is not launched");
    a.status = crate::JobStatus::Running;
    write(store, a).await;
    let mut a = store.inner.job(&key).await.unwrap();
    a.status = crate::JobStatus::Succeeded;
    a.output = Some(serde_json::json!(1));
    a.finished_at = Some(Utc::now());
    write(store, a).await;
    id
}

/// A `RUNNING` workflow whose template snapshot no longer compiles (its job type has no
/// runner): `resume` fails on it.
async fn unresumable(store: &Flaky) -> WorkflowId {
    let id = WorkflowId::generate();
    let template =
        WorkflowTemplate::new("broken", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "no-such-type"));
    let mut header = WorkflowRecord::initialized(id.clone(), "broken", "1.0.0", serde_json::json!({}));
    header.remaining = 1;
    let jobs = vec![JobRecord::pending(id.clone(), "a", "no-such-type", 0)];
    let new = NewWorkflow { header, jobs, template: Arc::new(template), events: vec![] };
    store.inner.create_workflow(new).await.unwrap();
    let mut header = store.inner.workflow(&id).await.unwrap();
    header.status = WorkflowStatus::Running;
    let mut step = Transition::new(id.clone());
    step.header = Some(Box::new(header));
    store.inner.apply(step).await.unwrap();
    id
}

/// An engine on `store` with the `two` template registered, not launched.
async fn engine_on(store: &Arc<Flaky>) -> Engine {
    let engine = Engine::builder().state_store(store.clone()).build().unwrap();
    let t = WorkflowTemplate::new("two", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop"))
        .job(JobSpec::new("b", "noop").depends_on(["a"]));
    engine.register_template(t).await.unwrap();
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_reads_a_pages_jobs_at_once_and_skips_what_it_cannot_resume() {
    let store = Flaky::new(false);
    let starter = engine_on(&store).await;
    let (first, broken, gone, last) = (
        half_done(&starter, &store).await,
        unresumable(&store).await,
        half_done(&starter, &store).await,
        half_done(&starter, &store).await,
    );
    store.vanished.lock().unwrap().push(gone.clone());
    let engine = engine_on(&store).await;
    let report = engine.launch().await.unwrap();
    assert_eq!((report.examined, report.started, report.failed), (4, 0, 1), "{report:?}");
    assert_eq!(report.resumed_steps, 2, "one propagation in each half-done workflow left: {report:?}");
    assert_eq!(store.batch_reads.load(Ordering::SeqCst), 1, "one batch read for the page");
    assert_eq!(store.job_reads.load(Ordering::SeqCst), 0, "no job read of its own per workflow");
    for id in [&first, &last] {
        let done = engine.wait_timeout(id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(done.status, WorkflowStatus::Completed, "{id} was resumed and ran `b`");
    }
    for id in [&broken, &gone] {
        assert_eq!(store.inner.workflow(id).await.unwrap().status, WorkflowStatus::Running, "{id} left alone");
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_read_stops_recovery_only_when_the_store_is_out() {
    let store = Flaky::new(false);
    let starter = engine_on(&store).await;
    let (one, two) = (half_done(&starter, &store).await, half_done(&starter, &store).await);
    let engine = engine_on(&store).await;
    for kind in [ErrorKind::Unavailable, ErrorKind::Timeout] {
        *store.batch_error.lock().unwrap() = Some(kind);
        let err = engine.launch().await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(store.job_reads.load(Ordering::SeqCst), 0, "no workflow read alone after {kind:?}");
    }
    // Any other failure of the batch: each workflow is read alone and resumed.
    *store.batch_error.lock().unwrap() = Some(ErrorKind::Internal);
    let report = engine.launch().await.unwrap();
    assert_eq!((report.examined, report.failed, report.resumed_steps), (2, 0, 2), "{report:?}");
    assert_eq!(store.job_reads.load(Ordering::SeqCst), 2, "each workflow read alone");
    for id in [&one, &two] {
        let done = engine.wait_timeout(id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(done.status, WorkflowStatus::Completed);
    }
    engine.shutdown().await;
}
