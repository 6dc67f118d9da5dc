//! [`StateStore::dead_letters`](baseshift_core::StateStore::dead_letters): `FAILED`, not
//! discarded jobs through the partial index `jobs_dead_letters`.

use super::PostgresStateStore;
use crate::error::db;
use crate::rows::{JobRow, job_columns};
use baseshift_core::store::DeadLetterFilter;
use baseshift_core::{JobRecord, Result};

const DEAD_LETTERS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE status = 'FAILED' AND (error IS NULL OR error->>'discarded_at' IS NULL) \
       AND ($1::text IS NULL OR workflow_id = $1::text) AND ($2::text IS NULL OR job_type = $2::text) \
       AND ($3::text IS NULL OR (workflow_id, job_id) > ($3::text, $4::text)) \
     ORDER BY workflow_id, job_id LIMIT $5"
);
impl PostgresStateStore {
    /// See [`StateStore::dead_letters`](baseshift_core::StateStore::dead_letters).
    pub(super) async fn dead_letter_records(&self, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
        const OP: &str = "StateStore::dead_letters";
        let rows: Vec<JobRow> = sqlx::query_as(DEAD_LETTERS)
            .bind(filter.workflow_id.as_ref().map(|w| w.as_str()))
            .bind(filter.job_type.as_deref())
            .bind(filter.after.as_ref().map(|a| a.workflow_id.as_str()))
            .bind(filter.after.as_ref().map(|a| a.job_id.as_str()))
            .bind(i64::try_from(filter.page()).unwrap_or(i64::MAX))
            .fetch_all(&self.shared.pool)
            .await
            .map_err(db(OP))?;
        rows.into_iter().map(JobRow::into_record).collect()
    }
}
