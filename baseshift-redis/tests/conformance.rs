//! The core conformance suites against the real Redis server at `BASESHIFT_REDIS_URL`
//! (default `redis://127.0.0.1:6379`), each test under a key prefix of its own, plus the
//! Redis-specific behaviour: records surviving the Lua scripts unchanged, wake-ups across
//! instances, prefixes, the template cache's invalidation, and error mapping.
//! These tests fail (never skip) when Redis is unreachable: run `scripts/services.sh`.

use async_trait::async_trait;
use baseshift_core::conformance::fixtures::{
    TestWorkflow, claim_request, finish, make_ready, now_ms, succeed_step, write_job,
};
use baseshift_core::state::JobFailure;
use baseshift_core::store::{ParentOutcome, WorkflowFilter};
use baseshift_core::templates::TemplateSummary;
use baseshift_core::{
    ErrorKind, JobSpec, JobStatus, MemoryTemplateStore, Result, StateStore, TemplateStore, Trigger, WorkflowTemplate,
};
use baseshift_redis::{CachedTemplateStore, RedisConfig, RedisStateStore};
use chrono::TimeDelta;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A config with a fresh random key prefix, so tests running in parallel never meet.
fn test_config() -> RedisConfig {
    RedisConfig::builder()
        .key_prefix(format!("bstest-{}", uuid::Uuid::now_v7().simple()))
        .build()
        .unwrap_or_else(|e| panic!("invalid Redis test settings: {e}"))
}

fn unreachable(e: baseshift_core::Error) -> ! {
    panic!("Redis is not reachable ({e}); start it with `scripts/services.sh` or set BASESHIFT_REDIS_URL")
}

async fn store_with(config: &RedisConfig) -> RedisStateStore {
    RedisStateStore::connect(config).await.unwrap_or_else(|e| unreachable(e))
}

async fn redis_store_for_test() -> RedisStateStore {
    store_with(&test_config()).await
}

async fn cached_templates_for_test() -> CachedTemplateStore<MemoryTemplateStore> {
    CachedTemplateStore::connect(MemoryTemplateStore::new(), &test_config()).await.unwrap_or_else(|e| unreachable(e))
}

baseshift_core::state_store_conformance!(redis_store_for_test().await);
baseshift_core::engine_conformance!(redis_store_for_test().await);
baseshift_core::template_store_conformance!(cached_templates_for_test().await);

#[tokio::test]
async fn capabilities_say_durable_and_shared() {
    let store = redis_store_for_test().await;
    let caps = store.capabilities();
    assert_eq!((caps.name, caps.durable, caps.shared), ("redis", true, true));
}

/// Records the scripts decode and re-encode (claimed jobs, children given an outcome)
/// read back exactly, whatever their strings hold; outputs with numbers Lua cannot hold
/// exactly, and empty arrays, are never touched by Lua.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_through_the_scripts() -> Result<()> {
    let store = redis_store_for_test().await;
    let odd = "ünïcødé / \"quoted\" \\ {braces} [brackets] \n newline";
    let output = json!({"big": 12345678901234567890u64, "fine": 1.0000000000000002, "empty": [], "obj": {}});
    let wf = TestWorkflow::new()
        .job("a/1", &[])
        .job("child", &["a/1"])
        .with_job("a/1", |j| {
            j.priority = -7;
            j.error = Some(JobFailure::new("retryable", odd));
        })
        .with_job("child", |j| {
            j.trigger = Trigger::AllDone;
            j.compensation_of = Some(odd.into());
            j.output = Some(output.clone());
            j.job_type = odd.into();
        });
    wf.create(&store).await?;
    let created = store.jobs(wf.id(), None).await?;
    assert_eq!(created[1].output, Some(output.clone()));

    make_ready(&store, wf.id(), &["a/1"], now_ms()).await?;
    let before = store.job(&wf.key("a/1")).await?;
    let claimed = store.claim(claim_request("w", 1, Duration::from_secs(30))).await?;
    let mut expected = before.clone();
    let got = claimed.jobs.first().cloned().expect("one job claimed");
    expected.status = JobStatus::Running;
    expected.attempt += 1;
    expected.version += 1;
    expected.lease = got.lease.clone();
    expected.started_at = got.started_at;
    assert_eq!(got, expected);
    assert_eq!(store.job(&wf.key("a/1")).await?, expected);

    let mut done = got;
    done.status = JobStatus::Succeeded;
    done.lease = None;
    done.output = Some(output.clone());
    let mut step = write_job(done.clone());
    step.parent_outcomes.push(ParentOutcome { child: "child".into(), status: JobStatus::Succeeded });
    step.terminal_delta = 1;
    let applied = store.apply(step).await?;
    assert_eq!(applied.ready, vec!["child".to_owned()]);
    let child = store.job(&wf.key("child")).await?;
    let mut expected_child = created[1].clone();
    expected_child.status = JobStatus::Ready;
    expected_child.version += 1;
    expected_child.deps.succeeded = 1;
    expected_child.ready_at = child.ready_at;
    assert!(child.ready_at.is_some());
    assert_eq!(child, expected_child);
    assert_eq!(store.job(&wf.key("a/1")).await?.output, Some(output));
    Ok(())
}

/// Renewing the lease of a job parked `awaiting_external` does not put it back in the
/// lease index, so it is still not re-claimed when that lease lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_a_parked_job_does_not_make_it_reclaimable() -> Result<()> {
    let store = redis_store_for_test().await;
    let wf = TestWorkflow::new().job("manual", &[]);
    wf.create(&store).await?;
    make_ready(&store, wf.id(), &["manual"], now_ms()).await?;
    let mut job = store.claim(claim_request("w", 1, Duration::from_millis(200))).await?.jobs.remove(0);
    let token = job.lease.as_ref().map(|l| l.token.clone()).unwrap_or_default();
    job.awaiting_external = true;
    store.apply(write_job(job)).await?;
    store.renew_lease(&wf.key("manual"), &token, Duration::from_millis(100)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.claim(claim_request("w2", 10, Duration::from_secs(30))).await?.jobs.is_empty());
    Ok(())
}

/// A job made ready through one instance wakes an idle `wait_for_work` on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_up_reaches_another_instance() -> Result<()> {
    let config = test_config();
    let (waiter, writer) = (store_with(&config).await, store_with(&config).await);
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(&writer).await?;
    waiter.wait_for_work(Duration::from_millis(50)).await;
    let (waited, readied) = tokio::join!(
        async {
            let start = Instant::now();
            waiter.wait_for_work(Duration::from_secs(20)).await;
            start.elapsed()
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            make_ready(&writer, wf.id(), &["a"], now_ms()).await
        }
    );
    readied?;
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
    assert_eq!(waiter.claim(claim_request("w", 5, Duration::from_secs(30))).await?.jobs.len(), 1);
    Ok(())
}

/// A retry that comes due ends an idle wait without any publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ends_when_a_retry_is_due() -> Result<()> {
    let store = redis_store_for_test().await;
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(&store).await?;
    make_ready(&store, wf.id(), &["a"], now_ms() + TimeDelta::milliseconds(300)).await?;
    // The writes above publish a wake-up whose delivery may come late and end one wait early
    // (the contract allows that), so wait again while nothing is claimable. Without the
    // due-time check every wait after that one lasts the full 20 s and the deadline fails.
    let start = Instant::now();
    let mut claimed = 0;
    while claimed == 0 && start.elapsed() < Duration::from_secs(10) {
        store.wait_for_work(Duration::from_secs(20)).await;
        claimed = store.claim(claim_request("w", 5, Duration::from_secs(30))).await?.jobs.len();
    }
    assert!(start.elapsed() < Duration::from_secs(10), "waited {:?}", start.elapsed());
    assert_eq!(claimed, 1);
    Ok(())
}

/// Stores under different prefixes share a server but nothing else; `purge` empties one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_isolate_stores_and_purge_empties_one() -> Result<()> {
    let (left, right) = (redis_store_for_test().await, redis_store_for_test().await);
    let wf = TestWorkflow::new().job("a", &[]).job("b", &["a"]);
    wf.create(&left).await?;
    finish(&left, wf.id(), "a", JobStatus::Succeeded, &["b"]).await?;
    assert!(right.list_workflows(WorkflowFilter::default()).await?.is_empty());
    assert!(right.outbox_pending(10).await?.is_empty());
    assert!(right.claim(claim_request("w", 5, Duration::from_secs(30))).await?.jobs.is_empty());
    assert_eq!(right.workflow(wf.id()).await.unwrap_err().kind(), ErrorKind::NotFound);

    assert!(left.purge().await? >= 5);
    assert_eq!(left.workflow(wf.id()).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(left.outbox_pending(10).await?.is_empty());
    assert!(left.claim(claim_request("w", 5, Duration::from_secs(30))).await?.jobs.is_empty());
    Ok(())
}

/// A server that refuses connections is `Unavailable`, with the URL in the message.
#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let config = RedisConfig::builder()
        .url("redis://127.0.0.1:1")
        .connect_timeout(Duration::from_millis(200))
        .build()
        .expect("valid settings");
    let err = RedisStateStore::connect(&config).await.expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("127.0.0.1:1"), "{err}");
}

/// An inner template store shared by several caches, counting the reads that reach it.
#[derive(Clone, Default)]
struct CountingTemplates {
    inner: Arc<MemoryTemplateStore>,
    gets: Arc<AtomicUsize>,
}

#[async_trait]
impl TemplateStore for CountingTemplates {
    async fn create(&self, template: &WorkflowTemplate) -> Result<()> {
        self.inner.create(template).await
    }
    async fn get(&self, template_id: &str, version: Option<&semver::Version>) -> Result<WorkflowTemplate> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(template_id, version).await
    }
    async fn update(&self, template: &WorkflowTemplate) -> Result<()> {
        self.inner.update(template).await
    }
    async fn list(&self) -> Result<Vec<TemplateSummary>> {
        self.inner.list().await
    }
    async fn delete(&self, template_id: &str) -> Result<()> {
        self.inner.delete(template_id).await
    }
}

/// 2 500 fresh (absent) workflow ids with `second` at index 999, `first` at 1 000 and
/// `second` again at the end: a batch read spanning three pipelines of 1 000.
fn spanning_ids(
    first: &baseshift_core::WorkflowId,
    second: &baseshift_core::WorkflowId,
) -> Vec<baseshift_core::WorkflowId> {
    use baseshift_core::WorkflowId;
    let mut ask: Vec<WorkflowId> = (0..2500).map(|_| WorkflowId::generate()).collect();
    ask[999] = second.clone();
    ask[1000] = first.clone();
    ask.push(second.clone());
    ask
}

fn template(version: semver::Version, name: &str) -> WorkflowTemplate {
    let mut t = WorkflowTemplate::new("cached", version).job(JobSpec::new("a", "noop"));
    t.name = name.to_owned();
    t
}

/// Repeated reads are served from Redis; an update or delete through one instance is
/// seen by the next read on every instance, never the stale entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_cache_hits_and_invalidates_across_instances() -> Result<()> {
    let config = test_config();
    let shared = CountingTemplates::default();
    let one = CachedTemplateStore::connect(shared.clone(), &config).await.unwrap_or_else(|e| unreachable(e));
    let two = CachedTemplateStore::connect(shared.clone(), &config).await.unwrap_or_else(|e| unreachable(e));
    let v1 = semver::Version::new(1, 0, 0);

    one.create(&template(v1.clone(), "first")).await?;
    assert_eq!(one.get("cached", None).await?.name, "first");
    let reads = shared.gets.load(Ordering::SeqCst);
    for store in [&one, &two, &one] {
        assert_eq!(store.get("cached", None).await?.name, "first");
    }
    assert_eq!(shared.gets.load(Ordering::SeqCst), reads, "cached reads reach the inner store");

    two.update(&template(semver::Version::new(1, 1, 0), "second")).await?;
    assert_eq!(one.get("cached", None).await?.name, "second", "latest after another instance's update");
    assert_eq!(one.get("cached", Some(&v1)).await?.name, "first");
    assert_eq!(two.get("cached", Some(&v1)).await?.name, "first");

    one.delete("cached").await?;
    assert_eq!(two.get("cached", None).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(two.get("cached", Some(&v1)).await.unwrap_err().kind(), ErrorKind::NotFound);
    two.create(&template(v1.clone(), "reborn")).await?;
    assert_eq!(one.get("cached", Some(&v1)).await?.name, "reborn", "a re-created version is not the old entry");
    Ok(())
}

/// With the `tls` feature, a `rediss://` URL makes a TLS handshake: against the plain
/// test server it fails with an error (rustls has its crypto provider; nothing panics).
#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_handshake_against_a_plain_server_fails_cleanly() {
    let url = RedisConfig::from_env().url.replacen("redis://", "rediss://", 1);
    let config = RedisConfig::builder().url(url).connect_timeout(Duration::from_millis(500)).build().expect("valid");
    let err = RedisStateStore::connect(&config).await.expect_err("the test server speaks no TLS");
    assert_ne!(err.kind(), ErrorKind::Internal, "{err}");
}

#[path = "conformance/batching.rs"]
mod batching;

#[path = "conformance/completion.rs"]
mod completion;

mod bus {
    use super::*;
    use baseshift_redis::RedisEventBus;

    /// A bus under a prefix of its own; deliveries of departed subscribers are taken over
    /// after 2 s instead of 30 s, so a lost release cannot outlast the suite's timeouts.
    pub(super) async fn redis_bus_for_test() -> RedisEventBus {
        let config = RedisConfig::builder()
            .key_prefix(format!("bstest-{}", uuid::Uuid::now_v7().simple()))
            .event_claim_idle(Duration::from_secs(2))
            .build()
            .unwrap_or_else(|e| panic!("invalid Redis test settings: {e}"));
        RedisEventBus::connect(&config).await.unwrap_or_else(|e| unreachable(e))
    }

    baseshift_core::event_bus_conformance!(redis_bus_for_test().await);

    /// With the default 30 s takeover delay, a departed subscriber's deliveries still reach
    /// the next member within the suite's 10 s: the departing task marks them idle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn departing_subscriber_releases_its_deliveries() -> Result<()> {
        let config = test_config();
        assert_eq!(config.event_claim_idle(), Duration::from_secs(30));
        let bus = RedisEventBus::connect(&config).await.unwrap_or_else(|e| unreachable(e));
        baseshift_core::conformance::bus::delivery_of_departed_subscriber_is_redelivered(&bus).await
    }
}
