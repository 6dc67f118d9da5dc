//! Run records: every run of a job writes a `start` mark before it does anything and an
//! `end` mark after, into a side list (Redis) or table (PostgreSQL) on the store's server,
//! over a connection of its own that never goes through the outage proxy.

use crate::opts::Backend;
use baseshift_core::{Error, ErrorKind, JobContext, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the epoch (every process runs on this machine's clock).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One mark of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mark {
    /// `start` or `end`.
    pub kind: String,
    /// The workflow.
    pub wf: String,
    /// The job.
    pub job: String,
    /// The attempt the claim gave.
    pub attempt: u32,
    /// The lease token of the claim (unique per claim).
    pub token: String,
    /// The worker process.
    pub pid: u32,
    /// When: a `start` is stamped before its mark is written (the body starts only after
    /// the write), an `end` as the body finished; so the recorded interval contains the
    /// body's real one.
    pub t_us: u64,
    /// `ok`, `retryable` or `permanent` (end marks).
    #[serde(default)]
    pub outcome: Option<String>,
}

impl Mark {
    /// A template mark for the run `ctx` describes.
    pub fn new(ctx: &JobContext) -> Mark {
        Mark {
            kind: String::new(),
            wf: ctx.workflow_id.to_string(),
            job: ctx.job_id.to_string(),
            attempt: ctx.attempt,
            token: ctx.lease_token.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            pid: std::process::id(),
            t_us: 0,
            outcome: None,
        }
    }

    /// The start mark, stamped now.
    pub fn start(&self) -> Mark {
        Mark { kind: "start".into(), t_us: now_us(), ..self.clone() }
    }

    /// The end mark, stamped now.
    pub fn end(&self, outcome: &str) -> Mark {
        Mark { kind: "end".into(), t_us: now_us(), outcome: Some(outcome.to_owned()), ..self.clone() }
    }
}

/// Where marks go.
pub enum Recorder {
    /// A Redis list `<prefix>:chaos:runs`.
    Redis {
        /// A self-reconnecting connection.
        conn: redis::aio::ConnectionManager,
        /// The list's key.
        key: String,
    },
    /// A table `chaos_runs` in the run's schema.
    Postgres {
        /// A small pool.
        pool: sqlx::PgPool,
        /// The quoted table name.
        table: String,
    },
}

fn redis_err(e: redis::RedisError) -> Error {
    Error::new(ErrorKind::Unavailable, format!("run records (redis): {e}"))
}

fn pg_err(e: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("run records (postgres): {e}"))
}

impl Recorder {
    /// Connects to `url` for the run under `prefix`.
    pub async fn connect(backend: Backend, url: &str, prefix: &str) -> Result<Recorder> {
        match backend {
            Backend::Redis => {
                let client = redis::Client::open(url).map_err(redis_err)?;
                let conn = redis::aio::ConnectionManager::new(client).await.map_err(redis_err)?;
                Ok(Recorder::Redis { conn, key: format!("{prefix}:chaos:runs") })
            }
            Backend::Postgres => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(url)
                    .await
                    .map_err(pg_err)?;
                Ok(Recorder::Postgres { pool, table: format!("\"{prefix}\".chaos_runs") })
            }
        }
    }

    /// Creates the table (Postgres; the schema must exist).
    pub async fn create(&self) -> Result<()> {
        if let Recorder::Postgres { pool, table } = self {
            let sql = format!("CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, m text NOT NULL)");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.map_err(pg_err)?;
        }
        Ok(())
    }

    /// Writes one mark.
    pub async fn write(&self, mark: &Mark) -> Result<()> {
        let text = serde_json::to_string(mark)?;
        match self {
            Recorder::Redis { conn, key } => {
                let mut conn = conn.clone();
                redis::cmd("RPUSH").arg(key).arg(text).query_async::<i64>(&mut conn).await.map_err(redis_err)?;
            }
            Recorder::Postgres { pool, table } => {
                let sql = format!("INSERT INTO {table} (m) VALUES ($1)");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(text).execute(pool).await.map_err(pg_err)?;
            }
        }
        Ok(())
    }

    /// Writes one mark, retrying until it is written: a run must never be left without its
    /// marks because the side channel hiccuped (the checker would see a run that never ends).
    pub async fn write_until_done(&self, mark: &Mark) {
        let mut pause = Duration::from_millis(50);
        loop {
            match self.write(mark).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "writing a run record failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Every mark, in write order. Retried for a while: after a server restart the first
    /// command on the recorder's old connection fails while it reconnects.
    pub async fn read_all(&self) -> Result<Vec<Mark>> {
        let mut tries = 0;
        loop {
            match self.read_once().await {
                Err(e) if tries < 20 => {
                    tries += 1;
                    tracing::warn!(error = %e, "reading the run records failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                done => return done,
            }
        }
    }

    async fn read_once(&self) -> Result<Vec<Mark>> {
        let texts: Vec<String> = match self {
            Recorder::Redis { conn, key } => {
                let mut conn = conn.clone();
                redis::cmd("LRANGE").arg(key).arg(0).arg(-1).query_async(&mut conn).await.map_err(redis_err)?
            }
            Recorder::Postgres { pool, table } => {
                let sql = format!("SELECT m FROM {table} ORDER BY id");
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.map_err(pg_err)?
            }
        };
        texts.iter().map(|t| serde_json::from_str(t).map_err(Error::from)).collect()
    }
}
