//! Engine behaviour tests on the in-memory backends, driven by a scripted runner.

use super::*;
use crate::bus::MemoryEventBus;
use crate::event::Topic;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use crate::state::{JobStatus, WorkflowStatus};
use crate::template::{CompensationSpec, JobSpec, RetryPolicy, Trigger, WorkflowTemplate};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One call the scripted runner saw.
#[derive(Clone, Debug)]
struct Call {
    job: String,
    attempt: u32,
    lease_token: Option<String>,
    at: tokio::time::Instant,
}

/// A scripted runner (`script` job type). Config:
/// `fail_times` (retryable failures before success), `permanent` (always fail permanently),
/// `hang` (never return), `sleep_ms`, `output` (returned), `echo` (returns config.echo).
#[derive(Clone, Default)]
struct Script {
    calls: Arc<Mutex<Vec<Call>>>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

struct DropGuard(Arc<AtomicUsize>);
impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Running(Arc<AtomicUsize>);
impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Script {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn order(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.job).collect()
    }
}

#[async_trait::async_trait]
impl JobRunner for Script {
    fn job_type(&self) -> &str {
        "script"
    }
    fn validate_config(&self, _config: &Value) -> crate::Result<()> {
        Ok(())
    }
    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        self.calls.lock().unwrap().push(Call {
            job: ctx.job_id.to_string(),
            attempt: ctx.attempt,
            lease_token: ctx.lease_token.as_ref().map(|t| t.to_string()),
            at: tokio::time::Instant::now(),
        });
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let _running = Running(self.running.clone());
        let _guard = DropGuard(self.dropped.clone());
        let c = &ctx.config;
        if let Some(ms) = c.get("sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if c.get("hang").and_then(Value::as_bool) == Some(true) {
            std::future::pending::<()>().await;
        }
        if c.get("permanent").and_then(Value::as_bool) == Some(true) {
            return Err(JobError::permanent(format!("{} refuses", ctx.job_id)));
        }
        let fail_times = c.get("fail_times").and_then(Value::as_u64).unwrap_or(0) as u32;
        if ctx.attempt <= fail_times {
            return Err(JobError::retryable(format!("{} flaky attempt {}", ctx.job_id, ctx.attempt)));
        }
        if let Some(e) = c.get("echo") {
            return Ok(JobOutput::json(e.clone()));
        }
        Ok(JobOutput::json(c.get("output").cloned().unwrap_or(json!({ "job": ctx.job_id }))))
    }
}

fn fast_retry(n: u32) -> RetryPolicy {
    RetryPolicy::attempts(n).initial_delay(Duration::from_millis(5)).max_delay(Duration::from_millis(20))
}

async fn engine_with(script: &Script) -> Engine {
    let engine = Engine::builder().runner(script.clone()).lease_ttl(Duration::from_secs(5)).build().unwrap();
    engine.launch().await.unwrap();
    engine
}

fn tpl(id: &str) -> WorkflowTemplate {
    WorkflowTemplate::new(id, semver::Version::new(1, 0, 0))
}

async fn run(engine: &Engine, t: WorkflowTemplate, input: Value) -> (WorkflowId, WorkflowReport) {
    let tid = t.template_id.clone();
    engine.register_template(t).await.unwrap();
    let id = engine.start(&tid, input).await.unwrap();
    engine.wait_timeout(&id, Duration::from_secs(20)).await.unwrap();
    let report = engine.status(&id).await.unwrap();
    (id, report)
}

fn status_of(r: &WorkflowReport, job: &str) -> JobStatus {
    r.job(job).unwrap_or_else(|| panic!("no job {job}")).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_runs_in_list_order_and_publishes_every_transition() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let mut sub = engine.event_bus().subscribe(&[Topic::JobEvents, Topic::WorkflowEvents], "test").await.unwrap();
    let t =
        tpl("chain").job(JobSpec::new("a", "script")).job(JobSpec::new("b", "script")).job(JobSpec::new("c", "script"));
    let (id, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Completed);
    assert_eq!(script.order(), vec!["a", "b", "c"]);
    let tokens: std::collections::HashSet<_> =
        script.calls().into_iter().map(|c| c.lease_token.expect("leased")).collect();
    assert_eq!(tokens.len(), 3, "each attempt runs under its own lease token");
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("workflow_completed") {
        let d =
            tokio::time::timeout(Duration::from_secs(5), sub.next()).await.expect("event in time").unwrap().unwrap();
        assert_eq!(d.event.payload.workflow_id, id);
        seen.push(format!(
            "{}{}",
            d.event.event_type,
            d.event.payload.job_id.clone().map(|j| format!(":{j}")).unwrap_or_default()
        ));
        d.ack().await.unwrap();
    }
    let expected = [
        "workflow_initialized",
        "workflow_running",
        "job_ready:a",
        "job_running:a",
        "job_succeeded:a",
        "job_ready:b",
        "job_running:b",
        "job_succeeded:b",
        "job_ready:c",
        "job_running:c",
        "job_succeeded:c",
        "workflow_completed",
    ];
    // Job and workflow topics interleave freely; within each topic the order is fixed.
    let jobs: Vec<&String> = seen.iter().filter(|s| s.starts_with("job_")).collect();
    let wfs: Vec<&String> = seen.iter().filter(|s| s.starts_with("workflow_")).collect();
    assert_eq!(jobs, expected.iter().filter(|s| s.starts_with("job_")).collect::<Vec<_>>());
    assert_eq!(wfs, expected.iter().filter(|s| s.starts_with("workflow_")).collect::<Vec<_>>());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_then_succeeds() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let t = tpl("retry").job(JobSpec::new("flaky", "script").config(json!({ "fail_times": 2 })).retry(fast_retry(3)));
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Completed);
    let attempts: Vec<u32> = script.calls().iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert_eq!(report.job("flaky").unwrap().attempt, 3);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_the_job_and_skip_dependents() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let t = tpl("exhaust")
        .job(JobSpec::new("flaky", "script").config(json!({ "fail_times": 5 })).retry(fast_retry(2)))
        .job(JobSpec::new("after", "script"));
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Failed);
    assert_eq!(status_of(&report, "flaky"), JobStatus::Failed);
    assert_eq!(status_of(&report, "after"), JobStatus::Skipped);
    assert_eq!(script.calls().len(), 2);
    assert!(report.workflow.error.as_deref().unwrap_or("").contains("flaky"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_drops_the_runner_future_and_marks_the_job_timed_out() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let t = tpl("timeout")
        .job(JobSpec::new("slow", "script").config(json!({ "hang": true })).timeout(Duration::from_millis(100)));
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Failed);
    let job = report.job("slow").unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_ref().unwrap().kind, "timeout");
    assert_eq!(script.dropped.load(Ordering::SeqCst), 1, "the runner's future was dropped");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_running_jobs() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let t = tpl("cancel")
        .job(JobSpec::new("long", "script").config(json!({ "hang": true })))
        .job(JobSpec::new("next", "script"));
    engine.register_template(t).await.unwrap();
    let id = engine.start("cancel", json!({})).await.unwrap();
    for _ in 0..200 {
        if !script.calls().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.cancel(&id).await.unwrap();
    let done = engine.wait_timeout(&id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(done.status, WorkflowStatus::Cancelled);
    let report = engine.status(&id).await.unwrap();
    assert_eq!(status_of(&report, "long"), JobStatus::Cancelled);
    assert_eq!(status_of(&report, "next"), JobStatus::Cancelled);
    for _ in 0..200 {
        if script.dropped.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(script.dropped.load(Ordering::SeqCst), 1, "the running job was stopped");
    engine.cancel(&id).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_false_skips_a_branch_and_none_failed_joins() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let t = tpl("branch")
        .job(JobSpec::new("check", "script").config(json!({ "output": { "big": false } })))
        .job(JobSpec::new("large", "script").depends_on(["check"]).when("jobs.check.output.big == true"))
        .job(
            JobSpec::new("small", "script").depends_on(["check"]).when("jobs.check.output.big == false && input.n > 1"),
        )
        .job(JobSpec::new("join", "script").depends_on(["large", "small"]).trigger(Trigger::NoneFailed))
        .job(JobSpec::new("strict", "script").depends_on(["large", "small"]));
    let (_, report) = run(&engine, t, json!({ "n": 2 })).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Completed);
    assert_eq!(status_of(&report, "large"), JobStatus::Skipped);
    assert_eq!(status_of(&report, "small"), JobStatus::Succeeded);
    assert_eq!(status_of(&report, "join"), JobStatus::Succeeded);
    assert_eq!(status_of(&report, "strict"), JobStatus::Skipped, "all_success with a skipped parent skips");
    assert!(!script.order().contains(&"large".to_string()));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensations_run_in_reverse_completion_order() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let undo = |what: &str| CompensationSpec::new("script", json!({ "output": { "undid": what } }));
    let t = tpl("saga")
        .job(JobSpec::new("reserve", "script").compensate(undo("reserve")))
        .job(JobSpec::new("charge", "script").compensate(undo("charge")))
        .job(JobSpec::new("ship", "script").config(json!({ "permanent": true })).compensate(undo("ship")));
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Failed);
    assert_eq!(script.order(), vec!["reserve", "charge", "ship", "charge.compensate", "reserve.compensate"]);
    assert_eq!(status_of(&report, "ship.compensate"), JobStatus::Skipped, "a failed job is not compensated");
    assert_eq!(status_of(&report, "charge.compensate"), JobStatus::Succeeded);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_jobs_complete_and_fail_by_external_call() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let t = tpl("approve").job(JobSpec::new("approve", "manual")).job(JobSpec::new("after", "script"));
    engine.register_template(t).await.unwrap();
    let ok = engine.start("approve", json!({})).await.unwrap();
    let no = engine.start("approve", json!({})).await.unwrap();
    let waiting = |id: WorkflowId| {
        let engine = engine.clone();
        async move {
            for _ in 0..500 {
                let r = engine.status(&id).await.unwrap();
                if r.job("approve").unwrap().awaiting_external {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("manual job never waited");
        }
    };
    waiting(ok.clone()).await;
    waiting(no.clone()).await;
    let err = engine.complete_job(&ok, "after", json!({})).await.unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::IllegalTransition);
    engine.complete_job(&ok, "approve", json!({ "by": "ana" })).await.unwrap();
    engine.fail_job(&no, "approve", "rejected").await.unwrap();
    let ok_done = engine.wait_timeout(&ok, Duration::from_secs(5)).await.unwrap();
    let no_done = engine.wait_timeout(&no, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ok_done.status, WorkflowStatus::Completed);
    assert_eq!(no_done.status, WorkflowStatus::Failed);
    let r = engine.status(&ok).await.unwrap();
    assert_eq!(r.job("approve").unwrap().output, Some(json!({ "by": "ana" })));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_workflow_runs_and_is_awaited() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    engine
        .register_template(tpl("child").job(JobSpec::new("inner", "script").config(json!({ "echo": "${input.x}" }))))
        .await
        .unwrap();
    let parent = tpl("parent").job(
        JobSpec::new("call", "workflow").config(json!({ "template_id": "child", "input": { "x": "${input.x}" } })),
    );
    let (id, report) = run(&engine, parent, json!({ "x": "hello" })).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Completed);
    let child_id = report.job("call").unwrap().output.as_ref().unwrap()["workflow_id"].as_str().unwrap().to_owned();
    let child = engine.status(&WorkflowId::new(child_id)).await.unwrap();
    assert_eq!(child.workflow.parent.as_ref().unwrap().workflow_id, id);
    assert_eq!(child.job("inner").unwrap().output, Some(json!("hello")));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_first_workflow() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    engine.register_template(tpl("once").job(JobSpec::new("a", "script"))).await.unwrap();
    let a = engine.start_with(StartRequest::new("once").idempotency_key("order-42")).await.unwrap();
    let b = engine.start_with(StartRequest::new("once").idempotency_key("order-42")).await.unwrap();
    let c = engine.start_with(StartRequest::new("once").idempotency_key("order-43")).await.unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    engine.wait(&a).await.unwrap();
    engine.wait(&c).await.unwrap();
    assert_eq!(script.calls().len(), 2);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_type_limit_bounds_parallelism() {
    let script = Script::default();
    let engine = Engine::builder().runner(script.clone()).type_limit("script", 2).build().unwrap();
    engine.launch().await.unwrap();
    let mut t = tpl("wide").job(JobSpec::new("src", "noop"));
    for i in 0..8 {
        t = t.job(JobSpec::new(format!("w{i}"), "script").depends_on(["src"]).config(json!({ "sleep_ms": 30 })));
    }
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Completed);
    assert_eq!(script.calls().len(), 8);
    assert!(script.max_running.load(Ordering::SeqCst) <= 2, "max {}", script.max_running.load(Ordering::SeqCst));
    assert!(script.max_running.load(Ordering::SeqCst) >= 2, "jobs did run in parallel");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_runs_first() {
    let script = Script::default();
    let engine = Engine::builder().runner(script.clone()).concurrency(1).build().unwrap();
    engine.launch().await.unwrap();
    let t = tpl("prio")
        .job(JobSpec::new("gate", "manual"))
        .job(JobSpec::new("low", "script").depends_on(["gate"]).priority(1))
        .job(JobSpec::new("high", "script").depends_on(["gate"]).priority(10))
        .job(JobSpec::new("mid", "script").depends_on(["gate"]).priority(5));
    engine.register_template(t).await.unwrap();
    let id = engine.start("prio", json!({})).await.unwrap();
    for _ in 0..500 {
        if engine.status(&id).await.unwrap().job("gate").unwrap().awaiting_external {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    engine.complete_job(&id, "gate", json!(null)).await.unwrap();
    engine.wait_timeout(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(script.order(), vec!["high", "mid", "low"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_failing_the_schema_is_rejected_and_nothing_is_stored() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let t = tpl("typed")
        .input_schema(
            json!({ "type": "object", "required": ["amount"], "properties": { "amount": { "type": "number" } } }),
        )
        .job(JobSpec::new("a", "script"));
    engine.register_template(t).await.unwrap();
    let err = engine.start("typed", json!({ "amount": "ten" })).await.unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    assert!(engine.list(Default::default()).await.unwrap().is_empty());
    let big = json!({ "amount": 1, "pad": "x".repeat(2 << 20) });
    assert_eq!(engine.start("typed", big).await.unwrap_err().kind(), crate::ErrorKind::InvalidInput);
    assert!(engine.list(Default::default()).await.unwrap().is_empty());
    engine.shutdown().await;
}

struct Vault;
#[async_trait::async_trait]
impl crate::expr::SecretResolver for Vault {
    async fn resolve(&self, name: &str) -> crate::Result<String> {
        match name {
            "token" => Ok("s3cr3t-value".into()),
            _ => Err(crate::Error::not_found(format!("no secret {name}"))),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_runner_but_never_state_or_events() {
    let script = Script::default();
    let engine = Engine::builder().runner(script.clone()).secrets(Arc::new(Vault)).build().unwrap();
    engine.launch().await.unwrap();
    let mut sub = engine.event_bus().subscribe(&[Topic::JobEvents], "audit").await.unwrap();
    let t = tpl("secret")
        .job(JobSpec::new("call", "script").config(json!({ "echo": { "auth": "Bearer ${secrets.token}" } })));
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Completed);
    let stored = serde_json::to_string(&report.jobs).unwrap();
    assert!(!stored.contains("s3cr3t-value"), "secret leaked to state: {stored}");
    assert_eq!(report.job("call").unwrap().output, Some(json!({ "auth": "Bearer ***" })));
    loop {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap().unwrap();
        assert!(!serde_json::to_string(&d.event).unwrap().contains("s3cr3t-value"));
        let done = d.event.event_type == "job_succeeded";
        d.ack().await.unwrap();
        if done {
            break;
        }
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_recovers_an_expired_lease() {
    let store: Arc<dyn crate::StateStore> = Arc::new(crate::MemoryStateStore::new());
    let bus = Arc::new(MemoryEventBus::new());
    let templates: Arc<dyn crate::TemplateStore> = Arc::new(crate::MemoryTemplateStore::new());
    let script = Script::default();
    // Instance A starts the workflow but never runs jobs (it "crashed" after a claim).
    let a = Engine::builder()
        .state_store(store.clone())
        .event_bus(bus.clone())
        .template_store(templates.clone())
        .runner(script.clone())
        .build()
        .unwrap();
    a.register_template(tpl("survive").job(JobSpec::new("x", "script")).job(JobSpec::new("y", "script")))
        .await
        .unwrap();
    let id = a.start("survive", json!({})).await.unwrap();
    let claimed = store
        .claim(crate::store::ClaimRequest {
            owner: "crashed".into(),
            limit: 10,
            lease_ttl: Duration::from_millis(200),
            exclude_types: vec![],
            type_limits: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(claimed.jobs.len(), 1);
    let b = Engine::builder()
        .state_store(store.clone())
        .event_bus(bus.clone())
        .template_store(templates.clone())
        .runner(script.clone())
        .build()
        .unwrap();
    b.launch().await.unwrap();
    let done = b.wait_timeout(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.status, WorkflowStatus::Completed);
    let report = b.status(&id).await.unwrap();
    assert_eq!(report.job("x").unwrap().attempt, 2, "the re-claim is a new attempt");
    assert_eq!(script.order(), vec!["x", "y"]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_starts_workflows_left_initialized() {
    let store: Arc<dyn crate::StateStore> = Arc::new(crate::MemoryStateStore::new());
    let templates: Arc<dyn crate::TemplateStore> = Arc::new(crate::MemoryTemplateStore::new());
    let script = Script::default();
    let build = || {
        Engine::builder()
            .state_store(store.clone())
            .template_store(templates.clone())
            .runner(script.clone())
            .build()
            .unwrap()
    };
    let a = build();
    a.register_template(tpl("init").job(JobSpec::new("x", "script"))).await.unwrap();
    // Write the workflow as `start` does, but stop before its first step (a crash).
    let compiled = a.inner.compile(&templates.get_shared("init", None).await.unwrap()).unwrap();
    let wid = WorkflowId::generate();
    let jobs = plan::initial_records(&compiled, &wid);
    let mut header = crate::state::WorkflowRecord::initialized(wid.clone(), "init", "1.0.0", json!({}));
    header.remaining = 1;
    store
        .create_workflow(crate::store::NewWorkflow {
            header,
            jobs,
            template: compiled.template().clone(),
            events: vec![],
        })
        .await
        .unwrap();
    let b = build();
    let report = b.launch().await.unwrap();
    assert_eq!(report.started, 1);
    assert_eq!(b.wait_timeout(&wid, Duration::from_secs(5)).await.unwrap().status, WorkflowStatus::Completed);
    b.shutdown().await;
}

#[test]
fn public_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let engine = Engine::builder().build().unwrap();
    let id = WorkflowId::new("x");
    is_send(&engine.start("t", json!({})));
    is_send(&engine.wait(&id));
    is_send(&engine.cancel(&id));
    is_send(&engine.launch());
    is_send(&engine.status(&id));
    is_send(&engine.complete_job(&id, "j", json!(null)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_instance_stops_the_job_through_its_lease() {
    let store: Arc<dyn crate::StateStore> = Arc::new(crate::MemoryStateStore::new());
    let templates: Arc<dyn crate::TemplateStore> = Arc::new(crate::MemoryTemplateStore::new());
    let script = Script::default();
    let worker = Engine::builder()
        .state_store(store.clone())
        .template_store(templates.clone())
        .runner(script.clone())
        .lease_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    worker.launch().await.unwrap();
    // The second instance never launches workers: it only starts and cancels.
    let control = Engine::builder()
        .state_store(store.clone())
        .template_store(templates.clone())
        .runner(script.clone())
        .build()
        .unwrap();
    control
        .register_template(tpl("remote").job(JobSpec::new("long", "script").config(json!({ "hang": true }))))
        .await
        .unwrap();
    let id = control.start("remote", json!({})).await.unwrap();
    for _ in 0..300 {
        if !script.calls().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(script.calls().len(), 1, "the worker instance started the job");
    control.cancel(&id).await.unwrap();
    for _ in 0..300 {
        if script.dropped.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(script.dropped.load(Ordering::SeqCst), 1, "the lease renewal told the worker to stop");
    let report = worker.status(&id).await.unwrap();
    assert_eq!(status_of(&report, "long"), JobStatus::Cancelled);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_condition_that_cannot_be_evaluated_skips_the_job() {
    let script = Script::default();
    let engine = engine_with(&script).await;
    let t = tpl("badroot")
        .job(JobSpec::new("maybe", "script").when("input.missing.field == 1"))
        .job(JobSpec::new("always", "script").depends_on(Vec::<String>::new()));
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Completed);
    assert_eq!(status_of(&report, "maybe"), JobStatus::Skipped);
    assert_eq!(script.order(), vec!["always"]);
    assert_eq!(engine.recover().await.unwrap().failed, 0);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spaces_job_starts() {
    let script = Script::default();
    let engine =
        Engine::builder().runner(script.clone()).rate_limit("script", RateLimit::new(20.0, 1)).build().unwrap();
    engine.launch().await.unwrap();
    let mut t = tpl("rated").job(JobSpec::new("src", "noop"));
    for i in 0..6 {
        t = t.job(JobSpec::new(format!("r{i}"), "script").depends_on(["src"]));
    }
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(report.workflow.status, WorkflowStatus::Completed);
    let mut at: Vec<_> = script.calls().into_iter().map(|c| c.at).collect();
    at.sort();
    assert_eq!(at.len(), 6);
    for w in at.windows(2) {
        // 20 per second with a burst of 1: starts at least ~50 ms apart (a little slack for timers).
        assert!(w[1] - w[0] >= Duration::from_millis(40), "starts {:?} apart", w[1] - w[0]);
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_holds_a_failing_type_then_probes() {
    let script = Script::default();
    let engine = Engine::builder()
        .runner(script.clone())
        .circuit_breaker(CircuitBreaker::new(3, Duration::from_millis(400)))
        .build()
        .unwrap();
    engine.launch().await.unwrap();
    let mut sub = engine.event_bus().subscribe(&[Topic::SystemEvents], "breaker").await.unwrap();
    let t =
        tpl("flaky-dep").job(JobSpec::new("call", "script").config(json!({ "fail_times": 4 })).retry(fast_retry(10)));
    let (_, report) = run(&engine, t, json!({})).await;
    assert_eq!(
        report.workflow.status,
        WorkflowStatus::Completed,
        "jobs wait while the breaker is open; they do not fail"
    );
    let calls = script.calls();
    assert_eq!(calls.iter().map(|c| c.attempt).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    // Attempts 1-3 open the breaker; attempt 4 is the half-open probe after the cool-down,
    // it fails and reopens it; attempt 5 is the next probe, which succeeds.
    assert!(calls[3].at - calls[2].at >= Duration::from_millis(350), "held for the cool-down");
    assert!(calls[4].at - calls[3].at >= Duration::from_millis(350), "a failed probe reopens");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap().unwrap();
        if d.event.event_type.starts_with("circuit_") {
            assert_eq!(d.event.payload.result.as_ref().unwrap()["job_type"], "script");
            seen.push(d.event.event_type.clone());
        }
        d.ack().await.unwrap();
    }
    assert_eq!(seen, vec!["circuit_opened", "circuit_opened", "circuit_closed"]);
    engine.shutdown().await;
}

#[test]
fn bad_flow_control_settings_are_rejected_at_build() {
    let err = Engine::builder().rate_limit("x", RateLimit::new(0.0, 1)).build().unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    assert!(err.message().contains("rate_limits[x]"));
    let err = Engine::builder().rate_limit("x", RateLimit::new(5.0, 0)).build().unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    let err = Engine::builder().circuit_breaker(CircuitBreaker::new(0, Duration::from_secs(1))).build().unwrap_err();
    assert!(err.message().contains("failure_threshold"));
    assert_eq!(Engine::builder().concurrency(0).build().unwrap_err().kind(), crate::ErrorKind::InvalidInput);
}
