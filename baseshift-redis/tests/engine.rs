//! Two engine instances sharing one Redis (same key prefix) finish 1,000 diamond
//! workflows together, every job succeeding exactly once. Needs the Redis server at
//! `BASESHIFT_REDIS_URL` (default `redis://127.0.0.1:6379`): run `scripts/services.sh`.

use async_trait::async_trait;
use baseshift_core::engine::Engine;
use baseshift_core::store::WorkflowFilter;
use baseshift_core::{
    JobContext, JobError, JobOutput, JobRunner, JobStatus, MemoryTemplateStore, TemplateStore, WorkflowStatus,
    WorkflowTemplate,
};
use baseshift_redis::{RedisConfig, RedisStateStore};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WORKFLOWS: usize = 1_000;

/// Counts runs per (workflow, job) and per engine instance.
struct Counting {
    instance: usize,
    per_instance: Arc<[AtomicUsize; 2]>,
    runs: Arc<Mutex<HashMap<(String, String), usize>>>,
}

#[async_trait]
impl JobRunner for Counting {
    fn job_type(&self) -> &str {
        "count"
    }

    fn validate_config(&self, _config: &Value) -> baseshift_core::Result<()> {
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        self.per_instance[self.instance].fetch_add(1, Ordering::SeqCst);
        let key = (ctx.workflow_id.to_string(), ctx.job_id.to_string());
        *self.runs.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default() += 1;
        Ok(JobOutput::json(json!({ "job": ctx.job_id })))
    }
}

const DIAMOND: &str = r#"
template_id: diamond
version: 1.0.0
jobs:
  - { id: a, type: count }
  - { id: b, type: count, depends_on: [a] }
  - { id: c, type: count, depends_on: [a] }
  - { id: d, type: count, depends_on: [a] }
  - { id: e, type: count, depends_on: [b, c, d] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_finish_a_thousand_diamonds_exactly_once() {
    let prefix = format!("bstest-engine-{}", uuid::Uuid::now_v7().simple());
    let config = RedisConfig::builder().key_prefix(prefix).build().expect("valid test settings");
    let per_instance = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let templates = Arc::new(MemoryTemplateStore::new());
    templates.create(&WorkflowTemplate::from_yaml(DIAMOND).expect("template parses")).await.expect("stored");

    let mut engines = Vec::new();
    for instance in 0..2 {
        let store = RedisStateStore::connect(&config).await.unwrap_or_else(|e| {
            panic!("Redis is not reachable ({e}); start it with `scripts/services.sh` or set BASESHIFT_REDIS_URL")
        });
        let runner = Counting { instance, per_instance: per_instance.clone(), runs: runs.clone() };
        let engine = Engine::builder()
            .state_store(Arc::new(store))
            .template_store(templates.clone())
            .runner(runner)
            .concurrency(64)
            .instance_id(format!("engine-{instance}"))
            .build()
            .expect("engine builds");
        engine.launch().await.expect("engine launches");
        engines.push(engine);
    }

    let starts = (0..WORKFLOWS).map(|i| engines[i % 2].start("diamond", json!({ "n": i })));
    let ids: Vec<_> = join_all(starts).await.into_iter().collect::<Result<_, _>>().expect("workflows start");
    let waits = ids.iter().enumerate().map(|(i, id)| engines[(i + 1) % 2].wait_timeout(id, Duration::from_secs(120)));
    for (id, done) in ids.iter().zip(join_all(waits).await) {
        let done = done.unwrap_or_else(|e| panic!("workflow {id} did not finish: {e}"));
        assert_eq!(done.status, WorkflowStatus::Completed, "workflow {id}: {:?}", done.error);
    }

    let store = engines[0].state_store().clone();
    let checks = ids.iter().map(|id| {
        let store = store.clone();
        async move { (id.clone(), store.jobs(id, None).await) }
    });
    for (id, jobs) in join_all(checks).await {
        let jobs = jobs.expect("jobs read back");
        assert_eq!(jobs.len(), 5, "workflow {id}");
        for job in jobs {
            assert_eq!((job.status, job.attempt), (JobStatus::Succeeded, 1), "{id}/{}", job.job_id);
            assert_eq!(job.output, Some(json!({ "job": job.job_id })), "{id}/{}", job.job_id);
        }
    }
    let runs = runs.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(runs.len(), WORKFLOWS * 5, "distinct jobs run");
    assert!(runs.values().all(|&n| n == 1), "a job ran twice: {:?}", runs.iter().find(|(_, n)| **n != 1));
    let counts = [per_instance[0].load(Ordering::SeqCst), per_instance[1].load(Ordering::SeqCst)];
    assert_eq!(counts[0] + counts[1], WORKFLOWS * 5, "runs counted");
    assert!(counts[0] > 0 && counts[1] > 0, "both instances ran jobs: {counts:?}");

    let completed =
        WorkflowFilter { statuses: vec![WorkflowStatus::Completed], limit: WORKFLOWS + 1, ..Default::default() };
    assert_eq!(store.list_workflows(completed).await.expect("listed").len(), WORKFLOWS);
    for engine in &engines {
        engine.shutdown().await;
    }
    let cleanup = RedisStateStore::connect(&config).await.expect("reconnect");
    cleanup.purge().await.expect("test keys removed");
}

/// Retention removes finished workflows (records, dead letters, idempotency key, listing)
/// and nothing else: a running workflow and one replayed after failing stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_finished_workflows() {
    use baseshift_core::engine::StartRequest;
    use baseshift_core::{ErrorKind, JobKey, JobSpec, StateStore, WorkflowId};

    let prefix = format!("bstest-retention-{}", uuid::Uuid::now_v7().simple());
    let config = RedisConfig::builder().key_prefix(prefix).build().expect("valid test settings");
    let store = Arc::new(RedisStateStore::connect(&config).await.unwrap_or_else(|e| {
        panic!("Redis is not reachable ({e}); start it with `scripts/services.sh` or set BASESHIFT_REDIS_URL")
    }));
    let engine = Engine::builder().state_store(store.clone()).build().expect("engine builds");
    engine.launch().await.expect("engine launches");
    let quick = WorkflowTemplate::new("quick", baseshift_core::semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop"))
        .job(JobSpec::new("b", "noop"));
    let held =
        WorkflowTemplate::new("held", baseshift_core::semver::Version::new(1, 0, 0)).job(JobSpec::new("m", "manual"));
    engine.register_template(quick).await.expect("registered");
    engine.register_template(held).await.expect("registered");
    let done = engine.start_with(StartRequest::new("quick").idempotency_key("k1")).await.expect("started");
    engine.wait(&done).await.expect("finished");
    let held_id = engine.start("held", json!({})).await.expect("started");

    assert_eq!(store.apply_retention(Duration::from_secs(3600)).await.expect("retention").workflows, 0);
    let removed = store.apply_retention(Duration::ZERO).await.expect("retention");
    assert_eq!((removed.workflows, removed.jobs), (1, 2));
    assert_eq!(store.workflow(&done).await.unwrap_err().kind(), ErrorKind::NotFound);
    let client = redis::Client::open(config.url.as_str()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis connection");
    let pattern = format!("{}:*{done}*", store.key_prefix());
    let left: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.expect("KEYS");
    assert!(left.is_empty(), "keys of the removed workflow remain: {left:?}");
    let idem: Option<String> =
        redis::cmd("GET").arg(format!("{}:idem:k1", store.key_prefix())).query_async(&mut conn).await.expect("GET");
    assert_eq!(idem, None, "its idempotency key went with it");
    let listed: Vec<WorkflowId> =
        store.list_workflows(WorkflowFilter::default()).await.expect("listed").into_iter().map(|h| h.id).collect();
    assert_eq!(listed, vec![held_id.clone()], "the removed workflow is not listed; the running one is");
    let again = engine.start_with(StartRequest::new("quick").idempotency_key("k1")).await.expect("started");
    assert_ne!(again, done, "the key is free again");
    engine.wait(&again).await.expect("finished");

    let awaiting = |id: WorkflowId| {
        let store = store.clone();
        async move {
            for _ in 0..500 {
                let m = store.job(&JobKey::new(id.clone(), "m")).await.expect("job read");
                if m.status == JobStatus::Running && m.awaiting_external {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("job m never waited for its external completion");
        }
    };
    awaiting(held_id.clone()).await;
    engine.fail_job(&held_id, "m", "boom").await.expect("failed");
    assert_eq!(engine.wait(&held_id).await.expect("finished").status, WorkflowStatus::Failed);
    assert_eq!(store.dead_letters(Default::default()).await.expect("dead letters").len(), 1);
    engine.replay(&held_id, "m").await.expect("replayed");
    let kept = store.apply_retention(Duration::ZERO).await.expect("retention");
    assert_eq!(kept.workflows, 1, "only `again`; the replayed workflow runs again");
    assert_eq!(store.workflow(&held_id).await.expect("kept").status, WorkflowStatus::Running);
    awaiting(held_id.clone()).await;
    engine.fail_job(&held_id, "m", "boom again").await.expect("failed");
    assert_eq!(engine.wait(&held_id).await.expect("finished").status, WorkflowStatus::Failed);
    assert_eq!(store.apply_retention(Duration::ZERO).await.expect("retention").workflows, 1);
    assert!(store.dead_letters(Default::default()).await.expect("dead letters").is_empty());
    assert!(store.list_workflows(WorkflowFilter::default()).await.expect("listed").is_empty());
    assert_eq!(store.apply_retention(Duration::MAX).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    engine.shutdown().await;
    store.purge().await.expect("test keys removed");
}
