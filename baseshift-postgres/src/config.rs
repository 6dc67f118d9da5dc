//! [`PostgresConfig`] and its builder: where the database is and how to use it.

use crate::error::BACKEND;
use baseshift_core::template::DurationSpec;
use baseshift_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The environment variable [`PostgresConfig::from_env`] reads the connection URL from.
pub const ENV_VAR: &str = "BASESHIFT_POSTGRES_URL";

/// The URL used when [`ENV_VAR`] is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The schema baseshift's tables live in unless configured otherwise.
pub const DEFAULT_SCHEMA: &str = "baseshift";

/// Settings of the PostgreSQL backend. `PostgresConfig::default()` reads nothing from the
/// environment; use [`PostgresConfig::from_env`] or [`PostgresConfig::builder`].
///
/// TLS is chosen by the URL's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
/// `verify-full`) and needs this crate's `tls` feature; without it, a URL that requires
/// TLS is rejected by [`PostgresBuilder::build`].
///
/// Its `Debug` output hides the password in the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database?sslmode=...`.
    pub url: String,
    /// The schema holding baseshift's tables (created by [`migrate`](crate::Postgres::migrate)).
    /// Lower-case letters, digits and `_`, starting with a letter or `_`, at most 63 bytes.
    pub schema: String,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a free connection (or a new one) before `Unavailable`.
    #[serde(with = "duration")]
    pub acquire_timeout: Duration,
    /// The server-side `statement_timeout` of every connection (`None`: the server's default).
    /// A statement cut off by it is a `Timeout` error: for writes, an unknown outcome.
    #[serde(with = "opt_duration")]
    pub statement_timeout: Option<Duration>,
    /// Whether to `LISTEN` for work notifications (wake-ups of idle engines). Without it,
    /// [`wait_for_work`](baseshift_core::StateStore::wait_for_work) wakes only on this
    /// process's own writes and otherwise sleeps its whole timeout.
    pub listen: bool,
    /// How many workflows [`apply_retention`](crate::PostgresStateStore::apply_retention)
    /// deletes per transaction.
    pub retention_batch: u32,
    /// The `application_name` the server shows for these connections.
    pub application_name: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: DEFAULT_URL.to_owned(),
            schema: DEFAULT_SCHEMA.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Some(Duration::from_secs(30)),
            listen: true,
            retention_batch: 500,
            application_name: "baseshift".to_owned(),
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("listen", &self.listen)
            .field("retention_batch", &self.retention_batch)
            .field("application_name", &self.application_name)
            .finish()
    }
}

impl PostgresConfig {
    /// The defaults, with the URL from [`ENV_VAR`] when it is set.
    pub fn from_env() -> Self {
        let mut config = PostgresConfig::default();
        if let Ok(url) = std::env::var(ENV_VAR)
            && !url.trim().is_empty()
        {
            config.url = url.trim().to_owned();
        }
        config
    }

    /// A builder starting from [`PostgresConfig::from_env`].
    pub fn builder() -> PostgresBuilder {
        PostgresBuilder { config: PostgresConfig::from_env() }
    }

    /// Checks every setting without connecting.
    pub fn validate(&self) -> Result<()> {
        self.connect_options().map(|_| ())
    }

    /// The driver's connection options: the URL's settings plus `search_path`,
    /// `statement_timeout` and `application_name` as startup parameters, so every
    /// connection of the pool works in the configured schema without an extra round trip.
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions> {
        validate_schema(&self.schema)?;
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if self.retention_batch == 0 {
            return Err(invalid("retention_batch", "must be at least 1"));
        }
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(invalid("url", format!("`{}` is not a postgres:// URL", redact(&self.url))));
        }
        let options = PgConnectOptions::from_str(&self.url).map_err(|e| {
            invalid("url", format!("`{}` is not a PostgreSQL URL: {e}", redact(&self.url))).with_source(e)
        })?;
        if !cfg!(feature = "tls") && requires_tls(&self.url) {
            return Err(invalid(
                "url",
                "the URL's sslmode requires TLS: enable the `tls` feature of baseshift-postgres",
            ));
        }
        let mut params: Vec<(&str, String)> = vec![("search_path", format!("\"{}\"", self.schema))];
        if let Some(t) = self.statement_timeout {
            params.push(("statement_timeout", t.as_millis().max(1).to_string()));
        }
        let options = if cfg!(feature = "tls") { options } else { options.ssl_mode(PgSslMode::Disable) };
        Ok(options.options(params).application_name(&self.application_name))
    }
}

/// Builds a [`PostgresConfig`]; [`build`](Self::build) validates it and does no I/O.
///
/// ```
/// use baseshift_postgres::PostgresConfig;
/// use std::time::Duration;
///
/// let config = PostgresConfig::builder()
///     .url("postgres://app:secret@db.internal:5432/app")
///     .schema("orders_workflows")
///     .max_connections(8)
///     .statement_timeout(Some(Duration::from_secs(5)))
///     .build()?;
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), baseshift_core::Error>(())
/// ```
#[must_use]
#[derive(Clone, Debug)]
pub struct PostgresBuilder {
    config: PostgresConfig,
}

impl PostgresBuilder {
    /// The connection URL (`sslmode` in its query selects TLS).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// The schema holding baseshift's tables.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.config.schema = schema.into();
        self
    }

    /// The pool size.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.config.max_connections = n;
        self
    }

    /// How long to wait for a connection.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// The server-side statement timeout (`None`: the server's default).
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.statement_timeout = timeout;
        self
    }

    /// Whether to `LISTEN` for work notifications.
    pub fn listen(mut self, listen: bool) -> Self {
        self.config.listen = listen;
        self
    }

    /// Workflows deleted per retention transaction.
    pub fn retention_batch(mut self, n: u32) -> Self {
        self.config.retention_batch = n;
        self
    }

    /// The `application_name` of the connections.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.config.application_name = name.into();
        self
    }

    /// Validates the settings (no I/O) and returns the config.
    pub fn build(self) -> Result<PostgresConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("PostgresConfig.{field}: {}", message.into())).with_backend(BACKEND)
}

fn validate_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && schema.len() <= 63 && !schema.starts_with("pg_") {
        Ok(())
    } else {
        Err(invalid(
            "schema",
            format!(
                "`{schema}` is not a valid schema name (lower-case letters, digits and `_`, \
                 not starting with a digit or `pg_`, at most 63 bytes)"
            ),
        ))
    }
}

fn requires_tls(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query.split('&').any(|kv| {
        matches!(
            kv.split_once('=').map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_lowercase())),
            Some((k, v)) if (k == "sslmode" || k == "ssl-mode") && matches!(v.as_str(), "require" | "verify-ca" | "verify-full")
        )
    })
}

/// The URL with its password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        DurationSpec(*d).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        DurationSpec::deserialize(d).map(|d| d.0)
    }
}

mod opt_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(DurationSpec).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<DurationSpec>::deserialize(d).map(|d| d.map(|d| d.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let config = PostgresConfig::builder().url("postgres://app:hunter2@db:5432/app?sslmode=disable").build();
        let config = config.unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/app?sslmode=disable"), "{shown}");
        assert_eq!(redact("postgres://postgres@127.0.0.1/test"), "postgres://postgres@127.0.0.1/test");
    }

    #[test]
    fn build_rejects_bad_settings() {
        let bad_schema = PostgresConfig::builder().schema("Robert'); DROP TABLE").build().unwrap_err();
        assert_eq!(bad_schema.kind(), ErrorKind::InvalidInput);
        assert!(bad_schema.message().contains("schema"), "{bad_schema}");
        for schema in ["", "1abc", "pg_catalog", &"a".repeat(64)] {
            assert!(PostgresConfig::builder().schema(schema).build().is_err(), "{schema}");
        }
        let pool = PostgresConfig::builder().max_connections(0).build().unwrap_err();
        assert!(pool.message().contains("max_connections"), "{pool}");
        let url = PostgresConfig::builder().url("mysql://nope").build().unwrap_err();
        assert!(url.message().contains("url"), "{url}");
        assert!(PostgresConfig::builder().schema("tenant_42").build().is_ok());
    }

    #[test]
    fn tls_modes_need_the_feature() {
        let built = PostgresConfig::builder().url("postgres://u@h/db?sslmode=require").build();
        assert_eq!(built.is_ok(), cfg!(feature = "tls"), "{built:?}");
        assert!(requires_tls("postgres://u@h/db?application_name=x&sslmode=verify-full"));
        assert!(!requires_tls("postgres://u@h/db?sslmode=prefer"));
    }

    #[test]
    fn config_round_trips_through_serde() {
        let config = PostgresConfig::builder().schema("s1").statement_timeout(None).build().unwrap();
        let json = serde_json::to_value(&config).unwrap();
        let back: PostgresConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
        let partial: PostgresConfig =
            serde_json::from_value(serde_json::json!({ "schema": "x", "acquire_timeout": "2s" })).unwrap();
        assert_eq!((partial.schema.as_str(), partial.acquire_timeout), ("x", Duration::from_secs(2)));
    }
}
