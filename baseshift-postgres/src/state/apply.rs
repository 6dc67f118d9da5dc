//! The writes of [`StateStore::apply`](baseshift_core::StateStore::apply): two statements
//! per step (one locking read of the header and the jobs, one write), and one commit for
//! every batch of steps the [`Batcher`](super::batch::Batcher) hands over. A step that may
//! complete its workflow at zero reads every job of it in the same locking read, and its
//! write stores the completed header and appends `workflow_completed` too.
//!
//! A step's preconditions are checked in Rust on the rows it locked, before it writes
//! anything, so a refused step (`Conflict`, `NotFound`, `InvalidInput`) leaves the
//! transaction clean and the other steps of its batch commit. Only a failed statement
//! (a database error, or a write that did not match the locked rows) aborts the
//! transaction: then nothing of the batch was written and each step is run again alone.

use super::plan;
use crate::backend::Shared;
use crate::error::{BACKEND, db};
use crate::rows::{
    JOB_PARAMS, JobColumns, JobRow, WorkflowRow, WorkflowValues, job_columns, job_unnest, micros,
    prefixed_workflow_columns, workflow_columns,
};
use baseshift_core::store::{Applied, Transition};
use baseshift_core::{Error, Event, JobRecord, Name, Result, WorkflowRecord};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
use std::collections::HashMap;

const OP: &str = "StateStore::apply";

const _: () = assert!(JOB_PARAMS == 28, "the SQL below numbers the job arrays $1..$28");

/// Locks and reads the header (`$1`) and then the named jobs (`$2`, in id order, so two
/// steps on one workflow never deadlock), in one statement. With `$3` (a step asking for
/// completion at zero) and a stored `remaining` of at most `$4` (see
/// [`plan::read_all_below`]), the workflow's other jobs too, locked as well so they are
/// read as the last step committed them: `all_jobs` says so. No row: no such workflow;
/// one row with a null `job_id`: the header alone.
const LOCK: &str = concat!(
    "WITH h AS MATERIALIZED (SELECT ",
    workflow_columns!(),
    " FROM workflows WHERE id = $1 FOR UPDATE), \
     a AS MATERIALIZED (SELECT $3::bool AND remaining <= $4::int8 AS all_jobs FROM h), \
     j AS MATERIALIZED (SELECT ",
    job_columns!(),
    " FROM jobs WHERE workflow_id = (SELECT id FROM h) AND job_id = ANY($2::text[]) ORDER BY job_id FOR UPDATE), \
     r AS MATERIALIZED (SELECT ",
    job_columns!(),
    " FROM jobs WHERE (SELECT all_jobs FROM a) AND workflow_id = (SELECT id FROM h) \
       AND job_id <> ALL($2::text[]) ORDER BY job_id FOR UPDATE) \
     SELECT ",
    prefixed_workflow_columns!(),
    ", (SELECT all_jobs FROM a) AS all_jobs, j.* FROM h LEFT JOIN (SELECT * FROM j UNION ALL SELECT * FROM r) j ON true"
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

/// How one step of a batch ended.
enum StepEnd {
    /// Written (reported only once the transaction commits); `true` if a job became ready.
    Written(Applied, bool),
    /// Refused by a precondition before writing anything; the transaction goes on.
    Refused(Error),
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

/// Locked job records by id, with their ordinals.
type LockedJobs = HashMap<Name, (JobRecord, i32)>;

/// The rows of [`LOCK`], decoded.
struct Locked {
    header: WorkflowRecord,
    jobs: LockedJobs,
    /// `jobs` holds every job of the workflow.
    all_jobs: bool,
}

/// Decodes the rows of [`LOCK`]: the header, and the jobs.
fn decode_locked(rows: &[PgRow]) -> Result<Option<Locked>> {
    let Some(first) = rows.first() else { return Ok(None) };
    let header = WorkflowRow::from_prefixed(first).map_err(db(OP))?.into_record()?;
    let all_jobs: Option<bool> = first.try_get("all_jobs").map_err(db(OP))?;
    let mut jobs = HashMap::with_capacity(rows.len());
    for row in rows {
        let job_id: Option<String> = row.try_get("job_id").map_err(db(OP))?;
        if job_id.is_none() {
            continue;
        }
        let row = JobRow::from_row(row).map_err(db(OP))?;
        let ordinal = row.ordinal;
        let rec = row.into_record()?;
        jobs.insert(rec.job_id.clone(), (rec, ordinal));
    }
    Ok(Some(Locked { header, jobs, all_jobs: all_jobs.unwrap_or(false) }))
}

/// One step inside the open transaction `conn`: `Ok(StepEnd)` leaves the transaction
/// usable; `Err` means it must be rolled back.
async fn step_in(conn: &mut PgConnection, schema: &str, step: Transition, now: DateTime<Utc>) -> Result<StepEnd> {
    let wf_id = step.workflow_id.clone();
    let ctx = |e: Error| e.with_workflow(wf_id.as_str()).with_operation(OP).with_backend(BACKEND);
    let mut ids: Vec<&str> = step.jobs.iter().map(|j| j.job_id.as_str()).collect();
    ids.extend(step.parent_outcomes.iter().map(|o| o.child.as_str()));
    ids.sort_unstable();
    ids.dedup();
    let read_all = plan::read_all_below(&step);
    let rows = sqlx::query(LOCK)
        .bind(step.workflow_id.as_str())
        .bind(&ids)
        .bind(read_all.is_some())
        .bind(read_all.unwrap_or(0))
        .fetch_all(&mut *conn)
        .await
        .map_err(db(OP))
        .map_err(&ctx)?;
    let Some(locked) = decode_locked(&rows).map_err(&ctx)? else {
        return Ok(StepEnd::Refused(ctx(Error::not_found("no such workflow"))));
    };
    drop(ids);
    let planned = match plan::plan(locked.header, locked.jobs, step, now, locked.all_jobs) {
        Ok(planned) => planned,
        Err(e) => return Ok(StepEnd::Refused(ctx(e))),
    };
    let mut columns = JobColumns::default();
    for (job, ordinal) in &planned.jobs {
        if let Err(e) = columns.push(job, *ordinal) {
            return Ok(StepEnd::Refused(ctx(e)));
        }
    }
    let expected = columns.len() as i64;
    let header = match WorkflowValues::new(&planned.header) {
        Ok(header) => header,
        Err(e) => return Ok(StepEnd::Refused(ctx(e))),
    };
    let (event_keys, event_values) = match events_columns(&planned.events) {
        Ok(columns) => columns,
        Err(e) => return Ok(StepEnd::Refused(ctx(e))),
    };
    let row = header
        .bind(columns.bind(sqlx::query(APPLY)))
        .bind(planned.touch_header)
        .bind(event_keys)
        .bind(event_values)
        .bind(planned.wake)
        .bind(schema)
        .fetch_one(&mut *conn)
        .await
        .map_err(db(OP))
        .map_err(ctx)?;
    let written: i64 = row.try_get("jobs_written").map_err(db(OP)).map_err(ctx)?;
    if written != expected {
        return Err(ctx(Error::conflict("a job row changed during the step")));
    }
    Ok(StepEnd::Written(planned.applied, planned.wake))
}

/// Applies `steps` in one transaction, in order, and commits once. `Err`: the
/// transaction failed before its commit and wrote nothing. A failed commit is every
/// written step's error (whether it reached the disk is unknown, as for one step).
pub(super) async fn write_batch(shared: &Shared, steps: Vec<Transition>) -> Result<Vec<Result<Applied>>> {
    let now = micros(Utc::now());
    let schema = shared.config.schema.as_str();
    let mut tx = super::begin(shared, super::Plans::Keyed).await.map_err(db(OP))?;
    let mut ends = Vec::with_capacity(steps.len());
    for step in steps {
        ends.push(step_in(&mut tx, schema, step, now).await?);
    }
    let (kind, message, mut failed) = match tx.commit().await.map_err(db(OP)) {
        Ok(()) => (None, String::new(), None),
        Err(e) => (Some(e.kind()), e.message().to_owned(), Some(e)),
    };
    let mut wake = false;
    let mut results = Vec::with_capacity(ends.len());
    for end in ends {
        results.push(match (end, kind) {
            (StepEnd::Refused(e), _) => Err(e),
            (StepEnd::Written(applied, woke), None) => {
                wake |= woke;
                Ok(applied)
            }
            // The first written step gets the commit's own error, the others a copy.
            (StepEnd::Written(..), Some(kind)) => Err(failed.take().unwrap_or_else(|| {
                Error::new(kind, format!("commit of the step's batch failed: {message}"))
                    .with_operation(OP)
                    .with_backend(BACKEND)
            })),
        });
    }
    if wake {
        shared.wake();
    }
    Ok(results)
}
