//! The worker's first poll on the in-memory backends: a worker that runs a long queue of
//! jobs, each finishing at its first poll, still lets the runtime's other tasks run; and a
//! job entered among the running ones only after its first poll still gets a cancellation
//! that came before it was entered.

use super::*;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use crate::state::WorkflowStatus;
use crate::template::{JobSpec, WorkflowTemplate};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Counts its runs and finishes at once.
#[derive(Clone, Default)]
struct Count(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl JobRunner for Count {
    fn job_type(&self) -> &str {
        "count"
    }
    fn validate_config(&self, _config: &Value) -> crate::Result<()> {
        Ok(())
    }
    async fn run(&self, _ctx: JobContext) -> Result<JobOutput, JobError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(JobOutput::json(Value::Null))
    }
}

/// On one thread, a chain's worker claims each next job in its own step and never waits.
/// Another task, woken meanwhile, must still get turns before the chain ends: it sees
/// the run count strictly between 0 and the chain's length.
#[tokio::test(flavor = "current_thread")]
async fn a_worker_running_a_long_chain_yields_to_other_tasks() {
    const N: usize = 2_000;
    let count = Count::default();
    let engine = Engine::builder().concurrency(4).runner(count.clone()).build().unwrap();
    let mut t = WorkflowTemplate::new("long-chain", semver::Version::new(1, 0, 0));
    for i in 0..N {
        let job = JobSpec::new(format!("j{i}"), "count");
        t = t.job(if i == 0 { job } else { job.depends_on([format!("j{}", i - 1)]) });
    }
    engine.register_template(t).await.unwrap();
    engine.launch().await.unwrap();
    let runs = count.0.clone();
    let observer = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let n = runs.load(Ordering::SeqCst);
            seen.push(n);
            if n >= N {
                return seen;
            }
            tokio::task::yield_now().await;
        }
    });
    let id = engine.start("long-chain", json!({})).await.unwrap();
    let report = engine.wait(&id).await.unwrap();
    assert_eq!(report.status, WorkflowStatus::Completed);
    let seen = observer.await.unwrap();
    let between = seen.iter().filter(|&&n| n > 0 && n < N).count();
    assert!(between > 0, "the observer never ran while the chain was running: it saw {seen:?}");
    engine.shutdown().await;
}

/// Cancels its own workflow in its first poll, then waits for its cancellation token.
#[derive(Clone, Default)]
struct CancelSelf(Arc<OnceLock<Engine>>);

#[async_trait::async_trait]
impl JobRunner for CancelSelf {
    fn job_type(&self) -> &str {
        "cancel-self"
    }
    fn validate_config(&self, _config: &Value) -> crate::Result<()> {
        Ok(())
    }
    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let engine = self.0.get().expect("engine set before the workflow starts");
        engine.cancel(&ctx.workflow_id).await.map_err(|e| JobError::permanent(e.to_string()))?;
        ctx.cancellation.cancelled().await;
        Err(JobError::retryable("stopped by its cancellation"))
    }
}

/// The cancellation runs inside the attempt's first poll, so it looks for the job before
/// the worker enters it among the running ones: the worker must notice it anyway and
/// cancel the attempt's token (else the attempt waits forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_before_the_job_is_entered_still_reaches_it() {
    let runner = CancelSelf::default();
    let engine = Engine::builder().runner(runner.clone()).build().unwrap();
    assert!(runner.0.set(engine.clone()).is_ok());
    let t = WorkflowTemplate::new("cancel-self", semver::Version::new(1, 0, 0)).job(JobSpec::new("job", "cancel-self"));
    engine.register_template(t).await.unwrap();
    engine.launch().await.unwrap();
    let id = engine.start("cancel-self", json!({})).await.unwrap();
    let done = engine.wait_timeout(&id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(done.status, WorkflowStatus::Cancelled);
    for _ in 0..500 {
        if engine.inner.total_running.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.inner.total_running.load(Ordering::SeqCst), 0, "the attempt was never told to stop");
    engine.shutdown().await;
}
