//! The Redis backend for the durable scenarios, and its raw-command baseline.

use crate::cli::Options;
use crate::durable::{Durable, Fresh};
use crate::report::note;
use async_trait::async_trait;
use baseshift_core::store::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, StoreCapabilities,
    Transition, WorkflowFilter,
};
use baseshift_core::template::WorkflowTemplate;
use baseshift_core::{Error, ErrorKind, JobKey, JobRecord, JobStatus, Result, StateStore, WorkflowId, WorkflowRecord};
use baseshift_redis::{RedisConfig, RedisStateStore};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Round trips per job the design needs on the hot path: the job's claim (shared by a
/// batch) and one step recording its outcome with whatever follows from it.
const DESIGN_ROUND_TRIPS: f64 = 2.0;

/// Workflows whose jobs one `jobs_of` pipeline of the Redis store reads (one round trip
/// each), as `baseshift-redis` sends them.
const JOB_LISTS_PER_PIPELINE: usize = 1000;

/// Redis at the URL of `BASESHIFT_REDIS_URL` (default `redis://127.0.0.1:6379`); every
/// fresh store gets its own key prefix under `prefix`.
pub struct Redis {
    url: String,
    prefix: String,
    client: redis::Client,
    /// Pairs per second of `hset-publish-pipelined`, measured at connect for the notes.
    pipelined: f64,
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::new(ErrorKind::Unavailable, format!("redis: {e} (scripts/services.sh starts a local Redis)"))
}

impl Redis {
    /// Connects a client for the counters and notes the server's persistence settings.
    pub async fn connect(prefix: String) -> Result<Redis> {
        let url = RedisConfig::from_env().url;
        let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
        let mut redis = Redis { url, prefix, client, pipelined: 0.0 };
        let mut con = redis.client.get_multiplexed_async_connection().await.map_err(unavailable)?;
        let mut settings = Vec::new();
        for key in ["appendonly", "appendfsync", "save"] {
            let pair: Vec<String> =
                redis::cmd("CONFIG").arg("GET").arg(key).query_async(&mut con).await.map_err(unavailable)?;
            settings.push(pair.join("="));
        }
        note(format!("redis server settings: {}", settings.join(" ")));
        redis.pipelined = pipelined_rate(&mut con, &format!("{}-bound", redis.prefix)).await?;
        note(format!(
            "redis pipelined bound for the round-trip notes: {:.0} HSET+PUBLISH pairs/s (pipelines of 1 000)",
            redis.pipelined
        ));
        Ok(redis)
    }

    /// The raw `HSET` + `PUBLISH` baselines.
    pub async fn baselines(&self, opts: &Options) -> Result<()> {
        crate::baselines::redis(&self.url, &format!("{}-raw", self.prefix), opts.size(20_000, 100)).await
    }
}

/// 20 000 `HSET` + `PUBLISH` pairs in pipelines of 1 000 (as `hset-publish-pipelined`):
/// pairs per second. Its keys are deleted.
async fn pipelined_rate(con: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Result<f64> {
    const PAIRS: usize = 20_000;
    let t0 = Instant::now();
    for first in (0..PAIRS).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in first..first + 1_000 {
            pipe.cmd("HSET").arg(format!("{prefix}:h:{i}")).arg("status").arg("done").ignore();
            pipe.cmd("PUBLISH").arg(format!("{prefix}:ch")).arg(i).ignore();
        }
        pipe.query_async::<()>(con).await.map_err(unavailable)?;
    }
    let rate = PAIRS as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    for first in (0..PAIRS).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in first..first + 1_000 {
            pipe.cmd("UNLINK").arg(format!("{prefix}:h:{i}")).ignore();
        }
        pipe.query_async::<()>(con).await.map_err(unavailable)?;
    }
    Ok(rate)
}

struct FreshRedis {
    store: Arc<Counting>,
    tag: String,
    pipelined: f64,
}

#[async_trait(?Send)]
impl Fresh for FreshRedis {
    fn store(&self) -> Arc<dyn StateStore> {
        self.store.clone()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.store.calls.report(&self.tag, self.pipelined, self.store.inner.apply_script_calls());
        self.store.inner.purge().await.map(|_| ())
    }
}

#[async_trait(?Send)]
impl Durable for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn open(&self, tag: &str) -> Result<Box<dyn Fresh>> {
        let config =
            RedisConfig::builder().url(self.url.clone()).key_prefix(format!("{}-{tag}", self.prefix)).build()?;
        let store = RedisStateStore::connect(&config).await?;
        store.purge().await?;
        let store = Arc::new(Counting { inner: Arc::new(store), calls: Arc::default() });
        Ok(Box::new(FreshRedis { store, tag: tag.to_owned(), pipelined: self.pipelined }))
    }

    async fn counter(&self) -> Result<(u64, &'static str)> {
        let mut con = self.client.get_multiplexed_async_connection().await.map_err(unavailable)?;
        let info: String = redis::cmd("INFO").arg("stats").query_async(&mut con).await.map_err(unavailable)?;
        let total = info
            .lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::internal("redis INFO stats has no total_commands_processed"))?;
        Ok((total, "redis commands (Lua-internal calls included)"))
    }
}

/// Store calls by kind (each one round trip to Redis; a `jobs_of` batch one per pipeline
/// it takes), for the hot-path notes.
#[derive(Default)]
struct Calls {
    created: AtomicU64,
    claimed: AtomicU64,
    claim: AtomicU64,
    apply: AtomicU64,
    header: AtomicU64,
    records: AtomicU64,
    outbox: AtomicU64,
    wait: AtomicU64,
    other: AtomicU64,
    /// When the first job was claimed and when the last call was made.
    window: Mutex<(Option<Instant>, Option<Instant>)>,
}

impl Calls {
    fn count(&self, kind: &AtomicU64) {
        kind.fetch_add(1, Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        w.1 = Some(Instant::now());
    }

    fn claimed(&self, jobs: usize) {
        if jobs > 0 {
            self.claimed.fetch_add(jobs as u64, Ordering::Relaxed);
            let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            w.0.get_or_insert_with(Instant::now);
        }
    }

    /// The notes of one fresh store: round trips per claimed job on the hot path (creates
    /// left out), and the bound they give with the pipelined rate `pipelined`. Applies
    /// count as the `apply_scripts` script calls the store sent for them (it coalesces
    /// concurrent ones), not as one round trip each.
    fn report(&self, tag: &str, pipelined: f64, apply_scripts: u64) {
        let jobs = self.claimed.load(Ordering::Relaxed);
        let (Some(first), Some(last)) = *self.window.lock().unwrap_or_else(PoisonError::into_inner) else {
            return;
        };
        if jobs == 0 {
            return;
        }
        let per = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / jobs as f64;
        let parts = [
            ("claim", per(&self.claim)),
            ("apply", apply_scripts as f64 / jobs as f64),
            ("header reads", per(&self.header)),
            ("job reads", per(&self.records)),
            ("outbox pending+ack", per(&self.outbox)),
            ("wait_for_work", per(&self.wait)),
            ("other", per(&self.other)),
        ];
        let total: f64 = parts.iter().map(|(_, n)| n).sum();
        let list = parts.iter().map(|(k, n)| format!("{k} {n:.2}")).collect::<Vec<_>>().join(", ");
        let list = format!("{list}; apply calls {:.2} per job, coalesced into those scripts", per(&self.apply));
        note(format!(
            "redis {tag}: {total:.2} round trips per job on the hot path ({list}; creates not counted: the producer makes them, and with local dispatch a create also claims its roots)"
        ));
        let secs = last.duration_since(first).as_secs_f64().max(1e-9);
        let rate = jobs as f64 / secs;
        let bound = pipelined / total.max(1e-9);
        let design = pipelined / DESIGN_ROUND_TRIPS;
        note(format!(
            "redis {tag}: bound = pipelined {pipelined:.0}/s / {total:.2} = {bound:.0} jobs/s; the store saw {rate:.0} jobs/s \
             (first claim to last call) = {:.1}% of it; with the {DESIGN_ROUND_TRIPS} round trips per job the design needs, \
             {pipelined:.0} / {DESIGN_ROUND_TRIPS} = {design:.0}/s, of which the store saw {:.1}%; the target, 40% of it, is \
             {:.0}/s, of which the store saw {:.1}%",
            100.0 * rate / bound,
            100.0 * rate / design,
            0.4 * design,
            100.0 * rate / (0.4 * design)
        ));
    }
}

/// The store of a fresh prefix, counting its calls.
struct Counting {
    inner: Arc<RedisStateStore>,
    calls: Arc<Calls>,
}

#[async_trait]
impl StateStore for Counting {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        self.calls.created.fetch_add(1, Ordering::Relaxed);
        // Roots claimed in the create step (local dispatch) count as claimed jobs.
        self.calls.claimed(new.jobs.iter().filter(|j| j.status == JobStatus::Running).count());
        self.inner.create_workflow(new).await
    }
    async fn create_workflows(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        self.calls.created.fetch_add(news.len() as u64, Ordering::Relaxed);
        self.inner.create_workflows(news).await
    }
    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        self.calls.count(&self.calls.header);
        self.inner.workflow(id).await
    }
    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        self.calls.count(&self.calls.header);
        self.inner.workflows(ids).await
    }
    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        self.calls.count(&self.calls.records);
        self.inner.job(key).await
    }
    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        self.calls.count(&self.calls.records);
        self.inner.jobs(id, ids).await
    }
    /// A job read per pipeline the store sends (one per [`JOB_LISTS_PER_PIPELINE`] ids).
    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        for _ in 0..ids.len().div_ceil(JOB_LISTS_PER_PIPELINE) {
            self.calls.count(&self.calls.records);
        }
        self.inner.jobs_of(ids).await
    }
    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        self.calls.count(&self.calls.other);
        self.inner.template(template_id, version).await
    }
    async fn apply(&self, step: Transition) -> Result<Applied> {
        self.calls.count(&self.calls.apply);
        self.inner.apply(step).await
    }
    async fn claim(&self, req: ClaimRequest) -> Result<Claimed> {
        self.calls.count(&self.calls.claim);
        let claimed = self.inner.claim(req).await?;
        self.calls.claimed(claimed.jobs.len());
        Ok(claimed)
    }
    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        self.calls.count(&self.calls.other);
        self.inner.renew_lease(key, token, ttl).await
    }
    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        self.calls.count(&self.calls.other);
        self.inner.list_workflows(filter).await
    }
    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
        self.calls.count(&self.calls.other);
        self.inner.dead_letters(filter).await
    }
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.calls.count(&self.calls.outbox);
        self.inner.outbox_pending(limit).await
    }
    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()> {
        self.calls.count(&self.calls.outbox);
        self.inner.outbox_ack(seqs).await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        self.calls.count(&self.calls.wait);
        self.inner.wait_for_work(timeout).await
    }
}
