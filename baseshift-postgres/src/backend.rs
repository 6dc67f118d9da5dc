//! [`Postgres`]: the connection pool, the schema's migrations and the work listener,
//! shared by [`PostgresStateStore`] and [`PostgresTemplateStore`].

use crate::config::{PostgresConfig, redact};
use crate::error::{BACKEND, backend_error, db, db_error};
use crate::state::{Batcher, Snapshots};
use crate::{PostgresStateStore, PostgresTemplateStore};
use baseshift_core::{ErrorKind, Result};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The schema's migrations, embedded in the binary (`migrations/` of this crate).
// `sqlx::migrate!` needs the `macros` feature (the compile-time checked queries); the
// proc macro itself does not.
static MIGRATOR: Migrator = sqlx::sqlx_macros::migrate!("./migrations");

/// The `NOTIFY` channel; the payload is the schema whose work changed.
pub(crate) const CHANNEL: &str = "baseshift_work";

/// What the stores share: the pool, the config and the wake-up signal.
pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) config: PostgresConfig,
    options: PgConnectOptions,
    pub(crate) work: Arc<Notify>,
    /// The queue of concurrent `apply` steps (group commit).
    pub(crate) batcher: Batcher,
    /// The template snapshots known to be stored.
    pub(crate) snapshots: Snapshots,
    /// Jobs claimed since the claim and lease floors were last raised.
    pub(crate) claimed_since_raise: AtomicU64,
    listener: Option<JoinHandle<()>>,
}

impl Shared {
    /// Wakes every task in `wait_for_work`, and the next one to call it.
    pub(crate) fn wake(&self) {
        wake(&self.work);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.listener.take() {
            task.abort();
        }
    }
}

fn wake(work: &Notify) {
    work.notify_waiters();
    work.notify_one();
}

/// How many transactions of batched `apply` steps run at once on a pool of
/// `max_connections`: half the pool (at least one), leaving the rest to claims, creates
/// and reads.
fn apply_writers(max_connections: u32) -> usize {
    usize::try_from(max_connections / 2).unwrap_or(1).max(1)
}

/// A connection to baseshift's schema in a PostgreSQL database.
///
/// [`connect`](Self::connect) opens the pool (and, with [`PostgresConfig::listen`], one
/// more connection that `LISTEN`s for work); [`migrate`](Self::migrate) creates or
/// upgrades the schema; [`state_store`](Self::state_store) and
/// [`template_store`](Self::template_store) hand out stores sharing the pool.
/// Cheap to clone.
#[derive(Clone)]
pub struct Postgres {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl Postgres {
    /// Validates `config`, opens the pool (one connection is made now, so an unreachable
    /// server fails here with `Unavailable`) and starts the work listener.
    pub async fn connect(config: &PostgresConfig) -> Result<Postgres> {
        const OP: &str = "Postgres::connect";
        let options = config.connect_options()?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                let url = redact(&config.url);
                let e = db_error(OP, e);
                baseshift_core::Error::new(e.kind(), format!("cannot connect to {url}: {}", e.message()))
                    .with_operation(OP)
                    .with_backend(BACKEND)
                    .with_source(e)
            })?;
        let work = Arc::new(Notify::new());
        let listener = if config.listen { Some(start_listener(&options, config, work.clone()).await?) } else { None };
        let batcher = crate::state::batcher(apply_writers(config.max_connections));
        let snapshots = Snapshots::default();
        Ok(Postgres {
            shared: Arc::new(Shared {
                pool,
                config: config.clone(),
                options,
                work,
                batcher,
                snapshots,
                claimed_since_raise: AtomicU64::new(0),
                listener,
            }),
        })
    }

    /// Connects with [`PostgresConfig::from_env`] (`BASESHIFT_POSTGRES_URL`).
    pub async fn connect_from_env() -> Result<Postgres> {
        Postgres::connect(&PostgresConfig::from_env()).await
    }

    /// The config this connection was made with.
    pub fn config(&self) -> &PostgresConfig {
        &self.shared.config
    }

    /// The schema holding baseshift's tables.
    pub fn schema(&self) -> &str {
        &self.shared.config.schema
    }

    /// A [`StateStore`](baseshift_core::StateStore) on this connection.
    pub fn state_store(&self) -> PostgresStateStore {
        PostgresStateStore { shared: self.shared.clone() }
    }

    /// A [`TemplateStore`](baseshift_core::TemplateStore) on this connection.
    pub fn template_store(&self) -> PostgresTemplateStore {
        PostgresTemplateStore { shared: self.shared.clone() }
    }

    /// Creates the schema if it is missing and applies the pending migrations; applying
    /// them again is a no-op. Concurrent calls (several instances starting at once) are
    /// serialized by an advisory lock.
    ///
    /// Nothing runs migrations implicitly: call this at startup, or apply the SQL files
    /// of this crate's `migrations/` directory with your own tooling (each `N_name.up.sql`
    /// in order, inside the configured schema) and never call it.
    pub async fn migrate(&self) -> Result<()> {
        const OP: &str = "Postgres::migrate";
        let migrator = self.migrator();
        let mut conn = self.dedicated(OP).await?;
        let result = migrator.run(&mut conn).await;
        // A failed run may leave its advisory lock held: closing the session releases it.
        let _ = conn.close().await;
        result.map_err(|e| backend_error(ErrorKind::Internal, OP, format!("migration failed: {e}")).with_source(e))
    }

    /// Reverts every migration (drops baseshift's tables and their data), leaving the
    /// empty schema. For tests and for uninstalling.
    pub async fn revert_migrations(&self) -> Result<()> {
        const OP: &str = "Postgres::revert_migrations";
        let migrator = self.migrator();
        let mut conn = self.dedicated(OP).await?;
        let result = migrator.undo(&mut conn, 0).await;
        let _ = conn.close().await;
        self.shared.snapshots.clear();
        result.map_err(|e| backend_error(ErrorKind::Internal, OP, format!("reverting failed: {e}")).with_source(e))
    }

    /// Drops the whole schema with everything in it. For tests and for removing a tenant.
    pub async fn drop_schema(&self) -> Result<()> {
        const OP: &str = "Postgres::drop_schema";
        // The schema name is validated (`[a-z_][a-z0-9_]*`), so quoting it is enough.
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema());
        let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&self.shared.pool).await.map_err(db(OP));
        self.shared.snapshots.clear();
        dropped?;
        Ok(())
    }

    /// The versions of the migrations embedded in this crate, ascending.
    pub fn migration_versions() -> Vec<i64> {
        MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).map(|m| m.version).collect()
    }

    /// Closes the pool and stops the listener.
    pub async fn close(&self) {
        if let Some(task) = &self.shared.listener {
            task.abort();
        }
        self.shared.pool.close().await;
    }

    fn migrator(&self) -> Migrator {
        let schema = self.schema();
        let mut migrator = Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
        migrator.create_schema(format!("\"{schema}\""));
        migrator.dangerous_set_table_name(format!("\"{schema}\"._sqlx_migrations"));
        migrator
    }

    async fn dedicated(&self, op: &'static str) -> Result<PgConnection> {
        PgConnection::connect_with(&self.shared.options).await.map_err(db(op))
    }
}

/// Subscribes to [`CHANNEL`] before returning (so no wake-up after `connect` is missed),
/// then forwards notifications for this schema to `work` from a background task.
async fn start_listener(
    options: &PgConnectOptions,
    config: &PostgresConfig,
    work: Arc<Notify>,
) -> Result<JoinHandle<()>> {
    const OP: &str = "Postgres::connect";
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await.map_err(db(OP))?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await.map_err(db(OP))?;
    let schema = config.schema.clone();
    Ok(tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listener.try_recv().await {
                Ok(Some(note)) => {
                    backoff = Duration::from_millis(100);
                    if note.payload() == schema {
                        wake(&work);
                    }
                }
                // The connection dropped and was re-established: a notification may be lost.
                Ok(None) => wake(&work),
                Err(e) => {
                    tracing::warn!(error = %e, "postgres work listener failed; waiters fall back to polling");
                    wake(&work);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }))
}
