//! PostgreSQL backend of baseshift: durable, shared workflow state
//! ([`PostgresStateStore`]) and a versioned template catalog ([`PostgresTemplateStore`]),
//! with the schema as embedded, reversible migrations.
//!
//! # Using it
//!
//! 1. Configure: [`PostgresConfig::from_env`] reads `BASESHIFT_POSTGRES_URL` (default
//!    `postgres://postgres@127.0.0.1:5432/test`); [`PostgresConfig::builder`] sets the
//!    schema, pool size, statement timeout, TLS (the URL's `sslmode`, with the `tls`
//!    feature). `build()` validates and does no I/O.
//! 2. Connect with [`Postgres::connect`], then call [`Postgres::migrate`] once at startup
//!    (it creates the schema and applies pending migrations; repeated calls are no-ops and
//!    concurrent ones are serialized). Hosts that run migrations with their own tooling
//!    apply the files in this crate's `migrations/` instead.
//! 3. Hand [`Postgres::state_store`] and [`Postgres::template_store`] to the engine.
//!    Every engine instance (process) pointed at the same database and schema shares the
//!    work: jobs are claimed under leases with `FOR UPDATE SKIP LOCKED`, a crashed
//!    instance's jobs are re-claimed when their leases expire, and idle instances are
//!    woken by `LISTEN`/`NOTIFY`.
//!
//! ```no_run
//! use baseshift_core::engine::Engine;
//! use baseshift_postgres::{Postgres, PostgresConfig};
//! use std::sync::Arc;
//!
//! # async fn run() -> baseshift_core::Result<()> {
//! let config = PostgresConfig::builder().schema("baseshift").max_connections(8).build()?;
//! let pg = Postgres::connect(&config).await?;
//! pg.migrate().await?;
//!
//! let engine = Engine::builder()
//!     .state_store(Arc::new(pg.state_store()))
//!     .template_store(Arc::new(pg.template_store()))
//!     .build()?;
//! engine.launch().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Schema
//!
//! `workflows` (one row per run: header columns, input and parent as JSONB), `jobs` (one
//! row per job: status, version, counters, lease, output as JSONB), `template_snapshots`
//! (the template version each run uses), `outbox` (events, `bigserial` order),
//! `idempotency_keys`, and the catalog's `templates` and `template_versions`. Partial
//! indexes serve the claim (`jobs_ready`, `jobs_leases`, `jobs_ready_at`).
//!
//! # Housekeeping and analytics
//!
//! [`PostgresStateStore::apply_retention`] deletes finished workflows older than a
//! cutoff in batches; [`PostgresStateStore::template_success_rates`],
//! [`job_durations`](PostgresStateStore::job_durations),
//! [`workflow_counts`](PostgresStateStore::workflow_counts) and
//! [`job_counts`](PostgresStateStore::job_counts) are typed reporting queries.

mod analytics;
mod backend;
mod config;
mod error;
mod retention;
mod rows;
mod state;
mod templates;

pub use analytics::{JobDurationStats, TemplateSuccessRate};
pub use backend::Postgres;
pub use config::{DEFAULT_SCHEMA, DEFAULT_URL, ENV_VAR, PostgresBuilder, PostgresConfig};
pub use retention::RetentionReport;
pub use state::PostgresStateStore;
pub use templates::PostgresTemplateStore;
