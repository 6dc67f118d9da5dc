//! Building blocks shared by the scenarios: engines, producers and completion checks.

use baseshift_core::engine::{Engine, StartRequest};
use baseshift_core::{Error, Result, StateStore, WorkflowId, WorkflowStatus};
use serde_json::json;
use std::sync::Arc;

/// Chunk size of `enqueue-bulk` and of pre-filling stores.
pub const CHUNK: usize = 1_000;

/// An engine over `store` (the in-memory store when `None`) with `concurrency` workers,
/// not launched, with `templates` registered.
pub async fn engine(
    store: Option<Arc<dyn StateStore>>,
    concurrency: usize,
    templates: Vec<baseshift_core::WorkflowTemplate>,
) -> Result<Engine> {
    let mut builder = Engine::builder().concurrency(concurrency);
    if let Some(store) = store {
        builder = builder.state_store(store);
    }
    let engine = builder.build()?;
    for t in templates {
        engine.register_template(t).await?;
    }
    Ok(engine)
}

/// Starts `n` workflows of `template` one by one (payload: one small integer).
pub async fn start_sequential(engine: &Engine, template: &str, n: usize) -> Result<Vec<WorkflowId>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(engine.start(template, json!({ "i": i })).await?);
    }
    Ok(ids)
}

/// Starts `n` workflows of `template` through the batch API, [`CHUNK`] per call.
pub async fn start_chunked(engine: &Engine, template: &str, n: usize) -> Result<Vec<WorkflowId>> {
    let mut ids = Vec::with_capacity(n);
    for first in (0..n).step_by(CHUNK) {
        let chunk = (first..n.min(first + CHUNK)).map(|i| StartRequest::new(template).input(json!({ "i": i })));
        for started in engine.start_many(chunk).await {
            ids.push(started?);
        }
    }
    Ok(ids)
}

/// Waits for every workflow and fails unless all completed: [`Engine::wait_all`] on
/// [`CHUNK`] ids at a time, in start order, each chunk's headers checked and dropped.
///
/// Every header is still read back from the store; the harness just does not hold a
/// million of them (about 900 B each with the input rebuilt as a `Value`) at once, so the
/// drain's peak memory and the fresh pages it touches are the engine's and not the
/// harness's. The chunks are waited for in turn, so the call returns once the last
/// workflow of all is read back complete, as one call for all would.
pub async fn wait_all(engine: &Engine, ids: &[WorkflowId]) -> Result<()> {
    for chunk in ids.chunks(CHUNK) {
        for done in engine.wait_all(chunk).await? {
            if done.status != WorkflowStatus::Completed {
                return Err(Error::internal(format!("workflow {} ended {}", done.id, done.status)));
            }
        }
    }
    Ok(())
}
