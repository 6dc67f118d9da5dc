//! baseshift-core: the workflow model, the DAG engine, the backend traits and the
//! in-memory backends of baseshift.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Semantic versions of templates (re-exported so hosts need no extra dependency).
pub use semver;

pub mod bus;
#[cfg(feature = "testkit")]
pub mod conformance;
pub mod engine;
pub mod error;
pub mod event;
pub mod expr;
mod hash;
pub mod ids;
pub mod runner;
pub mod state;
pub mod store;
pub mod template;
pub mod templates;

pub use bus::{Delivery, EventBus, MemoryEventBus, Subscription};
pub use error::{Error, ErrorKind, Location, Result};
pub use event::{Event, EventPayload, Label, Topic};
pub use ids::{JobKey, Name, WorkflowId};
pub use runner::{JobContext, JobError, JobOutput, JobRunner, RunnerRegistry};
pub use state::{JobRecord, JobStatus, WorkflowRecord, WorkflowStatus};
pub use store::{MemoryStateStore, StateStore};
pub use template::{JobSpec, RetryPolicy, Trigger, WorkflowTemplate};
pub use templates::{MemoryTemplateStore, TemplateStore};
