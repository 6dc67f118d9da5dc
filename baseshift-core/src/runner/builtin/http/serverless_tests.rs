use super::*;
use crate::error::ErrorKind;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

/// A fake function endpoint: `/fn` echoes payload and auth, the others report errors.
async fn server() -> Server {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { handle(uri.path(), &headers, &body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { base: format!("http://{addr}"), hits }
}

fn handle(path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    match path {
        "/fn" => axum::Json(json!({
            "received": serde_json::from_slice::<Value>(body).unwrap_or(Value::Null),
            "authorization": text("authorization"),
            "x-api-key": text("x-api-key"),
            "content-type": text("content-type"),
        }))
        .into_response(),
        "/unhandled" => (
            [("x-amz-function-error", "Unhandled")],
            axum::Json(json!({"errorMessage": "bad input", "errorType": "ValueError", "trace": []})),
        )
            .into_response(),
        "/timeout" => axum::Json(json!({"errorMessage": "Task timed out after 3.00 seconds"})).into_response(),
        "/runtime" => ([("x-amz-function-error", "Unhandled")], axum::Json(json!({"errorType": "Runtime.ExitError"})))
            .into_response(),
        "/throttled" => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
        "/forbidden" => (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn runner() -> ServerlessRunner {
    ServerlessRunner::new(HttpRunnerConfig::default().allow_private("127.0.0.1")).unwrap()
}

fn ctx(config: Value) -> JobContext {
    JobContext::new("wf-1", "invoke", "serverless", config)
}

#[tokio::test]
async fn invokes_the_function_with_payload_and_auth_and_returns_its_response() {
    let s = server().await;
    let r = runner();
    let raw =
        json!({"function_url": "${env.FN_URL}", "payload": {"n": "${input.n}"}, "auth_header": "${secrets.TOKEN}"});
    r.validate_config(&raw).unwrap();
    let config = json!({"function_url": format!("{}/fn", s.base), "payload": {"n": 3}, "auth_header": "Bearer s3cr3t"});
    r.validate_config(&config).unwrap();
    let out = r.run(ctx(config)).await.unwrap();
    assert_eq!(out.value()["received"], json!({"n": 3}));
    assert_eq!(out.value()["authorization"], "Bearer s3cr3t");
    assert_eq!(out.value()["content-type"], "application/json");

    let config = json!({"function_url": format!("{}/fn", s.base), "auth_header": {"name": "X-Api-Key", "value": "k1"}});
    let out = r.run(ctx(config)).await.unwrap();
    assert_eq!((&out.value()["x-api-key"], &out.value()["received"]), (&json!("k1"), &json!({})));
    assert_eq!(r.job_type(), "serverless");
}

#[tokio::test]
async fn function_errors_map_to_retryable_or_permanent() {
    let s = server().await;
    let r = runner();
    let run = |path: &str| r.run(ctx(json!({"function_url": format!("{}{path}", s.base)})));

    let err = run("/unhandled").await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("ValueError") && err.message().contains("bad input"), "{err}");
    assert_eq!(err.details().unwrap()["error_type"], "ValueError");
    assert_eq!(err.details().unwrap()["status"], 200);

    let err = run("/timeout").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = run("/runtime").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.message().contains("Runtime.ExitError"), "{err}");
    let err = run("/throttled").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = run("/forbidden").await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.details().unwrap()["status"], 403);
}

#[tokio::test]
async fn the_http_policy_applies() {
    let s = server().await;
    let guarded = ServerlessRunner::new(HttpRunnerConfig::default()).unwrap();
    let config = json!({"function_url": format!("{}/fn", s.base)});
    let err = guarded.validate_config(&config).unwrap_err();
    assert!(err.to_string().contains("config.function_url"), "{err}");
    let err = guarded.run(ctx(config)).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("http.allow_private_networks"), "{err}");
    let only_https =
        ServerlessRunner::from_http(HttpRunner::new(HttpRunnerConfig::default().allowed_schemes(["https"])).unwrap());
    let err = only_https.run(ctx(json!({"function_url": "http://fn.example.com/"}))).await.unwrap_err();
    assert!(err.message().contains("scheme"), "{err}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bad_configs_are_rejected() {
    let s = server().await;
    let r = runner();
    let url = format!("{}/fn", s.base);
    for (config, field) in [
        (json!({}), "config.function_url"),
        (json!({"function_url": url, "method": "GET"}), "config.method"),
        (json!({"function_url": url, "auth_header": 7}), "config.auth_header"),
        (json!({"function_url": url, "auth_header": "Bearer x\r\nX-Injected: 1"}), "config.auth_header"),
        (json!({"function_url": url, "auth_header": {"name": "X\r\nY", "value": "v"}}), "config.auth_header"),
        (json!({"function_url": url, "auth_header": {"name": "X-Key"}}), "config.auth_header"),
        (
            json!({"function_url": url, "auth_header": {"name": "X-Key", "value": "v", "extra": 1}}),
            "config.auth_header",
        ),
        (json!({"function_url": url, "timeout": "soon"}), "config.timeout"),
        (json!({"function_url": "http://127.0.0.1@evil.example/"}), "config.function_url"),
    ] {
        let err = r.validate_config(&config).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidTemplate, "{config}");
        assert!(err.to_string().contains(field), "{config}: {err}");
        let err = r.run(ctx(config.clone())).await.unwrap_err();
        assert!(!err.is_retryable(), "{config}: {err}");
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
}

#[test]
fn results_without_error_markers_pass_through() {
    let ok = function_result(&json!({"status": 200, "headers": {}, "body": {"result": [1, 2]}})).unwrap();
    assert_eq!(ok.value(), &json!({"result": [1, 2]}));
    let text = function_result(&json!({"status": 200, "headers": {}, "body": "plain"})).unwrap();
    assert_eq!(text.value(), &json!("plain"));
    let err = function_result(&json!({"status": 200, "headers": {"x-amz-function-error": "Handled"}, "body": null}))
        .unwrap_err();
    assert!(err.message().contains("Handled"), "{err}");
}
