//! Rows of `workflows` and `jobs`: decoding into records, and the column arrays that
//! write many records in one statement (`unnest`).

use crate::error::backend_error;
use baseshift_core::state::{ConcurrencyKey, DepCounts, JobFailure, Lease, ParentRef};
use baseshift_core::{
    ErrorKind, JobRecord, JobStatus, Name, Result, Trigger, WorkflowId, WorkflowRecord, WorkflowStatus,
};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use sqlx::types::Json;

/// The columns of `jobs`, in table order.
macro_rules! job_columns {
    () => {
        "workflow_id, job_id, ordinal, job_type, status, version, attempt, priority, join_rule, has_condition, \
         deps_total, deps_succeeded, deps_failed, deps_skipped, eligible, propagated, ready_at, queue_score, \
         lease_owner, lease_token, lease_expires_at, awaiting_external, output, error, compensation_of, \
         started_at, finished_at, concurrency"
    };
}

/// Job rows from the column arrays bound as `$1..$28` by [`JobColumns::bind`].
macro_rules! job_unnest {
    () => {
        concat!(
            "unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::int8[], $7::int8[], \
             $8::int4[], $9::text[], $10::bool[], $11::int8[], $12::int8[], $13::int8[], $14::int8[], \
             $15::bool[], $16::bool[], $17::timestamptz[], $18::float8[], $19::text[], $20::text[], \
             $21::timestamptz[], $22::bool[], $23::jsonb[], $24::jsonb[], $25::text[], $26::timestamptz[], \
             $27::timestamptz[], $28::jsonb[]) AS r(",
            job_columns!(),
            ")"
        )
    };
}

/// The columns of `workflows`, in table order.
macro_rules! workflow_columns {
    () => {
        "id, template_id, template_version, status, version, input, idempotency_key, parent, remaining, \
         compensation_queue, error, created_at, updated_at, finished_at"
    };
}

/// The columns of `workflows` as read from the CTE `h`, each renamed `h_<column>` so they
/// can share a row with a job's columns (decoded by [`WorkflowRow::from_prefixed`]).
macro_rules! prefixed_workflow_columns {
    () => {
        "h.id AS h_id, h.template_id AS h_template_id, h.template_version AS h_template_version, \
         h.status AS h_status, h.version AS h_version, h.input AS h_input, \
         h.idempotency_key AS h_idempotency_key, h.parent AS h_parent, h.remaining AS h_remaining, \
         h.compensation_queue AS h_compensation_queue, h.error AS h_error, h.created_at AS h_created_at, \
         h.updated_at AS h_updated_at, h.finished_at AS h_finished_at"
    };
}

pub(crate) use {job_columns, job_unnest, prefixed_workflow_columns, workflow_columns};

/// The number of parameters [`JobColumns::bind`] uses.
pub(crate) const JOB_PARAMS: usize = 28;

/// Timestamps as PostgreSQL keeps them (microseconds), so a record returned by the store
/// equals the record read back later.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn corrupt(what: impl Into<String>) -> baseshift_core::Error {
    backend_error(ErrorKind::Internal, "StateStore::decode", format!("unexpected stored value: {}", what.into()))
}

fn to_i64(v: u64, field: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        backend_error(ErrorKind::InvalidInput, "StateStore::encode", format!("{field} {v} is out of range"))
    })
}

fn to_u32(v: i64, field: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(format!("{field} = {v}")))
}

fn to_u64(v: i64, field: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("{field} = {v}")))
}

pub(crate) fn job_status(s: &str) -> Result<JobStatus> {
    use JobStatus::*;
    [Pending, Ready, Running, Succeeded, Failed, Skipped, Cancelled]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| corrupt(format!("job status `{s}`")))
}

pub(crate) fn workflow_status(s: &str) -> Result<WorkflowStatus> {
    use WorkflowStatus::*;
    [Initialized, Running, Completed, Failed, Cancelled]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| corrupt(format!("workflow status `{s}`")))
}

fn trigger_name(t: Trigger) -> &'static str {
    match t {
        Trigger::AllSuccess => "all_success",
        Trigger::AllDone => "all_done",
        Trigger::OneSuccess => "one_success",
        Trigger::NoneFailed => "none_failed",
    }
}

fn trigger(s: &str) -> Result<Trigger> {
    [Trigger::AllSuccess, Trigger::AllDone, Trigger::OneSuccess, Trigger::NoneFailed]
        .into_iter()
        .find(|t| trigger_name(*t) == s)
        .ok_or_else(|| corrupt(format!("join rule `{s}`")))
}

/// One row of `jobs`.
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    pub(crate) workflow_id: String,
    job_id: String,
    pub(crate) ordinal: i32,
    job_type: String,
    status: String,
    version: i64,
    attempt: i64,
    priority: i32,
    join_rule: String,
    has_condition: bool,
    deps_total: i64,
    deps_succeeded: i64,
    deps_failed: i64,
    deps_skipped: i64,
    eligible: bool,
    propagated: bool,
    ready_at: Option<DateTime<Utc>>,
    #[allow(dead_code)]
    queue_score: f64,
    lease_owner: Option<String>,
    lease_token: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    awaiting_external: bool,
    output: Option<Value>,
    error: Option<Json<JobFailure>>,
    compensation_of: Option<String>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    concurrency: Option<Json<ConcurrencyKey>>,
}

impl JobRow {
    /// The workflow id column.
    pub(crate) fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// The job id column.
    pub(crate) fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The record this row stores.
    pub(crate) fn into_record(self) -> Result<JobRecord> {
        let lease = match (self.lease_owner, self.lease_token, self.lease_expires_at) {
            (Some(owner), Some(token), Some(expires_at)) => {
                Some(Lease { owner: owner.into(), token: token.into(), expires_at })
            }
            _ => None,
        };
        let mut rec = JobRecord::pending(WorkflowId::new(self.workflow_id), self.job_id, self.job_type, 0);
        rec.status = job_status(&self.status)?;
        rec.version = to_u64(self.version, "version")?;
        rec.attempt = to_u32(self.attempt, "attempt")?;
        rec.priority = self.priority;
        rec.trigger = trigger(&self.join_rule)?;
        rec.has_condition = self.has_condition;
        rec.deps = DepCounts {
            total: to_u32(self.deps_total, "deps_total")?,
            succeeded: to_u32(self.deps_succeeded, "deps_succeeded")?,
            failed: to_u32(self.deps_failed, "deps_failed")?,
            skipped: to_u32(self.deps_skipped, "deps_skipped")?,
        };
        rec.eligible = self.eligible;
        rec.propagated = self.propagated;
        rec.ready_at = self.ready_at;
        rec.lease = lease;
        rec.awaiting_external = self.awaiting_external;
        rec.output = self.output;
        rec.error = self.error.map(|e| e.0);
        rec.compensation_of = self.compensation_of.map(Name::from);
        rec.started_at = self.started_at;
        rec.finished_at = self.finished_at;
        rec.concurrency = self.concurrency.map(|c| c.0);
        Ok(rec)
    }
}

/// One row of `workflows`.
#[derive(sqlx::FromRow)]
pub(crate) struct WorkflowRow {
    id: String,
    template_id: String,
    template_version: String,
    status: String,
    version: i64,
    input: Value,
    idempotency_key: Option<String>,
    parent: Option<Json<ParentRef>>,
    remaining: i64,
    compensation_queue: Vec<String>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl WorkflowRow {
    /// The header in a row selected with [`prefixed_workflow_columns!`].
    pub(crate) fn from_prefixed(row: &sqlx::postgres::PgRow) -> sqlx::Result<WorkflowRow> {
        use sqlx::Row;
        Ok(WorkflowRow {
            id: row.try_get("h_id")?,
            template_id: row.try_get("h_template_id")?,
            template_version: row.try_get("h_template_version")?,
            status: row.try_get("h_status")?,
            version: row.try_get("h_version")?,
            input: row.try_get("h_input")?,
            idempotency_key: row.try_get("h_idempotency_key")?,
            parent: row.try_get("h_parent")?,
            remaining: row.try_get("h_remaining")?,
            compensation_queue: row.try_get("h_compensation_queue")?,
            error: row.try_get("h_error")?,
            created_at: row.try_get("h_created_at")?,
            updated_at: row.try_get("h_updated_at")?,
            finished_at: row.try_get("h_finished_at")?,
        })
    }

    /// The header this row stores.
    pub(crate) fn into_record(self) -> Result<WorkflowRecord> {
        let mut rec =
            WorkflowRecord::initialized(WorkflowId::new(self.id), self.template_id, self.template_version, self.input);
        rec.status = workflow_status(&self.status)?;
        rec.version = to_u64(self.version, "version")?;
        rec.idempotency_key = self.idempotency_key;
        rec.parent = self.parent.map(|p| Box::new(p.0));
        rec.remaining = to_u64(self.remaining, "remaining")?;
        rec.compensation_queue = self.compensation_queue;
        rec.error = self.error;
        rec.created_at = self.created_at;
        rec.updated_at = self.updated_at;
        rec.finished_at = self.finished_at;
        Ok(rec)
    }
}

mod columns;

pub(crate) use columns::{JobColumns, WorkflowValues};

/// `rec` with every timestamp cut to microseconds, as it will be stored.
pub(crate) fn normalize_job(mut rec: JobRecord) -> JobRecord {
    rec.ready_at = rec.ready_at.map(micros);
    rec.started_at = rec.started_at.map(micros);
    rec.finished_at = rec.finished_at.map(micros);
    if let Some(lease) = rec.lease.as_mut() {
        lease.expires_at = micros(lease.expires_at);
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [Trigger::AllSuccess, Trigger::AllDone, Trigger::OneSuccess, Trigger::NoneFailed] {
            assert_eq!(trigger(trigger_name(t)).unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), Value::String(trigger_name(t).into()));
        }
        assert_eq!(job_status("SKIPPED").unwrap(), JobStatus::Skipped);
        assert_eq!(workflow_status("RUNNING").unwrap(), WorkflowStatus::Running);
        assert_eq!(job_status("nope").unwrap_err().kind(), ErrorKind::Internal);
        assert_eq!(workflow_status("").unwrap_err().kind(), ErrorKind::Internal);
    }
}
