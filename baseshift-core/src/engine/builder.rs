//! [`EngineBuilder`] and [`EngineConfig`].

use super::flow::{CircuitBreaker, RateLimit};
use super::{Engine, Inner};
use crate::bus::{EventBus, MemoryEventBus};
use crate::error::{Error, Result};
use crate::expr::SecretResolver;
use crate::ids::Name;
use crate::runner::builtin::{DelayRunner, ManualRunner, NoopRunner, WorkflowRunner};
use crate::runner::{JobRunner, RunnerRegistry};
use crate::store::{MemoryStateStore, StateStore};
use crate::templates::{MemoryTemplateStore, TemplateStore};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Engine settings. `EngineConfig::default()` suits an embedded engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EngineConfig {
    /// This instance's name in leases (default: a fresh UUID); its claims and leases share it.
    pub instance_id: Name,
    /// Jobs this instance runs at once.
    pub concurrency: usize,
    /// Per job type limits on this instance.
    pub type_limits: HashMap<String, usize>,
    /// Lease length; renewed every third of it while a job runs.
    #[serde(with = "duration_serde")]
    pub lease_ttl: Duration,
    /// The longest an idle worker sleeps before asking the store again.
    #[serde(with = "duration_serde")]
    pub poll_interval: Duration,
    /// On a durable store (a claim is a round trip), how long the claim loop waits, while
    /// jobs run and fewer than half the slots are free, for more slots to free up, so that
    /// one claim fills several. Zero claims for every freed slot at once.
    #[serde(with = "duration_serde")]
    pub claim_linger: Duration,
    /// On a durable store, how long the event relay waits after relaying a partial batch
    /// before reading the outbox again, so that one read and one acknowledgement carry the
    /// events of several steps. Events reach the bus at most this much later. Zero reads
    /// again at once.
    #[serde(with = "duration_serde")]
    pub relay_linger: Duration,
    /// On a durable store, a workflow this instance starts while it has free slots, its
    /// last claim found no backlog and none of its steps has queued jobs since, has its
    /// ready roots claimed in the create step itself and run here, saving the claim round
    /// trip. They are leased as a claim would lease them
    /// (another instance re-claims them if this one dies). Off: every job goes through a
    /// claim. Never used for jobs with a concurrency key or when type limits, rate limits
    /// or a breaker are set.
    pub local_dispatch: bool,
    /// Largest accepted workflow input, in bytes of JSON.
    pub max_input_bytes: usize,
    /// Largest accepted job output, in bytes of JSON (larger fails the job).
    pub max_output_bytes: usize,
    /// Host environment variables templates may read as `${env.NAME}`.
    pub env_allowlist: HashSet<String>,
    /// Variables the host defines for templates (read as `${env.NAME}` or `${NAME}`);
    /// they take precedence over the process environment.
    pub variables: HashMap<String, String>,
    /// Per job type start-rate limits on this instance.
    pub rate_limits: HashMap<String, RateLimit>,
    /// A circuit breaker applied to each job type on this instance.
    pub circuit_breaker: Option<CircuitBreaker>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            instance_id: uuid::Uuid::now_v7().to_string().into(),
            concurrency: 16,
            type_limits: HashMap::new(),
            lease_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            claim_linger: Duration::from_millis(2),
            relay_linger: Duration::from_millis(2),
            local_dispatch: true,
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            env_allowlist: HashSet::new(),
            variables: HashMap::new(),
            rate_limits: HashMap::new(),
            circuit_breaker: None,
        }
    }
}

pub(crate) mod duration_serde {
    use crate::template::DurationSpec;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        DurationSpec(*d).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        DurationSpec::deserialize(d).map(|d| d.0)
    }
}

/// Builds an [`Engine`]. `build()` validates and does no I/O; call
/// [`Engine::launch`] to recover and start the workers.
#[must_use]
pub struct EngineBuilder {
    config: EngineConfig,
    store: Option<Arc<dyn StateStore>>,
    bus: Option<Arc<dyn EventBus>>,
    templates: Option<Arc<dyn TemplateStore>>,
    runners: Vec<Arc<dyn JobRunner>>,
    secrets: Option<Arc<dyn SecretResolver>>,
    builtins: bool,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            config: EngineConfig::default(),
            store: None,
            bus: None,
            templates: None,
            runners: Vec::new(),
            secrets: None,
            builtins: true,
        }
    }
}

impl EngineBuilder {
    /// Replaces the whole config.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The state store (default: [`MemoryStateStore`]).
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The event bus (default: [`MemoryEventBus`]).
    pub fn event_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The template store (default: [`MemoryTemplateStore`]).
    pub fn template_store(mut self, templates: Arc<dyn TemplateStore>) -> Self {
        self.templates = Some(templates);
        self
    }

    /// Registers a job runner.
    pub fn runner(mut self, runner: impl JobRunner) -> Self {
        self.runners.push(Arc::new(runner));
        self
    }

    /// Registers a shared job runner.
    pub fn runner_arc(mut self, runner: Arc<dyn JobRunner>) -> Self {
        self.runners.push(runner);
        self
    }

    /// Leaves out the built-in `noop`, `delay`, `manual` and `workflow` runners.
    pub fn without_builtin_runners(mut self) -> Self {
        self.builtins = false;
        self
    }

    /// The resolver for `${secrets.NAME}`.
    pub fn secrets(mut self, resolver: Arc<dyn SecretResolver>) -> Self {
        self.secrets = Some(resolver);
        self
    }

    /// Jobs run at once by this instance.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// At most `n` jobs of `job_type` at once on this instance.
    pub fn type_limit(mut self, job_type: impl Into<String>, n: usize) -> Self {
        self.config.type_limits.insert(job_type.into(), n);
        self
    }

    /// The lease length.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }

    /// This instance's name.
    pub fn instance_id(mut self, id: impl Into<Name>) -> Self {
        self.config.instance_id = id.into();
        self
    }

    /// Host environment variables templates may read.
    pub fn allow_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.env_allowlist.extend(names.into_iter().map(Into::into));
        self
    }

    /// At most `limit.per_second` starts per second of `job_type` on this instance.
    pub fn rate_limit(mut self, job_type: impl Into<String>, limit: RateLimit) -> Self {
        self.config.rate_limits.insert(job_type.into(), limit);
        self
    }

    /// Holds back a job type after consecutive failures (see [`CircuitBreaker`]).
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.config.circuit_breaker = Some(breaker);
        self
    }

    /// Defines a variable templates read as `${env.NAME}` (or `${NAME}`), without touching
    /// the process environment.
    pub fn variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.variables.insert(name.into(), value.into());
        self
    }

    /// Validates the settings and builds the engine (no I/O, nothing spawned).
    pub fn build(mut self) -> Result<Engine> {
        let names: Vec<String> = self.config.variables.keys().cloned().collect();
        self.config.env_allowlist.extend(names);
        let c = &self.config;
        if c.concurrency == 0 {
            return Err(Error::invalid_input("EngineConfig.concurrency must be at least 1"));
        }
        if let Some((ty, _)) = c.type_limits.iter().find(|(_, n)| **n == 0) {
            return Err(Error::invalid_input(format!("EngineConfig.type_limits[{ty}] must be at least 1")));
        }
        if c.lease_ttl < Duration::from_millis(100) {
            return Err(Error::invalid_input("EngineConfig.lease_ttl must be at least 100ms"));
        }
        if let Some((ty, r)) =
            c.rate_limits.iter().find(|(_, r)| !(r.per_second.is_finite() && r.per_second > 0.0) || r.burst == 0)
        {
            return Err(Error::invalid_input(format!(
                "EngineConfig.rate_limits[{ty}]: per_second must be > 0 and burst >= 1 (got {} and {})",
                r.per_second, r.burst
            )));
        }
        if c.circuit_breaker.is_some_and(|b| b.failure_threshold == 0) {
            return Err(Error::invalid_input("EngineConfig.circuit_breaker.failure_threshold must be at least 1"));
        }
        if c.instance_id.is_empty() {
            return Err(Error::invalid_input("EngineConfig.instance_id must not be empty"));
        }
        let mut registry = RunnerRegistry::new();
        if self.builtins {
            let builtins: [Arc<dyn JobRunner>; 4] =
                [Arc::new(NoopRunner), Arc::new(DelayRunner), Arc::new(ManualRunner), Arc::new(WorkflowRunner)];
            for r in builtins {
                if !self.runners.iter().any(|x| x.job_type() == r.job_type()) {
                    registry.register(r)?;
                }
            }
        }
        for r in self.runners {
            registry.register(r)?;
        }
        let inner = Inner::new(
            self.config,
            self.store.unwrap_or_else(|| Arc::new(MemoryStateStore::new())),
            self.bus.unwrap_or_else(|| Arc::new(MemoryEventBus::new())),
            self.templates.unwrap_or_else(|| Arc::new(MemoryTemplateStore::new())),
            registry,
            self.secrets,
        );
        Ok(Engine { inner: Arc::new(inner) })
    }
}
