//! The `serverless` runner: invokes an HTTP-triggered function (a Lambda-style invoke URL)
//! through the `http_request` runner's client and policy.

use super::super::fields::{ConfigReader, Field};
use super::{Body, HttpJob, HttpRunner, HttpRunnerConfig, exec, header_name, header_value};
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner, config_error};
use crate::template::DurationSpec;
use async_trait::async_trait;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

const FIELDS: &[&str] = &["function_url", "payload", "auth_header", "timeout"];
const DEFAULT_AUTH_HEADER: &str = "authorization";
/// How much of a function error's message goes into the job error's message.
const MESSAGE_CHARS: usize = 300;

/// The `serverless` runner: invokes a function over HTTP and returns its JSON response.
///
/// It uses an [`HttpRunner`]'s client and policy: allowed schemes and hosts, the
/// private-network guard, redirects, timeouts and the response size cap of its
/// [`HttpRunnerConfig`].
///
/// Job config:
///
/// | field | meaning |
/// |---|---|
/// | `function_url` | required: the invoke URL |
/// | `payload` | any JSON, sent as the `POST` body (default `{}`) |
/// | `auth_header` | a string, sent as `Authorization`, or `{"name": ..., "value": ...}`; typically `${secrets.NAME}` |
/// | `timeout` | e.g. `"30s"`; default from the host; the job's deadline also applies |
///
/// Output: the function's response body (parsed JSON for a JSON response).
///
/// Errors: failing HTTP statuses map as in `http_request` (408, 429, 5xx retryable, other
/// statuses permanent). A function error reported in a successful response, Lambda style
/// (an `X-Amz-Function-Error` header, or an `errorMessage` field in the body), fails the job:
/// retryably for runtime failures (`errorType` starting with `Runtime.`, or a message saying
/// the task timed out), permanently otherwise. Details: `{"status", "error_type",
/// "error_message", "body"}`.
#[derive(Clone, Debug)]
pub struct ServerlessRunner {
    http: HttpRunner,
}

impl ServerlessRunner {
    /// A runner with these host-side limits (see [`HttpRunner::new`]).
    pub fn new(config: HttpRunnerConfig) -> Result<ServerlessRunner, Error> {
        Ok(ServerlessRunner { http: HttpRunner::new(config)? })
    }

    /// A runner sharing an existing `http_request` runner's client and policy.
    pub fn from_http(http: HttpRunner) -> ServerlessRunner {
        ServerlessRunner { http }
    }
}

#[async_trait]
impl JobRunner for ServerlessRunner {
    fn job_type(&self) -> &str {
        "serverless"
    }

    fn validate_config(&self, config: &Value) -> Result<(), Error> {
        let reader = ConfigReader::raw(config, FIELDS)?;
        if let Field::Value(url) = reader.require::<String>("function_url")?
            && !url.contains("${")
        {
            self.http.parse_url(&url).map_err(|e| rename(e, "url", "function_url"))?;
        }
        if let Some(auth) = reader.get_raw("auth_header")
            && !super::super::fields::is_templated(auth)
        {
            auth_header(auth)?;
        }
        reader.get::<DurationSpec>("timeout")?;
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let reader = ConfigReader::resolved(&ctx.config, FIELDS)?;
        let url_text: String = reader.require("function_url")?.value().unwrap_or_default();
        let url = self.http.run_url(&url_text, "function_url")?;
        let headers = match reader.get_raw("auth_header") {
            Some(auth) => vec![auth_header(auth)?],
            None => Vec::new(),
        };
        let job = HttpJob {
            method: Method::POST,
            url,
            headers,
            body: Body::Json(reader.get_raw("payload").cloned().unwrap_or_else(|| json!({}))),
            timeout: reader.get::<DurationSpec>("timeout")?.value().map(|d| d.0),
            expect_status: None,
            retry_on_status: super::DEFAULT_RETRY_ON_STATUS.to_vec(),
        };
        let response = exec::run(&self.http, job, &ctx).await?;
        function_result(response.value())
    }
}

/// The `http_request` checks name `config.url`; here the field is `function_url`.
fn rename(e: Error, from: &str, to: &str) -> Error {
    let message = e.message();
    let text = message.strip_prefix(&format!("config.{from}: ")).unwrap_or(message);
    config_error(to, text)
}

fn auth_header(value: &Value) -> Result<(HeaderName, HeaderValue), Error> {
    let (name, value) = match value {
        Value::String(_) => (DEFAULT_AUTH_HEADER.to_owned(), value.clone()),
        Value::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| *k != "name" && *k != "value") {
                return Err(config_error("auth_header", format!("unknown field `{unknown}` (expected name, value)")));
            }
            let Some(Value::String(name)) = map.get("name") else {
                return Err(config_error("auth_header", "`name` must be a string"));
            };
            let Some(value) = map.get("value") else {
                return Err(config_error("auth_header", "`value` is required"));
            };
            (name.clone(), value.clone())
        }
        _ => return Err(config_error("auth_header", "must be a string or {name, value}")),
    };
    let rename_headers = |e: Error| rename(e, "headers", "auth_header");
    let header = header_name(&name).map_err(rename_headers)?;
    let mut value = header_value(&name, &value).map_err(rename_headers)?;
    value.set_sensitive(true);
    Ok((header, value))
}

/// A successful HTTP exchange: the function's result, or the error it reported.
fn function_result(response: &Value) -> Result<JobOutput, JobError> {
    let body = response.get("body").cloned().unwrap_or(Value::Null);
    let header_error = response["headers"].get("x-amz-function-error").and_then(Value::as_str);
    let body_error = body.get("errorMessage");
    if header_error.is_none() && body_error.is_none() {
        return Ok(JobOutput::json(body));
    }
    let message = match body_error {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let error_type = body.get("errorType").and_then(Value::as_str).or(header_error).unwrap_or("FunctionError");
    let retryable = error_type.starts_with("Runtime.") || message.contains("Task timed out");
    let shown: String = message.chars().take(MESSAGE_CHARS).collect();
    let text = format!("function error ({error_type}): {shown}");
    let details = json!({
        "status": response.get("status").cloned().unwrap_or(Value::Null),
        "error_type": error_type,
        "error_message": message,
        "body": body,
    });
    let error = if retryable { JobError::retryable(text) } else { JobError::permanent(text) };
    Err(error.with_details(details))
}

#[cfg(test)]
#[path = "serverless_tests.rs"]
mod tests;
