//! Analytics: typed queries over the stored workflows and jobs.

use crate::PostgresStateStore;
use crate::error::db;
use crate::rows::{job_status, workflow_status};
use baseshift_core::{JobStatus, Result, WorkflowStatus};

/// Finished runs of one template.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TemplateSuccessRate {
    /// The template.
    pub template_id: String,
    /// Runs that `COMPLETED`.
    pub completed: u64,
    /// Runs that `FAILED`.
    pub failed: u64,
    /// Runs that were `CANCELLED`.
    pub cancelled: u64,
    /// `completed / (completed + failed + cancelled)`, in `[0, 1]`.
    pub success_rate: f64,
}

/// How long jobs of one type ran (their last attempt, `started_at` to `finished_at`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JobDurationStats {
    /// The job type.
    pub job_type: String,
    /// Finished jobs measured.
    pub count: u64,
    /// The mean duration, in milliseconds.
    pub avg_ms: f64,
    /// The longest duration, in milliseconds.
    pub max_ms: f64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PostgresStateStore {
    /// The success rate of every template with finished runs, by template id.
    pub async fn template_success_rates(&self) -> Result<Vec<TemplateSuccessRate>> {
        const OP: &str = "PostgresStateStore::template_success_rates";
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT template_id, count(*) FILTER (WHERE status = 'COMPLETED'), \
               count(*) FILTER (WHERE status = 'FAILED'), count(*) FILTER (WHERE status = 'CANCELLED') \
             FROM workflows WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') \
             GROUP BY template_id ORDER BY template_id",
        )
        .fetch_all(&self.shared.pool)
        .await
        .map_err(db(OP))?;
        Ok(rows
            .into_iter()
            .map(|(template_id, completed, failed, cancelled)| {
                let (completed, failed, cancelled) = (count(completed), count(failed), count(cancelled));
                let total = completed + failed + cancelled;
                let success_rate = if total == 0 { 0.0 } else { completed as f64 / total as f64 };
                TemplateSuccessRate { template_id, completed, failed, cancelled, success_rate }
            })
            .collect())
    }

    /// Average and longest run time of finished (`SUCCEEDED` or `FAILED`) jobs, by type.
    pub async fn job_durations(&self) -> Result<Vec<JobDurationStats>> {
        const OP: &str = "PostgresStateStore::job_durations";
        let rows: Vec<(String, i64, f64, f64)> = sqlx::query_as(
            "SELECT job_type, count(*), \
               avg(extract(epoch FROM finished_at - started_at) * 1000)::float8, \
               max(extract(epoch FROM finished_at - started_at) * 1000)::float8 \
             FROM jobs WHERE status IN ('SUCCEEDED', 'FAILED') \
               AND started_at IS NOT NULL AND finished_at IS NOT NULL \
             GROUP BY job_type ORDER BY job_type",
        )
        .fetch_all(&self.shared.pool)
        .await
        .map_err(db(OP))?;
        Ok(rows
            .into_iter()
            .map(|(job_type, n, avg_ms, max_ms)| JobDurationStats { job_type, count: count(n), avg_ms, max_ms })
            .collect())
    }

    /// How many workflows are in each status (statuses with none are left out).
    pub async fn workflow_counts(&self) -> Result<Vec<(WorkflowStatus, u64)>> {
        const OP: &str = "PostgresStateStore::workflow_counts";
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM workflows GROUP BY status ORDER BY status")
                .fetch_all(&self.shared.pool)
                .await
                .map_err(db(OP))?;
        rows.into_iter().map(|(s, n)| Ok((workflow_status(&s)?, count(n)))).collect()
    }

    /// How many jobs are in each status (statuses with none are left out).
    pub async fn job_counts(&self) -> Result<Vec<(JobStatus, u64)>> {
        const OP: &str = "PostgresStateStore::job_counts";
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")
                .fetch_all(&self.shared.pool)
                .await
                .map_err(db(OP))?;
        rows.into_iter().map(|(s, n)| Ok((job_status(&s)?, count(n)))).collect()
    }
}
