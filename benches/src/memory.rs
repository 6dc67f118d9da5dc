//! In-memory DAG execution: `fanout`, `chain` and `diamonds` on the in-memory store.

use crate::cli::Options;
use crate::report::{before, note, result, secs};
use crate::{baselines, shapes, workload};
use baseshift_core::engine::Engine;
use baseshift_core::{Error, Result, WorkflowStatus, WorkflowTemplate};
use serde_json::json;
use std::time::Instant;

/// Worker concurrency of the in-memory engine (BENCH.md fixes 16 only for durable backends).
pub const CONCURRENCY: usize = 64;

/// Runs the selected in-memory scenarios, each after its tokio baseline.
pub async fn run(opts: &Options) -> Result<()> {
    let n = opts.size(10_000, 50);
    if opts.scenario("fanout") {
        before("tokio-baseline", "memory", "fanout");
        baselines::tokio_fanout(n).await;
        one_workflow("fanout", shapes::fanout(n), n).await?;
    }
    if opts.scenario("chain") {
        before("tokio-baseline", "memory", "chain");
        baselines::tokio_chain(n).await;
        one_workflow("chain", shapes::chain(n), n).await?;
    }
    if opts.scenario("diamonds") {
        let workflows = (n / 5).max(1);
        before("tokio-baseline", "memory", "diamonds");
        baselines::tokio_diamonds(workflows).await;
        before("baseshift", "memory", "diamonds");
        let engine = workload::engine(None, CONCURRENCY, vec![shapes::diamond()]).await?;
        engine.launch().await?;
        let t0 = Instant::now();
        let ids = workload::start_sequential(&engine, shapes::DIAMOND, workflows).await?;
        workload::wait_all(&engine, &ids).await?;
        result("baseshift", "memory", "diamonds", workflows * 5, secs(t0));
        engine.shutdown().await;
    }
    Ok(())
}

/// One workflow of `n` jobs; also notes the template's JSON parse+validate time.
async fn one_workflow(scenario: &str, template: WorkflowTemplate, n: usize) -> Result<()> {
    before("baseshift", "memory", scenario);
    let engine = workload::engine(None, CONCURRENCY, vec![]).await?;
    engine.launch().await?;
    let text = serde_json::to_string(&template).map_err(Error::from)?;
    let parse = Instant::now();
    let parsed = WorkflowTemplate::from_json(&text)?;
    parsed.validate()?;
    note(format!("template parse+validate ({n} jobs, {scenario}): {:.1} ms", secs(parse) * 1e3));
    let template_id = parsed.template_id.clone();
    let t0 = Instant::now();
    engine.register_template(parsed).await?;
    let registered = secs(t0);
    let id = engine.start(&template_id, json!({ "i": 0 })).await?;
    let started = secs(t0);
    let done = engine.wait(&id).await?;
    let elapsed = secs(t0);
    note(format!(
        "build/run split ({scenario}): register {:.1} ms, start {:.1} ms, run {:.1} ms",
        registered * 1e3,
        (started - registered) * 1e3,
        (elapsed - started) * 1e3
    ));
    if done.status != WorkflowStatus::Completed {
        return Err(Error::internal(format!("memory {scenario} ended {}", done.status)));
    }
    result("baseshift", "memory", scenario, n, elapsed);
    engine.shutdown().await;
    Ok(())
}

/// `memory drain`: an idle engine, `n` single-job workflows started one by one, until all
/// complete. Returns the elapsed seconds.
pub async fn drain(n: usize) -> Result<f64> {
    let engine: Engine = workload::engine(None, CONCURRENCY, vec![shapes::single()]).await?;
    engine.launch().await?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let ids = workload::start_sequential(&engine, shapes::SINGLE, n).await?;
    workload::wait_all(&engine, &ids).await?;
    let elapsed = secs(t0);
    engine.shutdown().await;
    Ok(elapsed)
}

/// `memory pending`: `n` single-job workflows started through the batch API on an engine
/// that is not launched, so every job stays `READY` (its creation events still in the
/// outbox) — the state a backlog is in. Returns the elapsed seconds; the RSS per pending
/// job is what the caller measures around it.
pub async fn pending(n: usize) -> Result<f64> {
    let engine: Engine = workload::engine(None, CONCURRENCY, vec![shapes::single()]).await?;
    let t0 = Instant::now();
    let ids = workload::start_chunked(&engine, shapes::SINGLE, n).await?;
    let elapsed = secs(t0);
    if ids.len() != n {
        return Err(Error::internal(format!("memory pending: {} of {n} starts returned", ids.len())));
    }
    let last = engine.state_store().workflow(&ids[n - 1]).await?;
    if last.status != WorkflowStatus::Running {
        return Err(Error::internal(format!("memory pending: the last workflow is {}", last.status)));
    }
    Ok(elapsed)
}
