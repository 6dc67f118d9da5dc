use super::index::{At, Placement, Slot};
use super::*;
use crate::error::ErrorKind;
use crate::event::Event;
use crate::state::{JobStatus, WorkflowStatus};
use crate::store::ParentOutcome;
use crate::template::Trigger;
use chrono::TimeDelta;
use serde_json::json;
use std::collections::HashMap;

fn job(wf: &WorkflowId, id: &str, parents: u32) -> JobRecord {
    JobRecord::pending(wf.clone(), id, "noop", parents)
}

fn new_workflow(jobs: Vec<JobRecord>, id: WorkflowId) -> NewWorkflow {
    NewWorkflow {
        header: WorkflowRecord::initialized(id.clone(), "t", "1.0.0", json!({})),
        jobs,
        template: std::sync::Arc::new(WorkflowTemplate::new("t", semver::Version::new(1, 0, 0))),
        events: vec![Event::workflow(&id, WorkflowStatus::Initialized, None)],
    }
}

fn request(limit: usize, ttl_ms: u64, exclude: &[&str]) -> ClaimRequest {
    ClaimRequest {
        owner: "test".into(),
        limit,
        lease_ttl: Duration::from_millis(ttl_ms),
        exclude_types: exclude.iter().map(|s| (*s).to_owned()).collect(),
        type_limits: Default::default(),
    }
}

fn write(job: JobRecord) -> Transition {
    let mut step = Transition::new(job.workflow_id.clone());
    step.jobs.push(job);
    step
}

/// Every claimable record is in exactly the index its state calls for, and the indexes
/// hold nothing else.
fn check_indexes(inner: &Inner) {
    let mut expected = 0;
    for wf in inner.workflows.after(None) {
        let handle = inner.workflows.handle(&wf.header.id).expect("a listed workflow has a handle");
        for (pos, job) in wf.jobs.iter().enumerate() {
            let key = Slot::new(handle, pos);
            let in_ready = inner.index.ready.iter().any(|(_, k)| *k == key);
            let in_delayed = inner.index.delayed.iter().any(|(_, k)| *k == key);
            let in_leased = inner.index.leased.iter().any(|(_, k)| *k == key);
            let placement = Placement::of(job, DateTime::<Utc>::MIN_UTC);
            match placement {
                Placement::Delayed(at) => {
                    // A READY job: queued, or delayed until `ready_at` (possibly already past).
                    let delayed = inner.index.delayed.contains(&(at, key));
                    assert!(in_ready ^ delayed, "{key:?}: ready={in_ready} delayed={delayed}");
                    assert!(!in_leased, "{key:?} is READY but leased");
                }
                Placement::Ready => {
                    assert!(in_ready && !in_delayed && !in_leased, "{key:?}: READY without ready_at");
                }
                Placement::Leased(at) => {
                    assert!(inner.index.leased.contains(&(At::new(at), key)), "{key:?}: lease not indexed");
                    assert!(!in_ready && !in_delayed, "{key:?}: RUNNING but queued");
                }
                Placement::None => {
                    assert!(!in_ready && !in_delayed && !in_leased, "{key:?}: indexed but not claimable")
                }
            }
            if placement != Placement::None {
                expected += 1;
            }
        }
    }
    assert_eq!(inner.index.len(), expected, "stale index entries");
}

/// Random creates, readies, claims, completions, retries, renewals and clock jumps keep
/// the indexes in step with the records, and a claim never returns a job under a valid
/// lease or a retry before it is due.
#[test]
fn indexes_stay_consistent_under_random_operations() {
    let (mut claimed_ready, mut reclaimed) = (0, 0);
    for seed in 0..20 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut inner = Inner::default();
        let mut now = Utc::now();
        let mut children: HashMap<JobKey, Vec<crate::ids::Name>> = HashMap::new();
        let mut wf_ids = Vec::new();
        for _ in 0..400 {
            match rng.u8(0..10) {
                0 => {
                    let id = WorkflowId::generate();
                    let n = rng.usize(1..7);
                    let mut jobs = Vec::new();
                    for i in 0..n {
                        let parents: Vec<usize> = (0..i).filter(|_| rng.u8(0..3) == 0).collect();
                        let mut j = job(&id, &format!("j{i}"), parents.len() as u32);
                        j.priority = rng.i32(-3..4);
                        j.job_type = if rng.bool() { "noop".into() } else { "slow".into() };
                        j.trigger = [Trigger::AllSuccess, Trigger::AllDone, Trigger::OneSuccess, Trigger::NoneFailed]
                            [rng.usize(0..4)];
                        j.has_condition = rng.u8(0..5) == 0;
                        for p in parents {
                            children
                                .entry(JobKey::new(id.clone(), format!("j{p}")))
                                .or_default()
                                .push(j.job_id.clone());
                        }
                        jobs.push(j);
                    }
                    inner.create(new_workflow(jobs, id.clone()), now).unwrap();
                    wf_ids.push(id);
                }
                1..=2 if !wf_ids.is_empty() => {
                    // Ready a pending root or eligible job, now or later.
                    let wf = &wf_ids[rng.usize(0..wf_ids.len())];
                    let jobs = inner.jobs(wf, None).unwrap();
                    if let Some(mut j) =
                        jobs.into_iter().find(|j| j.status == JobStatus::Pending && (j.deps.total == 0 || j.eligible))
                    {
                        j.status = JobStatus::Ready;
                        j.ready_at = Some(now + TimeDelta::milliseconds(rng.i64(-500..500)));
                        inner.apply(&mut write(j), now).unwrap();
                    }
                }
                3..=4 => {
                    let before: HashMap<JobKey, JobRecord> = inner
                        .workflows
                        .after(None)
                        .flat_map(|wf| wf.jobs.iter().map(|j| (j.key(), j.clone())))
                        .collect();
                    let exclude: &[&str] = if rng.bool() { &["slow"] } else { &[] };
                    let claimed = inner.claim(request(rng.usize(0..4), rng.u64(0..400), exclude), now, None).unwrap();
                    for j in &claimed.jobs {
                        let old = &before[&j.key()];
                        let claimable = match old.status {
                            JobStatus::Ready => old.ready_at.is_none_or(|t| t <= now),
                            JobStatus::Running => {
                                !old.awaiting_external && old.lease.as_ref().is_some_and(|l| l.expires_at <= now)
                            }
                            _ => false,
                        };
                        assert!(claimable, "claimed {} from {old:?}", j.key());
                        if old.status == JobStatus::Running {
                            reclaimed += 1;
                        } else {
                            claimed_ready += 1;
                        }
                        assert!(exclude.is_empty() || j.job_type != "slow");
                        assert_eq!(j.attempt, old.attempt + 1);
                    }
                }
                5..=6 => {
                    // Finish, retry or park a running job.
                    let running: Vec<JobRecord> = inner
                        .workflows
                        .after(None)
                        .flat_map(|wf| wf.jobs.iter().filter(|j| j.status == JobStatus::Running).cloned())
                        .collect();
                    if running.is_empty() {
                        continue;
                    }
                    let mut j = running[rng.usize(0..running.len())].clone();
                    let mut step = Transition::new(j.workflow_id.clone());
                    match rng.u8(0..4) {
                        0 => {
                            j.status = JobStatus::Ready;
                            j.lease = None;
                            j.ready_at = Some(now + TimeDelta::milliseconds(rng.i64(0..800)));
                        }
                        1 => j.awaiting_external = true,
                        _ => {
                            j.status = if rng.bool() { JobStatus::Succeeded } else { JobStatus::Failed };
                            j.lease = None;
                            step.terminal_delta = 1;
                            for child in children.get(&j.key()).into_iter().flatten() {
                                step.parent_outcomes.push(ParentOutcome { child: child.clone(), status: j.status });
                            }
                        }
                    }
                    step.jobs.push(j);
                    inner.apply(&mut step, now).unwrap();
                }
                7 => {
                    let leased: Vec<(JobKey, crate::ids::Name)> = inner
                        .workflows
                        .after(None)
                        .flat_map(|wf| wf.jobs.iter())
                        .filter(|j| j.status == JobStatus::Running)
                        .filter_map(|j| j.lease.as_ref().map(|l| (j.key(), l.token.clone())))
                        .collect();
                    if !leased.is_empty() {
                        let (key, token) = &leased[rng.usize(0..leased.len())];
                        inner.renew(key, token, Duration::from_millis(rng.u64(0..400)), now).unwrap();
                    }
                }
                _ => now += TimeDelta::milliseconds(rng.i64(0..300)),
            }
            check_indexes(&inner);
        }
    }
    assert!(claimed_ready > 100 && reclaimed > 10, "too few claims exercised: {claimed_ready}, {reclaimed}");
}

#[tokio::test]
async fn rejects_malformed_creates() {
    let store = MemoryStateStore::new();
    let id = WorkflowId::generate();
    store.create_workflow(new_workflow(vec![job(&id, "a", 0)], id.clone())).await.unwrap();

    let again = store.create_workflow(new_workflow(vec![], id.clone())).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict);
    assert_eq!(again.workflow_id(), Some(id.as_str()));

    let other = WorkflowId::generate();
    let stray = store.create_workflow(new_workflow(vec![job(&id, "a", 0)], other.clone())).await.unwrap_err();
    assert_eq!(stray.kind(), ErrorKind::InvalidInput);
    let twice = new_workflow(vec![job(&other, "a", 0), job(&other, "a", 0)], other.clone());
    let twice = store.create_workflow(twice).await.unwrap_err();
    assert_eq!((twice.kind(), twice.job_id()), (ErrorKind::InvalidInput, Some("a")));
    assert_eq!(store.workflow(&other).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.outbox_pending(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn rejects_malformed_steps_with_context() {
    let store = MemoryStateStore::new();
    let id = WorkflowId::generate();
    store.create_workflow(new_workflow(vec![job(&id, "a", 0), job(&id, "b", 1)], id.clone())).await.unwrap();
    let a = store.job(&JobKey::new(id.clone(), "a")).await.unwrap();

    let mut step = write(a.clone());
    step.jobs.push(a.clone());
    let e = store.apply(step).await.unwrap_err();
    assert_eq!((e.kind(), e.job_id()), (ErrorKind::InvalidInput, Some("a")));

    let mut step = Transition::new(id.clone());
    step.parent_outcomes.push(ParentOutcome { child: "b".into(), status: JobStatus::Running });
    let e = store.apply(step).await.unwrap_err();
    assert_eq!((e.kind(), e.job_id()), (ErrorKind::InvalidInput, Some("b")));

    let mut stale = a;
    stale.version = 7;
    let e = store.apply(write(stale)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!((e.workflow_id(), e.job_id()), (Some(id.as_str()), Some("a")));
    assert_eq!((e.operation(), e.backend()), (Some("StateStore::apply"), Some("memory")));
    assert_eq!(store.job(&JobKey::new(id, "b")).await.unwrap().deps.done(), 0);
}

/// A store holding one workflow: root `a`, created `READY`, and its child `b`.
/// The step of [`ready_root_and_child`]'s claimed root `a` succeeding: `b` gets its
/// parent's outcome.
fn root_succeeded(mut a: JobRecord) -> Transition {
    a.status = JobStatus::Succeeded;
    a.lease = None;
    a.propagated = true;
    let mut step = write(a);
    step.parent_outcomes.push(ParentOutcome { child: "b".into(), status: JobStatus::Succeeded });
    step.terminal_delta = 1;
    step
}

async fn ready_root_and_child() -> (MemoryStateStore, WorkflowId) {
    let store = MemoryStateStore::new();
    let id = WorkflowId::generate();
    let mut root = job(&id, "a", 0);
    root.status = JobStatus::Ready;
    root.ready_at = Some(Utc::now());
    store.create_workflow(new_workflow(vec![root, job(&id, "b", 1)], id.clone())).await.unwrap();
    (store, id)
}

#[tokio::test]
async fn ready_jobs_in_a_new_workflow_are_queued() {
    let (store, _) = ready_root_and_child().await;
    let claimed = store.claim(request(10, 60_000, &[])).await.unwrap();
    assert_eq!(claimed.jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), vec!["a"]);
}

#[tokio::test]
async fn out_of_range_lease_ttl_is_invalid_input() {
    let store = MemoryStateStore::new();
    let e = store.claim(request(1, u64::MAX, &[])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn wait_for_work_returns_when_a_retry_comes_due() {
    let store = MemoryStateStore::new();
    let id = WorkflowId::generate();
    store.create_workflow(new_workflow(vec![job(&id, "a", 0)], id.clone())).await.unwrap();
    let mut a = store.job(&JobKey::new(id, "a")).await.unwrap();
    a.status = JobStatus::Ready;
    a.ready_at = Some(Utc::now() + TimeDelta::milliseconds(300));
    store.apply(write(a)).await.unwrap();
    store.wait_for_work(Duration::from_millis(1)).await; // the permit left by the writes

    let start = std::time::Instant::now();
    store.wait_for_work(Duration::from_secs(30)).await;
    assert!(start.elapsed() < Duration::from_secs(10), "woke after {:?}", start.elapsed());
    store.wait_for_work(Duration::from_secs(30)).await; // promotes the due retry: returns at once
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(store.claim(request(1, 60_000, &[])).await.unwrap().jobs.len(), 1);
}

#[test]
fn capabilities_say_memory_not_durable() {
    let caps = MemoryStateStore::new().capabilities();
    assert_eq!((caps.name, caps.durable, caps.shared), ("memory", false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_only_finished_workflows() {
    use crate::engine::{Engine, StartRequest};
    use crate::template::JobSpec;
    use std::sync::Arc;

    let store = Arc::new(MemoryStateStore::new());
    let engine = Engine::builder().state_store(store.clone()).build().unwrap();
    engine.launch().await.unwrap();
    let quick = WorkflowTemplate::new("quick", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop"))
        .job(JobSpec::new("b", "noop"));
    let held = WorkflowTemplate::new("held", semver::Version::new(1, 0, 0)).job(JobSpec::new("m", "manual"));
    engine.register_template(quick).await.unwrap();
    engine.register_template(held).await.unwrap();
    let done = engine.start_with(StartRequest::new("quick").idempotency_key("k1")).await.unwrap();
    engine.wait(&done).await.unwrap();
    let running = engine.start("held", json!({})).await.unwrap();

    let young = store.apply_retention(Duration::from_secs(3600)).unwrap();
    assert_eq!(young, MemoryRetention::default(), "nothing finished an hour ago");
    let removed = store.apply_retention(Duration::ZERO).unwrap();
    assert_eq!((removed.workflows, removed.jobs), (1, 2));
    assert_eq!(store.workflow(&done).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.workflow(&running).await.unwrap().status, WorkflowStatus::Running, "never a running one");
    // The key is free again: a new start with it makes a new workflow.
    let again = engine.start_with(StartRequest::new("quick").idempotency_key("k1")).await.unwrap();
    assert_ne!(again, done);
    engine.wait(&again).await.unwrap();
    assert_eq!(store.apply_retention(Duration::ZERO).unwrap().workflows, 1);
    assert_eq!(store.apply_retention(Duration::MAX).unwrap_err().kind(), ErrorKind::InvalidInput);

    // A failed workflow goes with its dead letter; one replayed (running again) stays.
    let awaiting = |id: WorkflowId| {
        let store = store.clone();
        async move {
            for _ in 0..500 {
                let m = store.job(&JobKey::new(id.clone(), "m")).await.unwrap();
                if m.status == JobStatus::Running && m.awaiting_external {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("job m never waited for its external completion");
        }
    };
    awaiting(running.clone()).await;
    engine.fail_job(&running, "m", "boom").await.unwrap();
    assert_eq!(engine.wait(&running).await.unwrap().status, WorkflowStatus::Failed);
    assert_eq!(store.dead_letters(Default::default()).await.unwrap().len(), 1);
    engine.replay(&running, "m").await.unwrap();
    assert_eq!(store.apply_retention(Duration::ZERO).unwrap().workflows, 0, "replayed: running again");
    awaiting(running.clone()).await;
    engine.fail_job(&running, "m", "boom again").await.unwrap();
    assert_eq!(engine.wait(&running).await.unwrap().status, WorkflowStatus::Failed);
    assert_eq!(store.apply_retention(Duration::ZERO).unwrap().workflows, 1);
    assert!(store.dead_letters(Default::default()).await.unwrap().is_empty(), "its dead letter went with it");
    engine.shutdown().await;
}

/// Small workflows find their jobs by a scan and large ones by a map: both answer the
/// same, and both refuse a duplicate job id without storing anything.
#[test]
fn jobs_are_found_and_duplicates_refused_below_and_above_the_scan_limit() {
    for n in [3, 40] {
        let mut inner = Inner::default();
        let id = WorkflowId::new(format!("wf{n}"));
        let jobs: Vec<JobRecord> = (0..n).map(|i| job(&id, &format!("j{i}"), 0)).collect();
        inner.create(new_workflow(jobs.clone(), id.clone()), Utc::now()).unwrap();
        for i in [0, n / 2, n - 1] {
            let found = inner.job(&JobKey::new(id.clone(), format!("j{i}"))).unwrap();
            assert_eq!(found.job_id, format!("j{i}"), "n={n}");
        }
        let missing = inner.job(&JobKey::new(id.clone(), "nope")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound, "n={n}");

        let dup_id = WorkflowId::new(format!("dup{n}"));
        let mut dup: Vec<JobRecord> = (0..n).map(|i| job(&dup_id, &format!("j{i}"), 0)).collect();
        dup[n - 1].job_id = "j0".into();
        let err = inner.create(new_workflow(dup, dup_id.clone()), Utc::now()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "n={n}");
        assert!(err.message().contains("duplicate job id"), "n={n}: {err}");
        assert!(inner.workflow(&dup_id).is_err(), "n={n}: nothing stored");
    }
}

#[tokio::test]
async fn claim_after_claims_in_the_step_and_a_refused_step_claims_nothing() {
    let (store, id) = ready_root_and_child().await;
    let a = store.claim(request(1, 60_000, &[])).await.unwrap().jobs.remove(0);

    // A refused step (stale version) claims nothing and changes nothing.
    let mut stale = a.clone();
    stale.version -= 1;
    let mut refused = write(stale);
    refused.claim_after = Some(request(1, 60_000, &[]));
    assert_eq!(store.apply(refused).await.unwrap_err().kind(), ErrorKind::Conflict);

    // `a` succeeds, `b` becomes ready and is claimed in the same step.
    let mut step = root_succeeded(a);
    step.events.push(Event::job(&id, "a", JobStatus::Succeeded, 1, None));
    step.claim_after = Some(request(1, 60_000, &[]));
    let applied = store.apply(step).await.unwrap();
    assert_eq!(applied.ready, vec!["b".to_owned()]);
    assert_eq!(applied.claimed.len(), 1);
    let b = &applied.claimed[0];
    assert_eq!((b.job_id.as_str(), b.status, b.attempt), ("b", JobStatus::Running, 1));
    assert_eq!(b.lease.as_ref().map(|l| l.owner.as_str()), Some("test"));
    assert_eq!(&store.job(&b.key()).await.unwrap(), b, "the store holds what the step returned");
    assert!(store.claim(request(10, 60_000, &[])).await.unwrap().jobs.is_empty(), "nothing left to claim");

    // The claim's event follows the step's own and the readying it caused.
    let types: Vec<String> =
        store.outbox_pending(100).await.unwrap().into_iter().map(|e| e.event.event_type.to_string()).collect();
    let at = |t: &str| types.iter().rposition(|x| x == t).unwrap();
    assert!(at("job_succeeded") < at("job_ready") && at("job_ready") < at("job_running"), "{types:?}");

    // With nothing ready, the step claims nothing.
    let mut b = applied.claimed[0].clone();
    b.status = JobStatus::Succeeded;
    b.lease = None;
    b.propagated = true;
    let mut last = write(b);
    last.terminal_delta = 1;
    last.claim_after = Some(request(1, 60_000, &[]));
    let applied = store.apply(last).await.unwrap();
    assert!(applied.claimed.is_empty() && applied.remaining == 0);
}

/// How long `wait_for_work(1 s)` waits (paused time: a wake-up left for it returns at once).
async fn waited(store: &MemoryStateStore) -> Duration {
    let t0 = tokio::time::Instant::now();
    store.wait_for_work(Duration::from_secs(1)).await;
    t0.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_step_that_claims_what_it_readied_wakes_no_one() {
    for claim_after in [true, false] {
        let (store, id) = ready_root_and_child().await;
        let a = store.claim(request(1, 60_000, &[])).await.unwrap().jobs.remove(0);
        assert_eq!(waited(&store).await, Duration::ZERO, "the create left a wake-up");
        let mut step = root_succeeded(a);
        if claim_after {
            step.claim_after = Some(request(1, 60_000, &[]));
        }
        let applied = store.apply(step).await.unwrap();
        assert_eq!(applied.claimed.len(), usize::from(claim_after), "workflow {id}");
        let expected = if claim_after { Duration::from_secs(1) } else { Duration::ZERO };
        assert_eq!(waited(&store).await, expected, "claim_after: {claim_after}");
    }
}

/// `n` pending roots of one new workflow, and the step making each `READY` (current versions).
async fn roots_and_their_steps(store: &MemoryStateStore, n: usize) -> (WorkflowId, Vec<Transition>) {
    let id = WorkflowId::generate();
    let jobs = (0..n).map(|i| job(&id, &format!("j{i}"), 0)).collect();
    store.create_workflow(new_workflow(jobs, id.clone())).await.unwrap();
    let steps = store
        .jobs(&id, None)
        .await
        .unwrap()
        .into_iter()
        .map(|mut j| {
            j.status = JobStatus::Ready;
            j.ready_at = Some(Utc::now());
            write(j)
        })
        .collect();
    (id, steps)
}

/// Steps that find the lock taken are queued, and the lock's holder applies them when it
/// lets go: each once, each answered, a refused one with its error and no change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_queued_behind_the_lock_are_applied_by_its_holder() {
    let store = std::sync::Arc::new(MemoryStateStore::new());
    let (id, mut steps) = roots_and_their_steps(&store, 8).await;
    let mut stale = steps[0].jobs[0].clone();
    stale.version += 7;
    steps.push(write(stale));
    // Held as for a step: the steps queue behind it rather than wait.
    let held = store.lock();
    store.stepping.store(true, std::sync::atomic::Ordering::Relaxed);
    let tasks: Vec<_> = steps
        .into_iter()
        .map(|step| {
            let store = store.clone();
            tokio::spawn(async move { store.apply(step).await })
        })
        .collect();
    // This thread is not one of the runtime's: it may block while the tasks queue.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.queued.lock().len() < tasks.len() {
        assert!(std::time::Instant::now() < deadline, "the steps did not queue behind the held lock");
        std::thread::sleep(Duration::from_millis(1));
    }
    store.stepping.store(false, std::sync::atomic::Ordering::Relaxed);
    drop(held);
    assert!(store.queued.lock().is_empty(), "releasing the lock applies what queued");
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let refused = answers.pop().unwrap().unwrap_err();
    assert_eq!((refused.kind(), refused.job_id()), (ErrorKind::Conflict, Some("j0")));
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    for j in store.jobs(&id, None).await.unwrap() {
        assert_eq!((j.status, j.version), (JobStatus::Ready, 2), "{}", j.job_id);
    }
    check_indexes(&store.lock());
    assert_eq!(store.claim(request(100, 60_000, &[])).await.unwrap().jobs.len(), 8);
}

/// Many steps at once on two threads, some applied at once and some queued: every one is
/// applied exactly once and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_steps_are_each_applied_once() {
    let store = std::sync::Arc::new(MemoryStateStore::new());
    let (id, steps) = roots_and_their_steps(&store, 400).await;
    let tasks: Vec<_> = steps
        .into_iter()
        .map(|step| {
            let store = store.clone();
            tokio::spawn(async move { store.apply(step).await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(store.queued.lock().is_empty());
    let jobs = store.jobs(&id, None).await.unwrap();
    assert!(jobs.iter().all(|j| j.status == JobStatus::Ready && j.version == 2));
    check_indexes(&store.lock());
}
