//! [`PostgresStateStore`]: workflow state in PostgreSQL tables.

mod claim;
mod dead;
mod plan;

use crate::backend::Shared;
use crate::error::{BACKEND, backend_error, db, db_error};
use crate::rows::{
    JOB_PARAMS, JobColumns, JobRow, WorkflowRow, WorkflowValues, job_columns, job_unnest, micros, normalize_job,
    workflow_columns,
};
use async_trait::async_trait;
use baseshift_core::store::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, StateStore,
    StoreCapabilities, Transition, WorkflowFilter,
};
use baseshift_core::{
    Error, ErrorKind, Event, JobKey, JobRecord, JobStatus, Result, WorkflowId, WorkflowRecord, WorkflowTemplate,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::types::Json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_PAGE: i64 = 100;

const _: () = assert!(JOB_PARAMS == 28, "the SQL below numbers the job arrays $1..$28");

/// Workflow, jobs ($1..$28), snapshot, events and wake-up of a new workflow, in one statement.
const CREATE: &str = concat!(
    "WITH w AS (INSERT INTO workflows (",
    workflow_columns!(),
    ") VALUES ($29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42)), ",
    "j AS (INSERT INTO jobs (",
    job_columns!(),
    ") SELECT * FROM ",
    job_unnest!(),
    "), t AS (INSERT INTO template_snapshots (template_id, version, body) VALUES ($43, $44, $45) \
       ON CONFLICT DO NOTHING), \
     o AS (INSERT INTO outbox (workflow_id, event) \
       SELECT e.w, e.ev FROM unnest($46::text[], $47::jsonb[]) WITH ORDINALITY AS e(w, ev, n) ORDER BY e.n) \
     SELECT pg_notify('baseshift_work', $49::text) WHERE $48::bool"
);

/// The writes of one step: header ($29..$43), jobs ($1..$28), events, wake-up.
const APPLY: &str = concat!(
    "WITH h AS (UPDATE workflows SET template_id = $30, template_version = $31, status = $32, version = $33, \
       input = $34, idempotency_key = $35, parent = $36, remaining = $37, compensation_queue = $38, error = $39, \
       created_at = $40, updated_at = $41, finished_at = $42 WHERE id = $29 AND $43::bool RETURNING 1), \
     j AS (UPDATE jobs SET job_type = r.job_type, status = r.status, version = r.version, attempt = r.attempt, \
       priority = r.priority, join_rule = r.join_rule, has_condition = r.has_condition, \
       deps_total = r.deps_total, deps_succeeded = r.deps_succeeded, deps_failed = r.deps_failed, \
       deps_skipped = r.deps_skipped, eligible = r.eligible, propagated = r.propagated, ready_at = r.ready_at, \
       queue_score = r.queue_score, lease_owner = r.lease_owner, lease_token = r.lease_token, \
       lease_expires_at = r.lease_expires_at, awaiting_external = r.awaiting_external, output = r.output, \
       error = r.error, compensation_of = r.compensation_of, started_at = r.started_at, \
       finished_at = r.finished_at, concurrency = r.concurrency FROM ",
    job_unnest!(),
    " WHERE jobs.workflow_id = r.workflow_id AND jobs.job_id = r.job_id AND jobs.version = r.version - 1 \
       RETURNING 1), \
     o AS (INSERT INTO outbox (workflow_id, event) \
       SELECT e.w, e.ev FROM unnest($44::text[], $45::jsonb[]) WITH ORDINALITY AS e(w, ev, n) ORDER BY e.n), \
     n AS (SELECT pg_notify('baseshift_work', $47::text) WHERE $46::bool) \
     SELECT (SELECT count(*) FROM j) AS jobs_written, (SELECT count(*) FROM h) AS headers, \
       (SELECT count(*) FROM n) AS notified"
);

const LOCK_HEADER: &str = concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE id = $1 FOR UPDATE");
const LOCK_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE workflow_id = $1 AND job_id = ANY($2::text[]) ORDER BY job_id FOR UPDATE"
);
const HEADER: &str = concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE id = $1");
const JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE workflow_id = $1 AND job_id = $2");
const ALL_JOBS: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE workflow_id = $1 ORDER BY ordinal");
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
/// - **`apply`** is one transaction of four statements: lock the header, lock the jobs
///   (written ones and children), then one statement writing the header, the jobs, the
///   events and the wake-up. Children's counters and `ChildDecision`s are computed in Rust
///   on the locked rows.
/// - **`claim`** locks candidates with `FOR UPDATE SKIP LOCKED` through the partial
///   indexes `jobs_leases` (expired leases) and `jobs_ready` (ready jobs by
///   `queue_score`), so concurrent claims never wait for each other nor share a job.
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

fn events_columns(events: &[Event]) -> Result<(Vec<String>, Vec<Value>)> {
    let mut keys = Vec::with_capacity(events.len());
    let mut values = Vec::with_capacity(events.len());
    for event in events {
        keys.push(event.key().to_owned());
        values.push(serde_json::to_value(event)?);
    }
    Ok((keys, values))
}

impl PostgresStateStore {
    fn schema(&self) -> &str {
        &self.shared.config.schema
    }

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

    async fn create(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        const OP: &str = "StateStore::create_workflow";
        let NewWorkflow { mut header, jobs, template, events } = new;
        let id = header.id.clone();
        let ctx = |e: Error| e.with_workflow(id.as_str()).with_operation(OP).with_backend(BACKEND);
        let mut seen = HashSet::with_capacity(jobs.len());
        let mut columns = JobColumns::default();
        let mut wake = false;
        let mut main_jobs = 0u64;
        for (ordinal, job) in jobs.into_iter().enumerate() {
            if job.workflow_id != id {
                return Err(ctx(Error::invalid_input("job record belongs to another workflow").with_job(job.job_id)));
            }
            if !seen.insert(job.job_id.clone()) {
                return Err(ctx(Error::invalid_input("duplicate job id").with_job(job.job_id)));
            }
            let mut job = normalize_job(job);
            job.version = 1;
            wake |= job.status == JobStatus::Ready;
            main_jobs += u64::from(job.compensation_of.is_none());
            let ordinal = i32::try_from(ordinal).map_err(|_| ctx(Error::invalid_input("too many jobs")))?;
            columns.push(&job, ordinal).map_err(ctx)?;
        }
        header.version = 1;
        header.remaining = main_jobs;
        let header = WorkflowValues::new(&header).map_err(ctx)?;
        let (event_keys, event_values) = events_columns(&events)?;
        let body = serde_json::to_value(&template)?;

        let mut tx = self.shared.pool.begin().await.map_err(db(OP))?;
        if let Some(key) = header.idempotency_key() {
            let won: Option<String> = sqlx::query_scalar(
                "INSERT INTO idempotency_keys (key, workflow_id) VALUES ($1, $2) \
                 ON CONFLICT (key) DO NOTHING RETURNING workflow_id",
            )
            .bind(key)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
            if won.is_none() {
                let existing: String = sqlx::query_scalar("SELECT workflow_id FROM idempotency_keys WHERE key = $1")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db(OP))?;
                return Ok(CreateOutcome::Existing(WorkflowId::new(existing)));
            }
        }
        let q = header.bind(columns.bind(sqlx::query(CREATE)));
        q.bind(template.template_id.as_str())
            .bind(template.version.to_string())
            .bind(body)
            .bind(event_keys)
            .bind(event_values)
            .bind(wake)
            .bind(self.schema())
            .execute(&mut *tx)
            .await
            .map_err(|e| match db_error(OP, e) {
                e if e.kind() == ErrorKind::Conflict => ctx(Error::conflict("a workflow with this id exists")),
                e => ctx(e),
            })?;
        tx.commit().await.map_err(db(OP)).map_err(ctx)?;
        if wake {
            self.shared.wake();
        }
        Ok(CreateOutcome::Created(id))
    }

    async fn apply_step(&self, step: Transition) -> Result<Applied> {
        const OP: &str = "StateStore::apply";
        let wf_id = step.workflow_id.clone();
        let ctx = |e: Error| e.with_workflow(wf_id.as_str()).with_operation(OP).with_backend(BACKEND);
        let now = micros(Utc::now());
        let mut tx = self.shared.pool.begin().await.map_err(db(OP))?;
        let stored: Option<WorkflowRow> =
            sqlx::query_as(LOCK_HEADER).bind(wf_id.as_str()).fetch_optional(&mut *tx).await.map_err(db(OP))?;
        let stored = stored.ok_or_else(|| ctx(Error::not_found("no such workflow")))?.into_record()?;

        let mut ids: Vec<&str> = step.jobs.iter().map(|j| j.job_id.as_str()).collect();
        ids.extend(step.parent_outcomes.iter().map(|o| o.child.as_str()));
        ids.sort_unstable();
        ids.dedup();
        let mut rows = HashMap::with_capacity(ids.len());
        if !ids.is_empty() {
            let locked: Vec<JobRow> =
                sqlx::query_as(LOCK_JOBS).bind(wf_id.as_str()).bind(&ids).fetch_all(&mut *tx).await.map_err(db(OP))?;
            for row in locked {
                let ordinal = row.ordinal;
                let rec = row.into_record()?;
                rows.insert(rec.job_id.clone(), (rec, ordinal));
            }
        }

        let planned = plan::plan(stored, rows, step, now).map_err(ctx)?;
        let mut columns = JobColumns::default();
        for (job, ordinal) in &planned.jobs {
            columns.push(job, *ordinal).map_err(ctx)?;
        }
        let expected = columns.len() as i64;
        let header = WorkflowValues::new(&planned.header).map_err(ctx)?;
        let (event_keys, event_values) = events_columns(&planned.events)?;
        let row = header
            .bind(columns.bind(sqlx::query(APPLY)))
            .bind(planned.touch_header)
            .bind(event_keys)
            .bind(event_values)
            .bind(planned.wake)
            .bind(self.schema())
            .fetch_one(&mut *tx)
            .await
            .map_err(db(OP))
            .map_err(ctx)?;
        let written: i64 = row.try_get("jobs_written").map_err(db(OP))?;
        if written != expected {
            return Err(ctx(Error::conflict("a job row changed during the step")));
        }
        tx.commit().await.map_err(db(OP)).map_err(ctx)?;
        if planned.wake {
            self.shared.wake();
        }
        Ok(planned.applied)
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

    async fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        const OP: &str = "StateStore::workflow";
        let row: Option<WorkflowRow> =
            sqlx::query_as(HEADER).bind(id.as_str()).fetch_optional(&self.shared.pool).await.map_err(db(OP))?;
        row.ok_or_else(|| backend_error(ErrorKind::NotFound, OP, "no such workflow").with_workflow(id.as_str()))?
            .into_record()
    }

    async fn job(&self, key: &JobKey) -> Result<JobRecord> {
        const OP: &str = "StateStore::job";
        let row: Option<JobRow> = sqlx::query_as(JOB)
            .bind(key.workflow_id.as_str())
            .bind(&key.job_id)
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
                let mut by_id: HashMap<String, JobRecord> =
                    records.into_iter().map(|r| (r.job_id.clone(), r)).collect();
                ids.iter().filter_map(|j| by_id.remove(j)).collect()
            }
        })
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
        self.apply_step(step).await
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
        .bind(&key.job_id)
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
