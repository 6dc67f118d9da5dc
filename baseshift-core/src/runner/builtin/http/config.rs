//! [`HttpRunnerConfig`]: the host-side policy of the `http_request` (and `serverless`)
//! runner, built in code or loaded from YAML/JSON at start-up.

use super::super::settings::{self, ByteSize};
use super::breaker::HostBreakerSettings;
use super::netguard::NetGuard;
use super::policy::UrlPolicy;
use crate::error::Error;
use crate::template::DurationSpec;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Host-side limits of the `http_request` runner.
///
/// By default requests may not reach private, loopback or link-local addresses
/// (`10/8`, `172.16/12`, `192.168/16`, `127/8`, `169.254/16`, `100.64/10`, `0/8`, `::1`, `::`,
/// `fc00::/7`, `fe80::/10`, and IPv4-mapped forms of these). The check runs on IP literals
/// in the URL and on every address a host name resolves to, for the request and each
/// redirect; the connection goes only to checked addresses. While the check is on, proxies
/// from the environment (`HTTP_PROXY`, ...) are not used, since a proxy would resolve the
/// host itself. Open it with [`allow_private_networks`](Self::allow_private_networks) or,
/// narrowly, [`allow_private`](Self::allow_private).
///
/// ```
/// use baseshift_core::runner::builtin::{HttpRunner, HttpRunnerConfig};
/// use std::time::Duration;
///
/// let runner = HttpRunner::new(
///     HttpRunnerConfig::default()
///         .allow_host("api.example.com")
///         .allow_host("*.payments.example.com")
///         .default_timeout(Duration::from_secs(10)),
/// )?;
/// # Ok::<(), baseshift_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpRunnerConfig {
    /// Host patterns a request (and every redirect) may go to: `api.example.com`, or
    /// `*.example.com` for any subdomain. `None` (the default): any host.
    pub allowed_hosts: Option<Vec<String>>,
    /// URL schemes a request may use; default `http` and `https`.
    pub allowed_schemes: Vec<String>,
    /// The timeout of jobs that set none; default 30 s (the job's deadline still applies).
    pub default_timeout: Duration,
    /// The largest response body accepted; default 1 MiB. A larger successful response
    /// fails the job permanently.
    pub max_response_bytes: usize,
    /// The `User-Agent` header; default `baseshift/<version>`.
    pub user_agent: String,
    /// Whether requests may reach private, loopback and link-local addresses; default `false`.
    pub allow_private_networks: bool,
    /// CIDR blocks (`10.1.0.0/16`), addresses, or host patterns (`db.internal`,
    /// `*.svc.cluster.local`) that may be private although `allow_private_networks` is off.
    pub private_network_allowlist: Vec<String>,
    /// A circuit breaker per host (see [`host_breaker`](Self::host_breaker)); default none.
    pub host_breaker: Option<HostBreakerSettings>,
}

impl Default for HttpRunnerConfig {
    fn default() -> Self {
        HttpRunnerConfig {
            allowed_hosts: None,
            allowed_schemes: vec!["http".to_owned(), "https".to_owned()],
            default_timeout: Duration::from_secs(30),
            max_response_bytes: 1024 * 1024,
            user_agent: concat!("baseshift/", env!("CARGO_PKG_VERSION")).to_owned(),
            allow_private_networks: false,
            private_network_allowlist: Vec::new(),
            host_breaker: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostBreakerDoc {
    failures: u32,
    cool_down: DurationSpec,
}

/// The document shape: `{execution_type: http, security: {...}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HttpDocument {
    execution_type: Option<String>,
    security: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HttpSecurity {
    allowed_hosts: Option<Vec<String>>,
    allowed_schemes: Option<Vec<String>>,
    allow_private_networks: bool,
    private_network_allowlist: Vec<String>,
    default_timeout: Option<DurationSpec>,
    max_response_bytes: Option<ByteSize>,
    user_agent: Option<String>,
    host_breaker: Option<HostBreakerDoc>,
}

impl HttpRunnerConfig {
    /// Loads and [validates](Self::validate) a config from YAML, in the shape
    ///
    /// ```yaml
    /// execution_type: http            # optional; the only supported value
    /// security:
    ///   allowed_hosts: [api.example.com, "*.payments.example.com"]
    ///   allowed_schemes: [https]
    ///   allow_private_networks: false
    ///   private_network_allowlist: [10.1.0.0/16, db.internal]
    ///   default_timeout: 10s
    ///   max_response_bytes: 1MiB
    ///   user_agent: my-host/1.0
    ///   host_breaker: { failures: 5, cool_down: 30s }   # optional
    /// ```
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the
    /// field (e.g. `http.security.allowed_hosts`).
    pub fn from_yaml(src: &str) -> Result<Self, Error> {
        Self::from_value(&settings::yaml_value(src, "http")?)
    }

    /// Loads and validates a config from JSON, in the shape of [`from_yaml`](Self::from_yaml).
    pub fn from_json(src: &str) -> Result<Self, Error> {
        Self::from_value(&settings::json_value(src, "http")?)
    }

    fn from_value(value: &Value) -> Result<Self, Error> {
        let doc: HttpDocument = settings::decode(value, "http")?;
        if let Some(kind) = doc.execution_type.as_deref()
            && kind != "http"
        {
            return Err(settings::invalid("http.execution_type", format!("`{kind}` is not supported (only `http`)")));
        }
        let s: HttpSecurity = settings::decode(&doc.security, "http.security")?;
        let defaults = HttpRunnerConfig::default();
        let max_response_bytes = match s.max_response_bytes {
            Some(ByteSize(n)) => usize::try_from(n)
                .map_err(|_| settings::invalid("http.security.max_response_bytes", "too large for this platform"))?,
            None => defaults.max_response_bytes,
        };
        let config = HttpRunnerConfig {
            allowed_hosts: s.allowed_hosts,
            allowed_schemes: s.allowed_schemes.unwrap_or(defaults.allowed_schemes),
            default_timeout: s.default_timeout.map_or(defaults.default_timeout, |d| d.0),
            max_response_bytes,
            user_agent: s.user_agent.unwrap_or(defaults.user_agent),
            allow_private_networks: s.allow_private_networks,
            private_network_allowlist: s.private_network_allowlist,
            host_breaker: s
                .host_breaker
                .map(|b| HostBreakerSettings { failures: b.failures, cool_down: b.cool_down.0 }),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks host patterns, the private-network allowlist, the user agent and the timeout,
    /// as [`HttpRunner::new`](super::HttpRunner::new) does. Errors name the field.
    pub fn validate(&self) -> Result<(), Error> {
        self.policy()?;
        reqwest::header::HeaderValue::from_str(&self.user_agent)
            .map_err(|e| settings::invalid("http.security.user_agent", e))?;
        if self.default_timeout.is_zero() {
            return Err(settings::invalid("http.security.default_timeout", "must be greater than zero"));
        }
        if let Some(b) = &self.host_breaker {
            if b.failures == 0 {
                return Err(settings::invalid("http.security.host_breaker.failures", "must be at least 1"));
            }
            if b.cool_down.is_zero() {
                return Err(settings::invalid("http.security.host_breaker.cool_down", "must be greater than zero"));
            }
        }
        Ok(())
    }

    pub(super) fn guard(&self) -> Result<Arc<NetGuard>, Error> {
        NetGuard::new(self.allow_private_networks, &self.private_network_allowlist).map(Arc::new)
    }

    pub(super) fn policy(&self) -> Result<UrlPolicy, Error> {
        UrlPolicy::new(self.allowed_hosts.as_deref(), &self.allowed_schemes, self.guard()?)
    }

    /// Lets requests reach private, loopback and link-local addresses (or forbids it again).
    #[must_use]
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.allow_private_networks = allow;
        self
    }

    /// Lets one CIDR block, address or host pattern be private (e.g. `10.1.0.0/16`, `db.internal`).
    #[must_use]
    pub fn allow_private(mut self, entry: impl Into<String>) -> Self {
        self.private_network_allowlist.push(entry.into());
        self
    }

    /// Adds a host pattern to the allowlist (creating it: from then on, only listed hosts).
    #[must_use]
    pub fn allow_host(mut self, pattern: impl Into<String>) -> Self {
        self.allowed_hosts.get_or_insert_with(Vec::new).push(pattern.into());
        self
    }

    /// Sets the allowed URL schemes (replacing the default `http`, `https`).
    #[must_use]
    pub fn allowed_schemes<I, S>(mut self, schemes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_schemes = schemes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the timeout of jobs that set none.
    #[must_use]
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Sets the largest accepted response body.
    #[must_use]
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Adds a circuit breaker per host: after `failures` consecutive failed requests to
    /// one host (connection errors, timeouts, 5xx responses), requests to it wait for
    /// `cool_down`, then one probe goes; a healthy answer (any status below 500) closes
    /// the breaker, a failure opens it again. Waiting jobs stay `RUNNING` and do not fail
    /// (their own timeout still applies); opening and closing are logged (`tracing` warn).
    #[must_use]
    pub fn host_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.host_breaker = Some(HostBreakerSettings { failures, cool_down });
        self
    }

    /// Sets the `User-Agent` header.
    #[must_use]
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }
}
