//! [`RedisStateStore`]: the [`StateStore`] on Redis.

mod batch;
mod codec;
mod create;
mod read;
mod retention;
mod write;

pub use retention::RedisRetention;

pub(crate) use codec::{array, text};
#[cfg(test)]
pub(crate) use codec::{decode_job, stored_job};

use crate::config::RedisConfig;
use crate::connection::{self, Conn};
use crate::keys::Keys;
use async_trait::async_trait;
use baseshift_core::store::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, StoreCapabilities,
    Transition, WorkflowFilter,
};
use baseshift_core::template::WorkflowTemplate;
use baseshift_core::{JobKey, JobRecord, Result, StateStore, WorkflowId, WorkflowRecord};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Durable workflow state on one Redis server (or a sentinel-fronted primary).
///
/// Each workflow is a header hash and a hash of job records (one value per job: a short
/// head the scripts read and edit as text, then the record's JSON, which they leave alone
/// where they can; the layout is described at `decode_job` in `codec.rs`), so a step
/// rewrites only the records it changes, and a claim only their heads. Every step ([`create_workflow`],
/// [`apply`], [`claim`], [`renew_lease`]) is one Lua script: one round trip, atomic,
/// checking every version and transition before it writes anything (a step that leaves
/// its workflow done also completes it, in the same script: *completion at zero*, with the
/// stored header and outputs edited and joined as text, never re-encoded). Concurrent
/// applies are coalesced into one script call (up to 64 steps; see [`apply`]), each step
/// still checked and applied or refused on its own. A batch of creates
/// ([`create_workflows`](StateStore::create_workflows)) is one pipeline of create
/// scripts, and a template snapshot this store has stored is not sent again. Batch reads
/// ([`workflows`](StateStore::workflows), [`jobs_of`](StateStore::jobs_of)) are one
/// pipeline per 1 000 ids, each workflow's jobs read by one read script. Claimable jobs sit
/// in three sorted sets (ready by [`JobRecord::queue_score`], delayed retries by due
/// time, leases by expiry), so a claim reads the head of the queue, never the keyspace.
/// Steps that make a job claimable publish on a wake-up channel, which
/// [`wait_for_work`](StateStore::wait_for_work) listens to through the same multiplexed
/// connection (RESP3 push messages): an idle engine starts new work within milliseconds.
///
/// Times (`ready_at`, lease expiry) come from the calling host's clock; keep the hosts
/// sharing a store in NTP sync. Redis Cluster is not supported: the queue and outbox keys
/// are global, and the claim script reads job hashes of many workflows.
///
/// [`create_workflow`]: StateStore::create_workflow
/// [`apply`]: StateStore::apply
/// [`claim`]: StateStore::claim
/// [`renew_lease`]: StateStore::renew_lease
#[derive(Clone)]
pub struct RedisStateStore {
    conn: Conn,
    keys: Keys,
    wake: Arc<Notify>,
    snapshots: Arc<create::SnapshotCache>,
    /// The queue coalescing concurrent applies into one script call.
    applier: Arc<batch::Applier>,
    /// When a claim last found nothing, and the next retry due then: a wait right after
    /// it needs no check of its own (the claim promoted every due retry).
    empty_claim: Arc<Mutex<Option<EmptyClaim>>>,
}

/// When a claim found nothing, and the next retry due as it saw it.
type EmptyClaim = (Instant, Option<DateTime<Utc>>);

/// How recent an empty claim must be for [`StateStore::wait_for_work`] to rely on it.
const FRESH_CLAIM: Duration = Duration::from_millis(20);

impl std::fmt::Debug for RedisStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStateStore").field("key_prefix", &self.keys.prefix()).finish_non_exhaustive()
    }
}

impl RedisStateStore {
    /// Connects with `config` (validated first) and subscribes to the wake-up channel.
    ///
    /// Fails with `Unavailable` if the server cannot be reached, `InvalidInput` if the
    /// settings or credentials are wrong.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        config.validate()?;
        let keys = Keys::new(&config.key_prefix);
        let wake = Arc::new(Notify::new());
        let conn = connection::connect_with_wakeups(config, &keys.wake_channel(), wake.clone()).await?;
        let applier = Arc::new(batch::Applier::new(conn.clone(), keys.clone()));
        Ok(RedisStateStore { conn, keys, wake, snapshots: Arc::default(), applier, empty_claim: Arc::default() })
    }

    /// Connects with [`RedisConfig::from_env`] (the URL from `BASESHIFT_REDIS_URL`).
    pub async fn from_env() -> Result<Self> {
        Self::connect(&RedisConfig::from_env()).await
    }

    /// The key prefix this store writes under.
    pub fn key_prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Deletes every key under this store's prefix (workflows, queues, outbox, template
    /// cache entries) and returns how many were removed: for tests and tear-downs. Other
    /// instances using the prefix lose their state too.
    pub async fn purge(&self) -> Result<u64> {
        self.snapshots.clear();
        read::purge(&self.conn, &self.keys).await
    }

    /// How many apply script calls (round trips) this store and its clones have sent:
    /// fewer than their [`apply`](StateStore::apply) calls when concurrent steps were
    /// coalesced. For benchmarks and metrics.
    pub fn apply_script_calls(&self) -> u64 {
        self.applier.calls()
    }

    /// Deletes workflows that finished (`COMPLETED`, `FAILED`, `CANCELLED`) more than
    /// `older_than` ago, with their job records, outputs, index entries, dead letters and
    /// idempotency keys, in scripts of 200 workflows each (so no single script blocks the
    /// server for long). Workflows that are not finished are never touched; one replayed
    /// after it failed runs again and is not removed. Template snapshots and events still
    /// in the outbox are kept. Without it Redis keeps every workflow ever run.
    ///
    /// Finish times are indexed as workflows finish; workflows finished before this
    /// version of the store are not indexed and are left alone.
    pub async fn apply_retention(&self, older_than: Duration) -> Result<RedisRetention> {
        retention::apply(&self.conn, &self.keys, older_than).await
    }
}

#[async_trait]
impl StateStore for RedisStateStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::new(crate::BACKEND, true, true)
    }

    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        create::create(&self.conn, &self.keys, &self.snapshots, new).await
    }

    /// One pipeline of create scripts (a second round only for creates answered
    /// `NOSCRIPT` or asked for their template snapshot).
    async fn create_workflows(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        create::create_many(&self.conn, &self.keys, &self.snapshots, news).await
    }

    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        read::workflow(&self.conn, &self.keys, id).await
    }

    /// One pipeline of `HMGET`s (one round trip) per 1 000 ids.
    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        read::workflows(&self.conn, &self.keys, ids).await
    }

    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        read::job(&self.conn, &self.keys, key).await
    }

    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        read::jobs(&self.conn, &self.keys, id, ids).await
    }

    /// One pipeline of read scripts (one round trip) per 1 000 ids, each workflow read
    /// atomically as [`jobs`](StateStore::jobs) reads it.
    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        read::jobs_of(&self.conn, &self.keys, ids).await
    }

    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        read::template(&self.conn, &self.keys, template_id, version).await
    }

    /// Concurrent steps are coalesced: while the store's script calls are in flight,
    /// queued steps go together in the next call (up to 64), each still checked and
    /// applied or refused on its own, with its own result.
    async fn apply(&self, step: Transition) -> Result<Applied> {
        batch::apply(&self.applier, step).await
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Claimed> {
        let claimed = write::claim(&self.conn, &self.keys, req).await?;
        let seen = claimed.jobs.is_empty().then(|| (Instant::now(), claimed.next_ready_at));
        *self.empty_claim.lock().unwrap_or_else(PoisonError::into_inner) = seen;
        Ok(claimed)
    }

    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        write::renew(&self.conn, &self.keys, key, token, ttl).await
    }

    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        read::list(&self.conn, &self.keys, filter).await
    }

    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
        read::dead_letters(&self.conn, &self.keys, filter).await
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        read::outbox_pending(&self.conn, &self.keys, limit).await
    }

    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()> {
        write::outbox_ack(&self.conn, &self.keys, seqs).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        // Registered before the check, so a wake-up published meanwhile is not missed.
        let notified = self.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let recent = self.empty_claim.lock().unwrap_or_else(PoisonError::into_inner).take();
        let checked = match recent {
            // Right after a claim that found nothing: it promoted what was due and said
            // when the next retry is due; a retry scheduled since publishes a wake-up.
            Some((at, next)) if at.elapsed() < FRESH_CLAIM => Ok((0, next)),
            _ => write::promote_due(&self.conn, &self.keys).await,
        };
        let timeout = match checked {
            Ok((promoted, _)) if promoted > 0 => return,
            Ok((_, Some(next))) => {
                let until = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                timeout.min(until.max(Duration::from_millis(1)))
            }
            Ok((_, None)) => timeout,
            Err(e) => {
                tracing::debug!(error = %e, "checking for due retries failed; waiting anyway");
                timeout
            }
        };
        let _ = tokio::time::timeout(timeout, notified).await;
    }
}
