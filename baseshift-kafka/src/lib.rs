//! The baseshift event bus on Apache Kafka: [`KafkaEventBus`], built on librdkafka (`rdkafka`).
//!
//! Every state transition of a baseshift workflow is an [`Event`](baseshift_core::Event) on one
//! of three topics: `job_events`, `workflow_events` and `system_events`. With this crate those
//! topics are Kafka topics, so other services read a workflow's progress with any Kafka client:
//! each message is keyed by the workflow id and its value is the event's JSON,
//!
//! ```json
//! {"event_type": "job_succeeded", "timestamp": "2025-01-01T12:00:00Z",
//!  "payload": {"workflow_id": "wf-...", "job_id": "charge", "status": "SUCCEEDED",
//!              "result": {"amount": 12.5}, "attempt": 1}}
//! ```
//!
//! # Guarantees
//!
//! - `publish` returns once the broker confirmed the write (idempotent producer, `acks=all`):
//!   no duplicates from producer retries, and one workflow's events stay in order because they
//!   share a key, hence a partition.
//! - Consumer groups get at-least-once delivery: offsets are committed after acknowledgement,
//!   only up to the lowest unacknowledged delivery; a delivery dropped without acknowledgement
//!   is delivered again, and a crash or rebalance redelivers what was not committed.
//! - Not provided: exactly-once processing (consumers must tolerate redelivery), and ordering
//!   across workflows or topics. Events without a workflow id (most system events) have no key
//!   and are spread over partitions, so they have no order among themselves.
//!
//! # Wiring it into an engine
//!
//! ```no_run
//! use baseshift_core::engine::Engine;
//! use baseshift_kafka::KafkaEventBus;
//! use std::sync::Arc;
//!
//! # async fn run() -> baseshift_core::Result<()> {
//! // Brokers from BASESHIFT_KAFKA_BROKERS (or `.brokers("kafka-1:9092,kafka-2:9092")`).
//! let bus = KafkaEventBus::builder()
//!     .topic_prefix("orders.")
//!     .create_topics(6, 3)
//!     .property("security.protocol", "sasl_ssl")
//!     .property("sasl.mechanism", "SCRAM-SHA-512")
//!     .property("sasl.username", "baseshift")
//!     .property("sasl.password", "secret")
//!     .connect()
//!     .await?;
//! let engine = Engine::builder().event_bus(Arc::new(bus)).build()?;
//! engine.launch().await?;
//!
//! // Elsewhere: follow every workflow's progress in a consumer group.
//! use baseshift_core::{EventBus, Topic};
//! let mut events = engine.event_bus().subscribe(&[Topic::WorkflowEvents], "dashboard").await?;
//! while let Some(delivery) = events.next().await {
//!     let delivery = delivery?;
//!     println!("{} {}", delivery.event.event_type, delivery.event.payload.workflow_id);
//!     delivery.ack().await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//!
//! [`KafkaConfig`] (serde, or the builder from [`KafkaEventBus::builder`]) holds the brokers
//! (default from the `BASESHIFT_KAFKA_BROKERS` environment variable, else `localhost:9092`),
//! topic names and prefix, whether to create missing topics (with partitions and replication
//! factor; otherwise a missing topic is a `NotFound` error at connect), producer and consumer
//! timeouts, and extra librdkafka properties for SASL, SSL or compression. TLS needs the crate
//! feature `ssl` (links the system OpenSSL), gzip the feature `libz`.
//!
//! For tests and demos, [`KafkaEventBusBuilder::mock_cluster`] runs the bus on librdkafka's
//! in-process mock cluster: no broker needed, nothing durable.

mod bus;
mod config;
mod consumer;
mod context;
mod error;
mod offsets;

pub use bus::KafkaEventBus;
pub use config::{ENV_VAR, KafkaConfig, KafkaEventBusBuilder, TopicNames};
