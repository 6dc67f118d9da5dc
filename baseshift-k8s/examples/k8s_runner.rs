//! Runs the payment template's `custom_job` as a Kubernetes pod.
//!
//! ```text
//! cargo run -p baseshift-k8s --example k8s_runner -- --dry-run   # print the pod manifests, no cluster
//! cargo run -p baseshift-k8s --example k8s_runner                # run the job in the current kubeconfig context
//! ```

use baseshift_core::{JobContext, JobRunner, WorkflowId, WorkflowTemplate};
use baseshift_k8s::{KubernetesRunner, KubernetesRunnerConfig, pod_manifest};

/// The plan's payment template; `process_payment` spelled out with the env and resources
/// the plan's job template shows.
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
    timeout: 5m
    config:
      image: payment-processor:v1
      env:
        - { name: DB_PASSWORD, valueFrom: { secretKeyRef: { name: db-secret, key: password } } }
      resources:
        requests: { memory: 64Mi, cpu: 250m }
        limits: { memory: 128Mi, cpu: 500m }
  - id: finalize_transaction
    type: http_request
    config: { url: "${PAYMENT_GATEWAY_URL}/finalize", method: POST }
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dry_run = std::env::args().any(|a| a == "--dry-run");
    let template = WorkflowTemplate::from_yaml(TEMPLATE)?;
    let config = KubernetesRunnerConfig::builder().allow_image("payment-processor:*").build()?;
    let workflow = WorkflowId::generate();
    let contexts = template.jobs.iter().filter(|j| j.job_type == "custom_job").map(|job| {
        let mut ctx = JobContext::new(workflow.clone(), job.id.clone(), job.job_type.clone(), job.config.clone());
        ctx.deadline = job.timeout.as_ref().map(|t| tokio::time::Instant::now() + t.0);
        ctx
    });

    if dry_run {
        for ctx in contexts {
            let manifest = pod_manifest(&config, &ctx, "default")?;
            println!("# job {} (dry run: nothing sent to a cluster)", ctx.job_id);
            println!("{}", serde_json::to_string_pretty(&manifest)?);
        }
        return Ok(());
    }

    let runner = KubernetesRunner::try_default(config).await?.with_job_type("custom_job");
    for ctx in contexts {
        runner.validate_config(&ctx.config)?;
        println!("running job {} in namespace {}", ctx.job_id, runner.namespace());
        match runner.run(ctx).await {
            Ok(out) => println!("output: {}", serde_json::to_string_pretty(out.value())?),
            Err(e) => println!("failed: {e} {}", e.details().map(|d| d.to_string()).unwrap_or_default()),
        }
    }
    Ok(())
}
