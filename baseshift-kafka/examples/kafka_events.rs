//! Runs a small workflow with its events on Kafka and prints them as they arrive.
//!
//! ```text
//! cargo run -p baseshift-kafka --example kafka_events
//! BASESHIFT_KAFKA_BROKERS=localhost:9092 cargo run -p baseshift-kafka --example kafka_events
//! ```
//!
//! Without `BASESHIFT_KAFKA_BROKERS` it runs on librdkafka's in-process mock cluster, so it
//! works anywhere; with it, it creates the three topics if needed and uses the real brokers.

use baseshift_core::engine::Engine;
use baseshift_core::{Event, EventBus, JobSpec, Topic, WorkflowId, WorkflowTemplate};
use baseshift_kafka::{ENV_VAR, KafkaEventBus};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> baseshift_core::Result<()> {
    let bus = match std::env::var(ENV_VAR).ok().filter(|b| !b.trim().is_empty()) {
        Some(brokers) => {
            println!("using the Kafka brokers at {brokers} ({ENV_VAR})");
            KafkaEventBus::builder().brokers(brokers).create_topics(3, -1).connect().await?
        }
        None => {
            println!(
                "{ENV_VAR} is not set: using librdkafka's in-process mock cluster (nothing leaves this process; \
                 set {ENV_VAR}=host:9092 to use real brokers)"
            );
            KafkaEventBus::builder().mock_cluster(1).create_topics(3, 1).connect().await?
        }
    };
    println!("bootstrap servers: {}", bus.bootstrap_servers());

    let engine = Engine::builder().event_bus(Arc::new(bus.clone())).build()?;
    engine.launch().await?;
    let template = WorkflowTemplate::new("kafka-events-demo", baseshift_core::semver::Version::new(1, 0, 0))
        .job(JobSpec::new("fetch", "noop").config(json!({ "output": { "rows": 3 } })))
        .job(JobSpec::new("transform", "delay").config(json!({ "duration": "2s" })))
        .job(JobSpec::new("store", "noop").config(json!({ "output": { "stored": true } })))
        .job(JobSpec::new("notify", "delay").config(json!({ "duration": "1s" })));
    engine.register_template(template).await?;

    // Joining a consumer group takes a few seconds (3 s on the mock). A marker event on
    // `system_events` tells us when this group receives events, so the workflow starts then
    // and its events are printed live. (A fresh group starts at the earliest retained event,
    // so nothing would be lost anyway; events of earlier runs are filtered out below.)
    let group = format!("kafka-events-example-{}", WorkflowId::generate());
    let topics = [Topic::JobEvents, Topic::WorkflowEvents, Topic::SystemEvents];
    let mut events = bus.subscribe(&topics, &group).await?;
    let marker = json!({ "group": group });
    bus.publish(&Event::system("example_listening", marker.clone())).await?;
    let joined = Instant::now();
    loop {
        let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_secs(30), events.next()).await else {
            println!("the consumer group did not receive events within 30 s");
            return Ok(());
        };
        let delivery = delivery?;
        let ours =
            delivery.event.event_type == "example_listening" && delivery.event.payload.result == Some(marker.clone());
        delivery.ack().await?;
        if ours {
            break;
        }
    }
    println!("group {group} receives events ({:.1}s to join)", joined.elapsed().as_secs_f64());
    let id = engine.start("kafka-events-demo", json!({})).await?;
    println!("started workflow {id}; its events as they arrive:");

    let started = Instant::now();
    // Job and workflow events travel on different topics: after the workflow's final event,
    // keep reading until the topics are quiet for a second.
    let mut finished = false;
    loop {
        let patience = if finished { Duration::from_secs(1) } else { Duration::from_secs(30) };
        let Ok(next) = tokio::time::timeout(patience, events.next()).await else {
            if !finished {
                println!("no event for {patience:?}; giving up");
            }
            break;
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        let event = &delivery.event;
        if event.payload.workflow_id == id {
            let result = event.payload.result.as_ref().map(|r| format!(" result={r}")).unwrap_or_default();
            println!(
                "{:>7.3}s  {:<15}  {:<20} {:<10} {}{result}",
                started.elapsed().as_secs_f64(),
                delivery.topic.as_str(),
                event.event_type,
                event.payload.job_id.as_deref().unwrap_or("-"),
                event.payload.status,
            );
            finished |= delivery.topic == Topic::WorkflowEvents
                && !matches!(event.event_type.as_str(), "workflow_initialized" | "workflow_running");
        }
        delivery.ack().await?;
    }
    let record = engine.wait(&id).await?;
    println!("workflow {id} finished: {}", record.status.as_str());
    engine.shutdown().await;
    Ok(())
}
