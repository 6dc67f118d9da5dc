//! The values of records ready to bind: a header's 14 values, and job records as one
//! array per column (written in one statement through [`job_unnest!`](super::job_unnest)).

use super::{micros, to_i64, trigger_name};
use baseshift_core::state::{ConcurrencyKey, JobFailure, ParentRef};
use baseshift_core::{JobRecord, Result, WorkflowRecord};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

/// A header's values, in [`workflow_columns!`](super::workflow_columns) order, ready to bind.
pub(crate) struct WorkflowValues {
    id: String,
    template_id: String,
    template_version: String,
    status: &'static str,
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

impl WorkflowValues {
    /// The values of `rec`.
    pub(crate) fn new(rec: &WorkflowRecord) -> Result<Self> {
        Ok(WorkflowValues {
            id: rec.id.as_str().to_owned(),
            template_id: rec.template_id.clone(),
            template_version: rec.template_version.clone(),
            status: rec.status.as_str(),
            version: to_i64(rec.version, "workflow version")?,
            input: rec.input.clone(),
            idempotency_key: rec.idempotency_key.clone(),
            parent: rec.parent.as_deref().cloned().map(Json),
            remaining: to_i64(rec.remaining, "remaining")?,
            compensation_queue: rec.compensation_queue.clone(),
            error: rec.error.clone(),
            created_at: micros(rec.created_at),
            updated_at: micros(rec.updated_at),
            finished_at: rec.finished_at.map(micros),
        })
    }

    /// The idempotency key.
    pub(crate) fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Binds the 14 values as the next parameters of `q`.
    pub(crate) fn bind<'q>(self, q: PgQuery<'q>) -> PgQuery<'q> {
        q.bind(self.id)
            .bind(self.template_id)
            .bind(self.template_version)
            .bind(self.status)
            .bind(self.version)
            .bind(self.input)
            .bind(self.idempotency_key)
            .bind(self.parent)
            .bind(self.remaining)
            .bind(self.compensation_queue)
            .bind(self.error)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(self.finished_at)
    }
}

/// A query with PostgreSQL arguments.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Job records as one array per column, in [`job_columns!`](super::job_columns) order: written in one
/// statement through [`job_unnest!`](super::job_unnest).
#[derive(Default)]
pub(crate) struct JobColumns {
    workflow_id: Vec<String>,
    job_id: Vec<String>,
    ordinal: Vec<i32>,
    job_type: Vec<String>,
    status: Vec<&'static str>,
    version: Vec<i64>,
    attempt: Vec<i64>,
    priority: Vec<i32>,
    join_rule: Vec<&'static str>,
    has_condition: Vec<bool>,
    deps_total: Vec<i64>,
    deps_succeeded: Vec<i64>,
    deps_failed: Vec<i64>,
    deps_skipped: Vec<i64>,
    eligible: Vec<bool>,
    propagated: Vec<bool>,
    ready_at: Vec<Option<DateTime<Utc>>>,
    queue_score: Vec<f64>,
    lease_owner: Vec<Option<String>>,
    lease_token: Vec<Option<String>>,
    lease_expires_at: Vec<Option<DateTime<Utc>>>,
    awaiting_external: Vec<bool>,
    output: Vec<Option<Value>>,
    error: Vec<Option<Json<JobFailure>>>,
    compensation_of: Vec<Option<String>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    finished_at: Vec<Option<DateTime<Utc>>>,
    concurrency: Vec<Option<Json<ConcurrencyKey>>>,
}

impl JobColumns {
    /// The number of records added.
    pub(crate) fn len(&self) -> usize {
        self.job_id.len()
    }

    /// Adds `rec`, stored at position `ordinal` of its workflow.
    pub(crate) fn push(&mut self, rec: &JobRecord, ordinal: i32) -> Result<()> {
        let version = to_i64(rec.version, "job version")?;
        self.workflow_id.push(rec.workflow_id.as_str().to_owned());
        self.job_id.push(String::from(&rec.job_id));
        self.ordinal.push(ordinal);
        self.job_type.push(String::from(&rec.job_type));
        self.status.push(rec.status.as_str());
        self.version.push(version);
        self.attempt.push(i64::from(rec.attempt));
        self.priority.push(rec.priority);
        self.join_rule.push(trigger_name(rec.trigger));
        self.has_condition.push(rec.has_condition);
        self.deps_total.push(i64::from(rec.deps.total));
        self.deps_succeeded.push(i64::from(rec.deps.succeeded));
        self.deps_failed.push(i64::from(rec.deps.failed));
        self.deps_skipped.push(i64::from(rec.deps.skipped));
        self.eligible.push(rec.eligible);
        self.propagated.push(rec.propagated);
        self.ready_at.push(rec.ready_at);
        self.queue_score.push(rec.queue_score());
        self.lease_owner.push(rec.lease.as_ref().map(|l| String::from(&l.owner)));
        self.lease_token.push(rec.lease.as_ref().map(|l| String::from(&l.token)));
        self.lease_expires_at.push(rec.lease.as_ref().map(|l| l.expires_at));
        self.awaiting_external.push(rec.awaiting_external);
        self.output.push(rec.output.clone());
        self.error.push(rec.error.clone().map(Json));
        self.compensation_of.push(rec.compensation_of.as_ref().map(String::from));
        self.started_at.push(rec.started_at);
        self.finished_at.push(rec.finished_at);
        self.concurrency.push(rec.concurrency.clone().map(Json));
        Ok(())
    }

    /// Binds the 28 arrays as the next parameters of `q` (`$1..$28` when bound first).
    pub(crate) fn bind<'q>(self, q: PgQuery<'q>) -> PgQuery<'q> {
        q.bind(self.workflow_id)
            .bind(self.job_id)
            .bind(self.ordinal)
            .bind(self.job_type)
            .bind(self.status)
            .bind(self.version)
            .bind(self.attempt)
            .bind(self.priority)
            .bind(self.join_rule)
            .bind(self.has_condition)
            .bind(self.deps_total)
            .bind(self.deps_succeeded)
            .bind(self.deps_failed)
            .bind(self.deps_skipped)
            .bind(self.eligible)
            .bind(self.propagated)
            .bind(self.ready_at)
            .bind(self.queue_score)
            .bind(self.lease_owner)
            .bind(self.lease_token)
            .bind(self.lease_expires_at)
            .bind(self.awaiting_external)
            .bind(self.output)
            .bind(self.error)
            .bind(self.compensation_of)
            .bind(self.started_at)
            .bind(self.finished_at)
            .bind(self.concurrency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baseshift_core::{ErrorKind, WorkflowId};

    #[test]
    fn columns_keep_one_entry_per_record() {
        let mut cols = JobColumns::default();
        let mut rec = JobRecord::pending(WorkflowId::new("w"), "a", "noop", 2);
        rec.version = u64::MAX;
        assert_eq!(cols.push(&rec, 0).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(cols.len(), 0, "a refused record adds nothing");
        rec.version = 3;
        cols.push(&rec, 0).unwrap();
        cols.push(&rec, 1).unwrap();
        assert_eq!(cols.len(), 2);
        assert_eq!(cols.deps_total, vec![2, 2]);
        assert_eq!(cols.ordinal, vec![0, 1]);
    }
}
