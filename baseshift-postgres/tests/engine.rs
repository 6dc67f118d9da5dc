//! The PostgreSQL backend under the engine, and its own features: migrations, the claim's
//! indexes and floor, cross-process wake-ups, retention and analytics. Each test uses a fresh schema
//! on the server at `BASESHIFT_POSTGRES_URL`; an unreachable server fails the tests.

#[path = "engine/batching.rs"]
mod batching;
#[path = "engine/claim_floor.rs"]
mod claim_floor;
mod common;

use async_trait::async_trait;
use baseshift_core::conformance::fixtures::{TestWorkflow, make_ready, now_ms};
use baseshift_core::engine::Engine;
use baseshift_core::{
    ErrorKind, JobContext, JobError, JobOutput, JobRunner, JobSpec, JobStatus, StateStore, WorkflowId, WorkflowStatus,
    WorkflowTemplate,
};
use baseshift_postgres::{Postgres, PostgresConfig, PostgresStateStore};
use common::{connect, fresh, test_config, unique_schema};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A raw connection to `schema`, for checks the stores do not offer.
async fn raw(config: &PostgresConfig) -> PgConnection {
    let options = sqlx::postgres::PgConnectOptions::from_str(&config.url)
        .unwrap_or_else(|e| panic!("url: {e}"))
        .options([("search_path", config.schema.as_str())]);
    PgConnection::connect_with(&options).await.unwrap_or_else(|e| panic!("raw connection: {e}"))
}

async fn scalar(conn: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_names_the_url() {
    let config = PostgresConfig::builder()
        .url("postgres://postgres:pw@127.0.0.1:1/test")
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = Postgres::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("127.0.0.1:1") && !err.message().contains("pw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_reapply_and_revert() {
    let schema = unique_schema();
    let config = test_config(&schema, 2);
    let pg = connect(&config).await;
    let mut conn = raw(&config).await;
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() \
                  AND table_name IN ('workflows', 'jobs', 'outbox', 'idempotency_keys', 'template_snapshots', \
                  'templates', 'template_versions')";
    let applied = "SELECT count(*) FROM _sqlx_migrations WHERE success";

    pg.migrate().await.unwrap();
    assert_eq!(scalar(&mut conn, tables).await, 7, "every table exists after the first run");
    assert_eq!(scalar(&mut conn, applied).await, Postgres::migration_versions().len() as i64);

    let store = pg.state_store();
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(&store).await.unwrap();
    pg.migrate().await.unwrap();
    assert_eq!(scalar(&mut conn, applied).await, Postgres::migration_versions().len() as i64, "re-run is a no-op");
    assert_eq!(store.workflow(wf.id()).await.unwrap().id, *wf.id(), "data survives a re-run");

    pg.revert_migrations().await.unwrap();
    assert_eq!(scalar(&mut conn, tables).await, 0, "every table is gone after reverting");
    assert_eq!(scalar(&mut conn, applied).await, 0);
    let gone = store.workflow(wf.id()).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::Internal, "no table: {gone}");

    pg.migrate().await.unwrap();
    assert_eq!(scalar(&mut conn, tables).await, 7, "applies again after a revert");
    pg.drop_schema().await.unwrap();
    let schemas: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
        .bind(&schema)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(schemas, 0, "drop_schema removes the schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_scans_use_their_indexes() {
    let scoped = fresh(4).await;
    let store = scoped.pg.state_store();
    // Enough rows that a sequential scan would be chosen if the indexes did not fit.
    for i in 0..150 {
        let mut wf = TestWorkflow::new();
        for j in 0..20 {
            wf = wf.job(&format!("j{j}"), &[]);
        }
        wf.create(&store).await.unwrap();
        if i % 10 == 0 {
            make_ready(&store, wf.id(), &["j0", "j1"], now_ms()).await.unwrap();
        }
    }
    let mut conn = raw(scoped.pg.config()).await;
    sqlx::query("ANALYZE jobs").execute(&mut conn).await.unwrap();
    let plans = store.explain_claim().await.unwrap();
    assert_eq!(plans.len(), 2);
    assert!(plans[0].contains("Index") && plans[0].contains("jobs_leases"), "expired-lease scan:\n{}", plans[0]);
    assert!(plans[1].contains("Index") && plans[1].contains("jobs_ready"), "ready scan:\n{}", plans[1]);
    // The generic plans read their index in order: none sorts the jobs it found.
    assert!(plans.iter().all(|p| !p.contains("Sort")), "no sort of the scanned jobs:\n{plans:?}");
    for plan in &plans {
        // The one-row claim_floor and lease_floor are read whole.
        let seq = plan.lines().any(|l| l.contains("Seq Scan") && !l.contains("_floor"));
        assert!(!seq, "no sequential scan of a big table:\n{plan}");
    }
    let claimed = store.claim(baseshift_core::conformance::fixtures::claim_request("w", 100, Duration::from_secs(30)));
    assert_eq!(claimed.await.unwrap().jobs.len(), 30);
}

/// A claim whose first page is all jobs of a full key fetches a second page; a key of
/// that page another transaction holds is passed over, not waited for: the claim holds
/// the first page's key, so waiting could close a lock cycle with the holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_page_passes_over_a_key_another_claim_holds() {
    let scoped = fresh(4).await;
    let store = scoped.pg.state_store();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let (full, held) = (format!("full-{tag}"), format!("held-{tag}"));
    let key = |k: &str| {
        let k = k.to_owned();
        move |j: &mut baseshift_core::JobRecord| {
            j.concurrency = Some(baseshift_core::state::ConcurrencyKey { key: k, limit: 1 })
        }
    };
    let wf = TestWorkflow::new()
        .job("a", &[])
        .job("b", &[])
        .job("c", &[])
        .with_job("a", key(&full))
        .with_job("b", key(&full))
        .with_job("c", key(&held));
    wf.create(&store).await.unwrap();
    make_ready(&store, wf.id(), &["a", "b", "c"], now_ms()).await.unwrap();
    let request = || baseshift_core::conformance::fixtures::claim_request("w", 1, Duration::from_secs(30));
    let first = store.claim(request()).await.unwrap();
    assert_eq!(first.jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), ["a"], "a fills its key");

    // Another transaction holds the second key's lock, as a claim does until it commits.
    let mut other = raw(scoped.pg.config()).await;
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(&held).execute(&mut other).await.unwrap();
    // Page one is b (its key full), page two c (its key busy): nothing, and at once.
    let second = tokio::time::timeout(Duration::from_secs(5), store.claim(request()))
        .await
        .expect("the claim does not wait for the held key")
        .unwrap();
    assert!(second.jobs.is_empty(), "claimed {:?}", second.jobs.iter().map(|j| &j.job_id).collect::<Vec<_>>());
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let third = store.claim(request()).await.unwrap();
    assert_eq!(third.jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), ["c"], "the key is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_job_wakes_a_waiter_in_another_process() {
    let scoped = fresh(2).await;
    // A second connection (its own pool and listener) stands for another process.
    let other = connect(scoped.pg.config()).await;
    let waiter = other.state_store();
    let writer = scoped.pg.state_store();
    let wf = TestWorkflow::new().job("a", &[]);
    wf.create(&writer).await.unwrap();
    // Drain any wake-up left over from connecting.
    waiter.wait_for_work(Duration::from_millis(100)).await;

    let (waited, ready) = tokio::join!(
        async {
            let start = Instant::now();
            waiter.wait_for_work(Duration::from_secs(20)).await;
            start.elapsed()
        },
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            make_ready(&writer, wf.id(), &["a"], now_ms()).await
        }
    );
    ready.unwrap();
    assert!(waited < Duration::from_secs(10), "woken by NOTIFY after {waited:?}");
    other.close().await;
}

/// Counts every run, remembers which jobs ran, and fails jobs whose config says so.
struct Counting {
    runs: AtomicUsize,
    seen: Arc<Mutex<HashSet<(WorkflowId, String)>>>,
    duplicates: Arc<AtomicUsize>,
}

#[async_trait]
impl JobRunner for Counting {
    fn job_type(&self) -> &str {
        "count"
    }

    fn validate_config(&self, _config: &Value) -> baseshift_core::Result<()> {
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let first = self.seen.lock().map(|mut s| s.insert((ctx.workflow_id.clone(), ctx.job_id.to_string())));
        if !first.unwrap_or(false) {
            self.duplicates.fetch_add(1, Ordering::SeqCst);
        }
        if ctx.config.get("fail").and_then(Value::as_bool) == Some(true) {
            return Err(JobError::permanent("told to fail"));
        }
        Ok(JobOutput::json(json!({ "job": ctx.job_id })))
    }
}

fn diamond() -> WorkflowTemplate {
    WorkflowTemplate::new("diamond", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "count"))
        .job(JobSpec::new("b", "count").depends_on(["a"]))
        .job(JobSpec::new("c", "count").depends_on(["a"]))
        .job(JobSpec::new("d", "count").depends_on(["a"]))
        .job(JobSpec::new("e", "count").depends_on(["b", "c", "d"]))
}

async fn engine(pg: &Postgres, runner: Arc<Counting>, name: &str) -> Engine {
    let engine = Engine::builder()
        .state_store(Arc::new(pg.state_store()))
        .template_store(Arc::new(pg.template_store()))
        .runner_arc(runner)
        .instance_id(name)
        .concurrency(16)
        .build()
        .unwrap();
    engine.launch().await.unwrap();
    engine
}

async fn wait_finished(store: &PostgresStateStore, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let counts = store.workflow_counts().await.unwrap();
        let finished: u64 = counts.iter().filter(|(s, _)| s.is_terminal()).map(|(_, n)| n).sum();
        if finished >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {finished} of {n} workflows finished in time: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_finish_a_thousand_diamonds_running_each_job_once() {
    const WORKFLOWS: usize = 1000;
    let scoped = fresh(4).await;
    // The second instance has a pool (and listener) of its own, like another process.
    let other = connect(scoped.pg.config()).await;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let duplicates = Arc::new(AtomicUsize::new(0));
    let runner =
        || Arc::new(Counting { runs: AtomicUsize::new(0), seen: seen.clone(), duplicates: duplicates.clone() });
    let (runner_a, runner_b) = (runner(), runner());
    let a = engine(&scoped.pg, runner_a.clone(), "instance-a").await;
    let b = engine(&other, runner_b.clone(), "instance-b").await;
    a.register_template(diamond()).await.unwrap();

    let started = Instant::now();
    let starters = (0..8).map(|k| {
        let engine = if k % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            for _ in 0..WORKFLOWS / 8 {
                engine.start("diamond", json!({})).await.unwrap();
            }
        })
    });
    for starter in starters {
        starter.await.unwrap();
    }
    let store = scoped.pg.state_store();
    wait_finished(&store, WORKFLOWS as u64, Duration::from_secs(240)).await;
    let elapsed = started.elapsed();

    let counts = store.workflow_counts().await.unwrap();
    assert_eq!(counts, vec![(WorkflowStatus::Completed, WORKFLOWS as u64)], "every workflow completed");
    assert_eq!(store.job_counts().await.unwrap(), vec![(JobStatus::Succeeded, 5 * WORKFLOWS as u64)]);
    let mut conn = raw(scoped.pg.config()).await;
    assert_eq!(scalar(&mut conn, "SELECT count(*) FROM jobs WHERE attempt <> 1").await, 0, "every job ran once");
    let (ran_a, ran_b) = (runner_a.runs.load(Ordering::SeqCst), runner_b.runs.load(Ordering::SeqCst));
    assert_eq!(ran_a + ran_b, 5 * WORKFLOWS, "runs in all ({ran_a} + {ran_b})");
    assert_eq!(duplicates.load(Ordering::SeqCst), 0, "no job ran twice");
    assert!(ran_a > 0 && ran_b > 0, "both instances ran jobs: {ran_a} and {ran_b}");
    let rates = store.template_success_rates().await.unwrap();
    assert_eq!(rates.len(), 1);
    assert_eq!((rates[0].completed, rates[0].success_rate), (WORKFLOWS as u64, 1.0));
    println!("{WORKFLOWS} diamonds in {elapsed:?}: instance a ran {ran_a} jobs, instance b {ran_b}");

    a.shutdown().await;
    b.shutdown().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_finished_workflows_and_analytics_count_them() {
    let schema = unique_schema();
    let config = PostgresConfig::builder().schema(&schema).max_connections(4).retention_batch(2).build().unwrap();
    let scoped = common::Scoped { pg: connect(&config).await };
    scoped.pg.migrate().await.unwrap();
    let counting = Arc::new(Counting {
        runs: AtomicUsize::new(0),
        seen: Arc::new(Mutex::new(HashSet::new())),
        duplicates: Arc::new(AtomicUsize::new(0)),
    });
    let engine = engine(&scoped.pg, counting.clone(), "retention").await;
    engine.register_template(diamond()).await.unwrap();
    let failing = WorkflowTemplate::new("failing", semver::Version::new(1, 0, 0))
        .job(JobSpec::new("boom", "count").config(json!({ "fail": true })));
    engine.register_template(failing).await.unwrap();
    let waiting = WorkflowTemplate::new("waiting", semver::Version::new(1, 0, 0)).job(JobSpec::new("ask", "manual"));
    engine.register_template(waiting).await.unwrap();

    let mut done = Vec::new();
    for _ in 0..3 {
        done.push(engine.start("diamond", json!({})).await.unwrap());
    }
    done.push(engine.start("failing", json!({})).await.unwrap());
    for id in &done {
        engine.wait_timeout(id, Duration::from_secs(30)).await.unwrap();
    }
    let running = engine.start("waiting", json!({})).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.status(&running).await.unwrap().job("ask").map(|j| j.status) != Some(JobStatus::Running) {
        assert!(Instant::now() < deadline, "the manual job never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let store = scoped.pg.state_store();
    let rates = store.template_success_rates().await.unwrap();
    let by_id = |id: &str| rates.iter().find(|r| r.template_id == id).cloned();
    let diamond_rate = by_id("diamond").unwrap();
    assert_eq!((diamond_rate.completed, diamond_rate.success_rate), (3, 1.0));
    let failing_rate = by_id("failing").unwrap();
    assert_eq!((failing_rate.failed, failing_rate.success_rate), (1, 0.0));
    assert!(by_id("waiting").is_none(), "running workflows are not rated");
    let durations = store.job_durations().await.unwrap();
    let count = durations.iter().find(|d| d.job_type == "count").unwrap();
    assert_eq!(count.count, 16, "15 diamond jobs and the failed one");
    assert!(count.max_ms >= count.avg_ms && count.avg_ms >= 0.0, "{count:?}");

    let nothing = store.apply_retention(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((nothing.workflows, nothing.jobs), (0, 0), "nothing finished an hour ago");
    // Keep some events of a finished workflow in the outbox to see them deleted too.
    engine.shutdown().await;
    let mut conn = raw(scoped.pg.config()).await;
    sqlx::query("INSERT INTO outbox (workflow_id, event) SELECT $1, '{}'::jsonb")
        .bind(done[0].as_str())
        .execute(&mut conn)
        .await
        .unwrap();

    let report = store.apply_retention(Duration::ZERO).await.unwrap();
    assert_eq!(report.workflows, 4, "{report:?}");
    assert_eq!(report.jobs, 16, "{report:?}");
    assert!(report.events >= 1, "{report:?}");
    assert_eq!(report.batches, 3, "batches of two: 2 + 2 + an empty one");
    for id in &done {
        assert_eq!(store.workflow(id).await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(store.jobs(id, None).await.unwrap_err().kind(), ErrorKind::NotFound);
    }
    let kept = store.workflow(&running).await.unwrap();
    assert_eq!(kept.status, WorkflowStatus::Running, "a running workflow is never touched");
    assert_eq!(store.jobs(&running, None).await.unwrap().len(), 1);
    let orphans =
        "SELECT count(*) FROM outbox WHERE workflow_id NOT IN (SELECT id FROM workflows) AND workflow_id <> ''";
    assert_eq!(scalar(&mut conn, orphans).await, 0, "no event of a deleted workflow is left");
    assert_eq!(store.workflow_counts().await.unwrap(), vec![(WorkflowStatus::Running, 1)]);
}
