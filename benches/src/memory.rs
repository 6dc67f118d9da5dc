//! In-memory DAG execution: `fanout`, `chain` and `diamonds` on the in-memory store.

use crate::cli::Options;
use crate::report::{before, cpu_secs, median, note, result, secs};
use crate::{baselines, shapes, workload};
use async_trait::async_trait;
use baseshift_core::engine::Engine;
use baseshift_core::{
    Error, JobContext, JobError, JobOutput, JobRunner, JobSpec, JobStatus, Result, WorkflowStatus, WorkflowTemplate,
};
use serde_json::Value;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Worker concurrency of the in-memory engine (BENCH.md fixes 16 only for durable backends).
pub const CONCURRENCY: usize = 64;

/// Runs the selected in-memory scenarios, each beside its tokio baseline (`--repeat` times,
/// alternated, reporting the medians).
pub async fn run(opts: &Options) -> Result<()> {
    let n = opts.size(10_000, 50);
    let repeat = opts.repeat.unwrap_or(1);
    if opts.scenario("fanout") {
        let base = || baselines::tokio_fanout(n);
        repeated("fanout", n, repeat, base, || one_workflow("fanout", shapes::fanout(n), n)).await?;
    }
    if opts.scenario("chain") {
        let base = || baselines::tokio_chain(n);
        repeated("chain", n, repeat, base, || one_workflow("chain", shapes::chain(n), n)).await?;
    }
    if opts.scenario("diamonds") {
        let workflows = (n / 5).max(1);
        let base = || baselines::tokio_diamonds(workflows);
        repeated("diamonds", workflows * 5, repeat, base, || diamonds(workflows)).await?;
    }
    Ok(())
}

/// Runs the tokio baseline and baseshift once each untimed (a warm-up: on a VM the first
/// run of a sequence was often 3-5x slower than the next, its memory touched for the first
/// time), then `repeat` times, alternated so that a change in the machine's load falls on
/// both; notes each pair and prints the `RESULT` lines of the median runs.
async fn repeated<B, BF, S, SF>(scenario: &str, n: usize, repeat: usize, baseline: B, run: S) -> Result<()>
where
    B: Fn() -> BF,
    BF: Future<Output = f64>,
    S: Fn() -> SF,
    SF: Future<Output = Result<f64>>,
{
    let (mut base, mut ours) = (Vec::with_capacity(repeat), Vec::with_capacity(repeat));
    let (b, o) = (baseline().await, run().await?);
    note(format!("warm-up {scenario} (not counted): tokio {b:.4} s, baseshift {o:.4} s"));
    for i in 1..=repeat {
        before("tokio-baseline", "memory", scenario);
        base.push(baseline().await);
        before("baseshift", "memory", scenario);
        ours.push(run().await?);
        if repeat > 1 {
            let (b, o) = (base[i - 1], ours[i - 1]);
            note(format!("run {i}/{repeat} {scenario}: tokio {b:.4} s, baseshift {o:.4} s ({:.1}x)", o / b));
        }
    }
    let (b, o) = (median(&mut base), median(&mut ours));
    result("tokio-baseline", "memory", scenario, n, b);
    result("baseshift", "memory", scenario, n, o);
    note(format!(
        "{scenario}: baseshift {:.2} us/job, {:.1}x the tokio baseline{}",
        o * 1e6 / n as f64,
        o / b,
        if repeat > 1 { format!(" (medians of {repeat} alternated runs)") } else { String::new() }
    ));
    Ok(())
}

/// `memory diamonds`: `workflows` five-job diamonds started one by one on a running
/// engine, until all read back completed. Returns the elapsed seconds.
async fn diamonds(workflows: usize) -> Result<f64> {
    let engine = workload::engine(None, CONCURRENCY, vec![shapes::diamond()]).await?;
    engine.launch().await?;
    let t0 = Instant::now();
    let ids = workload::start_sequential(&engine, shapes::DIAMOND, workflows).await?;
    workload::wait_all(&engine, &ids).await?;
    let elapsed = secs(t0);
    engine.shutdown().await;
    Ok(elapsed)
}

/// One workflow of `n` jobs; also notes the template's JSON parse+validate time and the
/// split of the timed part. Returns the timed seconds.
async fn one_workflow(scenario: &str, template: WorkflowTemplate, n: usize) -> Result<f64> {
    let engine = workload::engine(None, CONCURRENCY, vec![]).await?;
    engine.launch().await?;
    let text = serde_json::to_string(&template).map_err(Error::from)?;
    let parse = Instant::now();
    let parsed = WorkflowTemplate::from_json(&text)?;
    parsed.validate()?;
    note(format!("template parse+validate ({n} jobs, {scenario}): {:.1} ms", secs(parse) * 1e3));
    let template_id = parsed.template_id.clone();
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    engine.register_template(parsed).await?;
    let registered = secs(t0);
    let id = engine.start(&template_id, json!({ "i": 0 })).await?;
    let started = secs(t0);
    let done = engine.wait(&id).await?;
    let elapsed = secs(t0);
    let cpu = cpu0
        .zip(cpu_secs())
        .map_or(String::new(), |(a, b)| format!("; cpu {:.1} ms ({:.2} cores busy)", (b - a) * 1e3, (b - a) / elapsed));
    note(format!(
        "build/run split ({scenario}): register {:.1} ms, start {:.1} ms, run {:.1} ms{cpu}",
        registered * 1e3,
        (started - registered) * 1e3,
        (elapsed - started) * 1e3
    ));
    if done.status != WorkflowStatus::Completed {
        return Err(Error::internal(format!("memory {scenario} ended {}", done.status)));
    }
    engine.shutdown().await;
    Ok(elapsed)
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

/// Holds its job until the gate closes: keeps a backlog waiting behind one running job.
struct Hold(Arc<Semaphore>);

#[async_trait]
impl JobRunner for Hold {
    fn job_type(&self) -> &str {
        "hold"
    }

    fn validate_config(&self, _config: &Value) -> Result<()> {
        Ok(())
    }

    async fn run(&self, _ctx: JobContext) -> std::result::Result<JobOutput, JobError> {
        let _ = self.0.acquire().await;
        Ok(JobOutput::json(Value::Null))
    }
}

/// `memory pending`: `n` single-job workflows started through the batch API on a running
/// engine of concurrency 1 whose one slot is held, so the jobs wait `READY` while the relay
/// publishes their creation events to the bus (which keeps up to its capacity per topic):
/// the state of a backlog. Returns the seconds until the outbox is empty; the RSS per
/// pending job is what the caller measures around it.
pub async fn pending(n: usize) -> Result<f64> {
    let gate = Arc::new(Semaphore::new(0));
    let engine = Engine::builder().concurrency(1).runner(Hold(gate.clone())).build()?;
    let template = WorkflowTemplate::new("held", semver::Version::new(1, 0, 0)).job(JobSpec::new("job", "hold"));
    engine.register_template(template).await?;
    engine.launch().await?;
    let t0 = Instant::now();
    let ids = workload::start_chunked(&engine, "held", n).await?;
    while !engine.state_store().outbox_pending(1).await?.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let elapsed = secs(t0);
    if ids.len() != n {
        return Err(Error::internal(format!("memory pending: {} of {n} starts returned", ids.len())));
    }
    let last = engine.state_store().jobs(&ids[n - 1], None).await?;
    if n > 1 && last.iter().any(|j| j.status != JobStatus::Ready) {
        return Err(Error::internal("memory pending: a job of the last workflow is not READY".to_owned()));
    }
    gate.close();
    engine.shutdown().await;
    Ok(elapsed)
}
