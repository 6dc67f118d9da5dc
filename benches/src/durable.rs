//! The durable-backend scenarios of BENCH.md (`enqueue`, `enqueue-bulk`, `process`,
//! `drain`, `diamonds`, `latency`), written once against [`Durable`] and run for Redis
//! and PostgreSQL.

use crate::cli::Options;
use crate::report::{before, note, percentile_ms, result, secs};
use crate::{shapes, workload};
use async_trait::async_trait;
use baseshift_core::engine::Engine;
use baseshift_core::{Error, Result, StateStore, WorkflowStatus};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Engine worker concurrency on durable backends (BENCH.md).
pub const CONCURRENCY: usize = 16;

/// A durable backend the scenarios run on (`?Send`: the drivers' futures are not
/// `Send` for every lifetime, and the harness never moves them across tasks).
#[async_trait(?Send)]
pub trait Durable: Send + Sync {
    /// The backend name printed in `RESULT` lines.
    fn name(&self) -> &'static str;
    /// A fresh, empty store (own key prefix or schema) labelled `tag`: whatever an earlier
    /// scenario or scaling point with the same tag left is removed first.
    async fn open(&self, tag: &str) -> Result<Box<dyn Fresh>>;
    /// A server-side counter of work done and its unit (Redis commands, PostgreSQL
    /// commits), read to report the cost per job.
    async fn counter(&self) -> Result<(u64, &'static str)>;
}

/// One fresh store, removed again by [`close`](Fresh::close).
#[async_trait(?Send)]
pub trait Fresh: Send + Sync {
    /// The store for the engine.
    fn store(&self) -> Arc<dyn StateStore>;
    /// Deletes everything the store wrote.
    async fn close(self: Box<Self>) -> Result<()>;
}

/// Runs the selected durable scenarios on `backend`.
pub async fn run(opts: &Options, backend: &dyn Durable) -> Result<()> {
    let name = backend.name();
    let n = opts.size(20_000, 40);
    if opts.scenario("enqueue") {
        before("baseshift", name, "enqueue");
        enqueue(backend, n, false).await?;
    }
    if opts.scenario("enqueue-bulk") {
        before("baseshift", name, "enqueue-bulk");
        note(format!("{name} enqueue-bulk: Engine::start_many, {} workflows per call", workload::CHUNK));
        enqueue(backend, n, true).await?;
    }
    if opts.scenario("process") {
        before("baseshift", name, "process");
        let (elapsed, cost) = process(backend, n).await?;
        result("baseshift", name, "process", n, elapsed);
        note(format!(
            "{name} process: {cost} per single-job workflow (claim, run, complete, relay, and the waiter's reads)"
        ));
    }
    if opts.scenario("drain") {
        before("baseshift", name, "drain");
        drain(backend, n).await?;
    }
    if opts.scenario("diamonds") {
        before("baseshift", name, "diamonds");
        diamonds(backend, (opts.size(10_000, 50) / 5).max(1)).await?;
    }
    if opts.scenario("latency") {
        before("baseshift", name, "latency");
        latency(backend, opts.size(1_000, 10)).await?;
    }
    Ok(())
}

/// Server work per item, from a [`Durable::counter`] delta.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    per_item: f64,
    unit: &'static str,
}

impl Cost {
    async fn since(backend: &dyn Durable, start: u64, items: usize) -> Result<Cost> {
        let (now, unit) = backend.counter().await?;
        Ok(Cost { per_item: now.saturating_sub(start) as f64 / items.max(1) as f64, unit })
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} {}", self.per_item, self.unit)
    }
}

/// Builds an engine over `fresh`, runs `body`, then shuts the engine down and removes the
/// store's data whether `body` succeeded or not.
async fn with_engine<F, Fut, T>(
    backend: &dyn Durable,
    tag: &str,
    templates: Vec<baseshift_core::WorkflowTemplate>,
    body: F,
) -> Result<T>
where
    F: FnOnce(Engine) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let fresh = backend.open(tag).await?;
    let outcome = match workload::engine(Some(fresh.store()), CONCURRENCY, templates).await {
        Ok(engine) => {
            let out = body(engine.clone()).await;
            engine.shutdown().await;
            out
        }
        Err(e) => Err(e),
    };
    let closed = fresh.close().await;
    let value = outcome?;
    closed?;
    Ok(value)
}

async fn enqueue(backend: &dyn Durable, n: usize, bulk: bool) -> Result<()> {
    let scenario = if bulk { "enqueue-bulk" } else { "enqueue" };
    with_engine(backend, scenario, vec![shapes::single()], |engine| async move {
        let c0 = backend.counter().await?.0;
        let t0 = Instant::now();
        let ids = if bulk {
            workload::start_chunked(&engine, shapes::SINGLE, n).await?
        } else {
            workload::start_sequential(&engine, shapes::SINGLE, n).await?
        };
        let elapsed = secs(t0);
        let cost = Cost::since(backend, c0, n).await?;
        for id in [ids.first(), ids.last()].into_iter().flatten() {
            engine.state_store().workflow(id).await?;
        }
        if ids.len() != n {
            return Err(Error::internal(format!("{scenario}: {} of {n} starts returned", ids.len())));
        }
        result("baseshift", backend.name(), scenario, n, elapsed);
        note(format!("{} {scenario}: {cost} per start", backend.name()));
        Ok(())
    })
    .await
}

/// `process`: the store pre-filled with `n` single-job workflows (1 000 concurrent starts
/// at a time), then the engine launched at t0; returns seconds until all are read back
/// completed, and the server work per workflow in that time.
pub async fn process(backend: &dyn Durable, n: usize) -> Result<(f64, Cost)> {
    with_engine(backend, "process", vec![shapes::single()], |engine| async move {
        let ids = workload::start_chunked(&engine, shapes::SINGLE, n).await?;
        let c0 = backend.counter().await?.0;
        let t0 = Instant::now();
        engine.launch().await?;
        workload::wait_all(&engine, &ids).await?;
        let elapsed = secs(t0);
        Ok((elapsed, Cost::since(backend, c0, n).await?))
    })
    .await
}

async fn drain(backend: &dyn Durable, n: usize) -> Result<()> {
    with_engine(backend, "drain", vec![shapes::single()], |engine| async move {
        engine.launch().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        let ids = workload::start_sequential(&engine, shapes::SINGLE, n).await?;
        workload::wait_all(&engine, &ids).await?;
        result("baseshift", backend.name(), "drain", n, secs(t0));
        Ok(())
    })
    .await
}

async fn diamonds(backend: &dyn Durable, workflows: usize) -> Result<()> {
    with_engine(backend, "diamonds", vec![shapes::diamond()], |engine| async move {
        engine.launch().await?;
        let t0 = Instant::now();
        let ids = workload::start_sequential(&engine, shapes::DIAMOND, workflows).await?;
        workload::wait_all(&engine, &ids).await?;
        result("baseshift", backend.name(), "diamonds", workflows * 5, secs(t0));
        Ok(())
    })
    .await
}

async fn latency(backend: &dyn Durable, n: usize) -> Result<()> {
    with_engine(backend, "latency", vec![shapes::chain3()], |engine| async move {
        engine.launch().await?;
        let mut samples = Vec::with_capacity(n);
        let t0 = Instant::now();
        for i in 0..n {
            let started = Instant::now();
            let id = engine.start(shapes::CHAIN3, json!({ "i": i })).await?;
            let done = engine.wait(&id).await?;
            if done.status != WorkflowStatus::Completed {
                return Err(Error::internal(format!("latency workflow {id} ended {}", done.status)));
            }
            samples.push(secs(started));
        }
        let elapsed = secs(t0);
        samples.sort_by(f64::total_cmp);
        let name = backend.name();
        note(format!("{name} latency p50 {:.2} ms (3-job chain, start -> completed)", percentile_ms(&samples, 50.0)));
        note(format!("{name} latency p99 {:.2} ms", percentile_ms(&samples, 99.0)));
        result("baseshift", name, "latency", n, elapsed);
        Ok(())
    })
    .await
}
