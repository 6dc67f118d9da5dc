//! Creating workflows and reading them back: records, idempotency, snapshots, listing.

use crate::conformance::check::{ensure, ensure_eq, expect_kind, failure};
use crate::conformance::fixtures::{TestWorkflow, now_ms, succeed_step, write_job};
use crate::error::{ErrorKind, Result};
use crate::ids::{JobKey, WorkflowId};
use crate::state::WorkflowStatus;
use crate::store::{CreateOutcome, StateStore, Transition, WorkflowFilter};
use futures_util::future::join_all;

/// A created workflow reads back as written: the header with `version` 1 and `remaining`
/// = the number of main jobs, every job with `version` 1 in template order, and the
/// creation events in the outbox.
pub async fn create_and_read_back(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new()
        .job("fetch", &[])
        .job("resize", &["fetch"])
        .job("store", &["fetch"])
        .job("notify", &["resize", "store"])
        .job("fetch.compensate", &[])
        .with_job("fetch.compensate", |j| j.compensation_of = Some("fetch".into()))
        .with_job("resize", |j| j.priority = 7);
    wf.create(store).await?;

    let header = store.workflow(wf.id()).await?;
    let mut expected = wf.header().clone();
    expected.version = 1;
    expected.remaining = 4;
    ensure_eq!(header, expected, "header read back");

    let jobs = store.jobs(wf.id(), None).await?;
    let expected: Vec<_> = wf
        .jobs()
        .iter()
        .cloned()
        .map(|mut j| {
            j.version = 1;
            j
        })
        .collect();
    ensure_eq!(jobs, expected, "jobs read back in template order");
    for job in &expected {
        ensure_eq!(store.job(&job.key()).await?, *job, "job `{}` read back alone", job.job_id);
    }

    let pending = store.outbox_pending(100).await?;
    let types: Vec<_> = pending.iter().map(|e| e.event.event_type.as_str()).collect();
    ensure_eq!(types, vec!["workflow_initialized"], "outbox after create");
    ensure_eq!(pending[0].event.payload.workflow_id, *wf.id(), "creation event's workflow");
    Ok(())
}

/// `create_workflow` with an idempotency key already used returns `Existing` with the
/// first workflow's id and writes nothing.
pub async fn create_with_used_key_returns_existing(store: &dyn StateStore) -> Result<()> {
    let first = TestWorkflow::new().job("a", &[]).idempotency_key("order-42");
    first.create(store).await?;
    let before = store.outbox_pending(100).await?;

    let second = TestWorkflow::new().job("a", &[]).job("b", &["a"]).idempotency_key("order-42");
    let outcome = store.create_workflow(second.build()).await?;
    ensure_eq!(outcome, CreateOutcome::Existing(first.id().clone()), "second create with the same key");
    expect_kind(store.workflow(second.id()).await, ErrorKind::NotFound, "header of the refused workflow")?;
    expect_kind(store.job(&second.key("b")).await, ErrorKind::NotFound, "job of the refused workflow")?;
    ensure_eq!(store.outbox_pending(100).await?, before, "outbox after the refused create");
    ensure_eq!(store.jobs(first.id(), None).await?.len(), 1, "jobs of the first workflow");

    let other = TestWorkflow::new().job("a", &[]).idempotency_key("order-43");
    other.create(store).await
}

/// Concurrent creates with one idempotency key create exactly one workflow; every other
/// call returns `Existing` with its id.
pub async fn concurrent_creates_with_one_key_create_once(store: &dyn StateStore) -> Result<()> {
    let attempts: Vec<_> = (0..8).map(|_| TestWorkflow::new().job("a", &[]).idempotency_key("race")).collect();
    let outcomes = join_all(attempts.iter().map(|wf| store.create_workflow(wf.build()))).await;
    let outcomes = outcomes.into_iter().collect::<Result<Vec<_>>>()?;

    let created: Vec<&WorkflowId> = outcomes
        .iter()
        .filter_map(|o| match o {
            CreateOutcome::Created(id) => Some(id),
            CreateOutcome::Existing(_) => None,
        })
        .collect();
    ensure_eq!(created.len(), 1, "number of `Created` outcomes among 8 racing creates");
    let winner = created[0].clone();
    ensure!(outcomes.iter().all(|o| *o.id() == winner), "every outcome names the winner {winner}: {outcomes:?}");
    for wf in &attempts {
        let found = store.workflow(wf.id()).await;
        if *wf.id() == winner {
            found?;
        } else {
            expect_kind(found, ErrorKind::NotFound, "a losing workflow")?;
        }
    }
    let listed = store.list_workflows(WorkflowFilter::default()).await?;
    ensure_eq!(listed.len(), 1, "workflows listed after the race");
    ensure_eq!(store.outbox_pending(100).await?.len(), 1, "creation events after the race");
    Ok(())
}

/// Reads and writes of absent workflows, jobs and templates fail with `NotFound`.
pub async fn missing_records_are_not_found(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(store).await?;
    let ghost = WorkflowId::generate();

    expect_kind(store.workflow(&ghost).await, ErrorKind::NotFound, "workflow() of an absent workflow")?;
    expect_kind(store.job(&JobKey::new(ghost.clone(), "a")).await, ErrorKind::NotFound, "job() in an absent workflow")?;
    expect_kind(store.job(&wf.key("zz")).await, ErrorKind::NotFound, "job() of an absent job")?;
    expect_kind(store.jobs(&ghost, None).await, ErrorKind::NotFound, "jobs() of an absent workflow")?;
    expect_kind(store.template("no-such-template", "1.0.0").await, ErrorKind::NotFound, "template() of an absent id")?;

    expect_kind(store.apply(Transition::new(ghost)).await, ErrorKind::NotFound, "apply() on an absent workflow")?;
    let mut stray = store.job(&wf.key("a")).await?;
    stray.job_id = "zz".into();
    expect_kind(store.apply(write_job(stray)).await, ErrorKind::NotFound, "apply() writing an absent job")?;
    Ok(())
}

/// `jobs(id, Some(ids))` returns the named jobs in the order asked and leaves out
/// absent ids.
pub async fn jobs_by_id_in_order_asked(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]).job("c", &["b"]);
    wf.create(store).await?;
    let ask = ["c".to_owned(), "nope".to_owned(), "a".to_owned()];
    let jobs = store.jobs(wf.id(), Some(&ask)).await?;
    let ids: Vec<_> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    ensure_eq!(ids, vec!["c", "a"], "job ids returned");
    ensure!(store.jobs(wf.id(), Some(&[])).await?.is_empty(), "jobs(Some(&[])) returns nothing");
    Ok(())
}

/// `workflows(ids)` returns the headers asked for, each equal to what `workflow` reads,
/// in the order asked (a repeated id twice), leaving out absent ids.
pub async fn workflows_by_id_in_order_asked(store: &dyn StateStore) -> Result<()> {
    let (one, two) = (TestWorkflow::new().job("a", &[]), TestWorkflow::new().job("a", &[]).job("b", &["a"]));
    one.create(store).await?;
    two.create(store).await?;
    let absent = crate::ids::WorkflowId::generate();
    let ask = [two.id().clone(), absent, one.id().clone(), two.id().clone()];
    let got = store.workflows(&ask).await?;
    let expected =
        vec![store.workflow(two.id()).await?, store.workflow(one.id()).await?, store.workflow(two.id()).await?];
    ensure_eq!(got, expected, "headers returned");
    ensure!(store.workflows(&[]).await?.is_empty(), "workflows(&[]) returns nothing");
    Ok(())
}

/// `jobs_of(ids)` returns, per id asked and in that order (a repeated id twice), every
/// job record of the workflow exactly as `jobs(id, None)` reads it (template order, a
/// written job's new version and output included), and an empty list for an absent id.
pub async fn jobs_of_many_in_order_asked(store: &dyn StateStore) -> Result<()> {
    let one = TestWorkflow::new().job("a", &[]);
    // Template order is neither alphabetical nor the order of the children's ids.
    let three = TestWorkflow::new()
        .job("fetch", &[])
        .job("resize", &["fetch"])
        .job("archive", &["fetch"])
        .job("fetch.compensate", &[])
        .with_job("fetch.compensate", |j| j.compensation_of = Some("fetch".into()));
    let two = TestWorkflow::new().job("b", &[]).job("a", &["b"]);
    for wf in [&one, &three, &two] {
        wf.create(store).await?;
    }
    let output = serde_json::json!({ "size": 3 });
    store.apply(succeed_step(store, &three, "fetch", Some(output.clone()), now_ms()).await?).await?;

    let absent = WorkflowId::generate();
    let ask = [three.id().clone(), absent.clone(), one.id().clone(), three.id().clone(), two.id().clone()];
    let got = store.jobs_of(&ask).await?;
    let ids = |jobs: &[crate::state::JobRecord]| jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>();
    ensure_eq!(got.len(), ask.len(), "one list per id asked");
    ensure_eq!(ids(&got[0]), vec!["fetch", "resize", "archive", "fetch.compensate"], "job ids in template order");
    ensure_eq!(ids(&got[4]), vec!["b", "a"], "job ids of the last workflow in template order");
    let fetch = &got[0][0];
    ensure!(fetch.version > 1 && fetch.output == Some(output), "the written job as written: {fetch:?}");
    let expected = vec![
        store.jobs(three.id(), None).await?,
        Vec::new(),
        store.jobs(one.id(), None).await?,
        store.jobs(three.id(), None).await?,
        store.jobs(two.id(), None).await?,
    ];
    ensure_eq!(got, expected, "the lists returned");
    ensure_eq!(store.jobs_of(std::slice::from_ref(&absent)).await?, vec![Vec::new()], "an absent id alone");
    ensure!(store.jobs_of(&[]).await?.is_empty(), "jobs_of(&[]) returns nothing");
    Ok(())
}

/// The template snapshot stored with a workflow reads back equal, by id and version.
pub async fn template_snapshot_round_trip(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]).with_job("b", |j| j.priority = 3);
    wf.create(store).await?;
    let header = store.workflow(wf.id()).await?;
    let snapshot = store.template(&header.template_id, &header.template_version).await?;
    ensure_eq!(snapshot, wf.template(), "template snapshot");
    expect_kind(store.template(&header.template_id, "9.9.9").await, ErrorKind::NotFound, "another version")?;
    Ok(())
}

/// `list_workflows` returns headers by ascending id, pages with `after` and `limit`
/// (0 = a default page), and keeps only the statuses asked for.
pub async fn list_workflows_pages_and_filters(store: &dyn StateStore) -> Result<()> {
    let mut ids = Vec::new();
    for _ in 0..5 {
        let wf = TestWorkflow::new().job("a", &[]);
        wf.create(store).await?;
        ids.push(wf.id().clone());
    }
    ids.sort();
    for id in [&ids[1], &ids[3]] {
        let mut header = store.workflow(id).await?;
        header.status = WorkflowStatus::Running;
        let mut step = Transition::new(id.clone());
        step.header = Some(Box::new(header));
        store.apply(step).await?;
    }

    let list = |after: Option<&WorkflowId>, limit: usize, statuses: Vec<WorkflowStatus>| {
        let filter = WorkflowFilter { statuses, after: after.cloned(), limit };
        async move {
            let page = store.list_workflows(filter).await?;
            Ok::<_, crate::Error>(page.into_iter().map(|h| h.id).collect::<Vec<_>>())
        }
    };
    ensure_eq!(list(None, 0, vec![]).await?, ids, "all workflows (limit 0)");
    ensure_eq!(list(None, 2, vec![]).await?, ids[0..2].to_vec(), "first page");
    ensure_eq!(list(Some(&ids[1]), 2, vec![]).await?, ids[2..4].to_vec(), "second page");
    ensure_eq!(list(Some(&ids[3]), 2, vec![]).await?, ids[4..].to_vec(), "last page");
    ensure!(list(Some(&ids[4]), 2, vec![]).await?.is_empty(), "a page after the last id is empty");
    let running = list(None, 0, vec![WorkflowStatus::Running]).await?;
    ensure_eq!(running, vec![ids[1].clone(), ids[3].clone()], "RUNNING workflows");
    let both = list(None, 0, vec![WorkflowStatus::Running, WorkflowStatus::Initialized]).await?;
    ensure_eq!(both, ids, "RUNNING or INITIALIZED workflows");
    ensure!(
        list(Some(&ids[1]), 1, vec![WorkflowStatus::Running]).await? == vec![ids[3].clone()],
        "paging within a status filter"
    );
    let headers = store.list_workflows(WorkflowFilter::default()).await?;
    let first = headers.first().ok_or_else(|| failure("no headers listed"))?;
    ensure_eq!(*first, store.workflow(&ids[0]).await?, "listed header equals the stored one");
    Ok(())
}

/// `create_workflows` creates each workflow as `create_workflow` would and answers in
/// input order: a key used earlier in the same batch returns `Existing` with the first id
/// and writes nothing, an id that already exists fails alone (`Conflict`), and the others
/// are created with their jobs and creation events.
pub async fn create_workflows_answers_each_in_order(store: &dyn StateStore) -> Result<()> {
    let taken = TestWorkflow::new().job("a", &[]);
    taken.create(store).await?;
    let before = store.outbox_pending(1000).await?.len();
    let first = TestWorkflow::new().job("a", &[]).job("b", &["a"]).idempotency_key("batch-key");
    let repeat = TestWorkflow::new().job("a", &[]).idempotency_key("batch-key");
    let plain = TestWorkflow::new().job("a", &[]);
    let mut clash = TestWorkflow::new().job("x", &[]).build();
    clash.header.id = taken.id().clone();
    for job in &mut clash.jobs {
        job.workflow_id = taken.id().clone();
    }
    let batch = vec![first.build(), repeat.build(), clash, plain.build()];
    let outcomes = store.create_workflows(batch).await;
    ensure_eq!(outcomes.len(), 4, "one result per workflow");
    let mut outcomes = outcomes.into_iter();
    let mut next = || outcomes.next().unwrap_or_else(|| Err(failure("missing result")));
    ensure_eq!(next()?, CreateOutcome::Created(first.id().clone()), "first with the key");
    ensure_eq!(next()?, CreateOutcome::Existing(first.id().clone()), "second with the key");
    expect_kind(next(), ErrorKind::Conflict, "an id that exists")?;
    ensure_eq!(next()?, CreateOutcome::Created(plain.id().clone()), "the workflow after the failed one");

    ensure_eq!(store.jobs(first.id(), None).await?.len(), 2, "jobs of the first workflow");
    ensure_eq!(store.jobs(plain.id(), None).await?.len(), 1, "jobs of the last workflow");
    expect_kind(store.workflow(repeat.id()).await, ErrorKind::NotFound, "the repeated key's workflow")?;
    let taken_jobs = store.jobs(taken.id(), None).await?;
    ensure_eq!(taken_jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), vec!["a"], "the clashing id's jobs");
    ensure_eq!(store.outbox_pending(1000).await?.len(), before + 2, "creation events of the two created");
    ensure!(store.create_workflows(Vec::new()).await.is_empty(), "an empty batch answers nothing");
    Ok(())
}
