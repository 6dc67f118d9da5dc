//! The runner against kube's `Client` over a `tower_test` mock: every request the runner sends
//! is checked, every answer scripted (kube's own client tests work the same way).

use crate::{DeploymentScaler, KubernetesRunner, KubernetesRunnerConfig, ScaleDecision, ScalePolicy, pod_name};
use baseshift_core::{JobContext, JobError, JobOutput, JobRunner};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tower_test::mock;

const WF: &str = "0190a8e2-7c5b-7def-8a3e-1b2c3d4e5f60";
const NS: &str = "jobs";

type Send = mock::SendResponse<Response<Body>>;

/// The fake API server: hands out the runner's requests one by one.
struct ApiServer {
    handle: mock::Handle<Request<Body>, Response<Body>>,
}

/// One received request, its body parsed as JSON (or `Null`).
struct Received {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    body: Value,
    send: Send,
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

impl ApiServer {
    async fn next(&mut self) -> Received {
        let next = tokio::time::timeout(Duration::from_secs(10), self.handle.next_request()).await;
        let (req, send) = next.expect("no request from the runner within 10s").expect("client dropped");
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        let query = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect();
        Received { method: parts.method, path: parts.uri.path().to_owned(), query, body, send }
    }

    /// The next request, checked to be `method path`.
    async fn expect(&mut self, method: Method, path: &str) -> Received {
        let r = self.next().await;
        assert_eq!((&r.method, r.path.as_str()), (&method, path), "query: {:?}", r.query);
        r
    }

    /// Asserts the runner sends nothing more for a while.
    async fn expect_silence(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(200), self.handle.next_request()).await;
        assert!(matches!(next, Err(_) | Ok(None)), "unexpected request: {:?}", next.ok().flatten().map(|r| r.0));
    }

    // The steps of a pod's life, as the API server answers them.

    async fn create(&mut self, name: &str) -> Value {
        let r = self.expect(Method::POST, &format!("/api/v1/namespaces/{NS}/pods")).await;
        assert_eq!(r.body["metadata"]["name"], name);
        let mut created = r.body.clone();
        created["metadata"]["resourceVersion"] = json!("1");
        created["status"] = json!({ "phase": "Pending" });
        r.send.send_response(respond(StatusCode::CREATED, &created));
        r.body
    }

    async fn list(&mut self, name: &str, pod: Value) {
        let r = self.expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods")).await;
        assert_eq!(r.query.get("fieldSelector").map(String::as_str), Some(format!("metadata.name={name}").as_str()));
        assert!(!r.query.contains_key("watch"));
        let list =
            json!({ "apiVersion": "v1", "kind": "PodList", "metadata": { "resourceVersion": "1" }, "items": [pod] });
        r.send.send_response(respond(StatusCode::OK, &list));
    }

    /// Receives the watch request (the answer is up to the caller).
    async fn watch(&mut self, name: &str) -> Received {
        let r = self.expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods")).await;
        assert_eq!(r.query.get("watch").map(String::as_str), Some("true"));
        assert_eq!(r.query.get("fieldSelector").map(String::as_str), Some(format!("metadata.name={name}").as_str()));
        r
    }

    async fn watch_events(&mut self, name: &str, events: &[(&str, Value)]) {
        let r = self.watch(name).await;
        let mut body = String::new();
        for (kind, pod) in events {
            body.push_str(&serde_json::to_string(&json!({ "type": kind, "object": pod })).unwrap());
            body.push('\n');
        }
        r.send.send_response(Response::new(Body::from(body.into_bytes())));
    }

    async fn logs(&mut self, name: &str, text: &str) {
        let r = self.expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods/{name}/log")).await;
        assert_eq!(r.query.get("container").map(String::as_str), Some("job"));
        assert_eq!(r.query.get("tailLines").map(String::as_str), Some("200"));
        assert_eq!(r.query.get("limitBytes").map(String::as_str), Some("65536"));
        r.send.send_response(Response::new(Body::from(text.as_bytes().to_vec())));
    }

    async fn delete(&mut self, name: &str) {
        let r = self.expect(Method::DELETE, &format!("/api/v1/namespaces/{NS}/pods/{name}")).await;
        assert_eq!(r.body["propagationPolicy"], "Background");
        r.send.send_response(respond(StatusCode::OK, &pod(name, "1", json!({ "phase": "Running" }))));
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder().status(status).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
}

fn pod(name: &str, rv: &str, status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": NS, "resourceVersion": rv, "labels": {
            "baseshift.io/workflow-id": WF, "baseshift.io/job-id": "process_payment" } },
        "spec": { "containers": [{ "name": "job", "image": "payment-processor:v1" }] },
        "status": status,
    })
}

fn container(state: Value) -> Value {
    json!([{ "name": "job", "image": "payment-processor:v1", "imageID": "", "ready": false, "restartCount": 0, "state": state }])
}

fn failed(code: i32) -> Value {
    json!({ "phase": "Failed", "containerStatuses": container(json!({ "terminated": { "exitCode": code, "reason": "Error" } })) })
}

fn runner(config: KubernetesRunnerConfig) -> (KubernetesRunner, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, NS);
    (KubernetesRunner::new(client, config).unwrap().with_job_type("custom_job"), ApiServer { handle })
}

fn default_runner() -> (KubernetesRunner, ApiServer) {
    runner(KubernetesRunnerConfig::builder().allow_image("payment-processor:*").build().unwrap())
}

/// The plan's `custom_job`, with the env / resources the plan's template writes.
fn payment_config() -> Value {
    json!({
        "image": "payment-processor:v1",
        "args": ["--amount", "42"],
        "env": [
            { "name": "MODE", "value": "live" },
            { "name": "DB_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db-secret", "key": "password" } } }
        ],
        "resources": { "requests": { "memory": "64Mi", "cpu": "250m" }, "limits": { "memory": "128Mi", "cpu": "500m" } },
    })
}

fn ctx(config: Value) -> JobContext {
    JobContext::new(WF, "process_payment", "custom_job", config)
}

fn start(runner: &KubernetesRunner, ctx: JobContext) -> JoinHandle<Result<JobOutput, JobError>> {
    let runner = runner.clone();
    tokio::spawn(async move { runner.run(ctx).await })
}

fn name() -> String {
    pod_name(WF, "process_payment", 1)
}

#[tokio::test]
async fn pod_runs_pending_running_succeeded_and_logs_become_the_output() {
    let (runner, mut api) = default_runner();
    let run = start(&runner, ctx(payment_config()));
    let n = name();

    let sent = api.create(&n).await;
    let c = &sent["spec"]["containers"][0];
    assert_eq!(c["image"], "payment-processor:v1");
    assert_eq!(c["args"], json!(["--amount", "42"]));
    assert_eq!(c["env"][0], json!({ "name": "MODE", "value": "live" }));
    assert_eq!(c["env"][1]["valueFrom"]["secretKeyRef"], json!({ "name": "db-secret", "key": "password" }));
    assert_eq!(c["resources"]["requests"], json!({ "memory": "64Mi", "cpu": "250m" }));
    assert_eq!(c["resources"]["limits"], json!({ "memory": "128Mi", "cpu": "500m" }));
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sent["spec"]["restartPolicy"], "Never");
    assert_eq!(sent["spec"]["automountServiceAccountToken"], false);
    let labels = &sent["metadata"]["labels"];
    assert_eq!(labels["app"], "base-shift");
    assert_eq!(labels["baseshift.io/workflow-id"], WF);
    assert_eq!(labels["baseshift.io/job-id"], "process_payment");
    assert_eq!(labels["baseshift.io/attempt"], "1");
    assert_eq!(sent["metadata"]["namespace"], NS);

    api.list(&n, pod(&n, "1", json!({ "phase": "Pending" }))).await;
    let running = json!({ "phase": "Running", "containerStatuses": container(json!({ "running": {} })) });
    api.watch_events(
        &n,
        &[("MODIFIED", pod(&n, "2", running)), ("MODIFIED", pod(&n, "3", json!({ "phase": "Succeeded" })))],
    )
    .await;
    api.logs(&n, "charging card\nBASESHIFT_RESULT {\"status\":\"paid\",\"txn\":\"t-1\"}\n").await;
    api.delete(&n).await;

    let out = run.await.unwrap().unwrap();
    assert_eq!(out.value()["result"], json!({ "status": "paid", "txn": "t-1" }));
    assert!(out.value()["logs_tail"].as_str().unwrap().starts_with("charging card"));
    assert_eq!(out.value()["pod"], n);
}

#[tokio::test]
async fn non_zero_exit_is_permanent_with_exit_code_and_log_tail() {
    let (runner, mut api) = default_runner();
    let run = start(&runner, ctx(payment_config()));
    let n = name();
    api.create(&n).await;
    api.list(&n, pod(&n, "4", failed(3))).await;
    api.logs(&n, "card declined\n").await;
    api.delete(&n).await;
    let e = run.await.unwrap().unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.message().contains("code 3"), "{e}");
    let d = e.details().unwrap();
    assert_eq!(d["exit_code"], 3);
    assert_eq!(d["logs_tail"], "card declined\n");
}

#[tokio::test]
async fn configured_exit_code_is_retryable() {
    let (runner, mut api) = runner(KubernetesRunnerConfig::builder().retryable_exit_code(75).build().unwrap());
    let run = start(&runner, ctx(payment_config()));
    let n = name();
    api.create(&n).await;
    api.list(&n, pod(&n, "1", json!({ "phase": "Running" }))).await;
    api.watch_events(&n, &[("MODIFIED", pod(&n, "2", failed(75)))]).await;
    api.logs(&n, "try later\n").await;
    api.delete(&n).await;
    let e = run.await.unwrap().unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.details().unwrap()["exit_code"], 75);
}

#[tokio::test]
async fn image_pull_backoff_is_permanent() {
    let (runner, mut api) = default_runner();
    let run = start(&runner, ctx(payment_config()));
    let n = name();
    api.create(&n).await;
    api.list(&n, pod(&n, "1", json!({ "phase": "Pending" }))).await;
    let waiting =
        container(json!({ "waiting": { "reason": "ImagePullBackOff", "message": "Back-off pulling image" } }));
    api.watch_events(&n, &[("MODIFIED", pod(&n, "2", json!({ "phase": "Pending", "containerStatuses": waiting })))])
        .await;
    // No log to read: the container never started.
    api.delete(&n).await;
    let e = run.await.unwrap().unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.message().contains("ImagePullBackOff"), "{e}");
    assert_eq!(e.details().unwrap()["reason"], "ImagePullBackOff");
}

#[tokio::test]
async fn eviction_is_retryable() {
    let (runner, mut api) = default_runner();
    let run = start(&runner, ctx(payment_config()));
    let n = name();
    api.create(&n).await;
    api.list(&n, pod(&n, "1", json!({ "phase": "Running" }))).await;
    let evicted = json!({ "phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory." });
    api.watch_events(&n, &[("MODIFIED", pod(&n, "2", evicted))]).await;
    api.delete(&n).await;
    let e = run.await.unwrap().unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(e.details().unwrap()["reason"], "Evicted");
}

#[tokio::test]
async fn pod_deleted_by_someone_else_is_retryable() {
    let (runner, mut api) = default_runner();
    let run = start(&runner, ctx(payment_config()));
    let n = name();
    api.create(&n).await;
    api.list(&n, pod(&n, "1", json!({ "phase": "Running" }))).await;
    api.watch_events(&n, &[("DELETED", pod(&n, "2", json!({ "phase": "Running" })))]).await;
    api.delete(&n).await;
    let e = run.await.unwrap().unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.message().contains("deleted"), "{e}");
}

#[tokio::test]
async fn timeout_deletes_the_pod() {
    let (runner, mut api) = default_runner();
    let mut c = ctx(payment_config());
    c.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(300));
    let run = start(&runner, c);
    let n = name();
    let sent = api.create(&n).await;
    assert_eq!(sent["spec"]["activeDeadlineSeconds"], 1);
    api.list(&n, pod(&n, "1", json!({ "phase": "Running" }))).await;
    let _held = api.watch(&n).await; // the pod never finishes
    api.delete(&n).await;
    let e = run.await.unwrap().unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.details().unwrap()["reason"], "timeout");
}

#[tokio::test]
async fn cancellation_deletes_the_pod() {
    let (runner, mut api) = default_runner();
    let c = ctx(payment_config());
    let token = c.cancellation.clone();
    let run = start(&runner, c);
    let n = name();
    api.create(&n).await;
    api.list(&n, pod(&n, "1", json!({ "phase": "Running" }))).await;
    let _held = api.watch(&n).await;
    token.cancel();
    api.delete(&n).await;
    let e = run.await.unwrap().unwrap_err();
    assert_eq!(e.details().unwrap()["reason"], "cancelled");
}

#[tokio::test]
async fn a_dropped_attempt_still_deletes_its_pod() {
    let (runner, mut api) = default_runner();
    let run = start(&runner, ctx(payment_config()));
    let n = name();
    api.create(&n).await;
    api.list(&n, pod(&n, "1", json!({ "phase": "Running" }))).await;
    let _held = api.watch(&n).await;
    run.abort(); // what the engine does at a deadline
    api.delete(&n).await;
    assert!(run.await.unwrap_err().is_cancelled());
}

#[tokio::test]
async fn a_repeated_attempt_adopts_its_existing_pod() {
    let (runner, mut api) = default_runner();
    let run = start(&runner, ctx(payment_config()));
    let n = name();
    let r = api.expect(Method::POST, &format!("/api/v1/namespaces/{NS}/pods")).await;
    let exists = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists",
        "message": format!("pods \"{n}\" already exists"), "code": 409 });
    r.send.send_response(respond(StatusCode::CONFLICT, &exists));
    let r = api.expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods/{n}")).await;
    r.send.send_response(respond(StatusCode::OK, &pod(&n, "7", json!({ "phase": "Succeeded" }))));
    api.list(&n, pod(&n, "7", json!({ "phase": "Succeeded" }))).await;
    api.logs(&n, "BASESHIFT_RESULT 42\n").await;
    api.delete(&n).await;
    assert_eq!(run.await.unwrap().unwrap().value()["result"], 42);
}

#[tokio::test]
async fn keep_pods_leaves_finished_pods_in_place() {
    let (runner, mut api) = runner(KubernetesRunnerConfig::builder().keep_pods(true).build().unwrap());
    let run = start(&runner, ctx(payment_config()));
    let n = name();
    api.create(&n).await;
    api.list(&n, pod(&n, "1", json!({ "phase": "Succeeded" }))).await;
    api.logs(&n, "done\n").await;
    assert_eq!(run.await.unwrap().unwrap().value()["result"], Value::Null);
    api.expect_silence().await;
}

#[tokio::test]
async fn a_later_attempt_deletes_pods_of_earlier_attempts() {
    let (runner, mut api) = default_runner();
    let mut c = ctx(payment_config());
    c.attempt = 2;
    let run = start(&runner, c);
    let old = pod_name(WF, "process_payment", 1);
    let n = pod_name(WF, "process_payment", 2);
    let r = api.expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods")).await;
    let selector = r.query.get("labelSelector").cloned().unwrap_or_default();
    assert!(selector.contains(&format!("baseshift.io/workflow-id={WF}")), "{selector}");
    assert!(selector.contains("baseshift.io/attempt!=2"), "{selector}");
    let list = json!({ "apiVersion": "v1", "kind": "PodList", "metadata": { "resourceVersion": "1" },
        "items": [pod(&old, "1", json!({ "phase": "Running" }))] });
    r.send.send_response(respond(StatusCode::OK, &list));
    api.delete(&old).await;
    let sent = api.create(&n).await;
    assert_eq!(sent["metadata"]["labels"]["baseshift.io/attempt"], "2");
    api.list(&n, pod(&n, "1", json!({ "phase": "Succeeded" }))).await;
    api.logs(&n, "").await;
    api.delete(&n).await;
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn api_errors_map_to_retryable_or_permanent() {
    let (runner, mut api) = default_runner();
    let run = start(&runner, ctx(payment_config()));
    let r = api.expect(Method::POST, &format!("/api/v1/namespaces/{NS}/pods")).await;
    let invalid = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid",
        "message": "Pod is invalid", "code": 422 });
    r.send.send_response(respond(StatusCode::UNPROCESSABLE_ENTITY, &invalid));
    let e = run.await.unwrap().unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    api.expect_silence().await; // nothing was created, nothing to delete

    let run = start(&runner, ctx(payment_config()));
    let r = api.expect(Method::POST, &format!("/api/v1/namespaces/{NS}/pods")).await;
    let busy = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable",
        "message": "etcd leader changed", "code": 503 });
    r.send.send_response(respond(StatusCode::SERVICE_UNAVAILABLE, &busy));
    assert!(run.await.unwrap().unwrap_err().is_retryable());
}

#[tokio::test]
async fn allowlists_are_checked_at_load_time_and_at_run_time() {
    let (runner, mut api) = runner(
        KubernetesRunnerConfig::builder()
            .allow_image("registry.example.com/*")
            .allow_namespace("jobs-*")
            .build()
            .unwrap(),
    );
    assert!(runner.validate_config(&json!({ "image": "payment-processor:v1" })).is_err());
    assert!(runner.validate_config(&json!({ "image": "registry.example.com/pay:v1", "namespace": "jobs-a" })).is_ok());
    assert!(runner.validate_config(&json!({ "image": "registry.example.com/pay:v1", "namespace": "prod" })).is_err());
    assert!(runner.validate_config(&json!({ "image": "${input.image}" })).is_ok());
    let e = runner.run(ctx(json!({ "image": "docker.io/evil:1" }))).await.unwrap_err();
    assert!(!e.is_retryable() && e.message().contains("allowlist"), "{e}");
    api.expect_silence().await;
}

#[tokio::test]
async fn deployment_scaler_patches_replicas_from_queue_depth() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut api = ApiServer { handle };
    let client = kube::Client::new(service, NS);
    let policy = ScalePolicy::new(1, 10).jobs_per_replica(5).idle_timeout(Duration::from_secs(3600));
    let scaler = DeploymentScaler::new(client, NS, "workers", policy).unwrap();
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/workers/scale");
    let scale = |n: u32| {
        json!({ "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": { "name": "workers", "namespace": NS },
            "spec": { "replicas": n } })
    };

    let observe = tokio::spawn(async move {
        let up = scaler.observe(12).await.unwrap();
        let hold = scaler.observe(0).await.unwrap();
        (up, hold)
    });
    let r = api.expect(Method::GET, &path).await;
    r.send.send_response(respond(StatusCode::OK, &scale(1)));
    let r = api.expect(Method::PATCH, &path).await;
    assert_eq!(r.body, json!({ "spec": { "replicas": 3 } }));
    r.send.send_response(respond(StatusCode::OK, &scale(3)));
    let r = api.expect(Method::GET, &path).await;
    r.send.send_response(respond(StatusCode::OK, &scale(3)));
    let (up, hold) = observe.await.unwrap();
    assert_eq!(up, ScaleDecision::ScaledUp { from: 1, to: 3 });
    assert_eq!(hold, ScaleDecision::HoldingDown { replicas: 3, desired: 1 });
    api.expect_silence().await; // no PATCH before the idle timeout
}

#[test]
fn dry_run_manifest_needs_no_cluster() {
    let config = KubernetesRunnerConfig::default();
    let m = crate::pod_manifest(&config, &ctx(json!({ "image": "payment-processor:v1" })), "default").unwrap();
    assert_eq!(m["metadata"]["namespace"], "default");
    assert_eq!(m["spec"]["containers"][0]["image"], "payment-processor:v1");
    let _: k8s_openapi::api::core::v1::Pod = serde_json::from_value(m).unwrap();
}

#[test]
fn manifest_carries_scheduling_owner_and_overrides() {
    let config = KubernetesRunnerConfig::builder()
        .namespace("jobs")
        .service_account("payments")
        .label("team", "pay")
        .owner(crate::PodOwner::new("apps/v1", "Deployment", "host", "uid-1"))
        .build()
        .unwrap();
    let job = json!({
        "image": "payment-processor:v1",
        "command": ["/pay"],
        "nodeSelector": { "disk": "ssd" },
        "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "jobs", "effect": "NoSchedule" }],
        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
            { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] }] } } },
        "labels": { "app": "not-ours", "tier": "batch" },
        "read_only_root_filesystem": false,
        "run_as_user": 1000,
    });
    let c = JobContext::new("wf/with spaces", "Job #1", "k8s_pod", job);
    let m = crate::pod_manifest(&config, &c, "ignored").unwrap();
    assert_eq!(m["metadata"]["namespace"], "jobs");
    let labels = &m["metadata"]["labels"];
    assert_eq!(labels["app"], "base-shift", "the runner's own labels win");
    assert_eq!((&labels["team"], &labels["tier"]), (&json!("pay"), &json!("batch")));
    for key in ["baseshift.io/workflow-id", "baseshift.io/job-id"] {
        assert!(crate::job::is_label_value(labels[key].as_str().unwrap()), "{}", labels[key]);
    }
    assert_eq!(m["metadata"]["annotations"]["baseshift.io/workflow-id"], "wf/with spaces");
    assert_eq!(m["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    let spec = &m["spec"];
    assert_eq!(spec["serviceAccountName"], "payments");
    assert_eq!(spec["automountServiceAccountToken"], true);
    assert_eq!(spec["nodeSelector"]["disk"], "ssd");
    assert_eq!(spec["tolerations"][0]["effect"], "NoSchedule");
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
            [0]["key"],
        "zone"
    );
    assert!(spec.get("volumes").is_none(), "no /tmp volume without a read-only root");
    let c0 = &spec["containers"][0];
    assert_eq!(c0["command"], json!(["/pay"]));
    assert_eq!(c0["securityContext"]["readOnlyRootFilesystem"], false);
    assert_eq!(c0["securityContext"]["runAsUser"], 1000);
    assert_eq!(c0["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(crate::config::check_dns_label(m["metadata"]["name"].as_str().unwrap()).is_ok());
}
