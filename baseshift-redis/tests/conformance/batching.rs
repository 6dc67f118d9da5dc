//! Redis-specific paths of the store's own round-trip savings: batch creates as one
//! pipeline, the template snapshot left out once stored (and sent again when missing), and
//! a wait right after an empty claim relying on that claim.

use super::*;
use baseshift_core::conformance::fixtures::{TestWorkflow, claim_request, make_ready, now_ms};
use baseshift_core::{JobSpec, Result, StateStore, WorkflowTemplate};
use baseshift_redis::RedisConfig;
use chrono::TimeDelta;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Workflows of one template sharing its snapshot: `n` fresh ones, all of template `shared`.
fn sharing(template: &Arc<WorkflowTemplate>, n: usize) -> Vec<(TestWorkflow, baseshift_core::store::NewWorkflow)> {
    (0..n)
        .map(|_| {
            let wf = TestWorkflow::new().job("a", &[]);
            let mut new = wf.build();
            new.header.template_id = template.template_id.clone();
            new.template = template.clone();
            (wf, new)
        })
        .collect()
}

/// The snapshot body is left out once the store has stored it; a snapshot deleted behind
/// the store's back is sent again (one create at a time and in a batch), so every
/// workflow can still read its template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_missing_after_all_is_sent_again() -> Result<()> {
    use baseshift_core::store::CreateOutcome::{Created, Existing};
    let config = test_config();
    let store = store_with(&config).await;
    let template =
        Arc::new(WorkflowTemplate::new("snap", semver::Version::new(2, 0, 0)).job(JobSpec::new("a", "noop")));
    let client = redis::Client::open(config.url.as_str()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis connection");
    let snapshot = format!("{}:tpl:snap:2.0.0", store.key_prefix());
    let mut del = async || -> u64 { redis::cmd("DEL").arg(&snapshot).query_async(&mut conn).await.expect("DEL") };
    let mut made = sharing(&template, 6).into_iter();
    let (first, mut new) = made.next().expect("workflow");
    new.header.idempotency_key = Some("snap-key".into());
    store.create_workflow(new).await?;
    assert_eq!(del().await, 1, "the first create stored the snapshot");
    store.create_workflow(made.next().expect("workflow").1).await?;
    assert_eq!(del().await, 1, "a create after it was deleted stored it again");
    let batch: Vec<_> = made.by_ref().take(2).map(|(_, new)| new).collect();
    for outcome in store.create_workflows(batch).await {
        assert!(matches!(outcome?, Created(_)));
    }
    assert_eq!(del().await, 1, "so did a batch");
    // A store new to the snapshot sends it with the batch's first create, which finds its
    // key used and writes nothing: the next create is asked for it and sent again.
    let fresh = store_with(&config).await;
    let (_, mut repeat) = made.next().expect("workflow");
    repeat.header.idempotency_key = Some("snap-key".into());
    let (last, new) = made.next().expect("workflow");
    let outcomes = fresh.create_workflows(vec![repeat, new]).await.into_iter().collect::<Result<Vec<_>>>()?;
    assert_eq!(outcomes, vec![Existing(first.id().clone()), Created(last.id().clone())]);
    assert_eq!(store.template("snap", "2.0.0").await?.jobs[0].id, "a");
    Ok(())
}

/// A batch sent while the server has no scripts cached (`SCRIPT FLUSH`) loads the create
/// script and creates every workflow once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_after_a_script_flush_creates_each_once() -> Result<()> {
    let store = redis_store_for_test().await;
    let template =
        Arc::new(WorkflowTemplate::new("flush", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "noop")));
    let client = redis::Client::open(RedisConfig::from_env().url.as_str()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis connection");
    let made = sharing(&template, 3);
    let ids: Vec<_> = made.iter().map(|(wf, _)| wf.id().clone()).collect();
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.expect("SCRIPT FLUSH");
    let outcomes = store.create_workflows(made.into_iter().map(|(_, new)| new).collect()).await;
    let created = outcomes.into_iter().collect::<Result<Vec<_>>>()?;
    assert_eq!(created, ids.iter().cloned().map(baseshift_core::store::CreateOutcome::Created).collect::<Vec<_>>());
    for id in &ids {
        assert_eq!(store.jobs(id, None).await?.len(), 1);
    }
    Ok(())
}

/// More ids than one pipeline of read scripts holds, absent and repeated ones among them,
/// asked while the server has no scripts cached (`SCRIPT FLUSH`): the read script is
/// loaded and every list comes back in the order asked, as `jobs` reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_spans_pipelines_after_a_script_flush() -> Result<()> {
    let store = redis_store_for_test().await;
    let (one, two) = (TestWorkflow::new().job("a", &[]), TestWorkflow::new().job("b", &[]).job("a", &["b"]));
    one.create(&store).await?;
    two.create(&store).await?;
    let ask = spanning_ids(one.id(), two.id());
    let (one_jobs, two_jobs) = (store.jobs(one.id(), None).await?, store.jobs(two.id(), None).await?);
    let client = redis::Client::open(RedisConfig::from_env().url.as_str()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis connection");
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.expect("SCRIPT FLUSH");
    let got = store.jobs_of(&ask).await?;
    assert_eq!(got.len(), ask.len(), "one list per id asked");
    for (i, jobs) in got.iter().enumerate() {
        let expected: &[baseshift_core::JobRecord] = match i {
            999 | 2500 => &two_jobs,
            1000 => &one_jobs,
            _ => &[],
        };
        assert_eq!(jobs.as_slice(), expected, "list {i} (of {})", ask[i]);
    }
    Ok(())
}

/// A wait right after a claim that found nothing relies on that claim's view (no check of
/// its own) and still returns when the next retry comes due, not at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_after_an_empty_claim_returns_when_a_retry_comes_due() -> Result<()> {
    let store = redis_store_for_test().await;
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(&store).await?;
    make_ready(&store, wf.id(), &["a"], now_ms() + TimeDelta::milliseconds(300)).await?;
    // Each empty claim is followed by a wait that relies on it; an early wake-up (the
    // writes' own) only costs another round. Waiting out the timeout would fail.
    let t0 = Instant::now();
    loop {
        let claimed = store.claim(claim_request("w", 1, Duration::from_secs(30))).await?;
        if !claimed.jobs.is_empty() {
            break;
        }
        assert!(claimed.next_ready_at.is_some(), "the retry's due time is reported");
        store.wait_for_work(Duration::from_secs(20)).await;
        assert!(t0.elapsed() < Duration::from_secs(5), "waited {:?}", t0.elapsed());
    }
    assert!(t0.elapsed() >= Duration::from_millis(200), "claimed before it was due: {:?}", t0.elapsed());
    Ok(())
}

/// A batch of several pipelines' worth (1 200 creates, with one idempotency key used in the
/// first pipeline and again in the third) answers each create, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_one_pipeline_answers_each_in_order() -> Result<()> {
    use baseshift_core::store::CreateOutcome::{Created, Existing};
    let store = redis_store_for_test().await;
    let template =
        Arc::new(WorkflowTemplate::new("many", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "noop")));
    let mut made = sharing(&template, 1_200);
    made[10].1.header.idempotency_key = Some("many-key".into());
    made[1_100].1.header.idempotency_key = Some("many-key".into());
    let mut expected: Vec<_> = made.iter().map(|(wf, _)| Created(wf.id().clone())).collect();
    expected[1_100] = Existing(made[10].0.id().clone());
    let outcomes = store.create_workflows(made.into_iter().map(|(_, new)| new).collect()).await;
    assert_eq!(outcomes.into_iter().collect::<Result<Vec<_>>>()?, expected);
    Ok(())
}
