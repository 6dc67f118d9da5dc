//! Redis backend of baseshift: durable workflow state shared by every engine instance
//! that points at the same server ([`RedisStateStore`]), a Redis cache in front of a
//! template store ([`CachedTemplateStore`]), and an event bus on Redis Streams
//! ([`RedisEventBus`]).
//!
//! # Using it
//!
//! Build a [`RedisConfig`] (the URL comes from `BASESHIFT_REDIS_URL`, default
//! `redis://127.0.0.1:6379`, unless the builder sets one), connect a
//! [`RedisStateStore`], and hand it to the engine. Every copy of the host service that
//! uses the same server and key prefix shares the workflows: any of them can start a
//! workflow, run its jobs, and finish the workflows of a copy that crashed (its leases
//! expire and the jobs are claimed again).
//!
//! ```no_run
//! use baseshift_core::engine::Engine;
//! use baseshift_core::MemoryTemplateStore;
//! use baseshift_redis::{CachedTemplateStore, RedisConfig, RedisEventBus, RedisStateStore};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # async fn run() -> baseshift_core::Result<()> {
//! let config = RedisConfig::builder()
//!     .key_prefix("orders")
//!     .command_timeout(Duration::from_secs(2))
//!     .build()?; // validates, no I/O
//! let store = RedisStateStore::connect(&config).await?;
//! let templates = CachedTemplateStore::connect(MemoryTemplateStore::new(), &config).await?;
//! let bus = RedisEventBus::connect(&config).await?; // optional: events on Redis Streams
//! let engine = Engine::builder()
//!     .state_store(Arc::new(store))
//!     .template_store(Arc::new(templates))
//!     .event_bus(Arc::new(bus))
//!     .build()?;
//! engine.launch().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What it guarantees
//!
//! - Every step of the [`StateStore`](baseshift_core::StateStore) contract is one Lua
//!   script: atomic, one round trip, checking every record version and state transition
//!   before writing (a stale version is `Conflict`, a forbidden transition
//!   `IllegalTransition`, and nothing is written). Concurrent applies share one script
//!   call (up to 64 steps), each step still checked and applied or refused on its own.
//! - Completing a job, making its successors ready and appending the events is one step;
//!   events wait in an outbox (a Redis stream) until the engine's relay publishes them.
//! - Claims take jobs under leases; a lapsed lease makes the job claimable again, so no
//!   two instances run one job at the same time while its lease is valid.
//! - Durability is Redis's: run it with AOF (`appendfsync everysec` or `always`) and a
//!   replica if a lost write matters.
//!
//! # What it does not do
//!
//! - **Redis Cluster is not supported.** One workflow's keys share a hash tag
//!   (`{<workflow id>}`), but the ready queue, lease index and outbox are global keys,
//!   and a claim reads jobs of many workflows. Use one server or a sentinel-fronted
//!   primary.
//! - `rediss://` (TLS) needs the crate feature `tls` (rustls, off by default).
//! - The wake-up channel uses RESP3 push messages (Redis 6 or later); the scripts need
//!   `XAUTOCLAIM` for the event bus (Redis 6.2 or later). Tested on Redis 7.0.
//! - Lease expiry and retry times come from the hosts' clocks: keep them in NTP sync.
//! - [`RedisEventBus`] takes over a departed subscriber's deliveries within about a
//!   second, but one held unacknowledged by a live subscriber for longer than
//!   `event_claim_idle_ms` (30 s) can be delivered twice; with several members of one
//!   group, per-workflow order holds only within each member's share.
//!
//! # Keys and errors
//!
//! Every key starts with the configured prefix (so several applications, or parallel
//! tests, share one server; [`RedisStateStore::purge`] removes a prefix's keys):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:wf:{<id>}` | hash | header JSON, version, status, remaining count, job order |
//! | `<p>:jobs:{<id>}` | hash | one job record per job id: a short head the scripts edit, then its JSON (outputs apart) |
//! | `<p>:out:{<id>}` | hash | job outputs, never rewritten by Lua |
//! | `<p>:tpl:<template>:<version>` | string | template snapshots of running workflows |
//! | `<p>:idem:<key>` | string | idempotency keys |
//! | `<p>:idx:all`, `<p>:idx:<STATUS>` | sorted set | workflow ids, for listing |
//! | `<p>:q:ready`, `<p>:q:delayed`, `<p>:q:leases` | sorted set | the claim queues |
//! | `<p>:outbox`, `<p>:outbox:seq` | stream, counter | events awaiting the relay |
//! | `<p>:wake` | channel | wake-ups of idle engines |
//! | `<p>:tplc:...` | string | [`CachedTemplateStore`] generations and entries |
//! | `<p>:events:<topic>` | stream | [`RedisEventBus`] events (one consumer group per bus group) |
//!
//! Driver errors become core errors: connection failures `Unavailable`, timeouts
//! `Timeout` (for a write the outcome is unknown: re-read before retrying), bad settings
//! or credentials `InvalidInput`; a script's refusal keeps its kind (`Conflict`,
//! `NotFound`, `IllegalTransition`).

mod bus;
mod cache;
mod config;
mod connection;
mod error;
mod keys;
mod scripts;
mod store;

pub use bus::RedisEventBus;
pub use cache::CachedTemplateStore;
pub use config::{DEFAULT_PREFIX, DEFAULT_URL, ENV_VAR, RedisConfig, RedisConfigBuilder};
pub use store::{RedisRetention, RedisStateStore};

/// The backend name in errors and capabilities.
const BACKEND: &str = "redis";
