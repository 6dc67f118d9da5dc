//! Retention: deleting finished workflows, with their jobs, idempotency keys and outbox
//! rows, once they are older than a cutoff.

use crate::PostgresStateStore;
use crate::error::db;
use baseshift_core::Result;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::time::Duration;

/// One batch: lock finished workflows past the cutoff (skipping rows another transaction
/// holds), delete their outbox rows and jobs, then the workflows (keys cascade).
const BATCH: &str = "WITH victims AS (\
       SELECT id FROM workflows \
       WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND finished_at < $1 \
       ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
     o AS (DELETE FROM outbox WHERE workflow_id IN (SELECT id FROM victims) RETURNING 1), \
     j AS (DELETE FROM jobs WHERE workflow_id IN (SELECT id FROM victims) RETURNING 1), \
     w AS (DELETE FROM workflows WHERE id IN (SELECT id FROM victims) RETURNING 1) \
     SELECT (SELECT count(*) FROM w) AS workflows, (SELECT count(*) FROM j) AS jobs, \
       (SELECT count(*) FROM o) AS events";

/// What [`PostgresStateStore::apply_retention`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Workflow headers deleted.
    pub workflows: u64,
    /// Job rows deleted.
    pub jobs: u64,
    /// Outbox rows deleted (events of those workflows not yet relayed).
    pub events: u64,
    /// Transactions used.
    pub batches: u64,
    /// The cutoff: workflows that finished before it were deleted.
    pub cutoff: Option<DateTime<Utc>>,
}

impl PostgresStateStore {
    /// Deletes workflows that finished (`COMPLETED`, `FAILED`, `CANCELLED`) more than
    /// `older_than` ago, with their jobs, idempotency keys and outbox rows, in
    /// transactions of [`retention_batch`](crate::PostgresConfig::retention_batch)
    /// workflows. Workflows that are not finished are never touched. Template snapshots
    /// are kept (other workflows may share them).
    ///
    /// Safe to run from several instances at once: each batch skips rows another holds.
    pub async fn apply_retention(&self, older_than: Duration) -> Result<RetentionReport> {
        const OP: &str = "PostgresStateStore::apply_retention";
        let cutoff = baseshift_core::store::retention_cutoff(older_than)?;
        let batch = i64::from(self.shared.config.retention_batch);
        let mut report = RetentionReport { cutoff: Some(cutoff), ..RetentionReport::default() };
        loop {
            let row = sqlx::query(BATCH).bind(cutoff).bind(batch).fetch_one(&self.shared.pool).await.map_err(db(OP))?;
            let count = |name: &str| -> Result<u64> {
                let n: i64 = row.try_get(name).map_err(db(OP))?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            let workflows = count("workflows")?;
            report.workflows += workflows;
            report.jobs += count("jobs")?;
            report.events += count("events")?;
            report.batches += 1;
            if workflows < self.shared.config.retention_batch.into() {
                return Ok(report);
            }
        }
    }
}
