//! The supervisor: sets up a fresh store, starts the worker processes behind the proxy,
//! submits the workflows, kills and restarts workers, cuts the network, waits for every
//! workflow to end and hands over to the checks.

use crate::check::{self, Submitted, Summary};
use crate::opts::{Backend, Options, WorkerOptions};
use crate::proxy::{self, Proxy};
use crate::record::{Recorder, now_us};
use crate::shapes::{self, ChaosRunner};
use crate::worker;
use baseshift_core::engine::{Engine, StartRequest};
use baseshift_core::{Error, Result, StateStore};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The worker processes, one per slot.
struct Fleet {
    exe: PathBuf,
    template: WorkerOptions,
    log_dir: PathBuf,
    children: Vec<Option<Child>>,
    /// pid -> when it was seen dead (µs), for runs a kill cut short.
    killed: HashMap<u32, u64>,
}

impl Fleet {
    fn spawn(&mut self, slot: usize) -> Result<()> {
        let w = &self.template;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("worker-{slot}.log")))
            .map_err(|e| Error::internal(format!("opening the worker log: {e}")))?;
        let err = log.try_clone().map_err(|e| Error::internal(format!("worker log: {e}")))?;
        let child = Command::new(&self.exe)
            .arg("worker")
            .args(["--backend", w.backend.as_str(), "--store-url", &w.store_url, "--bus-url", &w.bus_url])
            .args(["--record-url", &w.record_url, "--prefix", &w.prefix, "--slot", &slot.to_string()])
            .args(["--lease-ms", &w.lease_ms.to_string(), "--concurrency", &w.concurrency.to_string()])
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::internal(format!("starting worker {slot}: {e}")))?;
        self.children[slot] = Some(child);
        Ok(())
    }

    /// SIGKILLs the worker in `slot` and waits until it is gone.
    async fn kill(&mut self, slot: usize) -> Result<()> {
        if let Some(mut child) = self.children[slot].take() {
            let pid = child.id().unwrap_or(0);
            child.start_kill().map_err(|e| Error::internal(format!("killing worker {slot}: {e}")))?;
            let _ = child.wait().await;
            self.killed.insert(pid, now_us());
        }
        Ok(())
    }

    /// Workers that died on their own (they never should).
    fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (slot, c) in self.children.iter_mut().enumerate() {
            if let Some(child) = c
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push(format!("worker {slot} exited by itself: {status}"));
                *c = None;
            }
        }
        out
    }

    /// SIGTERMs every worker (a graceful shutdown), SIGKILLs any still there after 10 s.
    async fn stop(&mut self) {
        for child in self.children.iter().flatten() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            }
        }
        for child in self.children.iter_mut().flatten() {
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// Runs one experiment.
pub async fn run(o: Options) -> Result<Summary> {
    let began = Instant::now();
    let mut rng = o.seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    let tag = format!("chaos{}x{}", std::process::id(), now_us() / 1_000_000 % 100_000);
    let redis_url = baseshift_redis::RedisConfig::from_env().url;
    let pg_url = baseshift_postgres::PostgresConfig::from_env().url;
    let (store_url, default_port) = match o.backend {
        Backend::Redis => (redis_url.clone(), 6379),
        Backend::Postgres => (pg_url.clone(), 5432),
    };
    let log_dir = o.log_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(&tag));
    std::fs::create_dir_all(&log_dir).map_err(|e| Error::internal(format!("creating {log_dir:?}: {e}")))?;
    note(format!("run {tag}: backend={} logs in {}", o.backend.as_str(), log_dir.display()));

    // The supervisor's own connections go straight to the servers: it is the client and
    // the referee, not under test.
    let pg = match o.backend {
        Backend::Postgres => {
            let pg = worker::postgres(&pg_url, &tag, &format!("{tag}-supervisor")).await?;
            pg.drop_schema().await?;
            pg.migrate().await?;
            Some(pg)
        }
        Backend::Redis => None,
    };
    let store: Arc<dyn StateStore> = match &pg {
        Some(pg) => Arc::new(pg.state_store()),
        None => worker::store(Backend::Redis, &redis_url, &tag, "").await?,
    };
    let record_url = if o.backend == Backend::Redis { redis_url.clone() } else { pg_url.clone() };
    let recorder = Recorder::connect(o.backend, &record_url, &tag).await?;
    recorder.create().await?;

    let proxy = Proxy::start(proxy::upstream(&store_url, default_port)?).await?;
    let proxied = proxy::via(&store_url, proxy.addr())?;
    // With Redis the bus shares the store's server, so it goes through the proxy as well.
    let bus_url = if o.backend == Backend::Redis { proxied.clone() } else { redis_url.clone() };
    let exe = std::env::current_exe().map_err(|e| Error::internal(format!("locating the harness binary: {e}")))?;
    let template = WorkerOptions {
        backend: o.backend,
        store_url: proxied,
        bus_url,
        record_url,
        prefix: tag.clone(),
        slot: 0,
        lease_ms: o.lease_ms,
        concurrency: o.concurrency,
    };
    let mut fleet =
        Fleet { exe, template, log_dir, children: (0..o.instances).map(|_| None).collect(), killed: HashMap::new() };
    for slot in 0..o.instances {
        fleet.spawn(slot)?;
    }

    let client = Engine::builder()
        .state_store(store.clone())
        .runner(ChaosRunner { recorder: None })
        .instance_id(format!("{tag}-supervisor"))
        .build()?;
    for t in shapes::templates()? {
        client.register_template(t).await?;
    }
    // Submissions are spread over the kill phase so that kills land on work in flight.
    let phase = Duration::from_millis(o.kill_every_ms * o.kills.max(3) as u64);
    let gap = phase / u32::try_from(o.workflows).unwrap_or(u32::MAX);
    let submitter = tokio::spawn(submit(client.clone(), o.workflows, gap));

    let outages = tokio::spawn(outages(o.clone(), proxy, phase, rng.u64(..), tag.clone()));
    let mut problems = Vec::new();
    for k in 0..o.kills {
        let pause = o.kill_every_ms / 2 + rng.u64(0..=o.kill_every_ms);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let slot = rng.usize(0..o.instances);
        fleet.kill(slot).await?;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
        fleet.spawn(slot)?;
        if (k + 1) % 10 == 0 {
            note(format!("{} kills so far", k + 1));
        }
        problems.extend(fleet.exited());
    }
    let submitted = submitter.await.map_err(|e| Error::internal(format!("submitter: {e}")))??;
    let proxy = outages.await.map_err(|e| Error::internal(format!("outage task: {e}")))??;
    note(format!("all {} workflows submitted, {} kills done; waiting for the end", submitted.len(), o.kills));

    let deadline = Instant::now() + Duration::from_secs(o.deadline_secs);
    let unfinished = wait_terminal(store.as_ref(), &submitted, deadline).await?;
    if unfinished > 0 {
        note(format!("{unfinished} workflows not terminal at the deadline"));
    }
    wait_outbox_drained(store.as_ref(), deadline.max(Instant::now() + Duration::from_secs(30))).await?;
    problems.extend(fleet.exited());
    for p in &problems {
        note(p.clone());
    }
    let events = crate::events::read(&redis_url, &tag).await?;
    let marks = recorder.read_all().await?;
    let mut summary = check::check(store.as_ref(), &submitted, &events, &marks, &fleet.killed).await?;
    fleet.stop().await;
    drop(proxy);
    summary.backend = o.backend.as_str();
    summary.instances = o.instances;
    summary.kills = o.kills;
    summary.outages = o.outages;
    summary.worker_exits = problems.len();
    summary.secs = began.elapsed().as_secs_f64();
    if o.keep {
        note(format!("kept: prefix/schema {tag}"));
    } else {
        purge(o.backend, &redis_url, &tag, pg.as_ref()).await?;
    }
    if let Some(pg) = pg {
        pg.close().await;
    }
    Ok(summary)
}

/// Starts `n` workflows, one every `gap`, each with an idempotency key so a start retried
/// after an error cannot create a second workflow.
async fn submit(client: Engine, n: usize, gap: Duration) -> Result<Vec<Submitted>> {
    let mut out = Vec::with_capacity(n);
    let mut next = tokio::time::Instant::now();
    for i in 0..n {
        let (shape, _) = shapes::SHAPES[i % shapes::SHAPES.len()];
        let input = shapes::input(i);
        let req = StartRequest::new(shape).input(input.clone()).idempotency_key(format!("chaos-{i}"));
        let mut tries = 0;
        let id = loop {
            match client.start_with(req.clone()).await {
                Ok(id) => break id,
                Err(e) if tries < 20 => {
                    tries += 1;
                    note(format!("starting workflow {i} failed ({e}); retrying"));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        out.push(Submitted { id, shape, input });
        next += gap;
        tokio::time::sleep_until(next).await;
    }
    Ok(out)
}

/// Cuts the store's network (or runs the outage commands) `o.outages` times, spread over
/// the kill phase; returns the proxy, restored.
async fn outages(o: Options, proxy: Proxy, phase: Duration, seed: u64, tag: String) -> Result<Proxy> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let slice = phase / u32::try_from(o.outages + 1).unwrap_or(1);
    for n in 0..o.outages {
        let jitter = Duration::from_millis(rng.u64(0..=slice.as_millis() as u64 / 2));
        tokio::time::sleep(slice / 2 + jitter).await;
        note(format!("outage {} of {}: store unreachable for {} ms", n + 1, o.outages, o.outage_ms));
        match &o.outage_down {
            Some(cmd) => shell(cmd).await?,
            None if o.terminate_backends => terminate_for(&tag, Duration::from_millis(o.outage_ms)).await?,
            None => proxy.cut(),
        }
        if !o.terminate_backends {
            tokio::time::sleep(Duration::from_millis(o.outage_ms)).await;
        }
        match &o.outage_up {
            Some(cmd) => shell(cmd).await?,
            None => proxy.restore(),
        }
        note(format!("outage {} over", n + 1));
    }
    Ok(proxy)
}

/// Terminates every server backend of the run's workers (by application name) every
/// 100 ms for `length`, so reconnections fail too: the server itself cuts them.
async fn terminate_for(tag: &str, length: Duration) -> Result<()> {
    let url = baseshift_postgres::PostgresConfig::from_env().url;
    let pool = sqlx::PgPool::connect(&url)
        .await
        .map_err(|e| Error::new(baseshift_core::ErrorKind::Unavailable, format!("postgres: {e}")))?;
    let pattern = format!("{tag}-worker-%");
    let until = Instant::now() + length;
    let mut terminated = 0u64;
    while Instant::now() < until {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(&pool)
        .await
        .map_err(|e| Error::internal(format!("pg_terminate_backend: {e}")))?;
        terminated += u64::try_from(n).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    note(format!("terminated {terminated} worker backends"));
    Ok(())
}

async fn shell(cmd: &str) -> Result<()> {
    let status = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .await
        .map_err(|e| Error::internal(format!("running {cmd:?}: {e}")))?;
    if status.success() { Ok(()) } else { Err(Error::internal(format!("{cmd:?} exited with {status}"))) }
}

/// Polls until every submitted workflow is terminal or `deadline`; returns how many are not.
async fn wait_terminal(store: &dyn StateStore, submitted: &[Submitted], deadline: Instant) -> Result<usize> {
    let mut open: Vec<&Submitted> = submitted.iter().collect();
    loop {
        let mut still = Vec::new();
        for s in open {
            match store.workflow(&s.id).await {
                Ok(h) if h.status.is_terminal() => {}
                _ => still.push(s),
            }
        }
        open = still;
        if open.is_empty() || Instant::now() >= deadline {
            return Ok(open.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_outbox_drained(store: &dyn StateStore, deadline: Instant) -> Result<()> {
    while !store.outbox_pending(1).await?.is_empty() {
        if Instant::now() >= deadline {
            note("the outbox still holds events at the deadline".into());
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn purge(backend: Backend, redis_url: &str, tag: &str, pg: Option<&baseshift_postgres::Postgres>) -> Result<()> {
    // The bus and the run records live under the same Redis prefix (on Postgres the
    // records are in the schema).
    let config =
        baseshift_redis::RedisConfig::builder().url(redis_url.to_owned()).key_prefix(tag.to_owned()).build()?;
    baseshift_redis::RedisStateStore::connect(&config).await?.purge().await?;
    if backend == Backend::Postgres
        && let Some(pg) = pg
    {
        pg.drop_schema().await?;
    }
    Ok(())
}

/// A `#` note on stderr.
pub fn note(text: String) {
    eprintln!("# {text}");
}
