//! The verdict: every count of the summary line, from the store (final records), the run
//! records (what actually ran, when, under which lease) and the event streams (what the
//! relays published from the outbox).
//!
//! - `lost`: a submitted workflow, or one of its job records, is not in the store.
//! - `stuck`: a workflow is not terminal at the deadline.
//! - `wrong_outcome`: terminal, but not the status the shape must end with (or a job not).
//! - `double_committed`: a job has more than one distinct terminal event (two successes,
//!   or a success and a failure), or its success event names another attempt than the
//!   record; or a workflow has more than one distinct terminal event.
//! - `overlapping_leases`: two runs of the same job ran at the same moment while both
//!   their leases were valid. A run's execution interval is [start mark, end mark]
//!   (stamped before the body starts and after it ends, so it contains the real one); a
//!   run without an end mark was cut short by a SIGKILL and ends when the supervisor saw
//!   its process dead (never earlier than the real end); a run neither ended nor killed
//!   lasts forever. Its lease is valid from its claim until the latest expiry the store
//!   gave it (claim or renewal, `lease` marks written by the workers' store decorator; a
//!   run without any lease mark counts as valid forever). Two runs overlap when
//!   `later start < min(both ends, both lease expiries)`. A run that goes on after its
//!   lease lapsed (renewals failing during an outage) is allowed to meet its successor:
//!   the guarantee is about valid leases, and the engine stops it at its next renewal.
//! - `missing_events`: an expected event is absent: per workflow `workflow_initialized`,
//!   `workflow_running` and its terminal event; per job that ran, `job_ready`, one
//!   `job_running` per attempt 1..=final attempt and its terminal event; per skipped job,
//!   `job_skipped`.
//! - `out_of_order_events`: per job, its distinct events (first publications, in stream
//!   order) are not strictly increasing in (attempt, phase) with phases ready < running <
//!   retrying < terminal; or the workflow's events are not initialized < running <
//!   terminal; or a job event was first published before the workflow's `running` or after
//!   its terminal event (by the server's millisecond clock; equal counts as in order).

use crate::events::{Published, Seen};
use crate::record::Mark;
use crate::shapes;
use crate::supervisor::note;
use baseshift_core::{ErrorKind, JobRecord, JobStatus, Result, StateStore, WorkflowId, WorkflowRecord};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

/// A workflow the supervisor started.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// Its id.
    pub id: WorkflowId,
    /// Its template (a shape of `shapes::SHAPES`).
    pub shape: &'static str,
    /// Its input.
    pub input: Value,
}

/// The counts of the summary line.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// `redis` or `postgres`.
    pub backend: &'static str,
    /// Worker processes.
    pub instances: usize,
    /// Workflows submitted.
    pub workflows: usize,
    /// SIGKILLs done.
    pub kills: usize,
    /// Network outages done.
    pub outages: usize,
    /// See the module docs for each of the following.
    pub lost: usize,
    /// Not terminal at the deadline.
    pub stuck: usize,
    /// A success (or terminal transition) recorded twice.
    pub double_committed: usize,
    /// Two runs of one job at the same time.
    pub overlapping_leases: usize,
    /// Expected events absent.
    pub missing_events: usize,
    /// Events out of order.
    pub out_of_order_events: usize,
    /// Terminal with the wrong status.
    pub wrong_outcome: usize,
    /// Workers that exited without being killed.
    pub worker_exits: usize,
    /// Runs recorded.
    pub runs: usize,
    /// Runs beyond the first of their job (re-claims after kills, retries).
    pub reruns: usize,
    /// Lease marks recorded (claims and renewals).
    pub lease_marks: usize,
    /// Event deliveries that repeated an earlier one.
    pub duplicate_events: usize,
    /// Wall-clock seconds.
    pub secs: f64,
}

impl Summary {
    /// Whether every guarantee held.
    pub fn is_clean(&self) -> bool {
        [
            self.lost,
            self.stuck,
            self.double_committed,
            self.overlapping_leases,
            self.missing_events,
            self.out_of_order_events,
            self.wrong_outcome,
            self.worker_exits,
        ]
        .iter()
        .all(|&n| n == 0)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CHAOS backend={} instances={} workflows={} kills={} lost={} stuck={} double_committed={} \
             overlapping_leases={} missing_events={} out_of_order_events={} wrong_outcome={} worker_exits={} \
             outages={} runs={} reruns={} lease_marks={} duplicate_events={} secs={:.1}",
            self.backend,
            self.instances,
            self.workflows,
            self.kills,
            self.lost,
            self.stuck,
            self.double_committed,
            self.overlapping_leases,
            self.missing_events,
            self.out_of_order_events,
            self.wrong_outcome,
            self.worker_exits,
            self.outages,
            self.runs,
            self.reruns,
            self.lease_marks,
            self.duplicate_events,
            self.secs
        )
    }
}

/// Up to 30 example findings, printed as notes.
pub(crate) struct Examples(pub(crate) usize);

impl Examples {
    pub(crate) fn add(&mut self, what: String) {
        self.0 += 1;
        if self.0 <= 30 {
            note(format!("finding: {what}"));
        }
    }
}

/// Checks everything; `killed` maps a worker pid to when it was seen dead (µs).
pub async fn check(
    store: &dyn StateStore,
    submitted: &[Submitted],
    events: &Published,
    marks: &[Mark],
    killed: &HashMap<u32, u64>,
) -> Result<Summary> {
    let mut s = Summary { workflows: submitted.len(), duplicate_events: events.duplicates, ..Default::default() };
    let mut ex = Examples(0);
    for sub in submitted {
        let header = match store.workflow(&sub.id).await {
            Ok(h) => h,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                s.lost += 1;
                ex.add(format!("workflow {} ({}) is not in the store", sub.id, sub.shape));
                continue;
            }
            Err(e) => return Err(e),
        };
        let jobs = store.jobs(&sub.id, None).await?;
        let (want_status, mut want_jobs) = shapes::expected(sub.shape, &sub.input);
        if jobs.len() != want_jobs.len() {
            s.lost += 1;
            ex.add(format!("workflow {} has {} job records, wants {}", sub.id, jobs.len(), want_jobs.len()));
            continue;
        }
        if !header.status.is_terminal() {
            s.stuck += 1;
            let open: Vec<String> = jobs
                .iter()
                .filter(|j| !j.status.is_terminal())
                .map(|j| format!("{}={}", j.job_id, j.status.as_str()))
                .collect();
            ex.add(format!("workflow {} ({}) is {}: {}", sub.id, sub.shape, header.status.as_str(), open.join(" ")));
            continue;
        }
        let mut got: Vec<(&str, JobStatus)> = jobs.iter().map(|j| (j.job_id.as_str(), j.status)).collect();
        got.sort_by_key(|(id, _)| *id);
        want_jobs.sort_by_key(|(id, _)| *id);
        if header.status != want_status || got != want_jobs {
            s.wrong_outcome += 1;
            ex.add(format!("workflow {} ({}) ended {} with {got:?}", sub.id, sub.shape, header.status.as_str()));
        }
        workflow_events(&mut s, &mut ex, &header, &jobs, events);
    }
    crate::overlap::runs(&mut s, &mut ex, marks, killed);
    Ok(s)
}

fn workflow_events(s: &mut Summary, ex: &mut Examples, header: &WorkflowRecord, jobs: &[JobRecord], ev: &Published) {
    let id = header.id.to_string();
    let none = Vec::new();
    let wf = ev.workflows.get(&id).unwrap_or(&none);
    let find = |ty: &str| wf.iter().position(|e| e.event.event_type == ty);
    let terminal_type = format!("workflow_{}", header.status.as_str().to_ascii_lowercase());
    let (init, running, terminal) = (find("workflow_initialized"), find("workflow_running"), find(&terminal_type));
    for (name, at) in
        [("workflow_initialized", init), ("workflow_running", running), (terminal_type.as_str(), terminal)]
    {
        if at.is_none() {
            s.missing_events += 1;
            ex.add(format!("workflow {id}: no {name}"));
        }
    }
    let terminals = wf
        .iter()
        .filter(|e| {
            ["workflow_completed", "workflow_failed", "workflow_cancelled"].contains(&e.event.event_type.as_str())
        })
        .count();
    if terminals > 1 {
        s.double_committed += 1;
        ex.add(format!("workflow {id}: {terminals} distinct terminal events"));
    }
    let positions: Vec<usize> = [init, running, terminal].into_iter().flatten().collect();
    if positions.windows(2).any(|w| w[0] >= w[1]) {
        s.out_of_order_events += 1;
        ex.add(format!("workflow {id}: workflow events out of order: {:?}", types(wf)));
    }
    let lo = running.map_or(0, |i| wf[i].ms);
    let hi = terminal.map_or(u64::MAX, |i| wf[i].ms);
    for rec in jobs {
        let list = ev.jobs.get(&(id.clone(), rec.job_id.to_string())).unwrap_or(&none);
        job_events(s, ex, rec, list, (lo, hi));
    }
}

fn job_events(s: &mut Summary, ex: &mut Examples, rec: &JobRecord, list: &[Seen], (lo, hi): (u64, u64)) {
    let key = format!("{}/{}", rec.workflow_id, rec.job_id);
    let has = |ty: &str, attempt: u32| {
        list.iter().any(|e| e.event.event_type == ty && e.event.payload.attempt.unwrap_or(0) == attempt)
    };
    let mut expected: Vec<(String, u32)> = Vec::new();
    match rec.status {
        JobStatus::Succeeded | JobStatus::Failed => {
            expected.push(("job_ready".into(), 0));
            expected.extend((1..=rec.attempt).map(|a| ("job_running".to_owned(), a)));
            expected.push((format!("job_{}", rec.status.as_str().to_ascii_lowercase()), rec.attempt));
        }
        JobStatus::Skipped => expected.push(("job_skipped".into(), 0)),
        _ => {}
    }
    for (ty, attempt) in &expected {
        if !has(ty, *attempt) {
            s.missing_events += 1;
            ex.add(format!("{key}: no {ty} for attempt {attempt} (has {:?})", types(list)));
        }
    }
    let terminal = |e: &&Seen| {
        ["job_succeeded", "job_failed", "job_skipped", "job_cancelled"].contains(&e.event.event_type.as_str())
    };
    let terminals = list.iter().filter(terminal).count();
    let success_elsewhere = rec.status == JobStatus::Succeeded
        && list.iter().any(|e| e.event.event_type == "job_succeeded" && e.event.payload.attempt != Some(rec.attempt));
    if terminals > 1 || success_elsewhere {
        s.double_committed += 1;
        ex.add(format!(
            "{key}: terminal events {:?}, record says {} at attempt {}",
            types(list),
            rec.status.as_str(),
            rec.attempt
        ));
    }
    let ranks: Vec<(u32, u8)> = list.iter().map(rank).collect();
    let in_window = list.iter().all(|e| e.ms >= lo && e.ms <= hi);
    if ranks.windows(2).any(|w| w[0] >= w[1]) || !in_window {
        s.out_of_order_events += 1;
        let ms: Vec<u64> = list.iter().map(|e| e.ms).collect();
        ex.add(format!("{key}: events out of order {:?} at ms {ms:?} (workflow running..end {lo}..{hi})", types(list)));
    }
}

/// (attempt, phase) of a job event.
fn rank(e: &Seen) -> (u32, u8) {
    let attempt = e.event.payload.attempt.unwrap_or(0);
    let phase = match e.event.event_type.as_str() {
        "job_ready" => 0,
        "job_running" => 1,
        "job_retrying" => 2,
        "job_succeeded" | "job_failed" | "job_skipped" => 3,
        _ => 4,
    };
    (attempt, phase)
}

fn types(list: &[Seen]) -> Vec<String> {
    list.iter().map(|e| format!("{}#{}", e.event.event_type, e.event.payload.attempt.unwrap_or(0))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use baseshift_core::Event;

    fn seen(ms: u64, event: Event) -> Seen {
        Seen { ms, event }
    }

    fn job_counts(rec: &JobRecord, list: &[Seen]) -> (usize, usize, usize) {
        let mut s = Summary::default();
        job_events(&mut s, &mut Examples(0), rec, list, (0, u64::MAX));
        (s.missing_events, s.double_committed, s.out_of_order_events)
    }

    #[test]
    fn job_events_are_counted_missing_doubled_or_out_of_order() {
        let wf = WorkflowId::generate();
        let mut rec = JobRecord::pending(wf.clone(), "j", "chaos", 0);
        rec.status = JobStatus::Succeeded;
        rec.attempt = 2;
        let ev = |status, attempt| Event::job(&wf, "j", status, attempt, None);
        let good = vec![
            seen(1, ev(JobStatus::Ready, 0)),
            seen(2, ev(JobStatus::Running, 1)),
            seen(3, Event::job_retrying(&wf, "j", 1, Value::Null)),
            seen(4, ev(JobStatus::Running, 2)),
            seen(5, ev(JobStatus::Succeeded, 2)),
        ];
        assert_eq!(job_counts(&rec, &good), (0, 0, 0));
        let mut missing = good.clone();
        missing.remove(3);
        assert_eq!(job_counts(&rec, &missing), (1, 0, 0));
        let mut doubled = good.clone();
        doubled.insert(3, seen(3, ev(JobStatus::Succeeded, 1)));
        assert_eq!(job_counts(&rec, &doubled).1, 1);
        let mut swapped = good;
        swapped.swap(1, 2);
        assert_eq!(job_counts(&rec, &swapped), (0, 0, 1));
    }
}
