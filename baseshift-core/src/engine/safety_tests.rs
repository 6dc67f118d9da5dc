//! Execution safety on the in-memory backends: concurrency keys, policy-violation audit
//! events, durations in job state and events, and the validation of the new fields.

use super::*;
use crate::event::Topic;
use crate::runner::builtin::{ShellRunner, ShellRunnerConfig};
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use crate::state::WorkflowStatus;
use crate::store::MemoryStateStore;
use crate::template::{JobSpec, WorkflowTemplate};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Attempts running now, and the most ever at once.
type Counters = (Arc<AtomicUsize>, Arc<AtomicUsize>);

/// Tracks, per concurrency key (the `key` field of its config), how many attempts run
/// now and the most that ever ran at once.
#[derive(Clone, Default)]
struct Tracker {
    per_key: Arc<Mutex<HashMap<String, Counters>>>,
    total: Arc<AtomicUsize>,
}

impl Tracker {
    fn counters(&self, key: &str) -> Counters {
        self.per_key.lock().unwrap().entry(key.to_owned()).or_default().clone()
    }

    fn max_per_key(&self) -> HashMap<String, usize> {
        self.per_key.lock().unwrap().iter().map(|(k, (_, max))| (k.clone(), max.load(Ordering::SeqCst))).collect()
    }
}

#[async_trait::async_trait]
impl JobRunner for Tracker {
    fn job_type(&self) -> &str {
        "track"
    }
    fn validate_config(&self, _config: &Value) -> crate::Result<()> {
        Ok(())
    }
    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let key = ctx.config["key"].as_str().unwrap_or_default().to_owned();
        let (now, max) = self.counters(&key);
        let running = now.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(running, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
        now.fetch_sub(1, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(JobOutput::json(json!({ "key": key })))
    }
}

fn keyed_template() -> WorkflowTemplate {
    let job = |id: &str| {
        JobSpec::new(id, "track")
            .depends_on(Vec::<String>::new())
            .config(json!({ "key": "customer-${input.customer}" }))
            .concurrency("customer-${input.customer}", 3)
    };
    WorkflowTemplate::new("keyed", semver::Version::new(1, 0, 0)).job(job("a")).job(job("b"))
}

/// 200 workflows x 2 jobs over 10 customers, two engine instances on one store with 48
/// slots each: never more than 3 jobs of one customer at once, and every job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_key_limit_holds_under_load_across_instances() {
    let tracker = Tracker::default();
    let store: Arc<dyn crate::StateStore> = Arc::new(MemoryStateStore::new());
    let templates: Arc<dyn crate::TemplateStore> = Arc::new(crate::MemoryTemplateStore::new());
    let mut engines = Vec::new();
    for i in 0..2 {
        let engine = Engine::builder()
            .state_store(store.clone())
            .template_store(templates.clone())
            .runner(tracker.clone())
            .concurrency(48)
            .instance_id(format!("i{i}"))
            .build()
            .unwrap();
        engine.launch().await.unwrap();
        engines.push(engine);
    }
    engines[0].register_template(keyed_template()).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(engines[n % 2].start("keyed", json!({ "customer": n % 10 })).await.unwrap());
    }
    for id in &ids {
        let done = engines[0].wait_timeout(id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(done.status, WorkflowStatus::Completed);
    }
    assert_eq!(tracker.total.load(Ordering::SeqCst), 400);
    let max = tracker.max_per_key();
    assert_eq!(max.len(), 10);
    assert!(max.values().all(|m| *m <= 3), "a key ran more than 3 jobs at once: {max:?}");
    assert!(max.values().any(|m| *m == 3), "the limit was never reached, so nothing was tested: {max:?}");
    let report = engines[0].status(&ids[7]).await.unwrap();
    let c = report.job("a").and_then(|j| j.concurrency.clone()).unwrap();
    assert_eq!((c.key.as_str(), c.limit), ("customer-7", 3), "the rendered key is in the job state");
    for e in engines {
        e.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_key_that_cannot_be_rendered_rejects_the_start() {
    let engine = Engine::builder().runner(Tracker::default()).build().unwrap();
    engine.register_template(keyed_template()).await.unwrap();
    let err = engine.start("keyed", json!({})).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("concurrency_key of job `a`"), "{err}");
    assert!(engine.list(Default::default()).await.unwrap().is_empty(), "nothing was stored");
}

#[test]
fn concurrency_fields_are_validated_with_their_place() {
    let head = "template_id: t\nversion: 1.0.0\njobs:\n  - id: a\n    type: noop\n";
    let cases = [
        ("    concurrency_limit: 2\n", "concurrency_limit", "without a concurrency_key"),
        ("    concurrency_key: \"c-${input.x}\"\n", "concurrency_key", "no concurrency_limit"),
        ("    concurrency_key: k\n    concurrency_limit: 0\n", "concurrency_limit", "at least 1"),
        ("    concurrency_key: \"${jobs.a.output.x}\"\n    concurrency_limit: 1\n", "concurrency_key", "may only use"),
        ("    concurrency_key: \"${secrets.s}\"\n    concurrency_limit: 1\n", "concurrency_key", "may only use"),
        ("    concurrency_key: k\n    concurrency_limit: many\n", "concurrency_limit", "concurrency_limit"),
    ];
    for (extra, field, text) in cases {
        let err = WorkflowTemplate::from_yaml(&format!("{head}{extra}")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidTemplate, "{err}");
        let loc = err.location().unwrap_or_else(|| panic!("no location: {err}"));
        assert_eq!((loc.template.as_deref(), loc.job.as_deref()), (Some("t"), Some("a")), "{err}");
        assert_eq!(loc.field.as_deref(), Some(field), "{err}");
        assert!(loc.line.is_some_and(|l| l >= 6), "a line in the job: {err}");
        assert!(err.message().contains(text), "{err}");
    }
    let ok = format!("{head}    concurrency_key: \"c-${{input.x}}\"\n");
    let t = WorkflowTemplate::from_yaml(&format!("{ok}defaults: {{ concurrency_limit: 4 }}\n")).unwrap();
    assert_eq!(t.jobs[0].concurrency_key.as_deref(), Some("c-${input.x}"));
}

/// A shell command outside the allowlist fails the job permanently with kind
/// `policy_violation`, and an audit event names the job, its type and the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_violation_is_an_audit_event() {
    let shell = ShellRunner::new(ShellRunnerConfig::default().allow_command("echo"));
    let engine = Engine::builder().runner(shell).build().unwrap();
    engine.launch().await.unwrap();
    let mut sub = engine.event_bus().subscribe(&[Topic::SystemEvents], "audit").await.unwrap();
    let t = WorkflowTemplate::new("sh", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("run", "shell").config(json!({ "argv": ["${input.cmd}", "-rf", "/tmp/x"] })));
    engine.register_template(t).await.unwrap();
    let id = engine.start("sh", json!({ "cmd": "/bin/rm" })).await.unwrap();
    let done = engine.wait_timeout(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.status, WorkflowStatus::Failed);
    let job = engine.status(&id).await.unwrap().job("run").cloned().unwrap();
    assert_eq!(job.error.as_ref().map(|e| e.kind.as_str()), Some("policy_violation"));
    assert_eq!(job.attempt, 1, "a violation is never retried");
    let d = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap().unwrap();
    let e = &d.event;
    assert_eq!(e.event_type, "policy_violation");
    assert_eq!((e.payload.workflow_id.clone(), e.payload.job_id.as_deref()), (id, Some("run")));
    let result = e.payload.result.clone().unwrap();
    assert_eq!((result["job_type"].as_str(), result["rule"].as_str()), (Some("shell"), Some("shell.allowed_commands")));
    assert!(result["message"].as_str().unwrap().contains("/bin/rm"), "{result}");
    engine.shutdown().await;
}

/// Every finished job records `started_at` / `finished_at`, and its event carries
/// `duration_ms`; a shell job's event also carries its `resource_usage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_and_resource_usage_are_recorded() {
    let shell = ShellRunner::new(ShellRunnerConfig::default().allow_command("sleep"));
    let engine = Engine::builder().runner(shell).build().unwrap();
    engine.launch().await.unwrap();
    let mut sub = engine.event_bus().subscribe(&[Topic::JobEvents], "durations").await.unwrap();
    let t = WorkflowTemplate::new("timed", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("wait", "delay").config(json!({ "duration": "40ms" })))
        .job(JobSpec::new("sh", "shell").config(json!({ "argv": ["sleep", "0.05"] })));
    engine.register_template(t).await.unwrap();
    let id = engine.start("timed", json!({})).await.unwrap();
    let done = engine.wait_timeout(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(done.status, WorkflowStatus::Completed);
    let report = engine.status(&id).await.unwrap();
    for job in ["wait", "sh"] {
        let ms = report.job(job).and_then(JobRecord::duration_ms).unwrap();
        assert!(ms >= 40, "job {job} ran {ms} ms");
    }
    let mut succeeded = HashMap::new();
    while succeeded.len() < 2 {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap().unwrap();
        if d.event.event_type == "job_succeeded" {
            succeeded.insert(d.event.payload.job_id.clone().unwrap(), d.event.payload.clone());
        }
        d.ack().await.unwrap();
    }
    assert!(succeeded["wait"].duration_ms.is_some_and(|ms| ms >= 40), "{:?}", succeeded["wait"]);
    let usage = succeeded["sh"].resource_usage.clone().expect("shell resource usage in the event");
    assert!(usage["duration_ms"].as_u64().is_some_and(|ms| ms >= 40), "{usage}");
    engine.shutdown().await;
}

/// Replay resets the failed job and the downstream jobs that failed or were skipped, with
/// their counters recomputed; a downstream job that succeeded (an `all_done` join) stays.
#[test]
fn replay_plan_resets_only_what_the_failure_stopped() {
    use crate::state::{DepCounts, JobFailure};
    use crate::template::{Trigger, Validator};
    let t = WorkflowTemplate::new("r", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop"))
        .job(JobSpec::new("b", "noop").depends_on(["a"]))
        .job(JobSpec::new("c", "noop").depends_on(["b"]))
        .job(JobSpec::new("d", "noop").depends_on(["b"]).trigger(Trigger::AllDone))
        .job(JobSpec::new("e", "noop").depends_on(["c", "d"]));
    let compiled = Validator::new().compile(&t).unwrap();
    let id = crate::WorkflowId::new("w");
    let mut jobs = plan::initial_records(&compiled, &id);
    let set = |jobs: &mut Vec<JobRecord>, job: &str, status: JobStatus, deps: DepCounts| {
        let r = jobs.iter_mut().find(|j| j.job_id == job).unwrap();
        r.status = status;
        r.deps = deps;
        r.propagated = true;
        r.attempt = 1;
    };
    let d = |total, succeeded, failed, skipped| DepCounts { total, succeeded, failed, skipped };
    set(&mut jobs, "a", JobStatus::Succeeded, d(0, 0, 0, 0));
    set(&mut jobs, "b", JobStatus::Failed, d(1, 1, 0, 0));
    jobs[1].error = Some(JobFailure::new("permanent", "boom"));
    set(&mut jobs, "c", JobStatus::Skipped, d(1, 0, 1, 0));
    set(&mut jobs, "d", JobStatus::Succeeded, d(1, 0, 1, 0));
    set(&mut jobs, "e", JobStatus::Skipped, d(2, 1, 0, 1));
    let mut header = crate::WorkflowRecord::initialized(id.clone(), "r", "1.0.0", json!({}));
    header.status = WorkflowStatus::Failed;
    let step = replay::plan_replay(&compiled, header, &jobs, "b", chrono::Utc::now()).unwrap();
    assert!(step.replay);
    assert_eq!(step.reopened, 3, "b, c and e");
    let get = |id: &str| step.jobs.iter().find(|j| j.job_id == id);
    let b = get("b").unwrap();
    assert_eq!((b.status, b.attempt), (JobStatus::Ready, 0));
    assert_eq!((get("c").unwrap().status, get("c").unwrap().deps), (JobStatus::Pending, d(1, 0, 0, 0)));
    assert!(get("d").is_none(), "a succeeded all_done join is not re-run");
    assert_eq!((get("e").unwrap().status, get("e").unwrap().deps), (JobStatus::Pending, d(2, 1, 0, 0)));
    assert_eq!(step.header.as_ref().map(|h| h.status), Some(WorkflowStatus::Running));
    let types: Vec<&str> = step.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["job_replayed", "job_pending", "job_pending", "workflow_running"]);
    let err = replay::plan_replay(&compiled, *step.header.clone().unwrap(), &jobs, "a", chrono::Utc::now());
    assert_eq!(err.unwrap_err().kind(), ErrorKind::NotFound, "a succeeded job is no dead letter");
}
