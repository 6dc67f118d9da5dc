//! Execution-safety tests of the `http_request` runner: the private-network guard (IP
//! literals, DNS answers, redirects), config loading, and a corpus of hostile URLs and headers.

use super::*;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
}

/// `/to?u=<url>` redirects to `u`; anything else echoes the request headers.
async fn server() -> Server {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new()
        .route(
            "/to",
            axum::routing::get(|uri: Uri| async move {
                let to = unpercent(uri.query().unwrap_or_default().trim_start_matches("u="));
                (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
            }),
        )
        .fallback(move |headers: HeaderMap| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
                let response: Response = axum::Json(json!({ "headers": names })).into_response();
                response
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { port, hits }
}

fn ctx(config: Value) -> JobContext {
    JobContext::new("wf-safety", "call", "http_request", config)
}

#[tokio::test]
async fn private_ip_literals_are_denied_by_default() {
    let s = server().await;
    let r = HttpRunner::new(HttpRunnerConfig::default()).unwrap();
    let config = json!({"url": format!("http://127.0.0.1:{}/x", s.port)});
    let err = r.validate_config(&config).unwrap_err();
    assert!(err.to_string().contains("http.allow_private_networks"), "{err}");
    let err = r.run(ctx(config)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("http.allow_private_networks"), "{err}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn host_names_are_checked_after_resolution() {
    let s = server().await;
    let r = HttpRunner::new(HttpRunnerConfig::default()).unwrap();
    let config = json!({"url": format!("http://localhost:{}/x", s.port)});
    r.validate_config(&config).unwrap();
    let err = r.run(ctx(config)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.message().contains("`localhost` resolves to"), "{err}");
    assert!(err.message().contains("http.allow_private_networks"), "{err}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_private_allowlist_opens_blocks_and_hosts() {
    let s = server().await;
    let by_block = HttpRunner::new(HttpRunnerConfig::default().allow_private("127.0.0.0/8")).unwrap();
    let out = by_block.run(ctx(json!({"url": format!("http://127.0.0.1:{}/x", s.port)}))).await.unwrap();
    assert_eq!(out.value()["status"], 200);
    let by_host = HttpRunner::new(HttpRunnerConfig::default().allow_private("localhost")).unwrap();
    let out = by_host.run(ctx(json!({"url": format!("http://localhost:{}/x", s.port)}))).await.unwrap();
    assert_eq!(out.value()["status"], 200);
    let everything = HttpRunner::new(HttpRunnerConfig::default().allow_private_networks(true)).unwrap();
    everything.run(ctx(json!({"url": format!("http://127.0.0.1:{}/x", s.port)}))).await.unwrap();
    assert_eq!(s.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn redirects_to_private_addresses_are_refused() {
    let s = server().await;
    let r = HttpRunner::new(HttpRunnerConfig::default().allow_private("127.0.0.1")).unwrap();
    for target in [
        format!("http://127.0.0.2:{}/x", s.port),
        "http://[::1]/".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://127.0.0.1@evil.example/".to_owned(),
    ] {
        let url = format!("http://127.0.0.1:{}/to?u={}", s.port, percent(&target));
        let err = r.run(ctx(json!({ "url": url }))).await.unwrap_err();
        assert!(!err.is_retryable(), "{target}: {err}");
        assert!(err.message().contains("redirect refused"), "{target}: {err}");
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
    let url = format!("http://127.0.0.1:{}/to?u={}", s.port, percent(&format!("http://127.0.0.1:{}/x", s.port)));
    r.run(ctx(json!({ "url": url }))).await.unwrap();
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
}

fn unpercent(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn percent(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn hostile_urls_and_headers_are_rejected() {
    let s = server().await;
    // Private networks are open here: each case must be refused for its own reason.
    let open = HttpRunner::new(HttpRunnerConfig::default().allow_private_networks(true)).unwrap();
    let guarded = HttpRunner::new(HttpRunnerConfig::default()).unwrap();
    let cases: Vec<(&HttpRunner, Value, &str)> = vec![
        (&open, json!({"url": format!("http://127.0.0.1@127.0.0.1:{}/", s.port)}), "user info"),
        (&open, json!({"url": "http://user:pass@example.com/"}), "user info"),
        (&open, json!({"url": "file:///etc/passwd"}), "scheme `file`"),
        (&open, json!({"url": "gopher://127.0.0.1:70/"}), "scheme `gopher`"),
        (&open, json!({"url": "javascript:alert(1)"}), "scheme"),
        (&open, json!({"url": "http://"}), "url"),
        (
            &open,
            json!({"url": format!("http://127.0.0.1:{}/", s.port), "headers": {"X-A": "v\r\nX-Injected: 1"}}),
            "headers",
        ),
        (&open, json!({"url": format!("http://127.0.0.1:{}/", s.port), "headers": {"X-A\r\nX-B": "v"}}), "headers"),
        (&open, json!({"url": format!("http://127.0.0.1:{}/", s.port), "headers": {"X-A": "v\u{0}"}}), "headers"),
        (&open, json!({"url": format!("http://127.0.0.1:{}/", s.port), "method": "GET / HTTP/1.1\r\n"}), "method"),
        (&guarded, json!({"url": "http://[::1]/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://[::ffff:127.0.0.1]/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://0x7f.1/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://2130706433/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://0.0.0.0/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://10.0.0.1/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://172.16.5.4/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://192.168.0.1/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://169.254.169.254/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://[fd00::1]/"}), "http.allow_private_networks"),
        (&guarded, json!({"url": "http://[fe80::1]/"}), "http.allow_private_networks"),
    ];
    for (runner, config, expected) in cases {
        let err = runner.run(ctx(config.clone())).await.unwrap_err();
        assert!(!err.is_retryable(), "{config}: {err}");
        assert!(err.message().contains(expected), "{config}: expected `{expected}` in {err}");
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn crlf_in_url_and_query_is_inert() {
    let s = server().await;
    let r = HttpRunner::new(HttpRunnerConfig::default().allow_private_networks(true)).unwrap();
    let config = json!({
        "url": format!("http://127.0.0.1:{}/a\r\nX-Injected: 1", s.port),
        "query": {"q": "v\r\nX-Injected2: 1"},
    });
    let out = r.run(ctx(config)).await.unwrap();
    let headers = out.value()["body"]["headers"].as_array().unwrap().clone();
    assert!(!headers.iter().any(|h| h.as_str().is_some_and(|h| h.starts_with("x-injected"))), "{headers:?}");
}

#[test]
fn config_loads_from_yaml_and_json() {
    let config = HttpRunnerConfig::from_yaml(
        r#"
execution_type: http
security:
  allowed_hosts: [api.example.com, "*.example.org"]
  allowed_schemes: [https]
  allow_private_networks: false
  private_network_allowlist: [10.1.0.0/16, db.internal]
  default_timeout: 5s
  max_response_bytes: 2MiB
  user_agent: host/1
"#,
    )
    .unwrap();
    assert_eq!(config.allowed_hosts.as_deref(), Some(&["api.example.com".to_owned(), "*.example.org".to_owned()][..]));
    assert_eq!(config.allowed_schemes, ["https"]);
    assert!(!config.allow_private_networks);
    assert_eq!(config.private_network_allowlist, ["10.1.0.0/16", "db.internal"]);
    assert_eq!(config.default_timeout, Duration::from_secs(5));
    assert_eq!(config.max_response_bytes, 2 << 20);
    assert_eq!(config.user_agent, "host/1");
    HttpRunner::new(config).unwrap();

    let json = HttpRunnerConfig::from_json(r#"{"security": {"allow_private_networks": true}}"#).unwrap();
    assert!(json.allow_private_networks);
    assert_eq!(json.allowed_schemes, ["http", "https"]);

    for (yaml, field) in [
        ("security: {allow_private_network: true}", "http.security.allow_private_network"),
        ("security: {allow_private_networks: yes please}", "http.security.allow_private_networks"),
        ("security: {default_timeout: never}", "http.security.default_timeout"),
        ("security: {private_network_allowlist: [10.0.0.0/40]}", "private_network_allowlist"),
        ("security: {allowed_hosts: ['https://x.com']}", "allowed_hosts"),
        ("security: {user_agent: \"a\\nb\"}", "http.security.user_agent"),
        ("execution_type: grpc", "http.execution_type"),
        ("proxy: x", "http.proxy"),
    ] {
        let err = HttpRunnerConfig::from_yaml(yaml).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{yaml}");
        assert!(err.to_string().contains(field), "{yaml}: {err}");
    }
}
