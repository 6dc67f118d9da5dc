//! Batched writes: group-committed `apply` steps and `create_workflows` transactions,
//! each answering every caller with its own result; and batched reads (`jobs_of`).

use crate::common::fresh;
use baseshift_core::conformance::fixtures::{TestWorkflow, write_job};
use baseshift_core::store::{CreateOutcome, StateStore};
use baseshift_core::{ErrorKind, JobKey, JobStatus, WorkflowId};
use std::sync::Arc;

/// A step making job `a` of `wf` `READY`, written as if the stored version were `version`.
async fn ready_step(store: &dyn StateStore, wf: &WorkflowId, version: u64) -> baseshift_core::store::Transition {
    let mut job = store.job(&JobKey::new(wf.clone(), "a")).await.unwrap_or_else(|e| panic!("job of {wf}: {e}"));
    job.status = JobStatus::Ready;
    job.version = version;
    write_job(job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_steps_each_get_their_own_result() {
    let scoped = fresh(4).await;
    let store = Arc::new(scoped.pg.state_store());
    let workflows: Vec<TestWorkflow> = (0..48).map(|_| TestWorkflow::new().job("a", &[])).collect();
    let created = store.create_workflows(workflows.iter().map(TestWorkflow::build).collect()).await;
    assert!(created.iter().all(|c| matches!(c, Ok(CreateOutcome::Created(_)))), "{created:?}");
    let outbox_before = store.outbox_pending(10_000).await.unwrap().len();

    // Per workflow: a valid step; every 4th also a stale one; every 6th the same valid
    // step twice (only one of the pair can win); plus steps on a missing workflow.
    let mut calls = Vec::new();
    for (i, wf) in workflows.iter().enumerate() {
        let mut steps = vec![("valid", ready_step(store.as_ref(), wf.id(), 1).await)];
        if i % 4 == 0 {
            steps.push(("stale", ready_step(store.as_ref(), wf.id(), 7).await));
        }
        if i % 6 == 0 {
            steps.push(("twin", ready_step(store.as_ref(), wf.id(), 1).await));
        }
        for (kind, step) in steps {
            let store = store.clone();
            calls.push((kind, i, tokio::spawn(async move { store.apply(step).await })));
        }
    }
    let mut missing_step = ready_step(store.as_ref(), workflows[0].id(), 1).await;
    missing_step.workflow_id = WorkflowId::new("no-such-workflow");
    for job in &mut missing_step.jobs {
        job.workflow_id = missing_step.workflow_id.clone();
    }
    let missing = {
        let store = store.clone();
        tokio::spawn(async move { store.apply(missing_step).await })
    };

    let mut wins = vec![0usize; workflows.len()];
    for (kind, i, call) in calls {
        match (kind, call.await.unwrap_or_else(|e| panic!("apply task: {e}"))) {
            ("stale", Err(e)) => assert_eq!(e.kind(), ErrorKind::Conflict, "stale step on {i}: {e}"),
            ("stale", Ok(_)) => panic!("a stale step on workflow {i} was applied"),
            (_, Ok(_)) => wins[i] += 1,
            ("twin", Err(e)) | ("valid", Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::Conflict, "losing twin on {i}: {e}");
                assert!(i % 6 == 0, "only workflows with a twin may lose a valid step ({i}: {e})");
            }
            (other, r) => panic!("unexpected {other} {r:?}"),
        }
    }
    let err = missing.await.unwrap_or_else(|e| panic!("apply task: {e}")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(wins.iter().all(|w| *w == 1), "exactly one valid step per workflow applied: {wins:?}");
    for wf in &workflows {
        let job = store.job(&JobKey::new(wf.id().clone(), "a")).await.unwrap();
        assert_eq!((job.status, job.version), (JobStatus::Ready, 2), "{}", wf.id());
    }
    let events = store.outbox_pending(10_000).await.unwrap().len() - outbox_before;
    assert_eq!(events, workflows.len(), "one event per applied step, none from refused ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_workflows_spans_transactions_and_refuses_items_alone() {
    let scoped = fresh(2).await;
    let store = scoped.pg.state_store();
    let many: Vec<TestWorkflow> = (0..1_100).map(|_| TestWorkflow::new().job("a", &[])).collect();
    let mut batch: Vec<_> = many.iter().map(TestWorkflow::build).collect();
    let twin = many[3].build();
    let mut bad = TestWorkflow::new().job("a", &[]).build();
    let first_job = bad.jobs[0].clone();
    bad.jobs.push(first_job);
    batch.insert(10, twin);
    batch.insert(20, bad);
    let outcomes = store.create_workflows(batch).await;
    assert_eq!(outcomes.len(), 1_102, "one result per workflow");
    for (i, outcome) in outcomes.iter().enumerate() {
        match i {
            10 => assert_eq!(outcome.as_ref().unwrap_err().kind(), ErrorKind::Conflict, "an id earlier in the batch"),
            20 => assert_eq!(outcome.as_ref().unwrap_err().kind(), ErrorKind::InvalidInput, "a duplicate job id"),
            _ => {
                let n = i - usize::from(i > 10) - usize::from(i > 20);
                assert_eq!(outcome.as_ref().unwrap(), &CreateOutcome::Created(many[n].id().clone()), "item {i}");
            }
        }
    }
    assert_eq!(store.jobs(many[1_099].id(), None).await.unwrap().len(), 1, "the second transaction's last workflow");
}

/// `n` new one-job workflows running `template` (the snapshot they share).
fn sharing(n: usize, template: &Arc<baseshift_core::WorkflowTemplate>) -> Vec<baseshift_core::store::NewWorkflow> {
    (0..n)
        .map(|_| {
            let mut new = TestWorkflow::new().job("a", &[]).build();
            new.header.template_id = template.template_id.clone();
            new.header.template_version = template.version.to_string();
            new.template = template.clone();
            new
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_snapshots_are_stored_again_after_the_schema_is_recreated() {
    let scoped = fresh(2).await;
    let store = scoped.pg.state_store();
    let template = TestWorkflow::new().job("a", &[]).build().template;
    let (template_id, version) = (template.template_id.clone(), template.version.to_string());
    for outcome in store.create_workflows(sharing(3, &template)).await {
        assert!(matches!(outcome, Ok(CreateOutcome::Created(_))), "{outcome:?}");
    }
    let created = store.create_workflow(sharing(1, &template).remove(0)).await;
    assert!(matches!(created, Ok(CreateOutcome::Created(_))), "a create with a known snapshot: {created:?}");
    assert_eq!(store.template(&template_id, &version).await.unwrap().template_id, template_id);

    scoped.pg.drop_schema().await.unwrap();
    scoped.pg.migrate().await.unwrap();
    let created = store.create_workflow(sharing(1, &template).remove(0)).await;
    assert!(matches!(created, Ok(CreateOutcome::Created(_))), "{created:?}");
    let snapshot = store.template(&template_id, &version).await.unwrap();
    assert_eq!(snapshot.template_id, template_id, "the snapshot was written again in the new schema");
}

/// More distinct ids than one `jobs_of` statement asks for, absent and repeated ones
/// among them: every list in the order asked, as `jobs` reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_spans_statements() {
    let scoped = fresh(4).await;
    let store = scoped.pg.state_store();
    // Ids are time-ordered: `two` sorts first, `one` after the first 1 500 absent ids, so
    // the two land in different statements.
    let two = TestWorkflow::new().job("b", &[]).job("a", &["b"]);
    let mut ask: Vec<WorkflowId> = (0..1500).map(|_| WorkflowId::generate()).collect();
    let one = TestWorkflow::new().job("a", &[]);
    ask.extend((0..1000).map(|_| WorkflowId::generate()));
    for wf in [&one, &two] {
        wf.create(&store).await.unwrap();
    }
    ask[10] = two.id().clone();
    ask[2000] = one.id().clone();
    ask.push(two.id().clone());
    let (one_jobs, two_jobs) = (store.jobs(one.id(), None).await.unwrap(), store.jobs(two.id(), None).await.unwrap());
    let got = store.jobs_of(&ask).await.unwrap();
    assert_eq!(got.len(), ask.len(), "one list per id asked");
    for (i, jobs) in got.iter().enumerate() {
        let expected: &[baseshift_core::JobRecord] = match i {
            10 | 2500 => &two_jobs,
            2000 => &one_jobs,
            _ => &[],
        };
        assert_eq!(jobs.as_slice(), expected, "list {i} (of {})", ask[i]);
    }
}
