//! [`KafkaEventBus`]: connecting, checking or creating topics, publishing, subscribing.

use crate::config::{KafkaConfig, KafkaEventBusBuilder};
use crate::context::TracingContext;
use crate::error::{BACKEND, error, kafka_error, kind_of_code};
use async_trait::async_trait;
use baseshift_core::bus::BusCapabilities;
use baseshift_core::{ErrorKind, Event, EventBus, Result, Subscription, Topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

const CONNECT: &str = "KafkaEventBus::connect";
const PUBLISH: &str = "EventBus::publish";

/// The [`EventBus`] on Apache Kafka (through librdkafka).
///
/// Each [`Topic`] is a Kafka topic (names configurable, see [`KafkaConfig`]). Events are
/// published by an idempotent producer (`acks=all`), keyed by their workflow id so that one
/// workflow's events stay in one partition, in order; the message value is the event's JSON
/// (`{"event_type", "timestamp", "payload": {...}}`). [`EventBus::publish`] returns once the
/// broker has confirmed the write.
///
/// [`EventBus::subscribe`] makes a Kafka consumer in the group. Offsets are committed only
/// for acknowledged deliveries, and only up to the lowest delivery not yet acknowledged, so
/// a crash or rebalance redelivers what was not processed. Delivery is at least once: a
/// group that refuses commits while it rebalances (librdkafka's mock cluster refuses them for
/// the whole rebalance; a real broker accepts them until the group starts syncing) has the
/// events acknowledged just before the rebalance delivered again to their partition's next owner. A [`Delivery`](baseshift_core::Delivery)
/// dropped without acknowledgement makes its member seek back and deliver it again.
/// Dropping the [`Subscription`] leaves the group; its unacknowledged events go to the
/// remaining members. Acknowledging a delivery after its subscription was dropped, or after a
/// rebalance moved its partition to another member, fails with `Conflict`: the group will
/// deliver that event again. Keep polling a subscription: a member silent for longer than
/// librdkafka's `max.poll.interval.ms` (5 minutes by default) is removed from its group.
///
/// Cloning the bus gives another handle to the same producer.
#[derive(Clone)]
pub struct KafkaEventBus {
    shared: Arc<Shared>,
}

/// What the bus's clones and subscriptions share.
pub(crate) struct Shared {
    pub(crate) config: KafkaConfig,
    /// The bootstrap servers consumers and admin clients use (the mock's when on the mock).
    pub(crate) bootstrap: String,
    /// Kafka topic names, indexed like [`Topic::ALL`].
    names: [String; 3],
    /// Also owns the mock cluster, when on the mock.
    producer: FutureProducer<TracingContext>,
}

impl Shared {
    fn name(&self, topic: Topic) -> &str {
        let index = Topic::ALL.iter().position(|&t| t == topic).unwrap_or_default();
        &self.names[index]
    }

    /// The baseshift topic published on the Kafka topic `name`.
    pub(crate) fn topic_of(&self, name: &str) -> Option<Topic> {
        Topic::ALL.iter().zip(&self.names).find(|(_, n)| *n == name).map(|(&t, _)| t)
    }
}

impl fmt::Debug for KafkaEventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaEventBus")
            .field("bootstrap", &self.shared.bootstrap)
            .field("topics", &self.shared.names)
            .field("mock", &self.shared.config.is_mock())
            .finish_non_exhaustive()
    }
}

impl KafkaEventBus {
    /// A builder starting from [`KafkaConfig::from_env`] (brokers from `BASESHIFT_KAFKA_BROKERS`).
    pub fn builder() -> KafkaEventBusBuilder {
        KafkaEventBusBuilder::from_config(KafkaConfig::from_env())
    }

    /// Validates `config`, creates the producer, creates missing topics when
    /// [`KafkaConfig::create_topics`] is set, and checks that every topic exists.
    ///
    /// Errors: `InvalidInput` for bad settings, `NotFound` naming a missing topic,
    /// `Unavailable` or `Timeout` when the brokers cannot be reached.
    pub async fn connect(config: KafkaConfig) -> Result<KafkaEventBus> {
        config.validate()?;
        let producer: FutureProducer<TracingContext> = config
            .producer_config()
            .create_with_context(TracingContext)
            .map_err(|e| kafka_error(CONNECT, "create the Kafka producer", e))?;
        let names = Topic::ALL.map(|t| config.topic_name(t));
        let bootstrap = if config.is_mock() {
            mock_setup(&config, &producer, &names)?
        } else {
            if config.create_topics {
                create_topics(&config, &names).await?;
            }
            config.brokers.clone()
        };
        let shared = Arc::new(Shared { config, bootstrap, names, producer });
        check_topics(&shared).await?;
        Ok(KafkaEventBus { shared })
    }

    /// The settings the bus runs with.
    pub fn config(&self) -> &KafkaConfig {
        &self.shared.config
    }

    /// The Kafka topic name of `topic`.
    pub fn topic_name(&self, topic: Topic) -> &str {
        self.shared.name(topic)
    }

    /// The bootstrap servers consumers connect to: the configured brokers, or the
    /// in-process mock cluster's listeners (usable by other Kafka clients of this process).
    pub fn bootstrap_servers(&self) -> &str {
        &self.shared.bootstrap
    }
}

/// On the mock cluster: creates the topics through the mock's own API (the mock has no
/// admin API) and returns its bootstrap servers.
fn mock_setup(config: &KafkaConfig, producer: &FutureProducer<TracingContext>, names: &[String]) -> Result<String> {
    let mock = producer.client().mock_cluster().ok_or_else(|| {
        error(ErrorKind::Internal, CONNECT, "librdkafka did not start the mock cluster (`test.mock.num.brokers`)")
    })?;
    if config.create_topics {
        let brokers = i32::try_from(config.mock_brokers).unwrap_or(1);
        let partitions = if config.partitions > 0 { config.partitions } else { 4 };
        let replicas = if config.replication_factor > 0 { config.replication_factor.min(brokers) } else { 1 };
        for name in names {
            mock.create_topic(name, partitions, replicas)
                .map_err(|e| kafka_error(CONNECT, format!("create topic `{name}` on the mock cluster"), e))?;
        }
    }
    Ok(mock.bootstrap_servers())
}

/// Creates the topics through the admin API; topics that already exist are fine.
async fn create_topics(config: &KafkaConfig, names: &[String]) -> Result<()> {
    let admin: AdminClient<TracingContext> = config
        .admin_config(&config.brokers)
        .create_with_context(TracingContext)
        .map_err(|e| kafka_error(CONNECT, "create the Kafka admin client", e))?;
    let timeout = Duration::from_millis(u64::from(config.request_timeout_ms));
    let options = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, config.partitions, TopicReplication::Fixed(config.replication_factor)))
        .collect();
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| kafka_error(CONNECT, format!("create topics {names:?}"), e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(error(kind_of_code(code), CONNECT, format!("create topic `{name}`: {code}")));
            }
        }
    }
    Ok(())
}

/// Fails with `NotFound` naming the first topic the cluster does not have.
async fn check_topics(shared: &Arc<Shared>) -> Result<()> {
    let shared = Arc::clone(shared);
    let timeout = Duration::from_millis(u64::from(shared.config.request_timeout_ms));
    // librdkafka's metadata request blocks its caller.
    let checked = tokio::task::spawn_blocking(move || -> Result<()> {
        for name in &shared.names {
            let metadata = shared.producer.client().fetch_metadata(Some(name), timeout).map_err(|e| {
                kafka_error(CONNECT, format!("fetch metadata of topic `{name}` from {}", shared.bootstrap), e)
            })?;
            let topic = metadata.topics().iter().find(|t| t.name() == name.as_str());
            let code: Option<RDKafkaErrorCode> = match topic {
                None => Some(RDKafkaErrorCode::UnknownTopicOrPartition),
                Some(t) => t.error().map(Into::into),
            };
            match code {
                None => {}
                Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                    return Err(error(
                        ErrorKind::NotFound,
                        CONNECT,
                        format!(
                            "Kafka topic `{name}` does not exist on {}; create it or enable `create_topics`",
                            shared.bootstrap
                        ),
                    ));
                }
                Some(code) => {
                    return Err(error(kind_of_code(code), CONNECT, format!("topic `{name}` is unusable: {code}")));
                }
            }
        }
        Ok(())
    })
    .await;
    checked.map_err(|e| error(ErrorKind::Internal, CONNECT, format!("the topic check task failed: {e}")))?
}

#[async_trait]
impl EventBus for KafkaEventBus {
    fn capabilities(&self) -> BusCapabilities {
        BusCapabilities::new(BACKEND, !self.shared.config.is_mock())
    }

    async fn publish(&self, event: &Event) -> Result<()> {
        let name = self.shared.name(event.topic());
        let payload = serde_json::to_vec(event).map_err(|e| {
            error(ErrorKind::InvalidInput, PUBLISH, format!("encode {} as JSON: {e}", event.event_type))
        })?;
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(name).payload(&payload);
        if !event.key().is_empty() {
            record = record.key(event.key());
        }
        let queue_timeout = Duration::from_millis(u64::from(self.shared.config.delivery_timeout_ms));
        match self.shared.producer.send(record, queue_timeout).await {
            Ok(_) => Ok(()),
            Err((e, _)) => {
                Err(kafka_error(PUBLISH, format!("publish {} to `{name}`", event.event_type), e)
                    .with_workflow(event.key()))
            }
        }
    }

    async fn subscribe(&self, topics: &[Topic], group: &str) -> Result<Subscription> {
        let op = "EventBus::subscribe";
        if group.trim().is_empty() {
            return Err(error(ErrorKind::InvalidInput, op, "the consumer group name is empty"));
        }
        if topics.is_empty() {
            return Err(error(ErrorKind::InvalidInput, op, format!("no topics given for group `{group}`")));
        }
        let mut topics = topics.to_vec();
        topics.sort_unstable();
        topics.dedup();
        let names: Vec<String> = topics.iter().map(|&t| self.shared.name(t).to_owned()).collect();
        crate::consumer::subscribe(Arc::clone(&self.shared), &names, group)
    }
}
