//! Flow control (BENCH.md): `diamonds` again with a concurrency key on every job (at most
//! 4 running per key, 100 keys) and a per-type rate limit high enough not to bind, beside
//! plain `diamonds` measured just before on the same backend: the cost as a ratio.

use crate::cli::Options;
use crate::durable::Durable;
use crate::report::{before, note, result, secs};
use crate::{durable, memory, shapes, workload};
use baseshift_core::engine::{Engine, RateLimit};
use baseshift_core::{Error, JobSpec, Result, StateStore, WorkflowId, WorkflowTemplate};
use semver::Version;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Template id of [`keyed_diamond`].
const KEYED: &str = "diamond-keyed";
/// Distinct concurrency keys.
const KEYS: usize = 100;
/// Jobs running at once per key.
const PER_KEY: u32 = 4;

/// A -> {B, C, D} -> E, every job keyed by `k-${input.k}` (at most [`PER_KEY`] at once).
fn keyed_diamond() -> WorkflowTemplate {
    let job = |id: &str| JobSpec::new(id, "noop").concurrency("k-${input.k}", PER_KEY);
    WorkflowTemplate::new(KEYED, Version::new(1, 0, 0))
        .job(job("a"))
        .job(job("b").depends_on(["a"]))
        .job(job("c").depends_on(["a"]))
        .job(job("d").depends_on(["a"]))
        .job(job("e").depends_on(["b", "c", "d"]))
}

/// An engine with flow control on: a `noop` rate limit that never binds.
async fn flow_engine(store: Option<Arc<dyn StateStore>>, concurrency: usize) -> Result<Engine> {
    let mut builder =
        Engine::builder().concurrency(concurrency).rate_limit("noop", RateLimit::new(10_000_000.0, 1_000_000));
    if let Some(store) = store {
        builder = builder.state_store(store);
    }
    let engine = builder.build()?;
    engine.register_template(keyed_diamond()).await?;
    Ok(engine)
}

/// Starts `n` keyed diamonds one by one (`i`, and key `i % 100`), then waits for all.
async fn run_keyed(engine: &Engine, n: usize) -> Result<f64> {
    engine.launch().await?;
    let t0 = Instant::now();
    let mut ids: Vec<WorkflowId> = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(engine.start(KEYED, json!({ "i": i, "k": i % KEYS })).await?);
    }
    workload::wait_all(engine, &ids).await?;
    Ok(secs(t0))
}

/// Plain diamonds on `engine` (launched here); returns the elapsed seconds.
async fn run_plain(engine: &Engine, n: usize) -> Result<f64> {
    engine.launch().await?;
    let t0 = Instant::now();
    let ids = workload::start_sequential(engine, shapes::DIAMOND, n).await?;
    workload::wait_all(engine, &ids).await?;
    Ok(secs(t0))
}

/// The plain run beside the flow-controlled one: a note, so `diamonds` has one `RESULT`.
fn plain_note(backend: &str, workflows: usize, plain: f64) {
    let n = workflows * 5;
    note(format!("{backend} diamonds without flow control (for the ratio): n={n} secs={plain:.4}"));
}

fn report(backend: &str, workflows: usize, plain: f64, keyed: f64) {
    result("baseshift", backend, "diamonds-flow", workflows * 5, keyed);
    note(format!(
        "{backend} diamonds-flow ({KEYS} keys, at most {PER_KEY} running per key, non-binding rate limit): \
         {:.2}x the time of plain diamonds in this run ({plain:.3} s -> {keyed:.3} s)",
        keyed / plain.max(1e-9)
    ));
}

/// `memory diamonds` with and without flow control.
pub async fn run_memory(opts: &Options) -> Result<()> {
    let workflows = (opts.size(10_000, 50) / 5).max(1);
    before("baseshift", "memory", "diamonds");
    let engine = workload::engine(None, memory::CONCURRENCY, vec![shapes::diamond()]).await?;
    let plain = run_plain(&engine, workflows).await?;
    engine.shutdown().await;
    plain_note("memory", workflows, plain);
    before("baseshift", "memory", "diamonds-flow");
    let engine = flow_engine(None, memory::CONCURRENCY).await?;
    let keyed = run_keyed(&engine, workflows).await;
    engine.shutdown().await;
    report("memory", workflows, plain, keyed?);
    Ok(())
}

/// `<backend> diamonds` with and without flow control, each on a fresh store.
pub async fn run_durable(opts: &Options, backend: &dyn Durable) -> Result<()> {
    let name = backend.name();
    let workflows = (opts.size(10_000, 50) / 5).max(1);
    before("baseshift", name, "diamonds");
    let plain = on_fresh(backend, "diamonds-plain", |store| async move {
        let engine = workload::engine(Some(store), durable::CONCURRENCY, vec![shapes::diamond()]).await?;
        let out = run_plain(&engine, workflows).await;
        engine.shutdown().await;
        out
    })
    .await?;
    plain_note(name, workflows, plain);
    before("baseshift", name, "diamonds-flow");
    let keyed = on_fresh(backend, "diamonds-flow", |store| async move {
        let engine = flow_engine(Some(store), durable::CONCURRENCY).await?;
        let out = run_keyed(&engine, workflows).await;
        engine.shutdown().await;
        out
    })
    .await?;
    report(name, workflows, plain, keyed);
    Ok(())
}

/// Runs `body` on a fresh store of `backend`, removing the store's data afterwards.
async fn on_fresh<F, Fut>(backend: &dyn Durable, tag: &str, body: F) -> Result<f64>
where
    F: FnOnce(Arc<dyn StateStore>) -> Fut,
    Fut: std::future::Future<Output = Result<f64>>,
{
    let fresh = backend.open(tag).await?;
    let outcome = body(fresh.store()).await;
    let closed = fresh.close().await;
    let value = outcome?;
    closed.map_err(|e| Error::internal(format!("removing the {tag} store: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyed_diamond_validates() -> Result<()> {
        let t = keyed_diamond();
        t.validate()?;
        assert!(t.jobs.iter().all(|j| j.concurrency_limit == Some(PER_KEY)));
        Ok(())
    }
}
