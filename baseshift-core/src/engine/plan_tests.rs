//! Property tests of planning: random DAGs, random join rules, random outcomes, random
//! completion orders. The planner plus the store's join decisions must reach the same
//! terminal states as a sequential reference, and never start a job before its parents.

use super::plan::{self, Outcome};
use crate::ids::{JobKey, Name, WorkflowId};
use crate::state::{ChildDecision, DepCounts, JobFailure, JobStatus, WorkflowRecord, WorkflowStatus};
use crate::store::{Applied, ClaimRequest, MemoryStateStore, NewWorkflow, StateStore};
use crate::template::{CompiledTemplate, JobSpec, Trigger, Validator, WorkflowTemplate};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Debug)]
struct Dag {
    parents: Vec<Vec<usize>>,
    triggers: Vec<Trigger>,
    succeeds: Vec<bool>,
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![Just(Trigger::AllSuccess), Just(Trigger::AllDone), Just(Trigger::OneSuccess), Just(Trigger::NoneFailed)]
}

fn dag() -> impl Strategy<Value = Dag> {
    (1usize..12).prop_flat_map(|n| {
        let parents = (0..n)
            .map(|i| {
                if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::sample::subsequence((0..i).collect::<Vec<_>>(), 0..=i.min(3)).boxed()
                }
            })
            .collect::<Vec<_>>();
        (parents, proptest::collection::vec(trigger(), n), proptest::collection::vec(proptest::bool::weighted(0.8), n))
            .prop_map(|(parents, triggers, succeeds)| Dag { parents, triggers, succeeds })
    })
}

fn template(d: &Dag) -> WorkflowTemplate {
    let mut t = WorkflowTemplate::new("prop", semver::Version::new(1, 0, 0));
    for (i, p) in d.parents.iter().enumerate() {
        t = t.job(
            JobSpec::new(format!("j{i}"), "noop").depends_on(p.iter().map(|x| format!("j{x}"))).trigger(d.triggers[i]),
        );
    }
    t
}

/// The terminal status of every job, evaluated in topological (list) order.
fn reference(d: &Dag) -> Vec<JobStatus> {
    let mut out: Vec<JobStatus> = Vec::new();
    for i in 0..d.parents.len() {
        let mut counts = DepCounts { total: d.parents[i].len() as u32, ..Default::default() };
        for p in &d.parents[i] {
            counts.record(out[*p]);
        }
        let status = match ChildDecision::decide(d.triggers[i], &counts) {
            ChildDecision::Skip => JobStatus::Skipped,
            _ if d.succeeds[i] => JobStatus::Succeeded,
            _ => JobStatus::Failed,
        };
        out.push(status);
    }
    out
}

async fn drive(d: &Dag, compiled: &CompiledTemplate, order_seed: u64) -> (Vec<JobStatus>, WorkflowRecord) {
    let store = MemoryStateStore::new();
    let id = WorkflowId::generate();
    let now = chrono::Utc::now();
    let mut jobs = plan::initial_records(compiled, &id);
    let mut header = WorkflowRecord::initialized(id.clone(), "prop", "1.0.0", serde_json::json!({}));
    header.remaining = jobs.len() as u64;
    // Half the runs begin in the create step, half with a separate `start` step: both
    // must reach the reference states.
    let begun = order_seed.is_multiple_of(2) && plan::begin_at_create(compiled, &mut header, &mut jobs, now).is_some();
    let template = compiled.template().as_ref().clone();
    store
        .create_workflow(NewWorkflow { header, jobs, template: std::sync::Arc::new(template), events: vec![] })
        .await
        .unwrap();
    let mut remaining = store.workflow(&id).await.unwrap().remaining;
    if !begun {
        let header = store.workflow(&id).await.unwrap();
        let roots: Vec<String> = compiled.roots().map(|j| j.id.to_string()).collect();
        let root_recs = store.jobs(&id, Some(&roots)).await.unwrap();
        let applied = store.apply(plan::start(compiled, header, root_recs, &|_| true, now)).await.unwrap();
        remaining = applied.remaining;
        settle(&store, compiled, &id, applied, &mut remaining).await;
    }
    let mut rng = fastrand::Rng::with_seed(order_seed);
    loop {
        let claim = ClaimRequest {
            owner: "prop".into(),
            limit: 100,
            lease_ttl: Duration::from_secs(60),
            exclude_types: vec![],
            type_limits: Default::default(),
        };
        let mut claimed = store.claim(claim).await.unwrap().jobs;
        if claimed.is_empty() {
            break;
        }
        rng.shuffle(&mut claimed);
        for rec in claimed {
            // Never started before every parent finished.
            let job = compiled.job(&rec.job_id).unwrap();
            let parent_ids: Vec<String> = job.parents.iter().map(|p| p.to_string()).collect();
            let parents = store.jobs(&id, Some(&parent_ids)).await.unwrap();
            assert!(
                parents.iter().all(|p| p.status.is_terminal()),
                "{} started before its parents finished",
                rec.job_id
            );
            let i: usize = rec.job_id[1..].parse().unwrap();
            let outcome = if d.succeeds[i] {
                Outcome::Succeeded(serde_json::json!(i))
            } else {
                let failure = JobFailure::new("permanent", "scripted");
                Outcome::Failed { failure, retryable: false, backoff: Duration::ZERO }
            };
            let applied = store.apply(plan::complete(compiled, rec, outcome, 1, chrono::Utc::now())).await.unwrap();
            remaining = applied.remaining;
            settle(&store, compiled, &id, applied, &mut remaining).await;
        }
    }
    assert_eq!(remaining, 0, "every job reached a terminal state");
    let records = store.jobs(&id, None).await.unwrap();
    let header = store.workflow(&id).await.unwrap();
    let fin = store.apply(plan::finalize(header, &records, chrono::Utc::now())).await.unwrap();
    let _ = fin;
    (records.iter().map(|r| r.status).collect(), store.workflow(&id).await.unwrap())
}

async fn settle(
    store: &MemoryStateStore,
    compiled: &CompiledTemplate,
    id: &WorkflowId,
    applied: Applied,
    remaining: &mut u64,
) {
    let mut queue: VecDeque<Name> = applied.skipped.into();
    assert!(applied.eligible.is_empty(), "no conditions in these DAGs");
    while let Some(job) = queue.pop_front() {
        let rec = store.job(&JobKey::new(id.clone(), job)).await.unwrap();
        let a = store.apply(plan::propagate(compiled, rec, chrono::Utc::now())).await.unwrap();
        *remaining = a.remaining;
        queue.extend(a.skipped);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn planning_matches_the_reference_in_any_completion_order(d in dag(), seed_a in any::<u64>(), seed_b in any::<u64>()) {
        let compiled = Validator::new().compile(&template(&d)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let (a, header_a) = rt.block_on(drive(&d, &compiled, seed_a));
        let (b, _) = rt.block_on(drive(&d, &compiled, seed_b));
        let expected = reference(&d);
        prop_assert_eq!(&a, &expected);
        prop_assert_eq!(&b, &expected);
        let failed = expected.contains(&JobStatus::Failed);
        prop_assert_eq!(header_a.status, if failed { WorkflowStatus::Failed } else { WorkflowStatus::Completed });
    }
}

#[test]
fn begin_at_create_readies_roots_unless_a_root_has_a_condition() {
    let plain = WorkflowTemplate::new("t", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop").depends_on(Vec::<String>::new()))
        .job(JobSpec::new("b", "noop").depends_on(Vec::<String>::new()))
        .job(JobSpec::new("c", "noop").depends_on(["a", "b"]));
    let compiled = Validator::new().compile(&plain).unwrap();
    let id = WorkflowId::generate();
    let mut jobs = plan::initial_records(&compiled, &id);
    let mut header = WorkflowRecord::initialized(id.clone(), "t", "1.0.0", serde_json::json!({}));
    let events = plan::begin_at_create(&compiled, &mut header, &mut jobs, chrono::Utc::now()).unwrap();
    let types: Vec<_> = events.iter().map(|e| (e.event_type.as_str(), e.payload.job_id.as_deref())).collect();
    assert_eq!(types, [("workflow_running", None), ("job_ready", Some("a")), ("job_ready", Some("b"))]);
    assert_eq!(header.status, WorkflowStatus::Running);
    let statuses: Vec<_> = jobs.iter().map(|j| j.status).collect();
    assert_eq!(statuses, [JobStatus::Ready, JobStatus::Ready, JobStatus::Pending]);
    assert!(jobs[0].ready_at.is_some() && jobs[2].ready_at.is_none());

    let conditional = WorkflowTemplate::new("t", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop").when("input.go"))
        .job(JobSpec::new("b", "noop"));
    let compiled = Validator::new().compile(&conditional).unwrap();
    let mut jobs = plan::initial_records(&compiled, &id);
    let mut header = WorkflowRecord::initialized(id.clone(), "t", "1.0.0", serde_json::json!({}));
    let before = (header.clone(), jobs.clone());
    assert!(plan::begin_at_create(&compiled, &mut header, &mut jobs, chrono::Utc::now()).is_none());
    assert_eq!((header, jobs), before, "nothing changes when a root has a condition");
}
