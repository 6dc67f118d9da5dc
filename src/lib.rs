//! # baseshift
//!
//! An embeddable, durable DAG workflow engine for Rust services: `cargo add baseshift`,
//! register your job types, pick your backends, and run workflows inside your own
//! process, with no orchestrator server to deploy.
//!
//! The default build is the in-memory engine (nothing to install). Durable backends are
//! features: `redis`, `postgres` (state and templates), `kafka` (events), `k8s` (jobs as
//! pods). See the README for the guarantees each one gives.
//!
//! ```
//! use baseshift::prelude::*;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> baseshift::Result<()> {
//! let engine = Engine::builder().build()?;
//! engine.launch().await?;
//! let template = WorkflowTemplate::from_yaml(
//!     "template_id: greet\nversion: 1.0\njobs:\n  - id: hello\n    type: noop\n",
//! )?;
//! engine.register_template(template).await?;
//! let id = engine.start("greet", json!({})).await?;
//! assert_eq!(engine.wait(&id).await?.status, WorkflowStatus::Completed);
//! engine.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub use baseshift_core::*;

/// The names most programs need.
pub mod prelude {
    pub use baseshift_core::engine::{Engine, EngineBuilder, EngineConfig, StartRequest};
    pub use baseshift_core::{
        Error, ErrorKind, Event, EventBus, JobContext, JobError, JobOutput, JobRunner, JobSpec, JobStatus, RetryPolicy,
        StateStore, TemplateStore, Topic, Trigger, WorkflowId, WorkflowStatus, WorkflowTemplate,
    };
}

/// The Redis backend (feature `redis`).
#[cfg(feature = "redis")]
pub use baseshift_redis as redis;

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub use baseshift_postgres as postgres;

/// The Kafka event bus (feature `kafka`).
#[cfg(feature = "kafka")]
pub use baseshift_kafka as kafka;

/// The Kubernetes runner (feature `k8s`).
#[cfg(feature = "k8s")]
pub use baseshift_k8s as k8s;
