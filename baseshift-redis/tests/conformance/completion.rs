//! Redis-specific paths of completion at zero (`complete.lua` edits the stored header as
//! text and builds the result from the stored output texts) and of the batch header read.

use super::*;
use baseshift_core::store::{Transition, completion};
use baseshift_core::{WorkflowId, WorkflowRecord, WorkflowStatus};

/// Text that looks like header fields, to catch an edit of the wrong place.
const ODD: &str = r#"x","status":"RUNNING","version":1,"input":{},"compensation_queue":[],"finished_at":null}"#;

/// A header step making the workflow `RUNNING` with `edit` applied.
async fn run(store: &RedisStateStore, id: &WorkflowId, edit: impl FnOnce(&mut WorkflowRecord)) -> Result<()> {
    let mut header = store.workflow(id).await?;
    header.status = WorkflowStatus::Running;
    edit(&mut header);
    let mut step = Transition::new(id.clone());
    step.header = Some(Box::new(header));
    store.apply(step).await.map(|_| ())
}

/// Whatever the input, ids, key and error hold, the completed header reads back exactly as
/// `completion` builds it, also when the completing step writes the header itself; the
/// event's result holds every output text as stored (odd job ids, `null`, `{}`, big
/// integers); the workflow is indexed as `COMPLETED` and retention removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_keeps_odd_headers_and_outputs_exact() -> Result<()> {
    let store = redis_store_for_test().await;
    let (odd_job, none_job) = (r#"j"/ü\"#, "none");
    let wf = TestWorkflow::new().job(odd_job, &[]).job(none_job, &[]).job("empty", &[]).idempotency_key(ODD);
    let mut new = wf.build();
    new.header.input = json!({"status": "RUNNING", "version": 1, "big": 12345678901234567890u64,
        "compensation_queue": [], "error": ODD, "updated_at": "x", "finished_at": null, "empty": {}, "f": 0.1});
    new.header.template_id = ODD.into();
    let mut template = wf.template();
    template.template_id = ODD.into();
    new.template = Arc::new(template);
    store.create_workflow(new).await?;
    run(&store, wf.id(), |h| h.error = Some(ODD.into())).await?;
    for (job, output) in [(odd_job, json!({"big": -1234567890123456789i64, "s": ODD})), (none_job, json!(null))] {
        let applied = store.apply(succeed_step(&store, &wf, job, Some(output), now_ms()).await?).await?;
        assert!(!applied.completed, "{job} left a job to run");
    }

    let at = now_ms();
    let mut step = succeed_step(&store, &wf, "empty", Some(json!({})), at).await?;
    let mut header = store.workflow(wf.id()).await?;
    header.error = Some(format!("{ODD} again"));
    header.updated_at = at;
    step.header = Some(Box::new(header.clone()));
    let applied = store.apply(step).await?;
    assert_eq!((applied.remaining, applied.completed), (0, true));

    header.version += 1;
    header.remaining = 0;
    let jobs = store.jobs(wf.id(), None).await?;
    let (mut expected, event) = completion(&header, &jobs, at).expect("the workflow is done");
    expected.version += 1;
    assert_eq!(store.workflow(wf.id()).await?, expected);
    assert_eq!(store.workflows(std::slice::from_ref(wf.id())).await?, vec![expected.clone()]);
    let outbox = store.outbox_pending(1000).await?;
    let mut got = (*outbox.last().expect("events").event).clone();
    // Stamped with the time asked (core's `completion` stamps its event with the clock).
    assert_eq!(got.timestamp, at);
    got.timestamp = event.timestamp;
    assert_eq!(got, event);
    let outputs = &event.payload.result.as_ref().expect("a result")["outputs"];
    assert_eq!(outputs[odd_job]["big"], json!(-1234567890123456789i64));
    assert_eq!((&outputs[none_job], &outputs["empty"]), (&json!(null), &json!({})));

    let listed = |status| store.list_workflows(WorkflowFilter { statuses: vec![status], ..Default::default() });
    assert_eq!(listed(WorkflowStatus::Completed).await?, vec![expected]);
    assert!(listed(WorkflowStatus::Running).await?.is_empty());
    assert_eq!(store.apply_retention(Duration::ZERO).await?.workflows, 1);
    assert_eq!(store.workflow(wf.id()).await.unwrap_err().kind(), ErrorKind::NotFound);
    Ok(())
}

/// A compensation queue or a compensation record holds completion back (the engine's
/// finalize decides); nothing more is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensations_hold_completion_back() -> Result<()> {
    let store = redis_store_for_test().await;
    let queued = TestWorkflow::new().job("a", &[]);
    queued.create(&store).await?;
    run(&store, queued.id(), |h| h.compensation_queue = vec!["undo".into()]).await?;
    let with_undo = TestWorkflow::new().job("a", &[]).job("undo", &[]).with_job("undo", |j| {
        j.compensation_of = Some("a".into());
    });
    with_undo.create(&store).await?;
    run(&store, with_undo.id(), |_| {}).await?;
    for wf in [&queued, &with_undo] {
        let before = store.workflow(wf.id()).await?;
        let applied = store.apply(succeed_step(&store, wf, "a", Some(json!(1)), now_ms()).await?).await?;
        assert_eq!((applied.remaining, applied.completed), (0, false));
        assert_eq!(store.workflow(wf.id()).await?, WorkflowRecord { remaining: 0, ..before });
    }
    Ok(())
}

/// More ids than one pipeline holds: all found, in the order asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_by_id_spans_pipelines() -> Result<()> {
    let store = redis_store_for_test().await;
    let (one, two) = (TestWorkflow::new().job("a", &[]), TestWorkflow::new().job("a", &[]));
    one.create(&store).await?;
    two.create(&store).await?;
    let ask = spanning_ids(one.id(), two.id());
    let got: Vec<WorkflowId> = store.workflows(&ask).await?.into_iter().map(|h| h.id).collect();
    assert_eq!(got, vec![two.id().clone(), one.id().clone(), two.id().clone()]);
    Ok(())
}
