//! The quickstart on Redis: a diamond DAG with a branch, a retry and a custom job runner,
//! its state in Redis and its templates behind a Redis cache. Prints every transition,
//! then the final status.
//!
//! Needs a Redis server at `BASESHIFT_REDIS_URL` (default `redis://127.0.0.1:6379`;
//! `scripts/services.sh` starts one). Run it with
//! `cargo run -p baseshift-redis --example redis_engine`.

use baseshift_core::engine::Engine;
use baseshift_core::{
    JobContext, JobError, JobOutput, JobRunner, MemoryTemplateStore, Topic, WorkflowStatus, WorkflowTemplate,
};
use baseshift_redis::{CachedTemplateStore, RedisConfig, RedisStateStore};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A custom job type: "resizes" an image. Its first attempt fails with a retryable error
/// to show the retry policy at work.
struct Resize;

#[async_trait::async_trait]
impl JobRunner for Resize {
    fn job_type(&self) -> &str {
        "resize"
    }

    fn validate_config(&self, config: &Value) -> baseshift_core::Result<()> {
        match config.get("width") {
            Some(w) if w.is_u64() => Ok(()),
            _ => Err(baseshift_core::runner::config_error("width", "is required (a positive integer)")),
        }
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let width: u64 = ctx.config_field("width").map_err(JobError::permanent)?;
        let source: String = ctx.config_field("source").map_err(JobError::permanent)?;
        if ctx.attempt == 1 {
            return Err(JobError::retryable("image service busy, try again"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(JobOutput::json(json!({ "url": format!("{source}?w={width}"), "width": width })))
    }
}

const TEMPLATE: &str = r#"
template_id: thumbnails
name: Thumbnails
version: 1.0.0
input_schema:
  type: object
  required: [image]
  properties:
    image: { type: string }
    size: { type: integer }
jobs:
  - id: fetch
    type: noop
    config: { output: { url: "${input.image}" } }
  - id: small
    type: resize
    depends_on: [fetch]
    config: { width: 64, source: "${jobs.fetch.output.url}" }
    retry: { max_attempts: 3, initial_delay: 50ms }
  - id: large
    type: resize
    depends_on: [fetch]
    when: "input.size > 512"
    config: { width: 1024, source: "${jobs.fetch.output.url}" }
    retry: { max_attempts: 3, initial_delay: 50ms }
  - id: publish
    type: noop
    depends_on: [small, large]
    trigger: none_failed
    config: { output: { thumbnail: "${jobs.small.output.url}" } }
"#;

#[tokio::main]
async fn main() -> baseshift_core::Result<()> {
    // A prefix of its own per run, so the example never meets earlier runs' state.
    let prefix = format!("example-{}", uuid::Uuid::now_v7().simple());
    let config = RedisConfig::builder().key_prefix(prefix).build()?;
    let store = RedisStateStore::connect(&config).await?;
    let cleanup = store.clone();
    let templates = CachedTemplateStore::connect(MemoryTemplateStore::new(), &config).await?;
    let engine =
        Engine::builder().state_store(Arc::new(store)).template_store(Arc::new(templates)).runner(Resize).build()?;
    engine.launch().await?;

    let mut events = engine.event_bus().subscribe(&[Topic::WorkflowEvents, Topic::JobEvents], "example").await?;
    let printer = tokio::spawn(async move {
        while let Some(Ok(delivery)) = events.next().await {
            let e = &delivery.event;
            let job = e.payload.job_id.as_deref().unwrap_or("-");
            let attempt = e.payload.attempt.map(|a| format!(" (attempt {a})")).unwrap_or_default();
            println!("{:<22} {:<8} {}{}", e.event_type, job, e.payload.status, attempt);
            let last = e.event_type.starts_with("workflow_")
                && e.payload.status != "RUNNING"
                && e.payload.status != "INITIALIZED";
            let _ = delivery.ack().await;
            if last {
                break;
            }
        }
    });

    engine.register_template(WorkflowTemplate::from_yaml(TEMPLATE)?).await?;
    let id = engine.start("thumbnails", json!({ "image": "https://example.com/cat.png", "size": 256 })).await?;
    let done = engine.wait(&id).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), printer).await;

    let report = engine.status(&id).await?;
    for job in &report.jobs {
        println!("job {:<8} {:<9} attempts={}", job.job_id, job.status.as_str(), job.attempt);
    }
    println!("workflow {} finished: {}", id, done.status);
    engine.shutdown().await;
    cleanup.purge().await?;
    if done.status != WorkflowStatus::Completed {
        std::process::exit(1);
    }
    Ok(())
}
