//! The event bus conformance suite against Kafka.
//!
//! `mock` runs every check on librdkafka's in-process mock cluster (a fresh one per test), on
//! every `cargo test`. `broker` runs them again on the real brokers of `BASESHIFT_KAFKA_BROKERS`
//! (fresh topics per test); when the variable is not set it says so and uses the mock too.

use baseshift_kafka::{ENV_VAR, KafkaEventBus};

/// Sends the bus's and librdkafka's warnings (e.g. a commit the group refused) to the test's
/// captured output, shown when a check fails; `RUST_LOG` overrides the level.
fn capture_warnings() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Only the first call installs it; the others find it installed.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().with_ansi(false).try_init();
}

/// A bus on a fresh in-process mock cluster, topics created.
async fn mock_bus() -> KafkaEventBus {
    capture_warnings();
    KafkaEventBus::builder()
        .mock_cluster(1)
        .create_topics(4, 1)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot start the bus on librdkafka's mock cluster: {e}"))
}

/// A bus on the real brokers of `BASESHIFT_KAFKA_BROKERS`, with topics of its own.
async fn broker_bus() -> KafkaEventBus {
    capture_warnings();
    let Some(brokers) = std::env::var(ENV_VAR).ok().filter(|b| !b.trim().is_empty()) else {
        eprintln!(
            "{ENV_VAR} is not set: this check ran against librdkafka's in-process mock cluster only; \
             set it (e.g. {ENV_VAR}=localhost:9092) to run the suite against a real broker too"
        );
        return mock_bus().await;
    };
    let prefix = format!("baseshift-test-{}.", baseshift_core::WorkflowId::generate());
    KafkaEventBus::builder().brokers(&brokers).topic_prefix(prefix).create_topics(3, -1).connect().await.unwrap_or_else(
        |e| {
            panic!(
                "cannot use the Kafka brokers at `{brokers}` ({ENV_VAR}): {e}. Start a broker there, or unset \
                 {ENV_VAR} to run against the in-process mock cluster only"
            )
        },
    )
}

mod mock {
    use super::mock_bus;

    baseshift_core::event_bus_conformance!(mock_bus().await);
}

mod broker {
    use super::broker_bus;

    baseshift_core::event_bus_conformance!(broker_bus().await);
}
