//! The plan's `payment_gateway_template`, loaded unchanged, run against a local HTTP
//! payment gateway that this example starts itself.
//!
//! Run it with `cargo run --example payment_gateway`.

use axum::{Json, Router, routing::post};
use baseshift::prelude::*;
use baseshift::runner::builtin::{HttpRunner, HttpRunnerConfig};
use serde_json::{Value, json};

/// The plan's template, exactly as written there.
const TEMPLATE: &str = r#"
template_id: payment_gateway_template
name: Payment Gateway Workflow
version: 1.0
jobs:
  - id: initialize_payment
    type: http_request
    config: { url: "${PAYMENT_GATEWAY_URL}/initialize", method: POST }
  - id: process_payment
    type: custom_job
    config: { image: payment-processor:v1 }
  - id: finalize_transaction
    type: http_request
    config: { url: "${PAYMENT_GATEWAY_URL}/finalize", method: POST }
"#;

/// Stands in for the plan's container job (`custom_job` with an `image`) in process;
/// the `k8s` backend runs such jobs as pods.
struct ProcessPayment;

#[async_trait::async_trait]
impl JobRunner for ProcessPayment {
    fn job_type(&self) -> &str {
        "custom_job"
    }

    fn validate_config(&self, config: &Value) -> baseshift::Result<()> {
        match config.get("image") {
            Some(Value::String(_)) => Ok(()),
            _ => Err(baseshift::runner::config_error("image", "is required (a container image)")),
        }
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let image: String = ctx.config_field("image").map_err(JobError::permanent)?;
        Ok(JobOutput::json(json!({ "processed_by": image, "idempotency_key": ctx.idempotency_key() })))
    }
}

async fn gateway() -> std::io::Result<String> {
    let app = Router::new()
        .route("/initialize", post(|| async { Json(json!({ "payment_id": "pay_123", "state": "initialized" })) }))
        .route("/finalize", post(|| async { Json(json!({ "payment_id": "pay_123", "state": "settled" })) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

#[tokio::main]
async fn main() -> baseshift::Result<()> {
    let url = gateway().await.map_err(|e| baseshift::Error::internal(format!("gateway: {e}")))?;
    println!("payment gateway listening at {url}");

    let engine = Engine::builder()
        // The gateway runs on 127.0.0.1: private addresses are refused unless allowed.
        .runner(HttpRunner::new(HttpRunnerConfig::default().allow_private("127.0.0.1"))?)
        .runner(ProcessPayment)
        .variable("PAYMENT_GATEWAY_URL", url)
        .build()?;
    engine.launch().await?;

    engine.register_template(WorkflowTemplate::from_yaml(TEMPLATE)?).await?;
    let id = engine.start("payment_gateway_template", json!({})).await?;
    let done = engine.wait(&id).await?;
    for job in engine.status(&id).await?.jobs {
        println!("{:<22} {:<9} {}", job.job_id, job.status.as_str(), job.output.unwrap_or(Value::Null));
    }
    println!("workflow {id} finished: {}", done.status);
    engine.shutdown().await;
    if done.status != WorkflowStatus::Completed {
        std::process::exit(1);
    }
    Ok(())
}
