//! [`RedisConfig`]: where the Redis server is and how the backend talks to it.

use baseshift_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The environment variable [`RedisConfig::from_env`] reads the server URL from.
pub const ENV_VAR: &str = "BASESHIFT_REDIS_URL";

/// The URL used when neither the builder nor [`ENV_VAR`] names one.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The key prefix used unless one is set.
pub const DEFAULT_PREFIX: &str = "baseshift";

/// Connection settings of the Redis backend.
///
/// `url` is a `redis://` URL (`rediss://` for TLS, which needs the crate feature `tls`),
/// optionally with a user, a password and a database number:
/// `redis://:secret@cache.internal:6379/2`. Every key the backend writes starts with
/// `key_prefix`, so several applications (or parallel tests) can share one server.
///
/// `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server URL (default [`DEFAULT_URL`]).
    pub url: String,
    /// The prefix of every key (default [`DEFAULT_PREFIX`]); no spaces, braces or control characters.
    pub key_prefix: String,
    /// How long one command may take before it fails with a `Timeout` error, in milliseconds.
    pub command_timeout_ms: u64,
    /// How long one connection attempt may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long a [`CachedTemplateStore`](crate::CachedTemplateStore) keeps an entry, in milliseconds.
    pub template_cache_ttl_ms: u64,
    /// How long a [`RedisEventBus`](crate::RedisEventBus) delivery may stay unacknowledged
    /// before another member of its group takes it over, in milliseconds.
    pub event_claim_idle_ms: u64,
    /// About how many events each topic stream of a [`RedisEventBus`](crate::RedisEventBus)
    /// retains (older ones are trimmed).
    pub event_stream_max_len: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: DEFAULT_URL.to_owned(),
            key_prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout_ms: 5_000,
            connect_timeout_ms: 3_000,
            template_cache_ttl_ms: 300_000,
            event_claim_idle_ms: 30_000,
            event_stream_max_len: 1_000_000,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("template_cache_ttl_ms", &self.template_cache_ttl_ms)
            .field("event_claim_idle_ms", &self.event_claim_idle_ms)
            .field("event_stream_max_len", &self.event_stream_max_len)
            .finish()
    }
}

impl RedisConfig {
    /// The defaults, with the URL taken from [`ENV_VAR`] when it is set.
    pub fn from_env() -> Self {
        let mut config = RedisConfig::default();
        if let Ok(url) = std::env::var(ENV_VAR)
            && !url.trim().is_empty()
        {
            config.url = url.trim().to_owned();
        }
        config
    }

    /// A builder starting from [`RedisConfig::from_env`].
    pub fn builder() -> RedisConfigBuilder {
        RedisConfigBuilder { config: RedisConfig::from_env() }
    }

    /// The command timeout.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    /// The connection timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The template cache's entry lifetime.
    pub fn template_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.template_cache_ttl_ms)
    }

    /// How long an event delivery may stay unacknowledged before another member takes it.
    pub fn event_claim_idle(&self) -> Duration {
        Duration::from_millis(self.event_claim_idle_ms)
    }

    /// Checks the settings without connecting: the URL parses (and TLS is compiled in for
    /// `rediss://`), the prefix is usable, the timeouts are positive.
    pub fn validate(&self) -> Result<()> {
        self.client().map(|_| ())?;
        let prefix = &self.key_prefix;
        if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}') {
            return Err(invalid(format!(
                "key_prefix `{prefix}` must be non-empty, without spaces, braces or control characters"
            )));
        }
        for (name, ms) in [
            ("command_timeout_ms", self.command_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("template_cache_ttl_ms", self.template_cache_ttl_ms),
            ("event_claim_idle_ms", self.event_claim_idle_ms),
            ("event_stream_max_len", self.event_stream_max_len),
        ] {
            if ms == 0 {
                return Err(invalid(format!("{name} must be greater than 0")));
            }
        }
        Ok(())
    }

    /// A driver client for the URL (no I/O).
    pub(crate) fn client(&self) -> Result<redis::Client> {
        if self.url.starts_with("rediss://") && !cfg!(feature = "tls") {
            return Err(invalid(format!(
                "`{}` uses TLS: enable the `tls` feature of baseshift-redis",
                redact_url(&self.url)
            )));
        }
        redis::Client::open(self.url.as_str())
            .map_err(|e| invalid(format!("invalid Redis URL `{}`: {e}", redact_url(&self.url))))
    }
}

fn invalid(message: String) -> Error {
    Error::invalid_input(message).with_operation("RedisConfig::validate").with_backend(crate::BACKEND)
}

/// Builds a validated [`RedisConfig`]; [`build`](Self::build) does no I/O.
#[must_use]
#[derive(Clone, Debug)]
pub struct RedisConfigBuilder {
    config: RedisConfig,
}

impl RedisConfigBuilder {
    /// The server URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// The prefix of every key.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// The per-command timeout (rounded to milliseconds).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout_ms = millis(timeout);
        self
    }

    /// The connection timeout (rounded to milliseconds).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout_ms = millis(timeout);
        self
    }

    /// How long the template cache keeps an entry.
    pub fn template_cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.template_cache_ttl_ms = millis(ttl);
        self
    }

    /// How long an event delivery may stay unacknowledged before another group member takes it.
    pub fn event_claim_idle(mut self, idle: Duration) -> Self {
        self.config.event_claim_idle_ms = millis(idle);
        self
    }

    /// About how many events each topic stream retains.
    pub fn event_stream_max_len(mut self, len: u64) -> Self {
        self.config.event_stream_max_len = len;
        self
    }

    /// Validates the settings (see [`RedisConfig::validate`]).
    pub fn build(self) -> Result<RedisConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The URL with its password replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    if !userinfo.contains(':') {
        return url.to_owned();
    }
    format!("{}{user}:***{}", &url[..scheme_end + 3], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use baseshift_core::ErrorKind;

    #[test]
    fn debug_hides_the_password() {
        let config = RedisConfig { url: "redis://app:s3cret@db:6379/2".into(), ..RedisConfig::default() };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://app:***@db:6379/2"), "{shown}");
        assert_eq!(redact_url("redis://:pw@h/0"), "redis://:***@h/0");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("redis://user@h"), "redis://user@h");
    }

    #[test]
    fn builder_validates_without_connecting() {
        let config = RedisConfig::builder()
            .url("redis://10.255.255.1:1")
            .key_prefix("app-1")
            .command_timeout(Duration::from_millis(250))
            .build()
            .unwrap();
        assert_eq!(config.command_timeout(), Duration::from_millis(250));
        assert_eq!(config.key_prefix, "app-1");

        for bad in ["", "a b", "a{b}"] {
            let err = RedisConfig::builder().key_prefix(bad).build().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
        let err = RedisConfig::builder().url("http://nope").build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = RedisConfig::builder().command_timeout(Duration::ZERO).build().unwrap_err();
        assert!(err.message().contains("command_timeout_ms"), "{err}");
    }

    #[test]
    fn tls_urls_need_the_feature() {
        let result = RedisConfig::builder().url("rediss://secure.example:6380").build();
        if cfg!(feature = "tls") {
            assert!(result.is_ok(), "{result:?}");
        } else {
            let err = result.unwrap_err();
            assert!(err.message().contains("`tls` feature"), "{err}");
        }
    }

    #[test]
    fn config_deserializes_with_defaults() {
        let config: RedisConfig = serde_json::from_str(r#"{"key_prefix": "x"}"#).unwrap();
        assert_eq!(config.key_prefix, "x");
        assert_eq!(config.url, DEFAULT_URL);
    }
}
