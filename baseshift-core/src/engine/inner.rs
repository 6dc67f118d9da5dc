//! The engine's shared state and its workflow-level operations.

use super::{ChildStarter, RecoveryReport, StartRequest, illegal, plan};
use crate::bus::EventBus;
use crate::error::{Error, ErrorKind, Result};
use crate::expr::{ConditionVars, SecretResolver};
use crate::ids::{JobKey, Name, WorkflowId};
use crate::runner::RunnerRegistry;
use crate::state::{JobFailure, JobRecord, ParentRef, WorkflowRecord, WorkflowStatus};
use crate::store::{StateStore, WorkflowFilter};
use crate::template::{CompiledTemplate, Validator, WorkflowTemplate};
use crate::templates::TemplateStore;
use async_trait::async_trait;
use chrono::Utc;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::EngineConfig;
use super::compiled::CompiledCache;
use super::flow::FlowControl;
use super::waiters::Waiters;
use crate::hash::FastMap;

/// A job this instance is running: how to stop it and which lease it holds.
#[derive(Debug, Clone)]
pub(crate) struct RunningJob {
    pub cancel: CancellationToken,
    pub lease_token: Option<Name>,
}

/// The immutable facts of a workflow the workers need per job.
#[derive(Debug)]
pub(crate) struct WorkflowBasics {
    pub template: Arc<CompiledTemplate>,
    pub input: Arc<Value>,
}

pub(crate) struct Inner {
    pub config: EngineConfig,
    pub store: Arc<dyn StateStore>,
    pub bus: Arc<dyn EventBus>,
    pub templates: Arc<dyn TemplateStore>,
    pub registry: RunnerRegistry,
    pub secrets: Option<Arc<dyn SecretResolver>>,
    pub compiled: Mutex<CompiledCache>,
    pub basics: Mutex<FastMap<WorkflowId, Arc<WorkflowBasics>>>,
    /// Jobs this instance runs that did not finish at their first poll (see `worker::run_job`).
    pub running: Mutex<FastMap<JobKey, RunningJob>>,
    /// Counts the cancellations this instance made (bumped before each one reads
    /// `running`): a job registered in `running` after a first poll checks that none
    /// came in between, and the one that finished at its first poll that none came while it ran.
    pub cancels: AtomicU64,
    pub type_running: Mutex<FastMap<Name, usize>>,
    pub total_running: AtomicUsize,
    /// Held across a claim's room computation, the claim and its counting, so two
    /// claimers of this instance (the claim loop, a worker claiming on) never both spend
    /// the same room under a type limit or rate limit.
    pub claiming: tokio::sync::Mutex<()>,
    pub slot_freed: Notify,
    /// Who waits for which workflow this instance may finish.
    pub waiters: Waiters,
    pub outbox_wake: Notify,
    pub stop: CancellationToken,
    pub launched: AtomicBool,
    /// The last claim found fewer ready jobs than it asked for: no backlog waits, so the
    /// roots of a workflow this instance starts may run here at once (`local_dispatch`).
    pub drained: AtomicBool,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    pub flow: FlowControl,
    /// Workflows whose follow-up steps may be half done (see `repair.rs`).
    pub repairs: Mutex<HashSet<WorkflowId>>,
}

impl Inner {
    pub fn new(
        config: EngineConfig,
        store: Arc<dyn StateStore>,
        bus: Arc<dyn EventBus>,
        templates: Arc<dyn TemplateStore>,
        registry: RunnerRegistry,
        secrets: Option<Arc<dyn SecretResolver>>,
    ) -> Self {
        Inner {
            store,
            bus,
            templates,
            registry,
            secrets,
            compiled: Mutex::default(),
            basics: Mutex::default(),
            running: Mutex::default(),
            cancels: AtomicU64::new(0),
            type_running: Mutex::default(),
            total_running: AtomicUsize::new(0),
            claiming: tokio::sync::Mutex::new(()),
            slot_freed: Notify::new(),
            waiters: Waiters::default(),
            outbox_wake: Notify::new(),
            stop: CancellationToken::new(),
            launched: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            flow: FlowControl::new(config.rate_limits.clone(), config.circuit_breaker),
            repairs: Mutex::new(HashSet::new()),
            config,
        }
    }

    /// Validates against the registry and the env allowlist, and compiles.
    /// A cached compilation is reused when it was made from this very template (the same
    /// `Arc`, as the memory template store returns) or an equal one.
    pub fn compile(&self, template: &Arc<WorkflowTemplate>) -> Result<Arc<CompiledTemplate>> {
        if let Some(c) = self.compiled.lock().for_template(template)
            && (Arc::ptr_eq(c.template(), template) || c.template() == template)
        {
            return Ok(c.clone());
        }
        let compiled = Arc::new(
            Validator::new()
                .registry(&self.registry)
                .env_allowlist(&self.config.env_allowlist)
                .compile_shared(template.clone())?,
        );
        self.compiled.lock().insert(compiled.clone());
        Ok(compiled)
    }

    /// The compiled template a stored workflow runs (from cache or its snapshot).
    pub async fn compiled_for(&self, header: &WorkflowRecord) -> Result<Arc<CompiledTemplate>> {
        if let Some(c) = self.compiled.lock().for_stored(&header.template_id, &header.template_version) {
            return Ok(c.clone());
        }
        let template = self.store.template(&header.template_id, &header.template_version).await?;
        self.compile(&Arc::new(template))
    }

    /// Template and input of a workflow (cached; both are immutable).
    pub async fn basics(&self, id: &WorkflowId) -> Result<Arc<WorkflowBasics>> {
        if let Some(b) = self.basics.lock().get(id) {
            return Ok(b.clone());
        }
        let header = self.store.workflow(id).await?;
        self.basics_from(&header).await
    }

    pub async fn basics_from(&self, header: &WorkflowRecord) -> Result<Arc<WorkflowBasics>> {
        let template = self.compiled_for(header).await?;
        let b = Arc::new(WorkflowBasics { template, input: Arc::new(header.input.clone()) });
        self.remember_basics(&header.id, b.clone());
        Ok(b)
    }

    /// Caches a workflow's basics (the cache is emptied when it grows past 100 000).
    pub fn remember_basics(&self, id: &WorkflowId, basics: Arc<WorkflowBasics>) {
        let mut map = self.basics.lock();
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert(id.clone(), basics);
    }

    /// `INITIALIZED -> RUNNING`: roots become ready (or skipped by their condition).
    pub async fn begin(&self, id: &WorkflowId) -> Result<()> {
        let header = self.store.workflow(id).await?;
        if header.status != WorkflowStatus::Initialized {
            return Ok(());
        }
        let basics = self.basics_from(&header).await?;
        let compiled = basics.template.clone();
        let root_ids: Vec<String> = compiled.roots().map(|j| String::from(&j.id)).collect();
        let roots = self.store.jobs(id, Some(&root_ids)).await?;
        let mut verdicts = HashMap::new();
        for r in &roots {
            if let Some(cond) = compiled.job(&r.job_id).and_then(|j| j.condition.as_ref()) {
                let jobs = json!({});
                let wf = json!({ "id": id.as_str() });
                let vars = ConditionVars { input: &basics.input, jobs: &jobs, workflow: &wf };
                // As for every other job: a condition that cannot be evaluated skips the job
                // (and is logged) rather than leaving the workflow stuck in INITIALIZED.
                let run = cond.evaluate(&vars).unwrap_or_else(|m| {
                    tracing::warn!(workflow = %id, job = %r.job_id, error = %m, "condition could not be evaluated; skipping the job");
                    false
                });
                verdicts.insert(r.job_id.clone(), run);
            }
        }
        let step = plan::start(&compiled, header, roots, &|j| verdicts.get(j).copied().unwrap_or(true), Utc::now());
        match self.apply(step).await {
            Ok(applied) => self.settle(&compiled, id, applied).await,
            Err(e) if e.kind() == ErrorKind::Conflict => Ok(()), // another instance began it
            Err(e) => Err(e),
        }
    }

    pub async fn cancel(&self, id: &WorkflowId, reason: &str) -> Result<()> {
        for _ in 0..50 {
            let header = self.store.workflow(id).await?;
            match header.status {
                WorkflowStatus::Cancelled => return Ok(()),
                WorkflowStatus::Completed | WorkflowStatus::Failed => {
                    return Err(
                        illegal(format!("workflow {id} is already {}", header.status)).with_workflow(id.as_str())
                    );
                }
                _ => {}
            }
            let jobs = self.store.jobs(id, None).await?;
            let step = plan::cancel(header, &jobs, reason, Utc::now());
            match self.apply(step).await {
                Ok(_) => {
                    self.cancels.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let running = self.running.lock();
                    for (key, job) in running.iter() {
                        if &key.workflow_id == id {
                            job.cancel.cancel();
                        }
                    }
                    drop(running);
                    self.waiters.finished(id);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Conflict => tokio::task::yield_now().await,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!("workflow {id} kept changing while being cancelled; try again")))
    }

    pub async fn finish_external(&self, key: &JobKey, result: std::result::Result<Value, JobFailure>) -> Result<()> {
        let rec = self.store.job(key).await?;
        if !super::is_waiting_external(&rec) {
            return Err(illegal(format!(
                "job `{}` is {} and not waiting for an external completion",
                key.job_id, rec.status
            ))
            .with_workflow(key.workflow_id.as_str())
            .with_job(key.job_id.clone()));
        }
        let basics = self.basics(&key.workflow_id).await?;
        let compiled = basics.template.clone();
        let job = compiled
            .job(&key.job_id)
            .ok_or_else(|| Error::not_found(format!("job `{}` is not in the workflow's template", key.job_id)))?;
        let outcome = match result {
            Ok(v) => {
                self.check_output_size(&v)?;
                plan::Outcome::Succeeded(v)
            }
            Err(failure) => plan::Outcome::Failed { failure, retryable: false, backoff: Duration::ZERO },
        };
        let compensation = rec.compensation_of.is_some();
        let step = plan::complete(&compiled, rec, outcome, job.retry.max_attempts, Utc::now());
        let done = match self.apply(step).await {
            Ok(applied) => self.after_job(&compiled, key, compensation, applied).await,
            Err(e) => Err(e),
        };
        if done.as_ref().is_err_and(|e| e.kind() != ErrorKind::Conflict) {
            // The step may have been applied (a lost reply) and its follow-ups not.
            self.needs_repair(&key.workflow_id);
        }
        done
    }

    /// Whether anything limits job types on this instance (type limits, rate limits, a
    /// breaker): without, claims and workers skip the per-type bookkeeping.
    pub fn limits_types(&self) -> bool {
        !self.config.type_limits.is_empty() || !self.flow.is_inactive()
    }

    pub fn check_output_size(&self, v: &Value) -> Result<()> {
        let size = json_size(v);
        if size > self.config.max_output_bytes {
            return Err(Error::invalid_input(format!(
                "job output is {size} bytes; the limit is {} (EngineConfig.max_output_bytes)",
                self.config.max_output_bytes
            )));
        }
        Ok(())
    }

    pub async fn recover(&self) -> Result<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_workflows(WorkflowFilter {
                    statuses: vec![WorkflowStatus::Initialized, WorkflowStatus::Running],
                    after: after.clone(),
                    limit: 200,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let mut jobs = self.jobs_of_running(&page).await?.into_iter();
            for header in page {
                report.examined += 1;
                // One workflow that cannot be resumed must not stop the others (or the launch).
                let outcome = if header.status == WorkflowStatus::Initialized {
                    self.begin(&header.id).await.map(|()| report.started += 1)
                } else {
                    match jobs.next() {
                        Some(Ok(jobs)) if jobs.is_empty() => {
                            tracing::debug!(workflow = %header.id, "workflow removed since it was listed; skipped");
                            Ok(())
                        }
                        Some(Ok(jobs)) => self.resume(&header, &jobs).await.map(|n| report.resumed_steps += n),
                        Some(Err(e)) => Err(e),
                        None => Err(Error::internal("the job reads of a recovery page came back short")
                            .with_workflow(header.id.as_str())),
                    }
                };
                if let Err(e) = outcome {
                    if e.kind() == ErrorKind::Unavailable || e.kind() == ErrorKind::Timeout {
                        return Err(e);
                    }
                    report.failed += 1;
                    tracing::error!(workflow = %header.id, error = %e, "recovering the workflow failed; skipped");
                }
            }
        }
        Ok(report)
    }

    /// The job records of the `RUNNING` workflows of a recovery page, in page order: one
    /// [`StateStore::jobs_of`] call. Should it fail other than by an outage
    /// (`Unavailable`, `Timeout`: returned), e.g. on one corrupt record, each workflow's
    /// jobs are read alone, so only the workflows that cannot be read fail (an absent one
    /// reads as an empty list, as in `jobs_of`).
    async fn jobs_of_running(&self, page: &[WorkflowRecord]) -> Result<Vec<Result<Vec<JobRecord>>>> {
        let running: Vec<WorkflowId> =
            page.iter().filter(|h| h.status == WorkflowStatus::Running).map(|h| h.id.clone()).collect();
        if running.is_empty() {
            return Ok(Vec::new());
        }
        match self.store.jobs_of(&running).await {
            Ok(all) if all.len() == running.len() => return Ok(all.into_iter().map(Ok).collect()),
            Ok(all) => tracing::warn!(
                asked = running.len(),
                answered = all.len(),
                "the store answered a batch job read with the wrong number of lists; reading one by one"
            ),
            Err(e) if e.kind() == ErrorKind::Unavailable || e.kind() == ErrorKind::Timeout => return Err(e),
            Err(e) => tracing::warn!(error = %e, "reading a recovery page's jobs at once failed; reading one by one"),
        }
        let mut out = Vec::with_capacity(running.len());
        for id in &running {
            out.push(match self.store.jobs(id, None).await {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                other => other,
            });
        }
        Ok(out)
    }

    pub async fn shutdown(&self) {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + self.config.lease_ttl;
        while self.total_running.load(std::sync::atomic::Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().drain(..).collect();
        for mut t in tasks {
            // The relay ends after a last drain; a loop still waiting on a stuck job is stopped.
            if tokio::time::timeout(Duration::from_secs(2), &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

#[async_trait]
impl ChildStarter for Inner {
    async fn start_child(
        &self,
        template_id: &str,
        version: Option<&str>,
        input: Value,
        parent: ParentRef,
    ) -> Result<WorkflowId> {
        let mut req = StartRequest::new(template_id).input(input);
        if let Some(v) = version {
            let v = semver::Version::parse(v)
                .map_err(|e| Error::invalid_input(format!("child template version `{v}`: {e}")))?;
            req = req.version(v);
        }
        req.idempotency_key = Some(format!("child:{}/{}", parent.workflow_id, parent.job_id));
        req.parent = Some(parent);
        self.start(req).await
    }

    async fn wait_child(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        self.wait(id, None).await
    }

    async fn cancel_child(&self, id: &WorkflowId) -> Result<()> {
        match self.cancel(id, "parent job cancelled").await {
            Err(e) if e.kind() == ErrorKind::IllegalTransition => Ok(()),
            other => other,
        }
    }
}

/// The length of `v` serialized as JSON, counted without building the text.
pub(super) fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, v) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}
