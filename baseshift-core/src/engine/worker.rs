//! The worker side: running claimed jobs under a lease, recording outcomes.

use super::flow::BreakerChange;
use super::inner::RunningJob;
use super::{Inner, claim, plan};
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::expr::RenderScope;
use crate::ids::JobKey;
use crate::runner::{JobContext, JobError};
use crate::state::{JobFailure, JobRecord, JobStatus};
use crate::template::{CompiledJob, CompiledTemplate};
use chrono::Utc;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs a claimed job in its own task, then, on an in-process store, more jobs in the
/// same slot while there are ready ones: each step claims the next in its own apply
/// (`Transition::claim_after`), or, under type limits, the worker claims one (see
/// [`claim::one_more`]) when its step made jobs ready or, with `backlog` (the claim that
/// took it was full), while claims find jobs. Frees the slot at the end. On a durable
/// store a claim is a round trip, and the claim loop's batched claims cost fewer of them
/// than claims of one job each.
///
/// The record travels boxed through the worker's nested steps: each hop moves a pointer,
/// not the record (a few hundred bytes, copied at every call and await otherwise).
pub(crate) async fn run_claimed(inner: Arc<Inner>, rec: JobRecord, backlog: bool) {
    let in_process = !inner.store.capabilities().durable;
    let mut backlog = backlog && in_process;
    let mut next = Some(Box::new(rec));
    while let Some(rec) = next.take() {
        let in_step = in_process && claims_in_step(&inner);
        let readied = run_one(&inner, rec, in_step.then_some(&mut next)).await;
        // A step that claimed in its apply took what was ready (or found nothing).
        if in_process && !in_step && (readied || backlog) {
            next = claim::one_more(&inner).await.map(Box::new);
            backlog &= next.is_some();
        }
        // On an in-process store nothing above waits: a worker that runs on would hold
        // its thread until the queue is empty, with the tasks it woke (the claim loop
        // that spawns more workers, the relay) stuck behind it. Yield once its budget is spent.
        if next.is_some() {
            tokio::task::coop::consume_budget().await;
        }
    }
    inner.total_running.fetch_sub(1, Ordering::SeqCst);
    inner.slot_freed.notify_one();
}

/// Whether a worker's steps on an in-process store claim its next job themselves
/// (`Transition::claim_after`): with no per-type limits (whose room a claim must count
/// under `Inner::claiming`), while the engine runs.
fn claims_in_step(inner: &Inner) -> bool {
    !inner.limits_types() && !inner.stop.is_cancelled()
}

/// Where a step puts the job it claims for its worker (`Transition::claim_after`); `None`:
/// the step claims nothing.
type NextJob<'a> = Option<&'a mut Option<Box<JobRecord>>>;

/// Runs one job and its bookkeeping; whether its step made jobs ready. With `next`, the
/// step claims the worker's next job into it.
async fn run_one(inner: &Arc<Inner>, rec: Box<JobRecord>, next: NextJob<'_>) -> bool {
    // Flow control and per-type counts need the type after the record is gone; with
    // neither configured (`Inner::limits_types`, fixed at build) there is nothing to count.
    let job_type = inner.limits_types().then(|| rec.job_type.clone());
    let key = rec.key();
    let mut registered = false;
    let (verdict, readied) = match run_job(inner, rec, &key, next, &mut registered).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(job = %key, error = %e, "recording a job outcome failed; its lease will expire and it will be re-claimed");
            // The outcome may have been recorded (a lost reply) without its follow-ups.
            inner.needs_repair(&key.workflow_id);
            (None, false)
        }
    };
    if registered {
        inner.running.lock().remove(&key);
    }
    let Some(job_type) = job_type else {
        return readied;
    };
    let change = match verdict {
        Some(failed) => inner.flow.outcome(&job_type, failed, tokio::time::Instant::now()),
        None => {
            inner.flow.released(&job_type);
            None
        }
    };
    if let Some(change) = change {
        let (event, text) = match change {
            BreakerChange::Opened => ("circuit_opened", "opened: jobs of this type wait"),
            BreakerChange::Closed => ("circuit_closed", "closed: jobs of this type run again"),
        };
        tracing::warn!(job_type = %job_type, "circuit breaker {text}");
        let payload = serde_json::json!({ "job_type": job_type, "instance": inner.config.instance_id });
        if let Err(e) = inner.bus.publish(&crate::event::Event::system(event, payload)).await {
            tracing::warn!(error = %e, "publishing a circuit breaker event failed");
        }
    }
    if let Some(n) = inner.type_running.lock().get_mut(job_type.as_str()) {
        *n = n.saturating_sub(1);
    }
    readied
}

/// Runs one claimed job and records its outcome. Returns the attempt's verdict for the
/// circuit breaker: `Some(true)` failed (retryable error or timeout), `Some(false)`
/// succeeded, `None` no verdict (never ran, cancelled, failed permanently); and whether
/// the recorded step made jobs ready.
///
/// The attempt is polled once before it is entered in `Inner::running` (setting
/// `registered`): most jobs finish at their first poll, and one that did needs no entry
/// for cancellation or lease renewal. A cancellation of this instance while it ran
/// (`Inner::cancels` moved) makes it read its record back, as a cancelled token does.
async fn run_job(
    inner: &Arc<Inner>,
    rec: Box<JobRecord>,
    key: &JobKey,
    next: NextJob<'_>,
    registered: &mut bool,
) -> Result<(Option<bool>, bool)> {
    let cancels = inner.cancels.load(Ordering::SeqCst);
    let basics = inner.basics(&rec.workflow_id).await?;
    let compiled = basics.template.clone();
    let Some(job) = compiled.job(&rec.job_id) else {
        let failure = failure(
            "permanent",
            format!("job `{}` is not in template {}", rec.job_id, compiled.template().template_id),
        );
        return record(inner, &compiled, None, Attempt { rec, key }, fail(failure, false), next)
            .await
            .map(|readied| (None, readied));
    };
    let token = CancellationToken::new();
    let secrets = match resolve_secrets(inner, job).await {
        Ok(s) => s,
        Err(e) => {
            let f = fail(failure("secret", e.to_string()), e.is_retryable());
            return record(inner, &compiled, Some(job), Attempt { rec, key }, f, next)
                .await
                .map(|readied| (None, readied));
        }
    };
    let config = match render_config(inner, &compiled, job, &rec, &basics.input, &secrets).await {
        Ok(c) => c,
        Err(e) => {
            let retry = e.kind() != ErrorKind::InvalidInput && e.is_retryable();
            let f = fail(failure("config", e.to_string()), retry);
            return record(inner, &compiled, Some(job), Attempt { rec, key }, f, next)
                .await
                .map(|readied| (None, readied));
        }
    };
    let Some(runner) = inner.registry.get(&rec.job_type).cloned() else {
        let f = failure("permanent", format!("no runner registered for job type `{}`", rec.job_type));
        return record(inner, &compiled, Some(job), Attempt { rec, key }, fail(f, false), next)
            .await
            .map(|readied| (None, readied));
    };
    let deadline = job.timeout.map(|t| tokio::time::Instant::now() + t);
    let ctx = JobContext {
        workflow_id: rec.workflow_id.clone(),
        job_id: rec.job_id.clone(),
        job_type: rec.job_type.clone(),
        config,
        input: basics.input.clone(),
        attempt: rec.attempt,
        deadline,
        cancellation: token.clone(),
        lease_token: rec.lease.as_ref().map(|l| l.token.clone()),
        children: Some(inner.clone()),
    };
    let mut run = runner.run(ctx);
    let result = match std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await {
        Poll::Ready(r) => Some(r),
        Poll::Pending => {
            let lease_token = rec.lease.as_ref().map(|l| l.token.clone());
            inner.running.lock().insert(key.clone(), RunningJob { cancel: token.clone(), lease_token });
            *registered = true;
            if inner.cancels.load(Ordering::SeqCst) != cancels {
                // A cancellation may have looked for this job before it was entered. If
                // the record cannot be read now, the attempt runs on: a cancellation that
                // changed it makes the next lease renewal fail, which stops the attempt.
                match inner.store.job(key).await {
                    Ok(current) if current.version != rec.version || current.status != JobStatus::Running => {
                        token.cancel();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(job = %key, error = %e, "could not check the job for a cancellation; a lost lease will stop it")
                    }
                }
            }
            // Biased, the attempt first: no random branch order per poll.
            tokio::select! {
                biased;
                r = run => Some(r),
                _ = sleep_until(deadline) => {
                    token.cancel();
                    None
                }
                _ = token.cancelled() => Some(Err(JobError::retryable("cancelled"))),
            }
        }
    };
    let cancelled = token.is_cancelled() || inner.cancels.load(Ordering::SeqCst) != cancels;
    if cancelled && result.is_some() {
        // Cancelled by the workflow or a lost lease: whoever cancelled owns the record now.
        let current = inner.store.job(key).await?;
        if current.version != rec.version || current.status != JobStatus::Running {
            return Ok((None, false));
        }
    }
    let mut audit = Vec::new();
    let outcome = match result {
        None => fail(failure("timeout", format!("timed out after {:?}", job.timeout.unwrap_or_default())), true),
        Some(Ok(out)) if out.is_external() => plan::Outcome::AwaitExternal,
        Some(Ok(out)) => {
            let mut value = out.value().clone();
            redact(&mut value, &secrets);
            match inner.check_output_size(&value) {
                Ok(()) => plan::Outcome::Succeeded(value),
                Err(e) => fail(failure("output_too_large", e.message().to_owned()), false),
            }
        }
        Some(Err(e)) => {
            let mut msg = e.message().to_owned();
            redact_str(&mut msg, &secrets);
            if let Some(rule) = e.policy_rule() {
                tracing::warn!(job = %key, job_type = %rec.job_type, rule, "policy violation: {msg}");
                audit.push(Event::policy_violation(&rec.workflow_id, &rec.job_id, &rec.job_type, rule, &msg));
                fail(failure("policy_violation", msg), false)
            } else {
                let kind = if e.is_retryable() { "retryable" } else { "permanent" };
                fail(failure(kind, msg), e.is_retryable())
            }
        }
    };
    let outcome = match outcome {
        plan::Outcome::Failed { failure, retryable, .. } => {
            plan::Outcome::Failed { failure, retryable, backoff: job.retry.delay_after(rec.attempt) }
        }
        o => o,
    };
    let verdict = match &outcome {
        plan::Outcome::Failed { retryable: true, .. } => Some(true),
        plan::Outcome::Failed { .. } => None,
        _ => Some(false),
    };
    record_with(inner, &compiled, Some(job), Attempt { rec, key }, outcome, audit, next)
        .await
        .map(|readied| (verdict, readied))
}

/// A claimed job's record and its key (computed once per job by [`run_one`]).
struct Attempt<'a> {
    rec: Box<JobRecord>,
    key: &'a JobKey,
}

async fn record(
    inner: &Inner,
    compiled: &CompiledTemplate,
    job: Option<&CompiledJob>,
    attempt: Attempt<'_>,
    outcome: plan::Outcome,
    next: NextJob<'_>,
) -> Result<bool> {
    record_with(inner, compiled, job, attempt, outcome, Vec::new(), next).await
}

/// Records an attempt's outcome; `audit` events (`system_events`) go to the outbox in the same step.
/// Returns whether the step made jobs ready. With `next`, the step also claims one ready
/// job into it (before its follow-ups, so a failing follow-up does not lose the claim).
async fn record_with(
    inner: &Inner,
    compiled: &CompiledTemplate,
    job: Option<&CompiledJob>,
    Attempt { rec, key }: Attempt<'_>,
    outcome: plan::Outcome,
    audit: Vec<Event>,
    next: NextJob<'_>,
) -> Result<bool> {
    let max_attempts = job.map(|j| j.retry.max_attempts).unwrap_or(1);
    let compensation = rec.compensation_of.is_some();
    let mut step = plan::complete_of(compiled, job, *rec, outcome, max_attempts, Utc::now());
    step.events.extend(audit);
    if next.is_some() {
        step.claim_after = Some(claim::request(inner, 1));
    }
    match inner.apply(step).await {
        Ok(mut applied) => {
            if let Some(slot) = next {
                *slot = applied.claimed.pop().map(Box::new);
            }
            let readied = !applied.ready.is_empty();
            inner.after_job(compiled, key, compensation, applied).await.map(|()| readied)
        }
        Err(e) if e.kind() == ErrorKind::Conflict => {
            tracing::info!(job = %key, "job changed while running (cancelled or re-claimed); outcome dropped");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Renews the leases of every job this instance runs, every third of the lease TTL.
/// A renewal refused with `Conflict`/`NotFound` means the job was cancelled or re-claimed
/// elsewhere: its attempt is told to stop.
pub(crate) async fn lease_loop(inner: Arc<Inner>) {
    let every = inner.config.lease_ttl / 3;
    loop {
        if inner.stop.is_cancelled() {
            if inner.total_running.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(every).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = inner.stop.cancelled() => continue,
            }
        }
        let held: Vec<(JobKey, RunningJob)> =
            inner.running.lock().iter().map(|(k, j)| (k.clone(), j.clone())).collect();
        for (key, job) in held {
            let Some(token) = job.lease_token.as_deref() else { continue };
            match inner.store.renew_lease(&key, token, inner.config.lease_ttl).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Conflict || e.kind() == ErrorKind::NotFound => {
                    tracing::warn!(job = %key, "lease lost (job cancelled or re-claimed); stopping the attempt");
                    job.cancel.cancel();
                }
                Err(e) => tracing::warn!(job = %key, error = %e, "lease renewal failed; will retry"),
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn resolve_secrets(inner: &Inner, job: &CompiledJob) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for name in job.config.secret_names() {
        let resolver = inner.secrets.as_ref().ok_or_else(|| {
            Error::invalid_input(format!(
                "job `{}` uses `${{secrets.{name}}}` but the engine has no secret resolver",
                job.id
            ))
        })?;
        out.insert(name.to_owned(), resolver.resolve(name).await?);
    }
    Ok(out)
}

async fn render_config(
    inner: &Inner,
    compiled: &CompiledTemplate,
    job: &CompiledJob,
    rec: &JobRecord,
    input: &Value,
    secrets: &HashMap<String, String>,
) -> Result<Value> {
    if job.config.is_static() {
        return job.config.render(&RenderScope {
            input,
            outputs: &HashMap::new(),
            workflow_id: rec.workflow_id.as_str(),
            env: &|_| None,
            secrets,
        });
    }
    let refs = compiled.ancestors_referenced(&job.id).into_iter().map(str::to_owned).collect::<Vec<_>>();
    let upstream = if refs.is_empty() { Vec::new() } else { inner.store.jobs(&rec.workflow_id, Some(&refs)).await? };
    let outputs: HashMap<String, Value> =
        upstream.into_iter().filter_map(|r| r.output.map(|o| (String::from(&r.job_id), o))).collect();
    let env = |name: &str| host_variable(inner, name);
    job.config.render(&RenderScope {
        input,
        outputs: &outputs,
        workflow_id: rec.workflow_id.as_str(),
        env: &env,
        secrets,
    })
}

/// A host variable: defined on the engine, else an allow-listed process variable.
fn host_variable(inner: &Inner, name: &str) -> Option<String> {
    if let Some(v) = inner.config.variables.get(name) {
        return Some(v.clone());
    }
    if inner.config.env_allowlist.contains(name) { std::env::var(name).ok() } else { None }
}

fn failure(kind: &str, message: impl Into<String>) -> JobFailure {
    JobFailure::new(kind, message)
}

fn fail(failure: JobFailure, retryable: bool) -> plan::Outcome {
    plan::Outcome::Failed { failure, retryable, backoff: Duration::ZERO }
}

/// Replaces every secret value inside strings of `v` with `***`.
pub(crate) fn redact(v: &mut Value, secrets: &HashMap<String, String>) {
    if secrets.is_empty() {
        return;
    }
    match v {
        Value::String(s) => redact_str(s, secrets),
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, secrets)),
        Value::Object(o) => o.values_mut().for_each(|x| redact(x, secrets)),
        _ => {}
    }
}

fn redact_str(s: &mut String, secrets: &HashMap<String, String>) {
    for secret in secrets.values().filter(|s| !s.is_empty()) {
        if s.contains(secret.as_str()) {
            *s = s.replace(secret.as_str(), "***");
        }
    }
}
