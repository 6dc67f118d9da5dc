//! [`StateStore::create_workflow`](baseshift_core::StateStore::create_workflow) and its
//! batch form: one statement per workflow (idempotency key, header, jobs, template
//! snapshot, events, wake-up), a whole batch in one transaction.
//!
//! Each workflow's statement is all-or-nothing on its own without a savepoint: the
//! header is inserted with `ON CONFLICT (id) DO NOTHING` and its jobs, events and wake-up
//! only if it was, so an id that exists fails alone (`Conflict`) and leaves the
//! transaction usable. The idempotency key is claimed in the same statement, before the
//! header; a key taken earlier (also earlier in the same batch) answers `Existing`.

use super::PostgresStateStore;
use crate::backend::Shared;
use crate::error::{BACKEND, db};
use crate::rows::{JOB_PARAMS, JobColumns, WorkflowValues, job_columns, job_unnest, normalize_job, workflow_columns};
use baseshift_core::store::{CreateOutcome, NewWorkflow};
use baseshift_core::{Error, JobStatus, Result, WorkflowId, WorkflowTemplate};
use serde_json::Value;
use sqlx::{PgConnection, Row};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

const OP: &str = "StateStore::create_workflow";

/// The most workflows one transaction creates.
const MAX_BATCH: usize = 1_000;

const _: () = assert!(JOB_PARAMS == 28, "the SQL below numbers the job arrays $1..$28");

/// Key ($50, may be null), workflow ($29..$42), jobs ($1..$28), snapshot ($43..$45, the
/// body null when it is known to be stored), events ($46, $47) and wake-up ($48, $49), in
/// one statement. Answers whether the key was free (`keyed`) and the header inserted.
const CREATE: &str = concat!(
    "WITH k AS (INSERT INTO idempotency_keys (key, workflow_id) SELECT $50::text, $29 WHERE $50::text IS NOT NULL \
       ON CONFLICT (key) DO NOTHING RETURNING 1), \
     w AS (INSERT INTO workflows (",
    workflow_columns!(),
    ") SELECT $29::text, $30::text, $31::text, $32::text, $33::int8, $34::jsonb, $35::text, $36::jsonb, \
       $37::int8, $38::text[], $39::text, $40::timestamptz, $41::timestamptz, $42::timestamptz \
       WHERE $50::text IS NULL OR EXISTS (SELECT 1 FROM k) ON CONFLICT (id) DO NOTHING RETURNING 1), \
     j AS (INSERT INTO jobs (",
    job_columns!(),
    ") SELECT * FROM ",
    job_unnest!(),
    " WHERE EXISTS (SELECT 1 FROM w)), \
     t AS (INSERT INTO template_snapshots (template_id, version, body) SELECT $43::text, $44::text, $45::jsonb \
       WHERE $45::jsonb IS NOT NULL ON CONFLICT DO NOTHING), \
     o AS (INSERT INTO outbox (workflow_id, event) \
       SELECT e.w, e.ev FROM unnest($46::text[], $47::jsonb[]) WITH ORDINALITY AS e(w, ev, n) \
       WHERE EXISTS (SELECT 1 FROM w) ORDER BY e.n), \
     n AS (SELECT pg_notify('baseshift_work', $49::text) WHERE $48::bool AND EXISTS (SELECT 1 FROM w)) \
     SELECT (SELECT count(*) FROM k) AS keyed, (SELECT count(*) FROM w) AS created, \
       (SELECT count(*) FROM n) AS notified"
);

/// A workflow's values, checked and ready to bind.
struct Prepared {
    id: WorkflowId,
    header: WorkflowValues,
    columns: JobColumns,
    snapshot: (String, String),
    template: Arc<WorkflowTemplate>,
    event_keys: Vec<String>,
    event_values: Vec<Value>,
    wake: bool,
}

fn prepare(new: NewWorkflow) -> Result<Prepared> {
    let NewWorkflow { mut header, jobs, template, events } = new;
    let id = header.id.clone();
    let mut seen = HashSet::with_capacity(jobs.len());
    let mut columns = JobColumns::default();
    let mut wake = false;
    let mut main_jobs = 0u64;
    for (ordinal, job) in jobs.into_iter().enumerate() {
        if job.workflow_id != id {
            return Err(Error::invalid_input("job record belongs to another workflow").with_job(job.job_id));
        }
        if !seen.insert(job.job_id.clone()) {
            return Err(Error::invalid_input("duplicate job id").with_job(job.job_id));
        }
        let mut job = normalize_job(job);
        job.version = 1;
        wake |= job.status == JobStatus::Ready;
        main_jobs += u64::from(job.compensation_of.is_none());
        let ordinal = i32::try_from(ordinal).map_err(|_| Error::invalid_input("too many jobs"))?;
        columns.push(&job, ordinal)?;
    }
    header.version = 1;
    header.remaining = main_jobs;
    let header = WorkflowValues::new(&header)?;
    let mut event_keys = Vec::with_capacity(events.len());
    let mut event_values = Vec::with_capacity(events.len());
    for event in &events {
        event_keys.push(event.key().to_owned());
        event_values.push(serde_json::to_value(event)?);
    }
    let snapshot = (template.template_id.clone(), template.version.to_string());
    Ok(Prepared { id, header, columns, snapshot, template, event_keys, event_values, wake })
}

/// Creates one prepared workflow inside the open transaction `conn`, sending the
/// template body only if `send_body` (its snapshot is not known to be stored). `Err`
/// means the transaction must be rolled back.
async fn create_in(
    conn: &mut PgConnection,
    schema: &str,
    p: Prepared,
    send_body: bool,
) -> Result<Result<CreateOutcome>> {
    let Prepared { id, header, columns, snapshot, template, event_keys, event_values, wake } = p;
    let ctx = |e: Error| e.with_workflow(id.as_str()).with_operation(OP).with_backend(BACKEND);
    let key = header.idempotency_key().map(str::to_owned);
    let body = match send_body.then(|| serde_json::to_value(&*template)).transpose() {
        Ok(body) => body,
        Err(e) => return Ok(Err(ctx(e.into()))),
    };
    let row = header
        .bind(columns.bind(sqlx::query(CREATE)))
        .bind(snapshot.0.as_str())
        .bind(snapshot.1.as_str())
        .bind(body)
        .bind(event_keys)
        .bind(event_values)
        .bind(wake)
        .bind(schema)
        .bind(key.as_deref())
        .fetch_one(&mut *conn)
        .await
        .map_err(db(OP))
        .map_err(ctx)?;
    let keyed: i64 = row.try_get("keyed").map_err(db(OP)).map_err(ctx)?;
    let created: i64 = row.try_get("created").map_err(db(OP)).map_err(ctx)?;
    match (key, keyed, created) {
        (_, _, 1) => Ok(Ok(CreateOutcome::Created(id))),
        (Some(key), 0, _) => {
            let existing: String = sqlx::query_scalar("SELECT workflow_id FROM idempotency_keys WHERE key = $1")
                .bind(&key)
                .fetch_one(&mut *conn)
                .await
                .map_err(db(OP))
                .map_err(ctx)?;
            Ok(Ok(CreateOutcome::Existing(WorkflowId::new(existing))))
        }
        (key, _, _) => {
            if let Some(key) = key {
                // The key was claimed for a workflow that could not be created: free it.
                sqlx::query("DELETE FROM idempotency_keys WHERE key = $1")
                    .bind(&key)
                    .execute(&mut *conn)
                    .await
                    .map_err(db(OP))
                    .map_err(ctx)?;
            }
            Ok(Err(ctx(Error::conflict("a workflow with this id exists"))))
        }
    }
}

/// Creates `items` (prepared, or refused before any I/O) in one transaction, answering
/// in order. `Err`: the transaction failed before its commit and created nothing. A
/// failed commit is the error of every item that would have been answered `Ok`.
async fn create_batch(shared: &Shared, items: Vec<Result<Prepared>>) -> Result<Vec<Result<CreateOutcome>>> {
    let schema = shared.config.schema.as_str();
    // Snapshots written by this transaction (stored for good once it commits).
    let mut written: HashSet<(String, String)> = HashSet::new();
    let mut tx = super::begin(shared, super::Plans::Keyed).await.map_err(db(OP))?;
    let mut outcomes = Vec::with_capacity(items.len());
    let mut wake = false;
    for item in items {
        outcomes.push(match item {
            Err(e) => Err(e),
            Ok(p) => {
                let woke = p.wake;
                let send_body = !written.contains(&p.snapshot) && !shared.snapshots.contains(&p.snapshot);
                let snapshot = send_body.then(|| p.snapshot.clone());
                let outcome = create_in(&mut tx, schema, p, send_body).await?;
                written.extend(snapshot);
                wake |= woke && matches!(outcome, Ok(CreateOutcome::Created(_)));
                outcome
            }
        });
    }
    if let Err(e) = tx.commit().await.map_err(db(OP)) {
        // Whether the commit reached the disk is unknown: no item is answered as done, and
        // none is created again (a retry by the caller finds it, or its id, if it was).
        let (kind, message) = (e.kind(), e.message().to_owned());
        let mut first = Some(e);
        return Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome.and_then(|_| {
                    Err(first.take().unwrap_or_else(|| {
                        Error::new(kind, format!("commit of the batch failed: {message}"))
                            .with_operation(OP)
                            .with_backend(BACKEND)
                    }))
                })
            })
            .collect());
    }
    shared.snapshots.remember(written);
    if wake {
        shared.wake();
    }
    Ok(outcomes)
}

/// The template snapshots this process knows are stored (each `(template_id, version)`
/// is written once and never changed nor deleted by baseshift), so a create does not
/// serialize and send the body again. Cleared when the schema is dropped or reverted.
#[derive(Default)]
pub(crate) struct Snapshots(Mutex<HashSet<(String, String)>>);

/// Past this many entries the cache starts over (it only saves work).
const MAX_SNAPSHOTS: usize = 10_000;

impl Snapshots {
    fn lock(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn contains(&self, key: &(String, String)) -> bool {
        self.lock().contains(key)
    }

    fn remember(&self, keys: HashSet<(String, String)>) {
        if keys.is_empty() {
            return;
        }
        let mut known = self.lock();
        if known.len() + keys.len() > MAX_SNAPSHOTS {
            known.clear();
        }
        known.extend(keys);
    }

    /// Forgets every snapshot (the tables were dropped).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

impl PostgresStateStore {
    pub(super) async fn create(&self, new: NewWorkflow) -> Result<CreateOutcome> {
        let id = new.header.id.clone();
        let prepared =
            prepare(new).map_err(|e| e.with_workflow(id.as_str()).with_operation(OP).with_backend(BACKEND))?;
        let mut outcomes = create_batch(&self.shared, vec![Ok(prepared)]).await?;
        outcomes.pop().unwrap_or_else(|| Err(Error::internal("no outcome for the workflow").with_operation(OP)))
    }

    pub(super) async fn create_many(&self, news: Vec<NewWorkflow>) -> Vec<Result<CreateOutcome>> {
        let mut out = Vec::with_capacity(news.len());
        let mut news = news.into_iter().peekable();
        while news.peek().is_some() {
            let chunk: Vec<NewWorkflow> = news.by_ref().take(MAX_BATCH).collect();
            let again = chunk.clone();
            let items = chunk
                .into_iter()
                .map(|new| {
                    let id = new.header.id.clone();
                    prepare(new).map_err(|e| e.with_workflow(id.as_str()).with_operation(OP).with_backend(BACKEND))
                })
                .collect();
            match create_batch(&self.shared, items).await {
                Ok(outcomes) => out.extend(outcomes),
                Err(e) => {
                    // Nothing of the chunk was written: each one alone, so a failure is its own.
                    tracing::debug!(error = %e, "batched create failed; creating its workflows one by one");
                    for new in again {
                        out.push(self.create(new).await);
                    }
                }
            }
        }
        out
    }
}
