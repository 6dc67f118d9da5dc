//! [`KubernetesRunner`]: one pod per job attempt, followed by a watch, cleaned up at the end.

use crate::config::{DEFAULT_JOB_TYPE, KubernetesRunnerConfig};
use crate::errors::{core_error, is_already_exists, is_forbidden, is_not_found, job_error};
use crate::manifest::{self, ATTEMPT_LABEL, JOB_LABEL, PodParams, WORKFLOW_LABEL, label_value};
use crate::output::{job_output, tail};
use crate::status::{Progress, classify};
use crate::{guard::PodGuard, job};
use async_trait::async_trait;
use baseshift_core::{Error, JobContext, JobError, JobOutput, JobRunner};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

/// Consecutive watch errors tolerated before the attempt fails (retryably).
const MAX_WATCH_ERRORS: u32 = 5;

/// A [`JobRunner`] that runs each job attempt as a Kubernetes pod.
///
/// See the [crate docs](crate) for the job config, the output and the failure classification.
#[derive(Clone)]
pub struct KubernetesRunner {
    client: kube::Client,
    config: Arc<KubernetesRunnerConfig>,
    job_type: String,
    home: String,
}

impl std::fmt::Debug for KubernetesRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesRunner")
            .field("job_type", &self.job_type)
            .field("namespace", &self.home)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What is known of the pod when an attempt ends by itself.
enum Fate {
    /// Never created (the API refused it).
    Absent,
    /// Succeeded or failed: safe to keep for debugging.
    Finished,
    /// May be running (lost watch, unanswered create): always deleted.
    Unknown,
}

/// How a watched pod ended.
enum Done {
    Succeeded,
    Failed(JobError),
}

impl KubernetesRunner {
    /// A runner serving job type `k8s_pod` through `client`; validates `config`, does no I/O.
    pub fn new(client: kube::Client, config: KubernetesRunnerConfig) -> Result<Self, Error> {
        config.validate()?;
        let home = config.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(KubernetesRunner { client, config: Arc::new(config), job_type: DEFAULT_JOB_TYPE.to_owned(), home })
    }

    /// A runner with a client from the standard kubeconfig (`KUBECONFIG`, `~/.kube/config`) or the
    /// in-cluster service account.
    pub async fn try_default(config: KubernetesRunnerConfig) -> Result<Self, Error> {
        let client = kube::Client::try_default().await.map_err(|e| core_error("KubernetesRunner::try_default", e))?;
        Self::new(client, config)
    }

    /// Serves another job type name, e.g. the plan's `custom_job` (a job with an `image`).
    #[must_use]
    pub fn with_job_type(mut self, job_type: impl Into<String>) -> Self {
        self.job_type = job_type.into();
        self
    }

    /// The runner's config.
    pub fn config(&self) -> &KubernetesRunnerConfig {
        &self.config
    }

    /// The namespace of jobs that name none.
    pub fn namespace(&self) -> &str {
        &self.home
    }

    /// The pod manifest the runner would create for `ctx`, without contacting the cluster.
    pub fn pod_manifest(&self, ctx: &JobContext) -> Result<Value, JobError> {
        pod_manifest(&self.config, ctx, &self.home)
    }

    fn delete_params(&self) -> DeleteParams {
        DeleteParams { grace_period_seconds: self.config.delete_grace_period_seconds, ..DeleteParams::background() }
    }

    /// Creates the pod, or adopts it when this attempt already created it (a repeated run).
    /// An error says whether the pod may exist all the same (no answer from the server).
    async fn create_or_adopt(&self, api: &Api<Pod>, pod: &Pod, ctx: &JobContext) -> Result<(), (bool, JobError)> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {
                tracing::debug!(pod = %name, job = %ctx.job_id, "pod created");
                Ok(())
            }
            Err(e) if is_already_exists(&e) => {
                let existing = api.get(&name).await.map_err(|e| (true, job_error("reading the existing pod", &e)))?;
                let labels = existing.metadata.labels.unwrap_or_default();
                let ours = labels.get(WORKFLOW_LABEL) == Some(&label_value(ctx.workflow_id.as_str()))
                    && labels.get(JOB_LABEL) == Some(&label_value(&ctx.job_id));
                if !ours {
                    let e = JobError::permanent(format!("pod `{name}` exists and belongs to another job"));
                    return Err((false, e));
                }
                tracing::info!(pod = %name, job = %ctx.job_id, "adopting the pod this attempt already created");
                Ok(())
            }
            Err(e) => Err((!matches!(e, kube::Error::Api(_)), job_error("creating the pod", &e))),
        }
    }

    /// Deletes pods left by earlier attempts of the same job (e.g. by a crashed instance).
    async fn reap_earlier_attempts(&self, api: &Api<Pod>, ctx: &JobContext) {
        let selector = format!(
            "{}={},{WORKFLOW_LABEL}={},{JOB_LABEL}={},{ATTEMPT_LABEL}!={}",
            manifest::APP_LABEL.0,
            manifest::APP_LABEL.1,
            label_value(ctx.workflow_id.as_str()),
            label_value(&ctx.job_id),
            ctx.attempt
        );
        let pods = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            Err(e) => {
                tracing::warn!(job = %ctx.job_id, error = %e, "could not list pods of earlier attempts");
                return;
            }
        };
        for pod in pods {
            let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
            if finished && self.config.keep_pods {
                continue;
            }
            let name = pod.metadata.name.unwrap_or_default();
            if let Err(e) = api.delete(&name, &self.delete_params()).await
                && !is_not_found(&e)
            {
                tracing::warn!(pod = %name, error = %e, "could not delete the pod of an earlier attempt");
            }
        }
    }

    /// Follows the pod through a watch until it succeeds or fails.
    async fn watch(&self, api: &Api<Pod>, name: &str) -> Result<Done, JobError> {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = pin!(watcher(api.clone(), cfg));
        let (mut seen, mut errors) = (false, 0u32);
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(watcher::Event::Init) => {
                    seen = false;
                    continue;
                }
                Ok(watcher::Event::InitDone) if !seen => {
                    return Err(JobError::retryable(format!("pod `{name}` disappeared")));
                }
                Ok(watcher::Event::InitDone) => continue,
                Ok(watcher::Event::Delete(_)) => {
                    return Err(JobError::retryable(format!("pod `{name}` was deleted while running")));
                }
                Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => pod,
                Err(e) => {
                    errors += 1;
                    let cause = match &e {
                        watcher::Error::InitialListFailed(c)
                        | watcher::Error::WatchStartFailed(c)
                        | watcher::Error::WatchFailed(c) => Some(c),
                        _ => None,
                    };
                    if cause.is_some_and(is_forbidden) {
                        return Err(JobError::permanent(format!("watching pod `{name}`: {e}")));
                    }
                    if errors >= MAX_WATCH_ERRORS {
                        return Err(JobError::retryable(format!("watching pod `{name}`: {e}")));
                    }
                    tracing::debug!(pod = %name, error = %e, "watch error; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << errors.min(6))).await;
                    continue;
                }
            };
            seen = true;
            errors = 0;
            match classify(&pod, &self.config.container_name, &self.config.retryable_exit_codes) {
                Progress::Going(phase) => tracing::trace!(pod = %name, %phase, "pod progress"),
                Progress::Succeeded => return Ok(Done::Succeeded),
                Progress::Failed(e) => return Ok(Done::Failed(e)),
            }
        }
        Err(JobError::retryable(format!("the watch of pod `{name}` ended")))
    }

    async fn logs(&self, api: &Api<Pod>, name: &str) -> Result<String, kube::Error> {
        let lp = LogParams {
            container: Some(self.config.container_name.clone()),
            tail_lines: Some(i64::from(self.config.log_tail_lines)),
            limit_bytes: Some(i64::from(self.config.log_limit_bytes)),
            ..LogParams::default()
        };
        api.logs(name, &lp).await
    }

    /// Turns the end of a pod into the attempt's result, reading its log.
    async fn finish(&self, api: &Api<Pod>, name: &str, done: Done) -> Result<JobOutput, JobError> {
        let max = self.config.log_limit_bytes as usize;
        match done {
            Done::Succeeded => {
                let logs = self.logs(api, name).await.map_err(|e| job_error("reading the pod's log", &e))?;
                Ok(JobOutput::json(job_output(&logs, &self.config.result_marker, max, name)?))
            }
            Done::Failed(e) => {
                let ran = e.details().is_some_and(|d| d.get("exit_code").is_some());
                if !ran {
                    return Err(e);
                }
                let mut details = e.details().cloned().unwrap_or_else(|| json!({}));
                match self.logs(api, name).await {
                    Ok(logs) => {
                        if let Some(d) = details.as_object_mut() {
                            d.insert("logs_tail".into(), json!(tail(&logs, max)));
                        }
                    }
                    Err(err) => tracing::debug!(pod = %name, error = %err, "could not read the failed pod's log"),
                }
                Err(e.with_details(details))
            }
        }
    }
}

/// The pod manifest (JSON) the runner would create for `ctx`, for dry runs and reviews.
///
/// `default_namespace` is used when neither the job nor `config` names one.
pub fn pod_manifest(
    config: &KubernetesRunnerConfig,
    ctx: &JobContext,
    default_namespace: &str,
) -> Result<Value, JobError> {
    let home = config.namespace.as_deref().unwrap_or(default_namespace);
    let (job, image) = job::resolve(&ctx.config, config, home)?;
    let namespace = job.namespace.clone().unwrap_or_else(|| home.to_owned());
    manifest::pod_json(&PodParams { config, ctx, job: &job, image: &image, namespace: &namespace })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl JobRunner for KubernetesRunner {
    fn job_type(&self) -> &str {
        &self.job_type
    }

    fn validate_config(&self, config: &Value) -> Result<(), Error> {
        job::validate(config, &self.config, &self.home)
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let (job, image) = job::resolve(&ctx.config, &self.config, &self.home)?;
        let namespace = job.namespace.clone().unwrap_or_else(|| self.home.clone());
        let params = PodParams { config: &self.config, ctx: &ctx, job: &job, image: &image, namespace: &namespace };
        let pod = manifest::pod(&params)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let guard = PodGuard::new(api.clone(), name.clone(), self.delete_params());
        let attempt = async {
            if ctx.attempt > 1 {
                self.reap_earlier_attempts(&api, &ctx).await;
            }
            if let Err((maybe_created, e)) = self.create_or_adopt(&api, &pod, &ctx).await {
                return (if maybe_created { Fate::Unknown } else { Fate::Absent }, Err(e));
            }
            match self.watch(&api, &name).await {
                Ok(done) => (Fate::Finished, self.finish(&api, &name, done).await),
                Err(e) => (Fate::Unknown, Err(e)),
            }
        };
        let details = |reason: &str| json!({ "pod": name, "namespace": namespace, "reason": reason });
        tokio::select! {
            biased;
            _ = ctx.cancellation.cancelled() => {
                guard.delete().await;
                Err(JobError::retryable(format!("cancelled; pod `{name}` deleted")).with_details(details("cancelled")))
            }
            _ = sleep_until(ctx.deadline) => {
                guard.delete().await;
                Err(JobError::retryable(format!("timed out; pod `{name}` deleted")).with_details(details("timeout")))
            }
            (fate, result) = attempt => {
                match fate {
                    Fate::Absent => guard.disarm(),
                    Fate::Finished if self.config.keep_pods => guard.disarm(),
                    Fate::Finished | Fate::Unknown => guard.delete().await,
                }
                result
            }
        }
    }
}
