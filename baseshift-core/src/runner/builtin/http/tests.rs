use super::*;
use axum::body::{Body as ServerBody, Bytes};
use axum::http::{HeaderMap, Method as ServerMethod, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::time::Instant;

const BIG: usize = 2 * 1024 * 1024;

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A real HTTP server on a free local port, serving the routes of [`handle`].
async fn server() -> Server {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move |method: ServerMethod, uri: Uri, headers: HeaderMap, body: Bytes| {
        counter.fetch_add(1, Ordering::SeqCst);
        handle(method, uri, headers, body)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { base: format!("http://{addr}"), hits }
}

async fn handle(method: ServerMethod, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({ "error": format!("status {code}") }).to_string();
        return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    match path {
        "/json" => axum::Json(json!({"hello": "world", "n": [1, 2]})).into_response(),
        "/echo" => {
            let headers: Map<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.to_str().unwrap_or_default().to_owned())))
                .collect();
            let body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            axum::Json(json!({"method": method.as_str(), "query": uri.query(), "headers": headers, "body": body}))
                .into_response()
        }
        "/text" => ([(header::CONTENT_TYPE, "text/plain"), (header::ETAG, "\"v1\"")], "plain text").into_response(),
        "/empty" => StatusCode::NO_CONTENT.into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late".into_response()
        }
        "/big" => "x".repeat(BIG).into_response(),
        "/big-stream" => {
            let chunks = (0..BIG / 65536).map(|_| Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'y'; 65536])));
            ServerBody::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        "/redirect-out" => (StatusCode::FOUND, [(header::LOCATION, "http://blocked.example/")]).into_response(),
        "/redirect-in" => (StatusCode::FOUND, [(header::LOCATION, "/json")]).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The test servers listen on 127.0.0.1: private networks must be allowed explicitly.
fn runner(config: HttpRunnerConfig) -> HttpRunner {
    HttpRunner::new(config.allow_private_networks(true)).unwrap()
}

fn default_runner() -> HttpRunner {
    runner(HttpRunnerConfig::default())
}

fn ctx(config: Value) -> JobContext {
    JobContext::new("wf-1", "call", "http_request", config)
}

async fn run_ok(r: &HttpRunner, config: Value) -> Value {
    r.validate_config(&config).unwrap();
    r.run(ctx(config)).await.unwrap().value().clone()
}

#[tokio::test]
async fn get_json_returns_status_headers_and_parsed_body() {
    let s = server().await;
    let out = run_ok(&default_runner(), json!({"url": s.url("/json")})).await;
    assert_eq!(out["status"], json!(200));
    assert_eq!(out["body"], json!({"hello": "world", "n": [1, 2]}));
    assert_eq!(out["headers"]["content-type"], json!("application/json"));
    let headers = out["headers"].as_object().unwrap();
    assert!(headers.keys().all(|k| super::exec::SAFE_HEADERS.contains(&k.as_str())), "{headers:?}");
    // The server sends a `date` header; it is not on the list, so it is left out.
    assert!(!headers.contains_key("date"));
}

#[tokio::test]
async fn text_and_empty_bodies() {
    let s = server().await;
    let r = default_runner();
    let out = run_ok(&r, json!({"url": s.url("/text")})).await;
    assert_eq!(out["body"], json!("plain text"));
    assert_eq!(out["headers"]["etag"], json!("\"v1\""));
    let out = run_ok(&r, json!({"url": s.url("/empty"), "method": "DELETE"})).await;
    assert_eq!(out["status"], json!(204));
    assert_eq!(out["body"], Value::Null);
    let out = run_ok(&r, json!({"url": s.url("/json"), "method": "head"})).await;
    assert_eq!(out["status"], json!(200));
    assert_eq!(out["body"], Value::Null);
}

#[tokio::test]
async fn post_sends_json_body_and_query() {
    let s = server().await;
    let config = json!({
        "url": s.url("/echo"),
        "method": "POST",
        "body": {"amount": 12.5, "items": ["a", "b"]},
        "query": {"q": "a b&c", "page": 2, "debug": true},
    });
    let out = run_ok(&default_runner(), config).await;
    let echo = &out["body"];
    assert_eq!(echo["method"], json!("POST"));
    assert_eq!(echo["body"], json!({"amount": 12.5, "items": ["a", "b"]}));
    assert_eq!(echo["headers"]["content-type"], json!("application/json"));
    assert_eq!(echo["query"], json!("debug=true&page=2&q=a+b%26c"));
}

#[tokio::test]
async fn body_text_is_sent_as_is() {
    let s = server().await;
    let config = json!({"url": s.url("/echo"), "method": "PUT", "body_text": "raw; text",
        "headers": {"Content-Type": "application/x-custom"}});
    let out = run_ok(&default_runner(), config).await;
    assert_eq!(out["body"]["body"], json!("raw; text"));
    assert_eq!(out["body"]["headers"]["content-type"], json!("application/x-custom"));
}

#[tokio::test]
async fn headers_user_agent_and_idempotency_key_are_sent() {
    let s = server().await;
    let r = runner(HttpRunnerConfig::default().user_agent("test-agent/1"));
    let out = run_ok(&r, json!({"url": s.url("/echo"), "headers": {"X-Trace": "abc", "X-Count": 3}})).await;
    let sent = &out["body"]["headers"];
    assert_eq!(sent["x-trace"], json!("abc"));
    assert_eq!(sent["x-count"], json!("3"));
    assert_eq!(sent["user-agent"], json!("test-agent/1"));
    assert_eq!(sent["idempotency-key"], json!("wf-1/call"));

    let out = run_ok(&r, json!({"url": s.url("/echo"), "headers": {"Idempotency-Key": "mine"}})).await;
    assert_eq!(out["body"]["headers"]["idempotency-key"], json!("mine"));
}

#[tokio::test]
async fn status_mapping() {
    let s = server().await;
    let r = default_runner();
    let err = r.run(ctx(json!({"url": s.url("/status/503")}))).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.message().contains("503"), "{err}");
    let details = err.details().unwrap();
    assert_eq!(details["status"], json!(503));
    assert_eq!(details["body"], json!({"error": "status 503"}));

    let err = r.run(ctx(json!({"url": s.url("/status/404")}))).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.details().unwrap()["status"], json!(404));

    let err = r.run(ctx(json!({"url": s.url("/status/429")}))).await.unwrap_err();
    assert!(err.is_retryable());

    let err = r.run(ctx(json!({"url": s.url("/status/404"), "retry_on_status": [404]}))).await.unwrap_err();
    assert!(err.is_retryable());
    let err = r.run(ctx(json!({"url": s.url("/status/503"), "retry_on_status": [404]}))).await.unwrap_err();
    assert!(!err.is_retryable());

    let out = run_ok(&r, json!({"url": s.url("/status/404"), "expect_status": [200, 404]})).await;
    assert_eq!(out["status"], json!(404));
    let err = r.run(ctx(json!({"url": s.url("/json"), "expect_status": [201]}))).await.unwrap_err();
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn timeout_is_retryable() {
    let s = server().await;
    let start = Instant::now();
    let err = default_runner().run(ctx(json!({"url": s.url("/slow"), "timeout": "300ms"}))).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(err.is_retryable());
    assert!(err.message().contains("timed out"), "{err}");

    let r = runner(HttpRunnerConfig::default().default_timeout(Duration::from_secs(60)));
    let mut c = ctx(json!({"url": s.url("/slow")}));
    c.deadline = Some(Instant::now() + Duration::from_millis(300));
    let start = Instant::now();
    let err = r.run(c).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(err.message().contains("timed out"), "{err}");
}

#[tokio::test]
async fn cancellation_stops_the_request() {
    let s = server().await;
    let c = ctx(json!({"url": s.url("/slow")}));
    let token = c.cancellation.clone();
    let handle = tokio::spawn(async move { default_runner().run(c).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    token.cancel();
    let err = handle.await.unwrap().unwrap_err();
    assert!(err.message().contains("cancelled"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = default_runner().run(ctx(json!({"url": format!("http://{addr}/x")}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn host_allowlist_rejects_before_any_request() {
    let s = server().await;
    let r = runner(HttpRunnerConfig::default().allow_host("api.example.com").allow_host("*.example.org"));
    let config = json!({"url": s.url("/json")});
    let err = r.validate_config(&config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidTemplate);
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    let err = r.run(ctx(config)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("allowlist"), "{err}");
    assert_eq!(s.hits(), 0);

    let allowed = runner(HttpRunnerConfig::default().allow_host("127.0.0.1"));
    run_ok(&allowed, json!({"url": s.url("/json")})).await;
    assert_eq!(s.hits(), 1);
}

#[tokio::test]
async fn redirects_stay_within_the_allowlist() {
    let s = server().await;
    let r = runner(HttpRunnerConfig::default().allow_host("127.0.0.1"));
    let out = run_ok(&r, json!({"url": s.url("/redirect-in")})).await;
    assert_eq!(out["body"]["hello"], json!("world"));

    let err = r.run(ctx(json!({"url": s.url("/redirect-out")}))).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("blocked.example"), "{err}");
}

#[tokio::test]
async fn schemes_are_restricted() {
    let r = default_runner();
    for url in ["file:///etc/passwd", "ftp://example.com/x"] {
        assert!(r.validate_config(&json!({"url": url})).is_err(), "accepted {url}");
        assert!(!r.run(ctx(json!({"url": url}))).await.unwrap_err().is_retryable());
    }
    let https_only = runner(HttpRunnerConfig::default().allowed_schemes(["https"]));
    assert!(https_only.validate_config(&json!({"url": "http://example.com/"})).is_err());
}

#[tokio::test]
async fn response_size_is_capped() {
    let s = server().await;
    let r = runner(HttpRunnerConfig::default().max_response_bytes(1000));
    for path in ["/big", "/big-stream"] {
        let err = r.run(ctx(json!({"url": s.url(path)}))).await.unwrap_err();
        assert!(!err.is_retryable(), "{path}: {err}");
        assert!(err.message().contains("exceeds the limit of 1000 bytes"), "{path}: {err}");
    }
    let roomy = runner(HttpRunnerConfig::default().max_response_bytes(BIG));
    let out = run_ok(&roomy, json!({"url": s.url("/big-stream")})).await;
    assert_eq!(out["body"].as_str().unwrap().len(), BIG);
}

#[test]
fn validation_checks_what_is_known_before_interpolation() {
    let r = runner(HttpRunnerConfig::default().allow_host("api.example.com"));
    for ok in [
        json!({"url": "https://api.example.com/x"}),
        json!({"url": "${env.GATEWAY}/initialize", "method": "POST"}),
        json!({"url": "https://api.example.com", "method": "${input.method}", "headers": {"Authorization": "Bearer ${secrets.TOKEN}"}}),
        json!({"url": "https://api.example.com", "timeout": "5s", "expect_status": [200, 202], "retry_on_status": [503]}),
        json!({"url": "https://api.example.com", "body": {"id": "${input.id}"}, "query": {"id": "${input.id}"}}),
    ] {
        r.validate_config(&ok).unwrap_or_else(|e| panic!("rejected {ok}: {e}"));
    }
    for (bad, field) in [
        (json!({}), "config.url"),
        (json!({"url": "not a url"}), "config.url"),
        (json!({"url": "https://other.example.com/"}), "config.url"),
        (json!({"url": "https://api.example.com", "method": "TRACE"}), "config.method"),
        (json!({"url": "https://api.example.com", "headers": {"bad header": "x"}}), "config.headers"),
        (json!({"url": "https://api.example.com", "headers": {"x": ["a"]}}), "config.headers"),
        (json!({"url": "https://api.example.com", "body": 1, "body_text": "x"}), "config.body_text"),
        (json!({"url": "https://api.example.com", "expect_status": [42]}), "config.expect_status"),
        (json!({"url": "https://api.example.com", "retry_on_status": "503"}), "config.retry_on_status"),
        (json!({"url": "https://api.example.com", "query": {"a": {"b": 1}}}), "config.query"),
        (json!({"url": "https://api.example.com", "timeout": "soon"}), "config.timeout"),
        (json!({"url": "https://api.example.com", "verb": "GET"}), "config.verb"),
    ] {
        let err = r.validate_config(&bad).err().unwrap_or_else(|| panic!("accepted {bad}"));
        assert_eq!(err.location().and_then(|l| l.field.as_deref()), Some(field), "{bad}: {err}");
    }
}

#[test]
fn new_rejects_bad_host_config() {
    let err = HttpRunner::new(HttpRunnerConfig::default().allow_host("https://api.example.com")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(HttpRunner::new(HttpRunnerConfig::default().user_agent("bad\nagent")).is_err());
}

#[tokio::test]
async fn host_breaker_holds_requests_back_after_failures_then_probes() {
    let s = server().await;
    let r = runner(HttpRunnerConfig::default().host_breaker(2, Duration::from_millis(300)));
    for _ in 0..2 {
        let err = r.run(ctx(json!({"url": s.url("/status/503")}))).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }
    assert_eq!(s.hits(), 2);
    // Open: the next request to that host waits for the cool-down, then goes as the probe.
    let started = Instant::now();
    let out = run_ok(&r, json!({"url": s.url("/json")})).await;
    assert_eq!(out["status"], json!(200));
    assert!(started.elapsed() >= Duration::from_millis(300), "sent after {:?}", started.elapsed());
    assert_eq!(s.hits(), 3);
    // The healthy probe closed it.
    let started = Instant::now();
    run_ok(&r, json!({"url": s.url("/json")})).await;
    assert!(started.elapsed() < Duration::from_millis(300), "closed: no wait ({:?})", started.elapsed());
}

#[tokio::test]
async fn host_breaker_ignores_client_errors_and_validates_its_settings() {
    let s = server().await;
    let r = runner(HttpRunnerConfig::default().host_breaker(1, Duration::from_secs(60)));
    for _ in 0..3 {
        r.run(ctx(json!({"url": s.url("/status/404")}))).await.unwrap_err();
    }
    let started = Instant::now();
    run_ok(&r, json!({"url": s.url("/json")})).await;
    assert!(started.elapsed() < Duration::from_secs(5), "a 4xx says the host is up: no breaker");

    let config = HttpRunnerConfig::from_yaml("security:\n  host_breaker: { failures: 3, cool_down: 30s }\n").unwrap();
    assert_eq!(config.host_breaker, Some(HostBreakerSettings { failures: 3, cool_down: Duration::from_secs(30) }));
    let err = HttpRunnerConfig::from_yaml("security:\n  host_breaker: { failures: 0, cool_down: 30s }\n").unwrap_err();
    assert!(err.to_string().contains("http.security.host_breaker.failures"), "{err}");
    let err = HttpRunnerConfig::from_yaml("security:\n  host_breaker: { failures: 1 }\n").unwrap_err();
    assert!(err.to_string().contains("host_breaker"), "{err}");
}
