//! The PostgreSQL backend for the durable scenarios, and its raw-transaction baseline.

use crate::cli::Options;
use crate::durable::{Durable, Fresh};
use crate::report::note;
use async_trait::async_trait;
use baseshift_core::{Error, ErrorKind, Result, StateStore};
use baseshift_postgres::{Postgres, PostgresConfig};
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;

/// PostgreSQL at the URL of `BASESHIFT_POSTGRES_URL` (default
/// `postgres://postgres@127.0.0.1:5432/test`); every fresh store gets its own schema whose
/// name starts with `prefix`.
pub struct Pg {
    url: String,
    prefix: String,
    stats_flush: Duration,
}

fn unavailable(e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("postgres: {e} (scripts/services.sh starts a local PostgreSQL)"))
}

impl Pg {
    /// Checks the server and notes its durability settings. In a `smoke` run the commit
    /// counter is read without waiting for the statistics flush (so it undercounts).
    pub async fn connect(prefix: String, smoke: bool) -> Result<Pg> {
        let url = PostgresConfig::from_env().url;
        let mut con = sqlx::PgConnection::connect(&url).await.map_err(unavailable)?;
        let mut settings = Vec::new();
        for key in ["synchronous_commit", "fsync", "server_version"] {
            let q = format!("SELECT current_setting('{key}')");
            let v: String =
                sqlx::query_scalar(sqlx::AssertSqlSafe(q)).fetch_one(&mut con).await.map_err(unavailable)?;
            settings.push(format!("{key}={v}"));
        }
        note(format!("postgres server settings: {}", settings.join(" ")));
        con.close().await.map_err(unavailable)?;
        let stats_flush = Duration::from_millis(if smoke { 0 } else { 1_100 });
        Ok(Pg { url, prefix, stats_flush })
    }

    /// The raw `INSERT ... RETURNING` + `UPDATE` transaction baselines.
    pub async fn baselines(&self, opts: &Options) -> Result<()> {
        crate::baselines::postgres(&self.url, &format!("{}_raw", self.prefix), opts.size(5_000, 50)).await
    }
}

struct FreshPg(Postgres);

#[async_trait(?Send)]
impl Fresh for FreshPg {
    fn store(&self) -> Arc<dyn StateStore> {
        Arc::new(self.0.state_store())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let dropped = self.0.drop_schema().await;
        self.0.close().await;
        dropped
    }
}

#[async_trait(?Send)]
impl Durable for Pg {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// The schema is dropped and migrated again: new tables and indexes, so no rows, dead
    /// tuples or index entries of an earlier point carry over (the server's buffers, WAL
    /// and checkpoints are shared with everything else it runs).
    async fn open(&self, tag: &str) -> Result<Box<dyn Fresh>> {
        let schema = format!("{}_{}", self.prefix, tag.replace('-', "_"));
        let config = PostgresConfig::builder().url(self.url.clone()).schema(schema).build()?;
        let pg = Postgres::connect(&config).await?;
        pg.drop_schema().await?;
        pg.migrate().await?;
        Ok(Box::new(FreshPg(pg)))
    }

    /// Commits in this database (`pg_stat_database.xact_commit`); the statistics are
    /// flushed about once a second, hence the pause before reading.
    async fn counter(&self) -> Result<(u64, &'static str)> {
        tokio::time::sleep(self.stats_flush).await;
        let mut con = sqlx::PgConnection::connect(&self.url).await.map_err(unavailable)?;
        let commits: i64 =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                .fetch_one(&mut con)
                .await
                .map_err(unavailable)?;
        con.close().await.map_err(unavailable)?;
        Ok((u64::try_from(commits).unwrap_or(0), "commits (whole database)"))
    }
}
