//! The Redis backend for the durable scenarios, and its raw-command baseline.

use crate::cli::Options;
use crate::durable::{Durable, Fresh};
use crate::report::note;
use async_trait::async_trait;
use baseshift_core::{Error, ErrorKind, Result, StateStore};
use baseshift_redis::{RedisConfig, RedisStateStore};
use std::sync::Arc;

/// Redis at the URL of `BASESHIFT_REDIS_URL` (default `redis://127.0.0.1:6379`); every
/// fresh store gets its own key prefix under `prefix`.
pub struct Redis {
    url: String,
    prefix: String,
    client: redis::Client,
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::new(ErrorKind::Unavailable, format!("redis: {e} (scripts/services.sh starts a local Redis)"))
}

impl Redis {
    /// Connects a client for the counters and notes the server's persistence settings.
    pub async fn connect(prefix: String) -> Result<Redis> {
        let url = RedisConfig::from_env().url;
        let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
        let redis = Redis { url, prefix, client };
        let mut con = redis.client.get_multiplexed_async_connection().await.map_err(unavailable)?;
        let mut settings = Vec::new();
        for key in ["appendonly", "appendfsync", "save"] {
            let pair: Vec<String> =
                redis::cmd("CONFIG").arg("GET").arg(key).query_async(&mut con).await.map_err(unavailable)?;
            settings.push(pair.join("="));
        }
        note(format!("redis server settings: {}", settings.join(" ")));
        Ok(redis)
    }

    /// The raw `HSET` + `PUBLISH` baselines.
    pub async fn baselines(&self, opts: &Options) -> Result<()> {
        crate::baselines::redis(&self.url, &format!("{}-raw", self.prefix), opts.size(20_000, 100)).await
    }
}

struct FreshRedis(Arc<RedisStateStore>);

#[async_trait(?Send)]
impl Fresh for FreshRedis {
    fn store(&self) -> Arc<dyn StateStore> {
        self.0.clone()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.0.purge().await.map(|_| ())
    }
}

#[async_trait(?Send)]
impl Durable for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn open(&self, tag: &str) -> Result<Box<dyn Fresh>> {
        let config =
            RedisConfig::builder().url(self.url.clone()).key_prefix(format!("{}-{tag}", self.prefix)).build()?;
        let store = RedisStateStore::connect(&config).await?;
        store.purge().await?;
        Ok(Box::new(FreshRedis(Arc::new(store))))
    }

    async fn counter(&self) -> Result<(u64, &'static str)> {
        let mut con = self.client.get_multiplexed_async_connection().await.map_err(unavailable)?;
        let info: String = redis::cmd("INFO").arg("stats").query_async(&mut con).await.map_err(unavailable)?;
        let total = info
            .lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::internal("redis INFO stats has no total_commands_processed"))?;
        Ok((total, "redis commands (Lua-internal calls included)"))
    }
}
