use super::*;
use crate::rows::micros;
use baseshift_core::store::ParentOutcome;
use baseshift_core::{ErrorKind, Trigger, WorkflowId, WorkflowStatus};
use serde_json::json;

fn header() -> WorkflowRecord {
    let mut h = WorkflowRecord::initialized(WorkflowId::new("w"), "t", "1.0.0", json!({}));
    h.version = 3;
    h.remaining = 4;
    h
}

fn rows(jobs: &[(&str, u32)]) -> HashMap<Name, (JobRecord, i32)> {
    jobs.iter()
        .enumerate()
        .map(|(i, (id, parents))| {
            let mut j = JobRecord::pending(WorkflowId::new("w"), *id, "noop", *parents);
            j.version = 1;
            (Name::from(*id), (j, i as i32))
        })
        .collect()
}

fn finished(rows: &HashMap<Name, (JobRecord, i32)>, id: &str, status: JobStatus) -> JobRecord {
    let mut j = rows[id].0.clone();
    j.status = status;
    j
}

fn job<'a>(p: &'a Planned, id: &str) -> &'a JobRecord {
    &p.jobs.iter().find(|(j, _)| j.job_id == id).unwrap().0
}

#[test]
fn the_last_parent_readies_the_child_and_events_follow_the_step() {
    let mut r = rows(&[("a", 0), ("b", 0), ("c", 2)]);
    r.get_mut("a").unwrap().0.status = JobStatus::Running;
    r.get_mut("c").unwrap().0.deps.succeeded = 1;
    let mut step = Transition::new(WorkflowId::new("w"));
    step.jobs.push(finished(&r, "a", JobStatus::Succeeded));
    step.parent_outcomes.push(ParentOutcome { child: "c".into(), status: JobStatus::Succeeded });
    step.terminal_delta = 1;
    step.events.push(Event::job(&WorkflowId::new("w"), "a", JobStatus::Succeeded, 1, None));
    let now = micros(Utc::now());
    let p = plan(header(), r, step, now, false).unwrap();
    assert_eq!(p.applied.ready, vec!["c".to_owned()]);
    assert_eq!(p.applied.remaining, 3);
    assert!(p.wake);
    assert!(p.touch_header, "remaining changed");
    assert_eq!(p.header.version, 3, "a store-made remaining change keeps the header version");
    let c = job(&p, "c");
    assert_eq!((c.status, c.version, c.ready_at, c.deps.succeeded), (JobStatus::Ready, 2, Some(now), 2));
    assert_eq!(job(&p, "a").version, 2);
    let types: Vec<_> = p.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["job_succeeded", "job_ready"]);
}

#[test]
fn skips_count_in_remaining_but_compensations_do_not() {
    let mut r = rows(&[("a", 0), ("b", 1), ("a.compensate", 1)]);
    r.get_mut("a.compensate").unwrap().0.compensation_of = Some("a".into());
    let mut step = Transition::new(WorkflowId::new("w"));
    for child in ["b", "a.compensate"] {
        step.parent_outcomes.push(ParentOutcome { child: child.into(), status: JobStatus::Failed });
    }
    step.terminal_delta = 1;
    let p = plan(header(), r, step, Utc::now(), false).unwrap();
    let mut skipped = p.applied.skipped.clone();
    skipped.sort();
    assert_eq!(skipped, ["a.compensate", "b"]);
    assert_eq!(p.applied.remaining, 2, "4 - a - b");
    let b = job(&p, "b");
    assert!(!b.propagated && b.finished_at.is_some());
    assert!(!p.wake);
}

#[test]
fn a_condition_makes_the_child_eligible_without_an_event() {
    let mut r = rows(&[("c", 1)]);
    r.get_mut("c").unwrap().0.has_condition = true;
    r.get_mut("c").unwrap().0.trigger = Trigger::AllDone;
    let mut step = Transition::new(WorkflowId::new("w"));
    step.parent_outcomes.push(ParentOutcome { child: "c".into(), status: JobStatus::Failed });
    let p = plan(header(), r, step, Utc::now(), false).unwrap();
    assert_eq!(p.applied.eligible, vec!["c".to_owned()]);
    let c = job(&p, "c");
    assert_eq!((c.status, c.eligible), (JobStatus::Pending, true));
    assert!(p.events.is_empty());
    assert!(!p.touch_header);
}

#[test]
fn a_child_written_in_the_step_is_bumped_once() {
    let r = rows(&[("c", 2)]);
    let mut written = r["c"].0.clone();
    written.priority = 9;
    let mut step = Transition::new(WorkflowId::new("w"));
    step.jobs.push(written);
    step.parent_outcomes.push(ParentOutcome { child: "c".into(), status: JobStatus::Succeeded });
    let p = plan(header(), r, step, Utc::now(), false).unwrap();
    assert_eq!(p.jobs.len(), 1);
    let c = job(&p, "c");
    assert_eq!((c.version, c.priority, c.deps.succeeded), (2, 9, 1));
}

#[test]
fn preconditions_fail_before_anything_is_planned() {
    let r = rows(&[("a", 0)]);
    let mut stale = r["a"].0.clone();
    stale.version = 0;
    let mut step = Transition::new(WorkflowId::new("w"));
    step.jobs.push(stale);
    assert_eq!(plan(header(), r.clone(), step, Utc::now(), false).unwrap_err().kind(), ErrorKind::Conflict);

    let mut leap = r["a"].0.clone();
    leap.status = JobStatus::Succeeded;
    let mut step = Transition::new(WorkflowId::new("w"));
    step.jobs.push(leap);
    assert_eq!(plan(header(), r.clone(), step, Utc::now(), false).unwrap_err().kind(), ErrorKind::IllegalTransition);

    let mut step = Transition::new(WorkflowId::new("w"));
    let mut h = header();
    h.version = 2;
    step.header = Some(Box::new(h));
    assert_eq!(plan(header(), r.clone(), step, Utc::now(), false).unwrap_err().kind(), ErrorKind::Conflict);

    let mut step = Transition::new(WorkflowId::new("w"));
    let mut h = header();
    h.status = WorkflowStatus::Completed;
    step.header = Some(Box::new(h));
    assert_eq!(plan(header(), r.clone(), step, Utc::now(), false).unwrap_err().kind(), ErrorKind::IllegalTransition);

    let mut step = Transition::new(WorkflowId::new("w"));
    step.parent_outcomes.push(ParentOutcome { child: "a".into(), status: JobStatus::Running });
    assert_eq!(plan(header(), r.clone(), step, Utc::now(), false).unwrap_err().kind(), ErrorKind::InvalidInput);

    let mut step = Transition::new(WorkflowId::new("w"));
    step.parent_outcomes.push(ParentOutcome { child: "zz".into(), status: JobStatus::Failed });
    assert_eq!(plan(header(), r, step, Utc::now(), false).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn a_header_write_bumps_its_version_and_keeps_remaining() {
    let mut step = Transition::new(WorkflowId::new("w"));
    let mut h = header();
    h.status = WorkflowStatus::Running;
    h.remaining = 999;
    step.header = Some(Box::new(h));
    let p = plan(header(), HashMap::new(), step, Utc::now(), false).unwrap();
    assert_eq!((p.header.version, p.header.remaining, p.header.status), (4, 4, WorkflowStatus::Running));
    assert!(p.touch_header);
}

/// `rows` with every job `SUCCEEDED` and propagated except `last`, which is `RUNNING`, on
/// a `RUNNING` header with one job remaining; and the step finishing `last`.
fn almost_done(jobs: &[(&str, u32)], last: &str) -> (WorkflowRecord, HashMap<Name, (JobRecord, i32)>, Transition) {
    let mut r = rows(jobs);
    for (j, _) in r.values_mut() {
        j.status = if j.job_id == last { JobStatus::Running } else { JobStatus::Succeeded };
        j.propagated = j.job_id != last;
        j.output = Some(json!(j.job_id));
    }
    let mut h = header();
    h.status = WorkflowStatus::Running;
    h.remaining = 1;
    let mut done = finished(&r, last, JobStatus::Succeeded);
    done.propagated = true;
    let mut step = Transition::new(WorkflowId::new("w"));
    step.jobs.push(done);
    step.terminal_delta = 1;
    step.events.push(Event::job(&WorkflowId::new("w"), last, JobStatus::Succeeded, 1, None));
    step.complete_at_zero = Some(Utc::now());
    (h, r, step)
}

#[test]
fn the_last_job_completes_the_workflow_when_every_row_was_read() {
    let (h, r, step) = almost_done(&[("a", 0), ("b", 1), ("c", 1)], "c");
    let at = micros(step.complete_at_zero.unwrap());
    let p = plan(h.clone(), r, step, Utc::now(), true).unwrap();
    assert!(p.applied.completed && p.touch_header);
    assert_eq!((p.header.status, p.header.version, p.header.remaining), (WorkflowStatus::Completed, 4, 0));
    assert_eq!((p.header.updated_at, p.header.finished_at), (at, Some(at)));
    let types: Vec<_> = p.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["job_succeeded", "workflow_completed"]);
    assert_eq!(p.events[1].payload.result, Some(json!({"outputs": {"a": "a", "b": "b", "c": "c"}})));
    assert_eq!(p.jobs.len(), 1, "only the written job is stored");

    // The header written in the same step is bumped once more by the completion.
    let (h, r, mut step) = almost_done(&[("a", 0)], "a");
    step.header = Some(Box::new(h.clone()));
    let p = plan(h, r, step, Utc::now(), true).unwrap();
    assert_eq!((p.header.status, p.header.version), (WorkflowStatus::Completed, 5));
}

#[test]
fn no_completion_without_every_row_or_with_a_job_not_done() {
    let (h, r, step) = almost_done(&[("a", 0), ("b", 1)], "b");
    let p = plan(h.clone(), r, step, Utc::now(), false).unwrap();
    assert!(!p.applied.completed);
    assert_eq!((p.header.status, p.header.version, p.header.remaining), (WorkflowStatus::Running, 3, 0));
    assert_eq!(p.events.len(), 1);

    let (h, mut r, step) = almost_done(&[("a", 0), ("b", 1)], "b");
    r.get_mut("a").unwrap().0.status = JobStatus::Failed;
    let p = plan(h, r, step, Utc::now(), true).unwrap();
    assert!(!p.applied.completed);
    assert_eq!(p.header.status, WorkflowStatus::Running);
}

#[test]
fn every_row_is_read_only_where_the_step_can_reach_zero() {
    let mut step = Transition::new(WorkflowId::new("w"));
    assert_eq!(read_all_below(&step), None, "no completion asked");
    step.complete_at_zero = Some(Utc::now());
    assert_eq!(read_all_below(&step), Some(0));
    step.terminal_delta = 1;
    for child in ["b", "c", "b"] {
        step.parent_outcomes.push(ParentOutcome { child: child.into(), status: JobStatus::Failed });
    }
    assert_eq!(read_all_below(&step), Some(3), "one skip per child at most");
    step.reopened = 5;
    assert_eq!(read_all_below(&step), Some(-2));
}
