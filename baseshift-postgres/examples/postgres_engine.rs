//! The quickstart diamond (a fetch, two resizes, one of them retried, a publish) on
//! PostgreSQL: state, template catalog and outbox live in the database, so a second copy
//! of this program pointed at the same schema would share the work.
//!
//! Run it with `cargo run -p baseshift-postgres --example postgres_engine` against the
//! server at `BASESHIFT_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`;
//! `scripts/services.sh` starts one). It uses the schema `baseshift_example`.

use baseshift_core::engine::Engine;
use baseshift_core::{
    JobContext, JobError, JobOutput, JobRunner, TemplateStore, Topic, WorkflowStatus, WorkflowTemplate,
};
use baseshift_postgres::{Postgres, PostgresConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A custom job type whose first attempt fails with a retryable error.
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
        Ok(JobOutput::json(json!({ "url": format!("{source}?w={width}"), "width": width })))
    }
}

const TEMPLATE: &str = r#"
template_id: thumbnails
name: Thumbnails
version: 1.0.0
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
  - id: publish
    type: noop
    depends_on: [small, large]
    trigger: none_failed
    config: { output: { thumbnail: "${jobs.small.output.url}" } }
"#;

#[tokio::main]
async fn main() -> baseshift_core::Result<()> {
    let config = PostgresConfig::builder().schema("baseshift_example").max_connections(4).build()?;
    let pg = Postgres::connect(&config).await?;
    pg.migrate().await?;

    let engine = Engine::builder()
        .state_store(Arc::new(pg.state_store()))
        .template_store(Arc::new(pg.template_store()))
        .runner(Resize)
        .build()?;
    engine.launch().await?;

    let mut events = engine.event_bus().subscribe(&[Topic::JobEvents], "example").await?;
    let printer = tokio::spawn(async move {
        while let Some(Ok(delivery)) = events.next().await {
            let e = &delivery.event;
            let attempt = e.payload.attempt.map(|a| format!(" (attempt {a})")).unwrap_or_default();
            println!("{:<16} {:<8}{}", e.event_type, e.payload.job_id.as_deref().unwrap_or("-"), attempt);
            let _ = delivery.ack().await;
        }
    });

    let template = WorkflowTemplate::from_yaml(TEMPLATE)?;
    // The catalog is durable: a second run finds the template already stored.
    if pg.template_store().get(&template.template_id, Some(&template.version)).await.is_err() {
        engine.register_template(template).await?;
    }
    let id = engine.start("thumbnails", json!({ "image": "https://example.com/cat.png", "size": 256 })).await?;
    let done = engine.wait_timeout(&id, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    printer.abort();

    for job in engine.status(&id).await?.jobs {
        println!("job {:<8} {:<9} attempts={}", job.job_id, job.status.as_str(), job.attempt);
    }
    println!("workflow {id} finished: {}", done.status);
    engine.shutdown().await;
    pg.close().await;
    if done.status != WorkflowStatus::Completed {
        std::process::exit(1);
    }
    Ok(())
}
