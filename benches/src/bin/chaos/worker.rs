//! Worker mode: one engine instance in its own process, until SIGKILLed (or SIGTERMed).
//! It connects with retries (it may be restarted in the middle of an outage), launches
//! (which runs `recover`) and then only runs jobs and relays the outbox.

use crate::leases::LeaseRecording;
use crate::opts::{Backend, WorkerOptions};
use crate::record::Recorder;
use crate::shapes::ChaosRunner;
use baseshift_core::engine::{Engine, EngineConfig};
use baseshift_core::{EventBus, MemoryTemplateStore, Result, StateStore};
use baseshift_postgres::{Postgres, PostgresConfig};
use baseshift_redis::{RedisConfig, RedisEventBus, RedisStateStore};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Retries `connect` every half second until it succeeds.
pub async fn retrying<T, F, Fut>(what: &str, mut connect: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    loop {
        match connect().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The bus of a run: Redis Streams under the run's prefix, kept long enough to check.
pub async fn bus(url: &str, prefix: &str) -> Result<RedisEventBus> {
    let config = RedisConfig::builder()
        .url(url.to_owned())
        .key_prefix(prefix.to_owned())
        .event_stream_max_len(10_000_000)
        .build()?;
    RedisEventBus::connect(&config).await
}

/// The store of a run at `url` (the schema named `prefix` on Postgres).
pub async fn store(backend: Backend, url: &str, prefix: &str, app: &str) -> Result<Arc<dyn StateStore>> {
    Ok(match backend {
        Backend::Redis => {
            let config = RedisConfig::builder().url(url.to_owned()).key_prefix(prefix.to_owned()).build()?;
            Arc::new(RedisStateStore::connect(&config).await?)
        }
        Backend::Postgres => Arc::new(postgres(url, prefix, app).await?.state_store()),
    })
}

/// A Postgres backend on the run's schema.
pub async fn postgres(url: &str, schema: &str, app: &str) -> Result<Postgres> {
    let config = PostgresConfig::builder()
        .url(url.to_owned())
        .schema(schema.to_owned())
        .application_name(app.to_owned())
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(3))
        .build()?;
    Postgres::connect(&config).await
}

/// Runs the worker until SIGTERM.
pub async fn run(w: WorkerOptions) -> Result<()> {
    let app = format!("{}-worker-{}", w.prefix, w.slot);
    let recorder = Arc::new(
        retrying("connecting the run recorder", || Recorder::connect(w.backend, &w.record_url, &w.prefix)).await,
    );
    let store = retrying("connecting the store", || store(w.backend, &w.store_url, &w.prefix, &app)).await;
    let store = Arc::new(LeaseRecording { inner: store, recorder: recorder.clone() });
    let bus: Arc<dyn EventBus> = Arc::new(retrying("connecting the event bus", || bus(&w.bus_url, &w.prefix)).await);
    let mut config = EngineConfig::default();
    config.poll_interval = Duration::from_millis(200);
    let engine = Engine::builder()
        .config(config)
        .state_store(store)
        .event_bus(bus)
        .template_store(Arc::new(MemoryTemplateStore::new()))
        .runner(ChaosRunner { recorder: Some(recorder) })
        .concurrency(w.concurrency)
        .lease_ttl(Duration::from_millis(w.lease_ms))
        .instance_id(format!("worker-{}", w.slot))
        .build()?;
    let report = retrying("launching (recover)", || engine.launch()).await;
    tracing::info!(pid = std::process::id(), ?report, "worker {} launched", w.slot);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| baseshift_core::Error::internal(format!("installing a SIGTERM handler: {e}")))?;
    term.recv().await;
    tracing::info!("worker {} shutting down", w.slot);
    engine.shutdown().await;
    Ok(())
}
