//! Run baseshift jobs as Kubernetes pods.
//!
//! [`KubernetesRunner`] is a [`JobRunner`](baseshift_core::JobRunner): each job attempt becomes
//! one pod, followed through a watch until it succeeds or fails, then deleted. Register it under
//! `k8s_pod`, and under the plan's `custom_job` name so a template's `custom_job` with an `image`
//! runs in the cluster:
//!
//! ```no_run
//! use baseshift_core::engine::Engine;
//! use baseshift_k8s::{KubernetesRunner, KubernetesRunnerConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> baseshift_core::Result<()> {
//! let client = kube::Client::try_default().await.map_err(|e| baseshift_core::Error::internal(e.to_string()))?;
//! let config = KubernetesRunnerConfig::builder()
//!     .namespace("jobs")
//!     .allow_image("registry.example.com/*")
//!     .allow_image("payment-processor:*")
//!     .build()?;
//! let pods = KubernetesRunner::new(client, config)?;
//! let engine = Engine::builder()
//!     .runner(pods.clone())
//!     .runner(pods.with_job_type("custom_job"))
//!     .build()?;
//! engine.launch().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Why a Pod and not a `batch/v1` Job
//!
//! The engine already owns what a Job controller adds: retries (with backoff, per attempt),
//! deadlines and cancellation. A Job would retry on its own (`backoffLimit`) behind the engine's
//! back and hide which attempt produced which result. A bare pod with `restartPolicy: Never` is
//! exactly one attempt: its deterministic name (`bs-<job>-<workflow>-a<attempt>-<hash>`) ties it to
//! the attempt, a repeated run of the same attempt adopts it (`409 AlreadyExists` → reuse), and a
//! new attempt deletes the pods of earlier ones. `activeDeadlineSeconds` (the job's timeout) and an
//! optional owner reference bound a pod's life even if the host dies.
//!
//! # Job config
//!
//! | field | meaning |
//! |---|---|
//! | `image` | required; checked against `allowed_images` at load time (when it holds no `${`) and at run time |
//! | `command`, `args` | argv lists (the image's entrypoint when absent) |
//! | `env` | Kubernetes `EnvVar`s: `{name, value}` or `{name, valueFrom: {secretKeyRef: {name, key}}}` |
//! | `resources` | `{requests: {memory: 64Mi, cpu: 250m}, limits: {memory: 128Mi, cpu: 500m}}` |
//! | `namespace` | checked against `allowed_namespaces` (the runner's own is always allowed) |
//! | `labels` | extra pod labels (the runner's own win) |
//! | `service_account` | `serviceAccountName`; without one no token is mounted |
//! | `node_selector`, `tolerations`, `affinity` | scheduling, as in a pod spec |
//! | `image_pull_policy`, `working_dir` | as in a container spec |
//! | `read_only_root_filesystem` | default `true` (a writable `emptyDir` is mounted at `/tmp`) |
//! | `run_as_user` | a numeric uid, for images whose default user is root |
//!
//! camelCase spellings (`nodeSelector`, `serviceAccountName`, ...) are accepted too; any other
//! field is rejected. Every pod runs with `runAsNonRoot`, `allowPrivilegeEscalation: false`,
//! all capabilities dropped and the `RuntimeDefault` seccomp profile. Labels: `app: base-shift`,
//! `baseshift.io/workflow-id`, `baseshift.io/job-id`, `baseshift.io/attempt` (sanitised to valid
//! label values; the exact ids are in annotations).
//!
//! # Output
//!
//! On success the runner reads the end of the container's log (`tailLines` / `limitBytes`
//! from the config) and returns
//! `{"result": <JSON>, "logs_tail": "<log tail>", "pod": "<pod name>"}`, where `result` is
//! the JSON after the last log line starting with `BASESHIFT_RESULT ` (or `null`). Print the
//! result line last: only the log tail is read. A marked line that is not JSON fails the job
//! permanently.
//!
//! # Failures
//!
//! | the pod | the attempt |
//! |---|---|
//! | exits non-zero | permanent, `exit_code` and `logs_tail` in the details; retryable for `retryable_exit_codes` |
//! | `ImagePullBackOff`, `ErrImagePull`, `InvalidImageName`, `CreateContainerConfigError` | permanent |
//! | evicted, node lost, preempted, deleted by someone else | retryable |
//! | outlives the job's timeout, or the workflow is cancelled | pod deleted, retryable error |
//! | API 5xx / 429 / unreachable | retryable; 4xx (RBAC, invalid spec) permanent |
//!
//! Finished pods are deleted unless `keep_pods` is set (for debugging); pods still running at a
//! timeout or cancellation are always deleted, also when the engine drops the attempt's future.
//!
//! # Idle pods and scaling
//!
//! [`DeploymentScaler`] scales a Deployment of long-running workers from the queue depth, within
//! min/max, scaling down only after an idle period. See its docs for why this, rather than a pool
//! of warm per-job pods.
//!
//! # Cluster access
//!
//! [`KubernetesRunner::try_default`] reads the standard kubeconfig (`KUBECONFIG`, `~/.kube/config`)
//! or the in-cluster service account; `deploy/rbac.yaml` in the repository holds the least
//! permissions the runner needs.

mod config;
mod errors;
mod guard;
mod job;
mod manifest;
mod output;
mod runner;
mod scale;
mod status;

pub use config::{
    DEFAULT_JOB_TYPE, DEFAULT_RESULT_MARKER, KubernetesRunnerConfig, KubernetesRunnerConfigBuilder, PodOwner,
};
pub use manifest::{APP_LABEL, ATTEMPT_LABEL, JOB_LABEL, WORKFLOW_LABEL, label_value, pod_name};
pub use runner::{KubernetesRunner, pod_manifest};
pub use scale::{DeploymentScaler, ScaleDecision, ScalePolicy};
pub use status::{PERMANENT_WAITING_REASONS, RETRYABLE_POD_REASONS};

/// The environment variable naming the kubeconfig file (read by [`KubernetesRunner::try_default`]).
pub const ENV_VAR: &str = "KUBECONFIG";

#[cfg(test)]
#[path = "runner_tests.rs"]
mod runner_tests;
