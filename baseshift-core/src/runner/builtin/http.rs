//! The `http_request` runner: sends one HTTP request.

mod breaker;
mod config;
mod exec;
mod netguard;
mod policy;
mod serverless;

pub use breaker::HostBreakerSettings;
pub use config::HttpRunnerConfig;
pub use serverless::ServerlessRunner;

use super::fields::{ConfigReader, Field};
use crate::error::{Error, ErrorKind};
use crate::runner::{JobContext, JobError, JobOutput, JobRunner, config_error};
use crate::template::DurationSpec;
use async_trait::async_trait;
use policy::UrlPolicy;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const FIELDS: &[&str] =
    &["url", "method", "headers", "body", "body_text", "timeout", "expect_status", "retry_on_status", "query"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
const DEFAULT_RETRY_ON_STATUS: &[u16] = &[408, 429, 500, 502, 503, 504];

/// The `http_request` runner: sends one HTTP request and maps its status to success,
/// a retryable failure or a permanent one.
///
/// Job config:
///
/// | field | meaning |
/// |---|---|
/// | `url` | required; its scheme and host must be allowed by the host |
/// | `method` | `GET` (default), `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD` |
/// | `headers` | `{name: value}` |
/// | `query` | `{name: value}`, appended to the URL's query string |
/// | `body` | any JSON, sent as `application/json` |
/// | `body_text` | a string sent as is (instead of `body`) |
/// | `timeout` | e.g. `"10s"`; default from the host; the job's deadline also applies |
/// | `expect_status` | statuses that mean success; default any 2xx |
/// | `retry_on_status` | failing statuses worth a retry; default 408, 429, 500, 502, 503, 504 |
///
/// Every request carries `Idempotency-Key: <workflow id>/<job id>` unless the job sets
/// that header. Connection errors and timeouts are retryable. Redirects are followed
/// (at most 10) only to allowed schemes and hosts. URLs with user info (`user@host`) are
/// refused, and so (unless allowed, see [`HttpRunnerConfig`]) is every request or redirect
/// to a private, loopback or link-local address; these violations are permanent errors
/// naming the rule (`http.allow_private_networks`).
///
/// Output: `{"status", "headers", "body"}`, where `headers` holds a few safe response
/// headers by lower-case name (`content-type`, `etag`, `location`, ...) and `body` is the
/// parsed JSON for a JSON response, else the text (`null` when empty). A failing status
/// carries the same object (body cut to 4 KiB) as the error's details.
#[derive(Clone, Debug)]
pub struct HttpRunner {
    client: reqwest::Client,
    policy: Arc<UrlPolicy>,
    default_timeout: Duration,
    max_response_bytes: usize,
    breakers: Option<Arc<breaker::HostBreakers>>,
}

impl HttpRunner {
    /// A runner with these host-side limits. Builds the HTTP client; does no I/O.
    ///
    /// Fails with [`ErrorKind::InvalidInput`] on a malformed host pattern or user agent.
    pub fn new(config: HttpRunnerConfig) -> Result<HttpRunner, Error> {
        let guard = config.guard()?;
        let policy = Arc::new(config.policy()?);
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|e| Error::invalid_input(format!("HttpRunnerConfig::user_agent: {e}")))?;
        let mut builder =
            reqwest::Client::builder().user_agent(user_agent).redirect(policy::redirect_policy(Arc::clone(&policy)));
        if guard.is_active() {
            // A proxy would resolve the target itself, out of the guard's sight.
            builder = builder.no_proxy().dns_resolver(Arc::new(netguard::GuardedResolver { guard }));
        }
        let client = builder.build().map_err(|e| {
            Error::new(ErrorKind::Internal, format!("cannot build the HTTP client: {e}"))
                .with_operation("HttpRunner::new")
                .with_source(e)
        })?;
        Ok(HttpRunner {
            client,
            policy,
            default_timeout: config.default_timeout,
            max_response_bytes: config.max_response_bytes,
            breakers: config.host_breaker.map(breaker::HostBreakers::new),
        })
    }
}

/// A request body.
#[derive(Debug)]
enum Body {
    None,
    Json(Value),
    Text(String),
}

/// A job's resolved config.
#[derive(Debug)]
struct HttpJob {
    method: Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Body,
    timeout: Option<Duration>,
    expect_status: Option<Vec<u16>>,
    retry_on_status: Vec<u16>,
}

#[async_trait]
impl JobRunner for HttpRunner {
    fn job_type(&self) -> &str {
        "http_request"
    }

    fn validate_config(&self, config: &Value) -> Result<(), Error> {
        let reader = ConfigReader::raw(config, FIELDS)?;
        if let Field::Value(url) = reader.require::<String>("url")?
            && !url.contains("${")
        {
            self.parse_url(&url)?;
        }
        if let Field::Value(method) = reader.get::<String>("method")?
            && !method.contains("${")
        {
            parse_method(&method)?;
        }
        if let Field::Value(headers) = reader.get::<BTreeMap<String, Value>>("headers")? {
            for (name, value) in &headers {
                if !name.contains("${") {
                    header_name(name)?;
                }
                match value {
                    Value::String(s) if s.contains("${") => {}
                    other => {
                        header_value(name, other)?;
                    }
                }
            }
        }
        if let Field::Value(query) = reader.get::<BTreeMap<String, Value>>("query")? {
            for (name, value) in &query {
                if !super::fields::is_templated(value) {
                    query_value(name, value)?;
                }
            }
        }
        reader.get::<String>("body_text")?;
        if reader.get_raw("body").is_some() && reader.get_raw("body_text").is_some() {
            return Err(config_error("body_text", "set either `body` or `body_text`, not both"));
        }
        reader.get::<DurationSpec>("timeout")?;
        for field in ["expect_status", "retry_on_status"] {
            if let Field::Value(codes) = reader.get::<Vec<u16>>(field)? {
                check_statuses(field, &codes)?;
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let job = self.resolve(&ctx)?;
        exec::run(self, job, &ctx).await
    }
}

impl HttpRunner {
    fn parse_url(&self, url: &str) -> Result<Url, Error> {
        let parsed = Url::parse(url).map_err(|e| config_error("url", format!("invalid URL: {e}")))?;
        self.policy.check(&parsed).map_err(|msg| config_error("url", msg))?;
        Ok(parsed)
    }

    /// A resolved URL at run time, config field `field`: a policy refusal is a
    /// [`JobError::policy_violation`] naming the rule.
    pub(super) fn run_url(&self, url: &str, field: &str) -> Result<Url, JobError> {
        let parsed = Url::parse(url).map_err(|e| config_error(field, format!("invalid URL: {e}")))?;
        self.policy
            .check(&parsed)
            .map_err(|msg| JobError::policy_violation(policy::rule_of(&msg), config_error(field, msg)))?;
        Ok(parsed)
    }

    /// Reads the resolved config; every error is permanent (`Error` kinds here are not retryable).
    fn resolve(&self, ctx: &JobContext) -> Result<HttpJob, JobError> {
        let reader = ConfigReader::resolved(&ctx.config, FIELDS)?;
        let url_text: String = reader.require("url")?.value().unwrap_or_default();
        let mut url = self.run_url(&url_text, "url")?;
        if let Some(query) = reader.get::<BTreeMap<String, Value>>("query")?.value() {
            let values = query.iter().map(|(k, v)| query_value(k, v).map(|v| (k, v))).collect::<Result<Vec<_>, _>>()?;
            if !values.is_empty() {
                let mut pairs = url.query_pairs_mut();
                for (k, v) in values {
                    pairs.append_pair(k, &v);
                }
            }
        }
        let method = match reader.get::<String>("method")?.value() {
            Some(m) => parse_method(&m)?,
            None => Method::GET,
        };
        let mut headers = Vec::new();
        for (name, value) in reader.get::<BTreeMap<String, Value>>("headers")?.value().unwrap_or_default() {
            headers.push((header_name(&name)?, header_value(&name, &value)?));
        }
        let body = match (reader.get_raw("body"), reader.get::<String>("body_text")?.value()) {
            (Some(_), Some(_)) => {
                return Err(config_error("body_text", "set either `body` or `body_text`, not both").into());
            }
            (Some(json), None) => Body::Json(json.clone()),
            (None, Some(text)) => Body::Text(text),
            (None, None) => Body::None,
        };
        let expect_status = reader.get::<Vec<u16>>("expect_status")?.value();
        let retry_on_status =
            reader.get::<Vec<u16>>("retry_on_status")?.value().unwrap_or_else(|| DEFAULT_RETRY_ON_STATUS.to_vec());
        for (field, codes) in
            [("expect_status", expect_status.as_deref().unwrap_or_default()), ("retry_on_status", &retry_on_status)]
        {
            check_statuses(field, codes)?;
        }
        Ok(HttpJob {
            method,
            url,
            headers,
            body,
            timeout: reader.get::<DurationSpec>("timeout")?.value().map(|d| d.0),
            expect_status,
            retry_on_status,
        })
    }
}

fn parse_method(method: &str) -> Result<Method, Error> {
    let upper = method.to_ascii_uppercase();
    if !METHODS.contains(&upper.as_str()) {
        return Err(config_error("method", format!("`{method}` is not one of {}", METHODS.join(", "))));
    }
    Method::from_bytes(upper.as_bytes()).map_err(|e| config_error("method", e))
}

fn header_name(name: &str) -> Result<HeaderName, Error> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|e| config_error("headers", format!("`{name}`: {e}")))
}

fn header_value(name: &str, value: &Value) -> Result<HeaderValue, Error> {
    let text =
        scalar_text(value).ok_or_else(|| config_error("headers", format!("`{name}`: value must be a string")))?;
    HeaderValue::from_str(&text).map_err(|e| config_error("headers", format!("`{name}`: {e}")))
}

fn query_value(name: &str, value: &Value) -> Result<String, Error> {
    scalar_text(value)
        .ok_or_else(|| config_error("query", format!("`{name}`: value must be a string, number or boolean")))
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

fn check_statuses(field: &str, codes: &[u16]) -> Result<(), Error> {
    match codes.iter().find(|c| !(100..=599).contains(*c)) {
        Some(bad) => Err(config_error(field, format!("{bad} is not an HTTP status (100-599)"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod safety_tests;
