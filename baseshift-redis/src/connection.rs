//! The multiplexed connection shared by every call of a store, and its wake-up listener.

use crate::config::RedisConfig;
use crate::error::map_redis;
use baseshift_core::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Script, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A cheap-to-clone handle on one multiplexed, self-reconnecting connection.
#[derive(Clone)]
pub(crate) struct Conn {
    manager: ConnectionManager,
}

fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.command_timeout()))
        .set_connection_timeout(Some(config.connect_timeout()))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(1))
}

fn unreachable_hint(e: baseshift_core::Error, config: &RedisConfig) -> baseshift_core::Error {
    let message = format!("connecting to {}: {}", crate::config::redact_url(&config.url), e.message());
    baseshift_core::Error::new(e.kind(), message).with_operation("connect").with_backend(crate::BACKEND)
}

/// A plain connection (the template cache's).
pub(crate) async fn connect(config: &RedisConfig) -> Result<Conn> {
    let client = config.client()?;
    let manager = ConnectionManager::new_with_config(client, manager_config(config))
        .await
        .map_err(|e| unreachable_hint(map_redis(e, "connect"), config))?;
    Ok(Conn { manager })
}

/// A RESP3 connection subscribed to `channel`: each message wakes one waiter of `wake`
/// (or the next to wait) and every current one. Push messages share the connection with
/// commands, so no connection is held by a blocking read.
pub(crate) async fn connect_with_wakeups(config: &RedisConfig, channel: &str, wake: Arc<Notify>) -> Result<Conn> {
    let info = config.client()?.get_connection_info().clone();
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    let info = info.set_redis_settings(settings).into_connection_info().map_err(|e| map_redis(e, "connect"))?;
    let client = redis::Client::open(info).map_err(|e| map_redis(e, "connect"))?;
    let on_push = move |push: PushInfo| {
        if matches!(push.kind, PushKind::Message) {
            wake.notify_waiters();
            wake.notify_one();
        }
        Ok::<(), Infallible>(())
    };
    let config_with_push = manager_config(config).set_push_sender(on_push).set_automatic_resubscription();
    let mut manager = ConnectionManager::new_with_config(client, config_with_push)
        .await
        .map_err(|e| unreachable_hint(map_redis(e, "connect"), config))?;
    manager.subscribe(channel).await.map_err(|e| unreachable_hint(map_redis(e, "connect"), config))?;
    Ok(Conn { manager })
}

impl Conn {
    /// Runs `script` (EVALSHA, loading it on first use) and returns its raw reply.
    pub(crate) async fn script(
        &self,
        script: &Script,
        keys: &[String],
        args: &[&str],
        op: &'static str,
    ) -> Result<Value> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut manager = self.manager.clone();
        invocation.invoke_async(&mut manager).await.map_err(|e| map_redis(e, op))
    }

    /// Loads `script` into the server's script cache (after a `NOSCRIPT` answer).
    pub(crate) async fn load(&self, script: &Script, op: &'static str) -> Result<()> {
        let mut manager = self.manager.clone();
        script.prepare_invoke().load_async(&mut manager).await.map(|_| ()).map_err(|e| map_redis(e, op))
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd, op: &'static str) -> Result<T> {
        let mut manager = self.manager.clone();
        cmd.query_async(&mut manager).await.map_err(|e| map_redis(e, op))
    }

    /// Runs a pipeline whose commands may fail one by one: one answer per command.
    pub(crate) async fn pipeline_each(
        &self,
        mut pipe: redis::Pipeline,
        op: &'static str,
    ) -> Result<Vec<redis::RedisResult<Value>>> {
        let mut manager = self.manager.clone();
        pipe.ignore_errors();
        pipe.query_async(&mut manager).await.map_err(|e| map_redis(e, op))
    }

    /// Runs a pipeline (one round trip, not a transaction).
    pub(crate) async fn pipeline<T: FromRedisValue>(&self, pipe: &redis::Pipeline, op: &'static str) -> Result<T> {
        let mut manager = self.manager.clone();
        pipe.query_async(&mut manager).await.map_err(|e| map_redis(e, op))
    }
}
