//! Engine scenarios every state store backend runs: an [`Engine`] on the store under
//! test, driven by a runner the scenario controls. Each takes a fresh, empty store.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> baseshift_core::Result<()> {
//! use baseshift_core::conformance::engine;
//! use baseshift_core::MemoryStateStore;
//! use std::sync::Arc;
//!
//! engine::dead_letter_replay_completes_the_workflow(Arc::new(MemoryStateStore::new())).await
//! # }
//! ```

use super::check::{ensure, ensure_eq, failure};
use crate::bus::MemoryEventBus;
use crate::bus::{EventBus, Subscription};
use crate::engine::Engine;
use crate::error::{ErrorKind, Result};
use crate::event::Topic;
use crate::ids::WorkflowId;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use crate::state::{JobStatus, WorkflowStatus};
use crate::store::{DeadLetterFilter, StateStore};
use crate::template::{CompensationSpec, JobSpec, RetryPolicy, WorkflowTemplate};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Fails permanently while `broken` is set; succeeds otherwise.
struct Switch {
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl JobRunner for Switch {
    fn job_type(&self) -> &str {
        "switch"
    }

    fn validate_config(&self, _config: &Value) -> Result<()> {
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> std::result::Result<JobOutput, JobError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(JobError::retryable(format!("{} is broken", ctx.job_id)));
        }
        Ok(JobOutput::json(json!({ "job": ctx.job_id })))
    }
}

struct Setup {
    engine: Engine,
    events: Subscription,
    broken: Arc<AtomicBool>,
}

async fn setup(store: Arc<dyn StateStore>) -> Result<Setup> {
    let broken = Arc::new(AtomicBool::new(true));
    let bus = Arc::new(MemoryEventBus::new());
    let engine = Engine::builder()
        .state_store(store)
        .event_bus(bus.clone())
        .runner(Switch { broken: broken.clone() })
        .build()?;
    let events = bus.subscribe(&[Topic::JobEvents, Topic::WorkflowEvents], "conformance").await?;
    engine.launch().await?;
    Ok(Setup { engine, events, broken })
}

/// `a -> b -> c`, `a -> d`, `{c, d} -> e`; `b` is the `switch` job (two attempts).
fn template(compensated: bool) -> WorkflowTemplate {
    let id = format!("dead-letters-{}", uuid::Uuid::now_v7().simple());
    let mut a = JobSpec::new("a", "noop");
    if compensated {
        a = a.compensate(CompensationSpec::new("noop", Value::Null));
    }
    let retry = RetryPolicy::attempts(2).initial_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(10));
    WorkflowTemplate::new(id, semver::Version::new(1, 0, 0))
        .job(a)
        .job(JobSpec::new("b", "switch").depends_on(["a"]).retry(retry))
        .job(JobSpec::new("c", "noop").depends_on(["b"]))
        .job(JobSpec::new("d", "noop").depends_on(["a"]))
        .job(JobSpec::new("e", "noop").depends_on(["c", "d"]))
}

async fn run_to_end(s: &Setup, t: WorkflowTemplate) -> Result<WorkflowId> {
    let tid = t.template_id.clone();
    s.engine.register_template(t).await?;
    let id = s.engine.start(&tid, json!({})).await?;
    let header = s.engine.wait_timeout(&id, Duration::from_secs(20)).await?;
    ensure_eq!(header.status, WorkflowStatus::Failed, "workflow with a broken job");
    Ok(id)
}

/// Event types seen on the bus for workflow `id`, until `last` arrives.
async fn events_until(sub: &mut Subscription, id: &WorkflowId, last: &str) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some(last) {
        let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .map_err(|_| failure(format!("no `{last}` event in time (saw {seen:?})")))?
            .ok_or_else(|| failure("the event bus closed the subscription"))??;
        if d.event.payload.workflow_id == *id {
            seen.push(d.event.event_type.to_string());
        }
        d.ack().await?;
    }
    Ok(seen)
}

/// A job out of attempts is a dead letter (listed with its attempts and last error, a
/// `job_dead_lettered` event); replaying it resets its skipped descendants, reopens the
/// `FAILED` workflow, and the workflow completes, each job succeeding once.
pub async fn dead_letter_replay_completes_the_workflow(store: Arc<dyn StateStore>) -> Result<()> {
    let mut s = setup(store).await?;
    let id = run_to_end(&s, template(false)).await?;
    let letters = s.engine.dead_letters(DeadLetterFilter::default()).await?;
    ensure_eq!(letters.len(), 1, "dead letters after the failure");
    let letter = &letters[0];
    ensure_eq!(
        (letter.workflow_id.clone(), letter.job_id.as_str(), letter.attempts),
        (id.clone(), "b", 2),
        "dead letter"
    );
    ensure!(
        letter.error.as_ref().is_some_and(|e| e.message.contains("b is broken")),
        "dead letter keeps the last error: {:?}",
        letter.error
    );
    ensure_eq!(s.engine.dead_letter(&id, "b").await?.job_id, "b", "inspecting one dead letter");
    let seen = events_until(&mut s.events, &id, "workflow_failed").await?;
    ensure!(seen.iter().any(|e| e == "job_dead_lettered"), "a job_dead_lettered event: {seen:?}");

    s.broken.store(false, Ordering::SeqCst);
    s.engine.replay(&id, "b").await?;
    let header = s.engine.wait_timeout(&id, Duration::from_secs(20)).await?;
    ensure_eq!(header.status, WorkflowStatus::Completed, "workflow after the replay");
    ensure_eq!(header.error, None, "a completed workflow has no error");
    let report = s.engine.status(&id).await?;
    for job in &report.jobs {
        ensure_eq!(job.status, JobStatus::Succeeded, "job `{}` after the replay", job.job_id);
        ensure!(job.duration_ms().is_some(), "job `{}` records its duration", job.job_id);
    }
    ensure_eq!(report.job("b").map(|j| j.attempt), Some(1), "the replay starts with fresh attempts");
    ensure!(s.engine.dead_letters(DeadLetterFilter::default()).await?.is_empty(), "no dead letter after the replay");
    let seen = events_until(&mut s.events, &id, "workflow_completed").await?;
    ensure!(seen.iter().any(|e| e == "job_replayed"), "a job_replayed event: {seen:?}");
    s.engine.shutdown().await;
    Ok(())
}

/// A discarded dead letter is no longer listed; the job stays `FAILED`, the workflow too,
/// and it can no longer be replayed.
pub async fn dead_letter_discard_hides_it(store: Arc<dyn StateStore>) -> Result<()> {
    let s = setup(store).await?;
    let id = run_to_end(&s, template(false)).await?;
    let filter = DeadLetterFilter { job_type: Some("switch".into()), ..DeadLetterFilter::default() };
    ensure_eq!(s.engine.dead_letters(filter.clone()).await?.len(), 1, "dead letters of type `switch`");
    s.engine.discard(&id, "b").await?;
    ensure!(s.engine.dead_letters(filter).await?.is_empty(), "listed after discard");
    let report = s.engine.status(&id).await?;
    ensure_eq!(report.workflow.status, WorkflowStatus::Failed, "workflow after discard");
    ensure_eq!(report.job("b").map(|j| j.status), Some(JobStatus::Failed), "job after discard");
    let err = s.engine.replay(&id, "b").await;
    ensure!(err.as_ref().is_err_and(|e| e.kind() == ErrorKind::NotFound), "replaying a discarded letter: {err:?}");
    s.engine.shutdown().await;
    Ok(())
}

/// A workflow that ran a compensation is not replayed: the replay is refused with
/// `IllegalTransition` and changes nothing.
pub async fn replay_is_refused_after_compensations(store: Arc<dyn StateStore>) -> Result<()> {
    let s = setup(store).await?;
    let id = run_to_end(&s, template(true)).await?;
    let before = s.engine.status(&id).await?;
    ensure_eq!(before.job("a.compensate").map(|j| j.status), Some(JobStatus::Succeeded), "compensation ran");
    let err = s.engine.replay(&id, "b").await;
    ensure!(
        err.as_ref().is_err_and(|e| e.kind() == ErrorKind::IllegalTransition && e.message().contains("compensation")),
        "replay after compensations: {err:?}"
    );
    ensure_eq!(s.engine.status(&id).await?, before, "state after a refused replay");
    s.engine.shutdown().await;
    Ok(())
}

/// Counts attempts running at once per concurrency key (the `key` field of the config).
#[derive(Clone, Default)]
struct KeyTracker {
    per_key: Arc<std::sync::Mutex<std::collections::HashMap<String, (usize, usize)>>>,
}

#[async_trait]
impl JobRunner for KeyTracker {
    fn job_type(&self) -> &str {
        "keyed"
    }

    fn validate_config(&self, _config: &Value) -> Result<()> {
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> std::result::Result<JobOutput, JobError> {
        let key = ctx.config["key"].as_str().unwrap_or_default().to_owned();
        {
            let mut m = self.per_key.lock().unwrap_or_else(|e| e.into_inner());
            let (now, max) = m.entry(key.clone()).or_default();
            *now += 1;
            *max = (*max).max(*now);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut m = self.per_key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((now, _)) = m.get_mut(&key) {
            *now -= 1;
        }
        Ok(JobOutput::json(json!({ "key": key })))
    }
}

/// Two engine instances on one store run 200 workflows whose jobs share 10 concurrency
/// keys with a limit of 2: never more than 2 jobs of one key run at once, across both
/// instances, and every workflow completes.
pub async fn concurrency_key_limit_holds_across_instances(store: Arc<dyn StateStore>) -> Result<()> {
    let tracker = KeyTracker::default();
    let templates: Arc<dyn crate::TemplateStore> = Arc::new(crate::MemoryTemplateStore::new());
    let mut engines = Vec::new();
    for i in 0..2 {
        let engine = Engine::builder()
            .state_store(store.clone())
            .template_store(templates.clone())
            .runner(tracker.clone())
            .concurrency(32)
            .instance_id(format!("keys-{i}"))
            .build()?;
        engines.push(engine);
    }
    let tid = format!("keys-{}", uuid::Uuid::now_v7().simple());
    let job = JobSpec::new("work", "keyed").config(json!({ "key": "k-${input.k}" })).concurrency("k-${input.k}", 2);
    engines[0].register_template(WorkflowTemplate::new(tid.clone(), semver::Version::new(1, 0, 0)).job(job)).await?;
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(engines[n % 2].start(&tid, json!({ "k": n % 10 })).await?);
    }
    // Every job is ready before the instances start claiming, so the keys are contended.
    for e in &engines {
        e.launch().await?;
    }
    for id in &ids {
        let done = engines[0].wait_timeout(id, Duration::from_secs(60)).await?;
        ensure_eq!(done.status, WorkflowStatus::Completed, "workflow {id}");
    }
    for e in &engines {
        e.shutdown().await;
    }
    let per_key = tracker.per_key.lock().unwrap_or_else(|e| e.into_inner()).clone();
    ensure_eq!(per_key.len(), 10, "keys seen");
    let over: Vec<_> = per_key.iter().filter(|(_, (_, max))| *max > 2).collect();
    ensure!(over.is_empty(), "keys that ran more than 2 jobs at once: {over:?}");
    ensure!(per_key.values().any(|(_, max)| *max == 2), "no key reached its limit: {per_key:?}");
    Ok(())
}
