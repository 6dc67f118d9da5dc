//! [`CachedTemplateStore`]: a Redis cache in front of any [`TemplateStore`].

use crate::config::RedisConfig;
use crate::connection::{self, Conn};
use crate::keys::Keys;
use crate::scripts::SCRIPTS;
use crate::store::{array, text};
use async_trait::async_trait;
use baseshift_core::template::CompiledTemplate;
use baseshift_core::templates::{TemplateStore, TemplateSummary};
use baseshift_core::{Error, ErrorKind, Result, WorkflowTemplate};
use std::time::Duration;

/// A Redis cache in front of a [`TemplateStore`] (e.g. a Postgres one), shared by every
/// instance that uses the same server and key prefix.
///
/// Reads go to Redis first: one round trip reads the template id's *generation* and the
/// entry cached under it. Every `create`, `update` and `delete` sets a new generation
/// once the inner store has the change, so entries cached earlier are never read again,
/// by this instance or any other: after an update returns, no instance serves the old
/// version. Entries expire after the configured TTL (`template_cache_ttl_ms`).
///
/// If Redis cannot be reached, reads fall through to the inner store (nothing is cached);
/// a write whose generation bump fails returns an `Unavailable` error although the inner
/// store has the change (entries cached before it may then be served until they expire).
/// `list` always reads the inner store.
pub struct CachedTemplateStore<S> {
    inner: S,
    conn: Conn,
    keys: Keys,
    ttl: Duration,
}

impl<S> std::fmt::Debug for CachedTemplateStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedTemplateStore")
            .field("key_prefix", &self.keys.prefix())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<S: TemplateStore> CachedTemplateStore<S> {
    /// Connects to Redis with `config` and wraps `inner`.
    pub async fn connect(inner: S, config: &RedisConfig) -> Result<Self> {
        config.validate()?;
        let conn = connection::connect(config).await?;
        Ok(CachedTemplateStore { inner, conn, keys: Keys::new(&config.key_prefix), ttl: config.template_cache_ttl() })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Reads the generation and the cached entry in one round trip.
    async fn lookup(&self, template_id: &str, entry: &str) -> Result<(String, Option<String>)> {
        const OP: &str = "TemplateStore::get";
        let fresh = uuid::Uuid::now_v7().simple().to_string();
        let entry_prefix = self.keys.cache_entry_prefix(template_id);
        let gen_key = [self.keys.cache_generation(template_id)];
        let reply = self.conn.script(&SCRIPTS.cache_get, &gen_key, &[&fresh, &entry_prefix, entry], OP).await?;
        let items = array(OP, reply)?;
        let generation = items.first().and_then(text).ok_or_else(|| crate::error::bad_reply(OP, "no generation"))?;
        Ok((generation, items.get(1).and_then(text)))
    }

    async fn store_entry(&self, template_id: &str, generation: &str, entry: &str, json: &str) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.cache_entry(template_id, generation, entry))
            .arg(json)
            .arg("PX")
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        self.conn.query::<()>(&cmd, "TemplateStore::get").await
    }

    /// Sets a new generation after a write of `template_id` reached the inner store.
    async fn invalidate(&self, template_id: &str, op: &'static str) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.cache_generation(template_id)).arg(uuid::Uuid::now_v7().simple().to_string());
        self.conn.query::<()>(&cmd, op).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "template `{template_id}` was stored, but its cache entries could not be invalidated \
                     (they expire within {:?}): {}",
                    self.ttl,
                    e.message()
                ),
            )
            .with_operation(op)
            .with_backend(crate::BACKEND)
        })
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: TemplateStore> TemplateStore for CachedTemplateStore<S> {
    async fn create(&self, template: &WorkflowTemplate) -> Result<()> {
        self.inner.create(template).await?;
        self.invalidate(&template.template_id, "TemplateStore::create").await
    }

    async fn get(&self, template_id: &str, version: Option<&semver::Version>) -> Result<WorkflowTemplate> {
        let entry = version.map_or_else(|| "latest".to_owned(), |v| format!("v{v}"));
        let generation = match self.lookup(template_id, &entry).await {
            Ok((generation, Some(json))) => match serde_json::from_str(&json) {
                Ok(template) => return Ok(template),
                Err(e) => {
                    tracing::warn!(template_id, error = %e, "dropping an unreadable template cache entry");
                    Some(generation)
                }
            },
            Ok((generation, None)) => Some(generation),
            Err(e) => {
                tracing::warn!(template_id, error = %e, "template cache unavailable; reading the inner store");
                None
            }
        };
        let template = self.inner.get(template_id, version).await?;
        // Cached under the generation read before the inner read: if a write happened in
        // between, the entry sits under a superseded generation and is never served.
        if let Some(generation) = generation {
            match serde_json::to_string(&template) {
                Ok(json) => {
                    if let Err(e) = self.store_entry(template_id, &generation, &entry, &json).await {
                        tracing::warn!(template_id, error = %e, "caching a template failed");
                    }
                }
                Err(e) => tracing::warn!(template_id, error = %e, "template does not serialize; not cached"),
            }
        }
        Ok(template)
    }

    /// Through the cache, as [`get`](TemplateStore::get) (not the inner store's own
    /// `get_shared`, which would bypass it).
    async fn get_shared(
        &self,
        template_id: &str,
        version: Option<&semver::Version>,
    ) -> Result<std::sync::Arc<WorkflowTemplate>> {
        self.get(template_id, version).await.map(std::sync::Arc::new)
    }

    async fn update(&self, template: &WorkflowTemplate) -> Result<()> {
        self.inner.update(template).await?;
        self.invalidate(&template.template_id, "TemplateStore::update").await
    }

    /// The inner store's own `create_compiled`, then the cache is invalidated.
    async fn create_compiled(&self, compiled: &CompiledTemplate) -> Result<()> {
        self.inner.create_compiled(compiled).await?;
        self.invalidate(&compiled.template().template_id, "TemplateStore::create").await
    }

    /// The inner store's own `update_compiled`, then the cache is invalidated.
    async fn update_compiled(&self, compiled: &CompiledTemplate) -> Result<()> {
        self.inner.update_compiled(compiled).await?;
        self.invalidate(&compiled.template().template_id, "TemplateStore::update").await
    }

    async fn list(&self) -> Result<Vec<TemplateSummary>> {
        self.inner.list().await
    }

    async fn delete(&self, template_id: &str) -> Result<()> {
        self.inner.delete(template_id).await?;
        self.invalidate(template_id, "TemplateStore::delete").await
    }
}
