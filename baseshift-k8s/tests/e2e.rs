//! End-to-end against a real cluster: runs only when `KUBECONFIG` is set, and says loudly when
//! it did not run (no cluster exists on the project's build machines).
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo test -p baseshift-k8s --test e2e -- --nocapture
//! ```
//! `BASESHIFT_K8S_NAMESPACE` picks the namespace (default: the kubeconfig's), and
//! `BASESHIFT_K8S_TEST_IMAGE` the image (default `busybox:1.36`, run as uid 65534).

use baseshift_core::{JobContext, JobRunner, WorkflowId};
use baseshift_k8s::{KubernetesRunner, KubernetesRunnerConfig};
use serde_json::json;
use std::io::Write;

/// Writes past the test harness's output capture, so a skip is visible in every test run.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

async fn runner() -> Option<KubernetesRunner> {
    if std::env::var_os("KUBECONFIG").is_none() {
        say("SKIPPED: KUBECONFIG not set; the Kubernetes end-to-end test did not run (no cluster here)");
        return None;
    }
    let mut config = KubernetesRunnerConfig::builder();
    if let Ok(ns) = std::env::var("BASESHIFT_K8S_NAMESPACE") {
        config = config.namespace(ns);
    }
    let runner = KubernetesRunner::try_default(config.build().unwrap()).await;
    Some(runner.unwrap_or_else(|e| panic!("KUBECONFIG is set but no client could be built: {e}")))
}

fn job(script: &str) -> JobContext {
    let image = std::env::var("BASESHIFT_K8S_TEST_IMAGE").unwrap_or_else(|_| "busybox:1.36".into());
    let config = json!({ "image": image, "command": ["sh", "-c", script], "run_as_user": 65534 });
    let mut ctx = JobContext::new(WorkflowId::generate(), "e2e", "k8s_pod", config);
    ctx.deadline = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(180));
    ctx
}

#[tokio::test]
async fn e2e_pod_result_and_exit_code_on_a_real_cluster() {
    let Some(runner) = runner().await else { return };
    let ok = runner.run(job("echo working; echo 'BASESHIFT_RESULT {\"ok\":true}'")).await.unwrap();
    assert_eq!(ok.value()["result"], json!({ "ok": true }));
    assert!(ok.value()["logs_tail"].as_str().unwrap().contains("working"));
    let e = runner.run(job("echo failing >&2; exit 3")).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(e.details().unwrap()["exit_code"], 3);
    say("e2e: KubernetesRunner ran two pods on the cluster");
}
