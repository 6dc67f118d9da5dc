//! `KafkaEventBus` behaviour beyond the conformance suite, on librdkafka's in-process mock
//! cluster: an engine publishing a workflow's events, the raw message format other Kafka
//! clients see, redelivery after a consumer dies, and the errors of a misconfigured bus.

use baseshift_core::engine::Engine;
use baseshift_core::{
    Delivery, ErrorKind, Event, EventBus, JobSpec, JobStatus, Subscription, Topic, WorkflowId, WorkflowTemplate,
};
use baseshift_kafka::KafkaEventBus;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Long enough for a mock consumer group to form (about 3 s) and deliver.
const WAIT: Duration = Duration::from_secs(20);

async fn mock_bus() -> KafkaEventBus {
    KafkaEventBus::builder()
        .mock_cluster(1)
        .create_topics(4, 1)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot start the bus on librdkafka's mock cluster: {e}"))
}

async fn next(sub: &mut Subscription) -> Delivery {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Ok(d))) => d,
        Ok(Some(Err(e))) => panic!("the subscription failed: {e}"),
        Ok(None) => panic!("the subscription ended"),
        Err(_) => panic!("no delivery within {WAIT:?}"),
    }
}

fn job_event(wf: &WorkflowId, n: u32) -> Event {
    Event::job(wf, format!("job{n}"), JobStatus::Running, n, None)
}

/// A raw Kafka consumer in `group`, as another service would run one.
fn raw_consumer(bus: &KafkaEventBus, group: &str, topics: &[Topic]) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bus.bootstrap_servers())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "4000")
        .set("heartbeat.interval.ms", "100")
        .create()
        .expect("a raw consumer");
    let names: Vec<&str> = topics.iter().map(|&t| bus.topic_name(t)).collect();
    consumer.subscribe(&names).expect("subscribe the raw consumer");
    consumer
}

/// Checks the plan's JSON shape of one event and returns `type:job` (or just the type).
fn check_shape(value: &Value, wf: &WorkflowId, topic: Topic) -> String {
    let keys: Vec<&String> = value.as_object().unwrap_or_else(|| panic!("not an object: {value}")).keys().collect();
    assert_eq!(keys, ["event_type", "payload", "timestamp"], "{value}");
    let payload_keys = value["payload"].as_object().unwrap_or_else(|| panic!("no payload object in {value}")).keys();
    for key in payload_keys {
        assert!(
            ["workflow_id", "job_id", "status", "result", "attempt", "duration_ms", "resource_usage"]
                .contains(&key.as_str()),
            "{value}"
        );
    }
    let event_type = value["event_type"].as_str().unwrap_or_else(|| panic!("no event_type in {value}"));
    let timestamp = value["timestamp"].as_str().unwrap_or_else(|| panic!("no timestamp in {value}"));
    assert!(timestamp.contains('T'), "timestamp `{timestamp}` is not RFC 3339");
    let payload = &value["payload"];
    assert_eq!(payload["workflow_id"], json!(wf.as_str()), "{value}");
    let status = payload["status"].as_str().unwrap_or_else(|| panic!("no payload.status in {value}"));
    assert_eq!(status, status.to_ascii_uppercase(), "{value}");
    match topic {
        Topic::JobEvents => {
            assert!(event_type.starts_with("job_"), "{value}");
            let job = payload["job_id"].as_str().unwrap_or_else(|| panic!("no payload.job_id in {value}"));
            assert_eq!(event_type, format!("job_{}", status.to_ascii_lowercase()), "{value}");
            format!("{event_type}:{job}")
        }
        _ => {
            assert!(event_type.starts_with("workflow_"), "{value}");
            assert!(payload.get("job_id").is_none(), "{value}");
            event_type.to_owned()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_group_reads_every_event_of_an_engine_workflow_in_order() {
    let bus = mock_bus().await;
    let engine = Engine::builder().event_bus(Arc::new(bus.clone())).build().expect("engine");
    engine.launch().await.expect("launch");
    let template = WorkflowTemplate::new("kafka-chain", baseshift_core::semver::Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop").config(json!({ "output": { "n": 1 } })))
        .job(JobSpec::new("b", "noop"))
        .job(JobSpec::new("c", "noop"));
    engine.register_template(template).await.expect("register");
    let id = engine.start("kafka-chain", json!({})).await.expect("start");
    tokio::time::timeout(WAIT, engine.wait(&id)).await.expect("workflow finished in time").expect("wait");

    let consumer = raw_consumer(&bus, "audit", &[Topic::JobEvents, Topic::WorkflowEvents]);
    let (mut jobs, mut workflows) = (Vec::new(), Vec::new());
    while jobs.len() < 9 || workflows.len() < 3 {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {jobs:?} and {workflows:?} within {WAIT:?}"))
            .expect("consume");
        assert_eq!(message.key(), Some(id.as_str().as_bytes()), "messages are keyed by workflow id");
        let raw = message.payload().expect("a value");
        let value: Value = serde_json::from_slice(raw).expect("the value is JSON");
        serde_json::from_value::<Event>(value.clone()).expect("the value decodes as an event");
        if message.topic() == bus.topic_name(Topic::JobEvents) {
            let label = check_shape(&value, &id, Topic::JobEvents);
            if label == "job_succeeded:a" {
                assert_eq!(value["payload"]["result"], json!({ "n": 1 }), "the job's output travels as `result`");
            }
            jobs.push(label);
        } else {
            workflows.push(check_shape(&value, &id, Topic::WorkflowEvents));
        }
    }
    let expected_jobs: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|j| ["job_ready", "job_running", "job_succeeded"].map(|t| format!("{t}:{j}")))
        .collect();
    assert_eq!(jobs, expected_jobs);
    assert_eq!(workflows, ["workflow_initialized", "workflow_running", "workflow_completed"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_before_acking_has_its_events_redelivered_to_the_group() {
    let bus = mock_bus().await;
    let wf = WorkflowId::generate();
    let events: Vec<Event> = (0..3).map(|n| job_event(&wf, n)).collect();
    for event in &events {
        bus.publish(event).await.expect("publish");
    }
    let mut dying = bus.subscribe(&[Topic::JobEvents], "workers").await.expect("subscribe");
    let (d0, d1, d2) = (next(&mut dying).await, next(&mut dying).await, next(&mut dying).await);
    let attempts: Vec<_> = [&d0, &d1, &d2].iter().map(|d| d.event.payload.attempt).collect();
    assert_eq!(attempts, [Some(0), Some(1), Some(2)]);
    d0.ack().await.expect("ack 0");
    d2.ack().await.expect("ack 2");
    // The consumer dies while processing event 1.
    drop(dying);
    drop(d1);

    let mut next_member = bus.subscribe(&[Topic::JobEvents], "workers").await.expect("subscribe again");
    let again = next(&mut next_member).await;
    assert_eq!(again.event, events[1], "event 1 comes back, event 0 does not");
    again.ack().await.expect("ack 1");
    // Event 2 was acknowledged out of order: only the contiguous prefix (event 0) was
    // committed, so the group sees it again too.
    let two = next(&mut next_member).await;
    assert_eq!(two.event, events[2]);
    two.ack().await.expect("ack 2 again");
    let quiet = tokio::time::timeout(Duration::from_secs(1), next_member.next()).await;
    assert!(quiet.is_err(), "nothing else is delivered: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_reported_then_skipped() {
    let bus = mock_bus().await;
    let wf = WorkflowId::generate();
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bus.bootstrap_servers()).create().expect("raw producer");
    producer
        .send(
            FutureRecord::to(bus.topic_name(Topic::JobEvents)).key(wf.as_str()).payload("not json"),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("raw publish");
    let event = job_event(&wf, 7);
    bus.publish(&event).await.expect("publish");

    let mut sub = bus.subscribe(&[Topic::JobEvents], "readers").await.expect("subscribe");
    let err = match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Err(e))) => e,
        other => panic!("expected an error for the undecodable message, got {other:?}"),
    };
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("job_events"), "{err}");
    let d = next(&mut sub).await;
    assert_eq!(d.event, event);
    d.ack().await.expect("ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_without_creation_is_not_found_and_names_the_topic() {
    let err = KafkaEventBus::builder().mock_cluster(1).topic_prefix("absent.").connect().await.expect_err("no topics");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("absent.job_events"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_invalid_input_and_the_mock_is_not_durable() {
    let bus = mock_bus().await;
    let caps = bus.capabilities();
    assert_eq!((caps.name, caps.durable), ("kafka", false));
    let empty_group = bus.subscribe(&[Topic::JobEvents], " ").await.expect_err("empty group");
    assert_eq!(empty_group.kind(), ErrorKind::InvalidInput);
    let no_topics = bus.subscribe(&[], "g").await.expect_err("no topics");
    assert_eq!(no_topics.kind(), ErrorKind::InvalidInput);
    assert_eq!(bus.topic_name(Topic::SystemEvents), "system_events");
}

/// Stock Kafka tooling reads the events: `kcat` (Debian package `kcat`, installed by
/// `scripts/services.sh`) consumes the job topic from the mock cluster's real TCP listener
/// and prints each message's key and JSON value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_reads_the_events_keys_and_json() {
    let bus = mock_bus().await;
    let wf = WorkflowId::generate();
    let events: Vec<Event> = (0..3).map(|n| job_event(&wf, n)).collect();
    for event in &events {
        bus.publish(event).await.expect("publish");
    }
    let topic = bus.topic_name(Topic::JobEvents).to_owned();
    let brokers = bus.bootstrap_servers().to_owned();
    // `-e` exits at the end of each partition; `-f` prints key TAB value per message.
    let run = tokio::process::Command::new("kcat")
        .args(["-b", &brokers, "-C", "-t", &topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, run)
        .await
        .expect("kcat finished in time")
        .unwrap_or_else(|e| panic!("cannot run kcat ({e}); install it with `scripts/services.sh` (apt: kcat)"));
    assert!(out.status.success(), "kcat failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("kcat prints UTF-8");
    let mut seen = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once('\t').unwrap_or_else(|| panic!("no key/value in `{line}`"));
        assert_eq!(key, wf.as_str(), "kcat sees the workflow id as the key");
        let value: Value = serde_json::from_str(value).unwrap_or_else(|e| panic!("`{value}` is not JSON: {e}"));
        check_shape(&value, &wf, Topic::JobEvents);
        seen.push(serde_json::from_value::<Event>(value).expect("an event"));
    }
    assert_eq!(seen, events, "every event, in order (one key: one partition)");
}
