//! The outbox: events of each step in order, oldest first, removed by acknowledgement.

use crate::conformance::check::{ensure, ensure_eq};
use crate::conformance::fixtures::{TestWorkflow, finish};
use crate::error::Result;
use crate::event::Event;
use crate::state::{JobStatus, WorkflowStatus};
use crate::store::{OutboxEntry, StateStore, Transition};
use serde_json::json;

fn describe(entries: &[OutboxEntry]) -> Vec<(String, Option<String>)> {
    entries
        .iter()
        .map(|e| (e.event.event_type.to_string(), e.event.payload.job_id.as_ref().map(|j| j.to_string())))
        .collect()
}

fn pair(event_type: &str, job: Option<&str>) -> (String, Option<String>) {
    (event_type.to_owned(), job.map(str::to_owned))
}

/// Each step's events are appended in the step, in the order given, with increasing
/// `seq`; events the store makes for children (`job_ready`, `job_skipped`) follow the
/// step's own events (the parent's outcome comes before its effect).
pub async fn outbox_keeps_step_order(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]);
    wf.create(store).await?;

    let mut header = store.workflow(wf.id()).await?;
    header.status = WorkflowStatus::Running;
    let mut step = Transition::new(wf.id().clone());
    step.header = Some(Box::new(header));
    step.events = vec![
        Event::workflow(wf.id(), WorkflowStatus::Running, Some(json!({"n": 1}))),
        Event::system("step_marker", json!({"n": 2})),
        Event::job(wf.id(), "a", JobStatus::Pending, 0, Some(json!({"n": 3}))),
    ];
    let given = step.events.clone();
    store.apply(step).await?;
    finish(store, wf.id(), "a", JobStatus::Succeeded, &["b"]).await?;

    let pending = store.outbox_pending(1000).await?;
    ensure!(
        pending.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases: {:?}",
        pending.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    let expected = vec![
        pair("workflow_initialized", None),
        pair("workflow_running", None),
        pair("step_marker", None),
        pair("job_pending", Some("a")),
        pair("job_ready", Some("a")),
        pair("job_running", Some("a")),
        pair("job_succeeded", Some("a")),
        pair("job_ready", Some("b")),
    ];
    ensure_eq!(describe(&pending), expected, "outbox events in commit order");
    ensure_eq!(*pending[1].event, given[0], "an event reads back unchanged");
    ensure_eq!(*pending[2].event, given[1], "a system event reads back unchanged");
    let first_two = store.outbox_pending(2).await?;
    ensure_eq!(first_two, pending[..2].to_vec(), "outbox_pending(2) returns the two oldest");
    Ok(())
}

/// `outbox_ack` removes exactly the acknowledged events; the rest stay in order, and
/// acknowledging unknown or already removed seqs is harmless.
pub async fn outbox_ack_removes_events(store: &dyn StateStore) -> Result<()> {
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]);
    wf.create(store).await?;
    finish(store, wf.id(), "a", JobStatus::Succeeded, &["b"]).await?;
    let all = store.outbox_pending(1000).await?;
    ensure!(all.len() >= 4, "events to acknowledge: {:?}", describe(&all));

    let acked = [all[0].seq, all[2].seq];
    store.outbox_ack(&acked).await?;
    let rest = store.outbox_pending(1000).await?;
    let expected: Vec<OutboxEntry> = all.iter().filter(|e| !acked.contains(&e.seq)).cloned().collect();
    ensure_eq!(rest, expected, "outbox after acknowledging two events");

    let unknown = rest.iter().map(|e| e.seq).max().unwrap_or(0) + 1000;
    store.outbox_ack(&[all[0].seq, unknown]).await?;
    ensure_eq!(store.outbox_pending(1000).await?, expected, "outbox after acknowledging stale seqs");

    let seqs: Vec<u64> = rest.iter().map(|e| e.seq).collect();
    store.outbox_ack(&seqs).await?;
    ensure!(store.outbox_pending(1000).await?.is_empty(), "outbox after acknowledging everything");
    Ok(())
}
