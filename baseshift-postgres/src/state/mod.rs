//! [`PostgresStateStore`]: workflow state in PostgreSQL tables.

mod apply;
mod batch;
mod claim;
mod create;
mod dead;
mod plan;

pub(crate) use batch::{Batcher, batcher};
pub(crate) use create::Snapshots;

use crate::backend::Shared;
use crate::error::{BACKEND, backend_error, db};
use crate::rows::{JobRow, WorkflowRow, job_columns, micros, workflow_columns};
use async_trait::async_trait;
use baseshift_core::store::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, StateStore,
    StoreCapabilities, Transition, WorkflowFilter,
};
use baseshift_core::{
    Error, ErrorKind, Event, JobKey, JobRecord, Name, Result, WorkflowId, WorkflowRecord, WorkflowTemplate,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::types::Json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_PAGE: i64 = 100;

/// How a transaction's statements are planned; see [`begin`].
#[derive(Clone, Copy, Debug)]
pub(super) enum Plans {
    /// Statements that find rows by key (the primary keys, `unnest` of key arrays): the
    /// generic plan is the plan a custom one would be.
    Keyed,
    /// The claim: its scans read the first rows of `jobs_ready` / `jobs_leases` in index
    /// order, and without `enable_sort` their generic plans do too (with it, they sort every
    /// ready job, as the `LIMIT` of a generic plan is unknown).
    Claim,
}

/// Opens a transaction in one round trip, its statements' generic plans forced for the
/// transaction only (`SET LOCAL plan_cache_mode`).
///
/// PostgreSQL's default mode planned the hot statements afresh on every execution (their
/// generic plans are estimated dearer than a custom one), and planning was about a
/// quarter of the server's CPU in the `process` benchmark. JIT compilation is off too: it
/// pays only for long queries, and under `enable_sort = off` a sort a statement cannot do
/// without (an `ORDER BY` of a few rows) is costed as disabled, which would put its plan
/// above `jit_above_cost` and compile it (about a second) at every execution. Reads
/// outside these transactions keep the default: a list's optional filters
/// (`$2 IS NULL OR id > $2`) need a plan made for the values.
pub(super) async fn begin(
    shared: &Shared,
    plans: Plans,
) -> std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    shared.pool.begin_with(begin_sql(plans)).await
}

fn begin_sql(plans: Plans) -> &'static str {
    macro_rules! begin_generic {
        ($($more:literal)?) => {
            concat!("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL jit = off" $(, $more)?)
        };
    }
    match plans {
        Plans::Keyed => begin_generic!(),
        Plans::Claim => begin_generic!("; SET LOCAL enable_sort = off"),
    }
}

const HEADER: &str = concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE id = $1");
const HEADERS: &str = concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE id = ANY($1::text[])");
/// The most ids one `workflows` statement asks for (a longer list takes several).
const HEADERS_CHUNK: usize = 10_000;
const JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE workflow_id = $1 AND job_id = $2");
const ALL_JOBS: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE workflow_id = $1 ORDER BY ordinal");
const JOBS_OF: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE workflow_id = ANY($1::text[]) ORDER BY workflow_id, ordinal");
/// The most workflows one `jobs_of` statement asks for (a longer list takes several).
const JOBS_OF_CHUNK: usize = 1000;
const SOME_JOBS: &str =
    concat!("SELECT ", job_columns!(), " FROM jobs WHERE workflow_id = $1 AND job_id = ANY($2::text[])");
const LIST: &str = concat!(
    "SELECT ",
    workflow_columns!(),
    " FROM workflows WHERE (cardinality($1::text[]) = 0 OR status = ANY($1::text[])) \
       AND ($2::text IS NULL OR id > $2::text) ORDER BY id LIMIT $3"
);

/// The PostgreSQL [`StateStore`]: a `workflows` row per header, a `jobs` row per job, an
/// `outbox` row per event, so no step rewrites a whole workflow.
///
/// - **Versions** are checked on rows locked with `SELECT ... FOR UPDATE` (the header
///   first, then the jobs by id, so concurrent steps on one workflow never deadlock);
///   a stale version is a `Conflict` and the transaction writes nothing.
/// - **`apply`** is two statements per step: one locking read of the header and then the
///   jobs (written ones and children), then one statement writing the header, the jobs,
///   the events and the wake-up. Children's counters and `ChildDecision`s are computed in
///   Rust on the locked rows. Concurrent steps are group-committed: while every writer
///   is busy, steps queue up and the next free writer applies all queued steps (up to 64)
///   in one transaction with one commit; each caller still gets its own result, and only
///   after the commit. A lone step is applied at once (no timer).
/// - **`create_workflow(s)`** is one statement per workflow; a batch shares one
///   transaction (up to 1 000 workflows), each workflow failing or succeeding alone. A
///   template snapshot this process already stored is not sent again.
/// - **Completion at zero**: a step asking for it whose stored `remaining` it can bring
///   to 0 locks every job row of the workflow in that same read, so the step that
///   finishes a workflow's last job also stores the completed header and its
///   `workflow_completed` event in its one write (no separate finalize transaction).
/// - **`workflows`** reads any number of headers in one statement per 10 000 ids;
///   **`jobs_of`** reads every job of any number of workflows in one statement per 1 000
///   distinct ids.
/// - **`claim`** locks candidates with `FOR UPDATE SKIP LOCKED` through the partial
///   indexes `jobs_leases` (expired leases) and `jobs_ready` (ready jobs by
///   `queue_score`), so concurrent claims never wait for each other nor share a job. The
///   ready scan starts at the claim floor, a lower bound on the ready jobs' scores that
///   claims raise every 128 jobs and writes readying a job lower (migration 0004), so it
///   does not step over the dead index entries of every job claimed since the last
///   vacuum; the expired-lease scan likewise starts at the lease floor (migration 0005).
/// - **`wait_for_work`** wakes on `NOTIFY baseshift_work` (sent when a step makes a job
///   ready), falling back to its timeout.
/// - Timestamps are kept to the microsecond; records returned by the store carry the
///   stored values. `renew_lease` does not change `version`; the store-maintained
///   `remaining` changes without bumping the header's version.
///
/// Obtain one from [`Postgres::state_store`](crate::Postgres::state_store).
#[derive(Clone)]
pub struct PostgresStateStore {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for PostgresStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStateStore").field("schema", &self.shared.config.schema).finish_non_exhaustive()
    }
}

impl PostgresStateStore {
    async fn workflow_exists(&self, id: &WorkflowId, op: &'static str) -> Result<()> {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM workflows WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(db(op))?;
        match found {
            Some(_) => Ok(()),
            None => Err(backend_error(ErrorKind::NotFound, op, "no such workflow").with_workflow(id.as_str())),
        }
    }
}

#[async_trait]
impl StateStore for PostgresStateStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::new(BACKEND, true, true)
    }

    async fn create_workflow(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        self.create(new).await
    }

    async fn create_workflows(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        self.create_many(news).await
    }

    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        const OP: &str = "StateStore::workflow";
        let row: Option<WorkflowRow> =
            sqlx::query_as(HEADER).bind(id.as_str()).fetch_optional(&self.shared.pool).await.map_err(db(OP))?;
        row.ok_or_else(|| backend_error(ErrorKind::NotFound, OP, "no such workflow").with_workflow(id.as_str()))?
            .into_record()
    }

    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
        const OP: &str = "StateStore::workflows";
        let mut found: HashMap<String, WorkflowRecord> = HashMap::with_capacity(ids.len().min(HEADERS_CHUNK));
        for chunk in ids.chunks(HEADERS_CHUNK) {
            let mut asked: Vec<&str> = chunk.iter().map(WorkflowId::as_str).collect();
            asked.sort_unstable();
            asked.dedup();
            let rows: Vec<WorkflowRow> =
                sqlx::query_as(HEADERS).bind(asked).fetch_all(&self.shared.pool).await.map_err(db(OP))?;
            for row in rows {
                let rec = row.into_record()?;
                found.insert(rec.id.as_str().to_owned(), rec);
            }
        }
        Ok(ids.iter().filter_map(|id| found.get(id.as_str()).cloned()).collect())
    }

    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        const OP: &str = "StateStore::job";
        let row: Option<JobRow> = sqlx::query_as(JOB)
            .bind(key.workflow_id.as_str())
            .bind(key.job_id.as_str())
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(db(OP))?;
        row.ok_or_else(|| {
            backend_error(ErrorKind::NotFound, OP, "no such job")
                .with_workflow(key.workflow_id.as_str())
                .with_job(&key.job_id)
        })?
        .into_record()
    }

    async fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        const OP: &str = "StateStore::jobs";
        let rows: Vec<JobRow> = match ids {
            None => sqlx::query_as(ALL_JOBS).bind(id.as_str()).fetch_all(&self.shared.pool).await,
            Some(ids) => sqlx::query_as(SOME_JOBS).bind(id.as_str()).bind(ids).fetch_all(&self.shared.pool).await,
        }
        .map_err(db(OP))?;
        if rows.is_empty() {
            self.workflow_exists(id, OP).await?;
        }
        let records = rows.into_iter().map(JobRow::into_record).collect::<Result<Vec<_>>>()?;
        Ok(match ids {
            None => records,
            Some(ids) => {
                let mut by_id: HashMap<Name, JobRecord> = records.into_iter().map(|r| (r.job_id.clone(), r)).collect();
                ids.iter().filter_map(|j| by_id.remove(j.as_str())).collect()
            }
        })
    }

    /// One statement (`workflow_id = ANY($1)`) per 1 000 distinct ids, its rows grouped
    /// back per id; a workflow without rows (absent) gets an empty list.
    async fn jobs_of(&self, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
        const OP: &str = "StateStore::jobs_of";
        let mut asked: Vec<&str> = ids.iter().map(WorkflowId::as_str).collect();
        asked.sort_unstable();
        asked.dedup();
        let mut found: HashMap<String, Vec<JobRecord>> = HashMap::with_capacity(asked.len().min(JOBS_OF_CHUNK));
        for chunk in asked.chunks(JOBS_OF_CHUNK) {
            let rows: Vec<JobRow> =
                sqlx::query_as(JOBS_OF).bind(chunk).fetch_all(&self.shared.pool).await.map_err(db(OP))?;
            for row in rows {
                let workflow = row.workflow_id.clone();
                let rec = row.into_record().map_err(|e| e.with_workflow(workflow.as_str()))?;
                found.entry(workflow).or_default().push(rec);
            }
        }
        Ok(ids.iter().map(|id| found.get(id.as_str()).cloned().unwrap_or_default()).collect())
    }

    async fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        const OP: &str = "StateStore::template";
        let body: Option<Json<WorkflowTemplate>> =
            sqlx::query_scalar("SELECT body FROM template_snapshots WHERE template_id = $1 AND version = $2")
                .bind(template_id)
                .bind(version)
                .fetch_optional(&self.shared.pool)
                .await
                .map_err(db(OP))?;
        body.map(|b| b.0).ok_or_else(|| {
            backend_error(ErrorKind::NotFound, OP, format!("no snapshot of template `{template_id}` {version}"))
        })
    }

    async fn apply(&self, step: Transition) -> Result<Applied> {
        batch::apply(&self.shared, step).await
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Claimed> {
        self.claim_jobs(req).await
    }

    async fn renew_lease(&self, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
        const OP: &str = "StateStore::renew_lease";
        let ctx = |e: Error| e.with_operation(OP).with_workflow(key.workflow_id.as_str()).with_job(&key.job_id);
        let now = Utc::now();
        let expires_at = TimeDelta::from_std(ttl)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .map(micros)
            .ok_or_else(|| ctx(Error::invalid_input(format!("lease ttl {ttl:?} is out of range"))))?;
        let renewed: Option<i32> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = $4 \
             WHERE workflow_id = $1 AND job_id = $2 AND status = 'RUNNING' AND lease_token = $3 RETURNING 1",
        )
        .bind(key.workflow_id.as_str())
        .bind(key.job_id.as_str())
        .bind(token)
        .bind(expires_at)
        .fetch_optional(&self.shared.pool)
        .await
        .map_err(db(OP))
        .map_err(ctx)?;
        if renewed.is_some() {
            return Ok(expires_at);
        }
        self.job(key).await.map_err(ctx)?;
        Err(ctx(backend_error(ErrorKind::Conflict, OP, "the lease is no longer held with this token")))
    }

    async fn list_workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
        const OP: &str = "StateStore::list_workflows";
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        let limit = if filter.limit == 0 { DEFAULT_PAGE } else { i64::try_from(filter.limit).unwrap_or(i64::MAX) };
        let rows: Vec<WorkflowRow> = sqlx::query_as(LIST)
            .bind(statuses)
            .bind(filter.after.as_ref().map(|a| a.as_str()))
            .bind(limit)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(db(OP))?;
        rows.into_iter().map(WorkflowRow::into_record).collect()
    }

    async fn dead_letters(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
        self.dead_letter_records(filter).await
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        const OP: &str = "StateStore::outbox_pending";
        let rows: Vec<(i64, Json<Event>)> = sqlx::query_as("SELECT seq, event FROM outbox ORDER BY seq LIMIT $1")
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.shared.pool)
            .await
            .map_err(db(OP))?;
        rows.into_iter()
            .map(|(seq, event)| {
                let seq = u64::try_from(seq)
                    .map_err(|_| backend_error(ErrorKind::Internal, OP, format!("negative outbox seq {seq}")))?;
                Ok(OutboxEntry { seq, event: event.0.into() })
            })
            .collect()
    }

    async fn outbox_ack(&self, seqs: &[u64]) -> Result<()> {
        const OP: &str = "StateStore::outbox_ack";
        let seqs: Vec<i64> = seqs.iter().filter_map(|s| i64::try_from(*s).ok()).collect();
        if seqs.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1::int8[])")
            .bind(seqs)
            .execute(&self.shared.pool)
            .await
            .map_err(db(OP))?;
        Ok(())
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.shared.work.notified()).await;
    }
}
