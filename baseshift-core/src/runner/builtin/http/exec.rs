//! Sending one `http_request` job's request and turning the response into an output or
//! an error.

use super::{Body, HttpJob, HttpRunner};
use crate::runner::{JobContext, JobError, JobOutput};
use crate::template::DurationSpec;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

/// Response headers copied into the output: harmless, and useful to later jobs.
pub(super) const SAFE_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-language",
    "etag",
    "last-modified",
    "location",
    "retry-after",
    "cache-control",
    "x-request-id",
    "x-amz-function-error",
];
/// How much of a failing response's body the error's details keep.
const ERROR_BODY_BYTES: usize = 4096;
const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(super) async fn run(runner: &HttpRunner, job: HttpJob, ctx: &JobContext) -> Result<JobOutput, JobError> {
    let host = job.url.host_str().unwrap_or_default().to_owned();
    // Held back while the host's breaker is open; the request timeout starts after.
    let pass = match &runner.breakers {
        Some(breakers) => Some(breakers.enter(&host, &ctx.cancellation).await?),
        None => None,
    };
    let result = send(runner, job, ctx).await;
    // A cancelled request says nothing about its host.
    if let Some(pass) = pass
        && !ctx.cancellation.is_cancelled()
        && let Some(healthy) = host_verdict(&result)
    {
        pass.record(healthy);
    }
    result
}

/// What a request's result says about its host: `Some(false)` when the host failed to
/// answer (connection error, timeout) or answered 5xx, `Some(true)` for any other answer,
/// `None` when it says nothing (a policy refusal, a bad request built here).
fn host_verdict(result: &Result<JobOutput, JobError>) -> Option<bool> {
    let Err(e) = result else { return Some(true) };
    if e.policy_rule().is_some() {
        return None;
    }
    let details = e.details();
    if let Some(status) = details.and_then(|d| d.get("status")).and_then(Value::as_u64) {
        return Some(status < 500);
    }
    if details.and_then(|d| d.get("timed_out")).is_some() || e.is_retryable() {
        return Some(false);
    }
    None
}

async fn send(runner: &HttpRunner, job: HttpJob, ctx: &JobContext) -> Result<JobOutput, JobError> {
    let timeout = job.timeout.unwrap_or(runner.default_timeout);
    let started = Instant::now();
    let by_timeout = started.checked_add(timeout);
    let deadline = [by_timeout, ctx.deadline].into_iter().flatten().min();
    if ctx.cancellation.is_cancelled() {
        return Err(JobError::retryable("request cancelled before it was sent"));
    }
    let exchange = exchange(runner, job, ctx);
    let bounded = async {
        match deadline {
            Some(at) => timeout_at(at, exchange).await.map_err(|_| timed_out(started.elapsed())),
            None => Ok(exchange.await),
        }
    };
    tokio::select! {
        () = ctx.cancellation.cancelled() => Err(JobError::retryable("request cancelled")),
        result = bounded => result?,
    }
}

fn timed_out(elapsed: Duration) -> JobError {
    let shown = Duration::from_millis(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    JobError::retryable(format!("request timed out after {}", DurationSpec(shown)))
        .with_details(json!({ "timed_out": true }))
}

/// Sends the request and reads the whole (capped) response.
async fn exchange(runner: &HttpRunner, job: HttpJob, ctx: &JobContext) -> Result<JobOutput, JobError> {
    let mut headers = HeaderMap::new();
    for (name, value) in job.headers {
        headers.append(name, value);
    }
    if !headers.contains_key(IDEMPOTENCY_KEY) {
        let key = HeaderValue::from_str(&ctx.idempotency_key())
            .map_err(|e| JobError::permanent(format!("idempotency key is not a valid header value: {e}")))?;
        headers.insert(IDEMPOTENCY_KEY, key);
    }
    let mut request = runner.client.request(job.method, job.url).headers(headers.clone());
    request = match job.body {
        Body::None => request,
        Body::Json(value) => request.json(&value),
        Body::Text(text) => {
            if !headers.contains_key(header::CONTENT_TYPE) {
                request = request.header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
            }
            request.body(text)
        }
    };
    let response = request.send().await.map_err(request_error)?;
    let status = response.status();
    let out_headers = safe_headers(response.headers());
    let is_json = is_json(response.headers());
    let success = match &job.expect_status {
        Some(codes) => codes.contains(&status.as_u16()),
        None => status.is_success(),
    };
    if success {
        let cap = runner.max_response_bytes;
        let declared_too_long = response.content_length().is_some_and(|len| len > cap as u64);
        let (bytes, complete) =
            if declared_too_long { (Vec::new(), false) } else { read_capped(response, cap).await? };
        if !complete {
            return Err(JobError::permanent(format!("response body exceeds the limit of {cap} bytes"))
                .with_details(json!({ "status": status.as_u16(), "headers": out_headers })));
        }
        let body = decode(&bytes, is_json);
        return Ok(JobOutput::json(json!({ "status": status.as_u16(), "headers": out_headers, "body": body })));
    }
    let (bytes, complete) = read_capped(response, ERROR_BODY_BYTES).await.unwrap_or_default();
    let body =
        if complete { decode(&bytes, is_json) } else { Value::String(String::from_utf8_lossy(&bytes).into_owned()) };
    let details = json!({ "status": status.as_u16(), "headers": out_headers, "body": body });
    let message = status_message(status);
    if job.retry_on_status.contains(&status.as_u16()) {
        Err(JobError::retryable(message).with_details(details))
    } else {
        Err(JobError::permanent(message).with_details(details))
    }
}

fn status_message(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP status {} {reason}", status.as_u16()),
        None => format!("HTTP status {}", status.as_u16()),
    }
}

/// Reads at most `cap` bytes; `false` when the body was longer (the rest is not read).
async fn read_capped(mut response: Response, cap: usize) -> Result<(Vec<u8>, bool), JobError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if bytes.len() + chunk.len() > cap {
            let room = cap - bytes.len();
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, true))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

/// JSON when the response says so and parses; otherwise text; `null` when empty.
fn decode(bytes: &[u8], is_json: bool) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if is_json && let Ok(value) = serde_json::from_slice(bytes) {
        return value;
    }
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn safe_headers(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in SAFE_HEADERS {
        if let Some(value) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            out.insert((*name).to_owned(), Value::String(value.to_owned()));
        }
    }
    Value::Object(out)
}

/// Maps a client error. The URL is left out of the message: its query may hold secrets.
fn request_error(e: reqwest::Error) -> JobError {
    let builder_or_redirect = e.is_builder() || e.is_redirect();
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    // A refused address will be refused again: permanent.
    if message.contains(super::netguard::DENIED_MARKER) || message.contains("redirect refused") {
        return JobError::policy_violation(super::policy::rule_of(&message), message);
    }
    if builder_or_redirect { JobError::permanent(message) } else { JobError::retryable(message) }
}
