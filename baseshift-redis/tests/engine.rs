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
        let key = (ctx.workflow_id.to_string(), ctx.job_id.clone());
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
