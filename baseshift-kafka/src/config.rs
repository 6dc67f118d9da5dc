//! [`KafkaConfig`]: where the brokers are, what the topics are called, how clients are tuned.

use crate::error::error;
use baseshift_core::{ErrorKind, Result, Topic};
use rdkafka::config::ClientConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The environment variable [`KafkaConfig::from_env`] reads the broker list from.
pub const ENV_VAR: &str = "BASESHIFT_KAFKA_BROKERS";

/// librdkafka properties the bus sets itself; [`KafkaConfig::properties`] may not override them.
const MANAGED_PROPERTIES: [&str; 7] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.idempotence",
    "auto.offset.reset",
    "enable.partition.eof",
    "test.mock.num.brokers",
];

/// Parts of property names whose values are secrets, hidden by `Debug`.
const SECRET_MARKERS: [&str; 6] = ["password", "secret", "token", "jaas", "oauthbearer.config", "key.pem"];

/// The Kafka topic names of the three baseshift [`Topic`]s (before [`KafkaConfig::topic_prefix`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TopicNames {
    /// The topic of job events (default `job_events`).
    pub job_events: String,
    /// The topic of workflow events (default `workflow_events`).
    pub workflow_events: String,
    /// The topic of system events (default `system_events`).
    pub system_events: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            job_events: Topic::JobEvents.as_str().to_owned(),
            workflow_events: Topic::WorkflowEvents.as_str().to_owned(),
            system_events: Topic::SystemEvents.as_str().to_owned(),
        }
    }
}

impl TopicNames {
    /// The configured name of `topic`, without prefix.
    pub fn name(&self, topic: Topic) -> &str {
        match topic {
            Topic::JobEvents => &self.job_events,
            Topic::WorkflowEvents => &self.workflow_events,
            Topic::SystemEvents => &self.system_events,
        }
    }

    fn name_mut(&mut self, topic: Topic) -> &mut String {
        match topic {
            Topic::JobEvents => &mut self.job_events,
            Topic::WorkflowEvents => &mut self.workflow_events,
            Topic::SystemEvents => &mut self.system_events,
        }
    }
}

/// Settings of a [`KafkaEventBus`](crate::KafkaEventBus); build one with
/// [`KafkaEventBus::builder`](crate::KafkaEventBus::builder) or deserialize it.
///
/// Defaults: brokers `localhost:9092` (or [`ENV_VAR`] through [`KafkaConfig::from_env`]),
/// topics `job_events`, `workflow_events`, `system_events` without prefix, topics must exist
/// (`create_topics = false`), producer `acks=all` with idempotence, `linger.ms=5`, delivery
/// timeout 30 s; consumers commit manually, start a new group at the earliest retained
/// event, session timeout 10 s and heartbeat every 3 s.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// The bootstrap brokers, comma-separated `host:port` (librdkafka `bootstrap.servers`).
    pub brokers: String,
    /// When above zero, the bus starts librdkafka's in-process mock cluster with this many
    /// brokers and ignores `brokers`: for tests and demos, nothing outlives the bus.
    pub mock_brokers: u32,
    /// Prepended to every topic name, e.g. `staging.`.
    pub topic_prefix: String,
    /// The topic names.
    pub topics: TopicNames,
    /// Create missing topics at connect through the admin API; otherwise a missing topic is a
    /// `NotFound` error naming it.
    pub create_topics: bool,
    /// Partitions of created topics (`-1`: the broker's `num.partitions`).
    pub partitions: i32,
    /// Replication factor of created topics (`-1`: the broker's `default.replication.factor`).
    pub replication_factor: i32,
    /// librdkafka `client.id` of every client the bus creates.
    pub client_id: String,
    /// How long the producer waits to batch events (`linger.ms`).
    pub linger_ms: u32,
    /// How long `publish` waits for the broker's confirmation (`message.timeout.ms`).
    pub delivery_timeout_ms: u32,
    /// Timeout of the metadata and admin requests made by `connect`.
    pub request_timeout_ms: u32,
    /// Consumer group session timeout (`session.timeout.ms`); default 10 s, 4 s on the mock
    /// (whose groups wait 3 s for members before their first assignment).
    pub session_timeout_ms: Option<u32>,
    /// Consumer heartbeat interval (`heartbeat.interval.ms`); default 3 s, 100 ms on the mock.
    pub heartbeat_interval_ms: Option<u32>,
    /// Extra librdkafka properties for every client, e.g. `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`,
    /// `compression.type`. Applied after the defaults above, so they override them; the
    /// properties the bus manages itself (`group.id`, `enable.auto.commit`, ...) are refused.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            mock_brokers: 0,
            topic_prefix: String::new(),
            topics: TopicNames::default(),
            create_topics: false,
            partitions: 6,
            replication_factor: -1,
            client_id: "baseshift".into(),
            linger_ms: 5,
            delivery_timeout_ms: 30_000,
            request_timeout_ms: 10_000,
            session_timeout_ms: None,
            heartbeat_interval_ms: None,
            properties: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_MARKERS.iter().any(|m| k.to_ascii_lowercase().contains(m));
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("mock_brokers", &self.mock_brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("topics", &self.topics)
            .field("create_topics", &self.create_topics)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("client_id", &self.client_id)
            .field("linger_ms", &self.linger_ms)
            .field("delivery_timeout_ms", &self.delivery_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaConfig {
    /// The defaults, with `brokers` from [`ENV_VAR`] when it is set and not empty.
    pub fn from_env() -> Self {
        let mut config = KafkaConfig::default();
        if let Some(brokers) = std::env::var(ENV_VAR).ok().filter(|b| !b.trim().is_empty()) {
            config.brokers = brokers;
        }
        config
    }

    /// The full Kafka topic name of `topic` (prefix included).
    pub fn topic_name(&self, topic: Topic) -> String {
        format!("{}{}", self.topic_prefix, self.topics.name(topic))
    }

    /// Whether the bus runs on librdkafka's in-process mock cluster.
    pub fn is_mock(&self) -> bool {
        self.mock_brokers > 0
    }

    /// Checks the settings without any I/O.
    pub fn validate(&self) -> Result<()> {
        let invalid = |msg: String| Err(error(ErrorKind::InvalidInput, "KafkaConfig::validate", msg));
        if !self.is_mock() && self.brokers.trim().is_empty() {
            return invalid(format!("no Kafka brokers configured: set `brokers` or {ENV_VAR}"));
        }
        if self.mock_brokers > 16 {
            return invalid(format!("mock_brokers = {} (at most 16)", self.mock_brokers));
        }
        let names: Vec<String> = Topic::ALL.iter().map(|&t| self.topic_name(t)).collect();
        for (topic, name) in Topic::ALL.iter().zip(&names) {
            if let Err(why) = check_topic_name(name) {
                return invalid(format!("topic name `{name}` (for {topic}) {why}"));
            }
        }
        if names[0] == names[1] || names[1] == names[2] || names[0] == names[2] {
            return invalid(format!("the three topics need distinct names, got {names:?}"));
        }
        if self.partitions == 0 || self.partitions < -1 {
            return invalid(format!("partitions = {} (at least 1, or -1 for the broker default)", self.partitions));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return invalid(format!(
                "replication_factor = {} (at least 1, or -1 for the broker default)",
                self.replication_factor
            ));
        }
        if self.delivery_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return invalid("delivery_timeout_ms and request_timeout_ms must be above zero".into());
        }
        if self.heartbeat_interval_ms() >= self.session_timeout_ms() {
            return invalid(format!(
                "heartbeat_interval_ms ({}) must be below session_timeout_ms ({})",
                self.heartbeat_interval_ms(),
                self.session_timeout_ms()
            ));
        }
        for key in self.properties.keys() {
            if key.trim().is_empty() {
                return invalid("an extra librdkafka property has an empty name".into());
            }
            if MANAGED_PROPERTIES.contains(&key.as_str()) {
                return invalid(format!("property `{key}` is managed by the Kafka event bus and cannot be set"));
            }
        }
        Ok(())
    }

    pub(crate) fn session_timeout_ms(&self) -> u32 {
        self.session_timeout_ms.unwrap_or(if self.is_mock() { 4_000 } else { 10_000 })
    }

    pub(crate) fn heartbeat_interval_ms(&self) -> u32 {
        self.heartbeat_interval_ms.unwrap_or(if self.is_mock() { 100 } else { 3_000 })
    }

    /// Settings shared by every client, ending with the extra properties.
    fn client(&self, bootstrap: &str, role_defaults: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("client.id", &self.client_id).set("allow.auto.create.topics", "false");
        if !bootstrap.is_empty() {
            config.set("bootstrap.servers", bootstrap);
        }
        for (key, value) in role_defaults {
            config.set(*key, value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The idempotent producer; on the mock it also starts the mock cluster.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = self.client(
            if self.is_mock() { "" } else { &self.brokers },
            &[
                ("acks", "all".into()),
                ("linger.ms", self.linger_ms.to_string()),
                ("message.timeout.ms", self.delivery_timeout_ms.to_string()),
            ],
        );
        config.set("enable.idempotence", "true");
        if self.is_mock() {
            config.set("test.mock.num.brokers", self.mock_brokers.to_string());
        }
        config
    }

    /// A member of `group` that commits only what the bus tells it to.
    pub(crate) fn consumer_config(&self, bootstrap: &str, group: &str) -> ClientConfig {
        let mut config = self.client(
            bootstrap,
            &[
                ("session.timeout.ms", self.session_timeout_ms().to_string()),
                ("heartbeat.interval.ms", self.heartbeat_interval_ms().to_string()),
            ],
        );
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        config
    }

    /// A client for admin requests.
    pub(crate) fn admin_config(&self, bootstrap: &str) -> ClientConfig {
        self.client(bootstrap, &[])
    }
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 249 {
        return Err("must have 1 to 249 characters");
    }
    if name == "." || name == ".." {
        return Err("cannot be `.` or `..`");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("may contain only ASCII letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

/// Builds a [`KafkaConfig`]; from [`KafkaEventBus::builder`](crate::KafkaEventBus::builder).
#[must_use]
#[derive(Clone, Debug, Default)]
pub struct KafkaEventBusBuilder {
    config: KafkaConfig,
}

impl KafkaEventBusBuilder {
    /// A builder starting from `config`.
    pub fn from_config(config: KafkaConfig) -> Self {
        KafkaEventBusBuilder { config }
    }

    /// The bootstrap brokers, comma-separated `host:port`.
    pub fn brokers(mut self, brokers: impl Into<String>) -> Self {
        self.config.brokers = brokers.into();
        self
    }

    /// Runs on librdkafka's in-process mock cluster with `brokers` brokers instead of real
    /// brokers (tests, demos); `0` goes back to real brokers.
    pub fn mock_cluster(mut self, brokers: u32) -> Self {
        self.config.mock_brokers = brokers;
        self
    }

    /// Prepends `prefix` to every topic name.
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.topic_prefix = prefix.into();
        self
    }

    /// Names the Kafka topic of `topic` (before the prefix).
    pub fn topic_name(mut self, topic: Topic, name: impl Into<String>) -> Self {
        *self.config.topics.name_mut(topic) = name.into();
        self
    }

    /// Creates missing topics at connect with `partitions` partitions and
    /// `replication_factor` replicas (`-1`: the broker's default for either).
    pub fn create_topics(mut self, partitions: i32, replication_factor: i32) -> Self {
        self.config.create_topics = true;
        self.config.partitions = partitions;
        self.config.replication_factor = replication_factor;
        self
    }

    /// The librdkafka `client.id`.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.config.client_id = client_id.into();
        self
    }

    /// How long the producer waits to batch events.
    pub fn linger_ms(mut self, ms: u32) -> Self {
        self.config.linger_ms = ms;
        self
    }

    /// How long `publish` waits for the broker's confirmation.
    pub fn delivery_timeout_ms(mut self, ms: u32) -> Self {
        self.config.delivery_timeout_ms = ms;
        self
    }

    /// Timeout of the metadata and admin requests made by `connect`.
    pub fn request_timeout_ms(mut self, ms: u32) -> Self {
        self.config.request_timeout_ms = ms;
        self
    }

    /// Consumer group session timeout and heartbeat interval.
    pub fn group_timeouts(mut self, session_timeout_ms: u32, heartbeat_interval_ms: u32) -> Self {
        self.config.session_timeout_ms = Some(session_timeout_ms);
        self.config.heartbeat_interval_ms = Some(heartbeat_interval_ms);
        self
    }

    /// Sets an extra librdkafka property for every client (SASL, SSL, compression, ...).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.properties.insert(key.into(), value.into());
        self
    }

    /// The validated configuration (no I/O).
    pub fn build(self) -> Result<KafkaConfig> {
        self.config.validate()?;
        Ok(self.config)
    }

    /// Validates, then connects: shorthand for [`KafkaEventBus::connect`](crate::KafkaEventBus::connect).
    pub async fn connect(self) -> Result<crate::KafkaEventBus> {
        crate::KafkaEventBus::connect(self.build()?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop<'a>(config: &'a ClientConfig, key: &str) -> Option<&'a str> {
        config.get(key)
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = KafkaConfig::default();
        assert_eq!(c.topic_name(Topic::JobEvents), "job_events");
        assert_eq!(c.topic_name(Topic::SystemEvents), "system_events");
        assert!(!c.create_topics);
        c.validate().unwrap();
        let p = c.producer_config();
        assert_eq!(prop(&p, "enable.idempotence"), Some("true"));
        assert_eq!(prop(&p, "acks"), Some("all"));
        assert_eq!(prop(&p, "bootstrap.servers"), Some("localhost:9092"));
        assert_eq!(prop(&p, "allow.auto.create.topics"), Some("false"));
        let k = c.consumer_config("b:9092", "g1");
        assert_eq!(prop(&k, "group.id"), Some("g1"));
        assert_eq!(prop(&k, "enable.auto.commit"), Some("false"));
        assert_eq!(prop(&k, "auto.offset.reset"), Some("earliest"));
        assert_eq!(prop(&k, "session.timeout.ms"), Some("10000"));
        assert_eq!(prop(&k, "heartbeat.interval.ms"), Some("3000"));
    }

    #[test]
    fn mock_mode_shortens_group_timeouts_and_starts_the_mock() {
        let c = KafkaEventBusBuilder::default().mock_cluster(1).build().unwrap();
        assert_eq!(prop(&c.producer_config(), "test.mock.num.brokers"), Some("1"));
        let k = c.consumer_config("127.0.0.1:1", "g");
        assert_eq!(prop(&k, "session.timeout.ms"), Some("4000"));
        assert_eq!(prop(&k, "heartbeat.interval.ms"), Some("100"));
    }

    #[test]
    fn builder_sets_prefix_names_and_extra_properties() {
        let c = KafkaEventBusBuilder::default()
            .brokers("k1:9092,k2:9092")
            .topic_prefix("staging.")
            .topic_name(Topic::WorkflowEvents, "wf")
            .property("security.protocol", "sasl_plaintext")
            .property("linger.ms", "0")
            .build()
            .unwrap();
        assert_eq!(c.topic_name(Topic::WorkflowEvents), "staging.wf");
        assert_eq!(c.topic_name(Topic::JobEvents), "staging.job_events");
        let p = c.producer_config();
        assert_eq!(prop(&p, "security.protocol"), Some("sasl_plaintext"));
        assert_eq!(prop(&p, "linger.ms"), Some("0"), "extra properties override defaults");
        assert_eq!(prop(&c.admin_config("k1:9092"), "security.protocol"), Some("sasl_plaintext"));
    }

    #[test]
    fn validation_rejects_bad_settings_with_invalid_input() {
        let bad = [
            KafkaEventBusBuilder::default().brokers(" "),
            KafkaEventBusBuilder::default().topic_prefix("bad prefix/"),
            KafkaEventBusBuilder::default().topic_name(Topic::JobEvents, "workflow_events"),
            KafkaEventBusBuilder::default().topic_name(Topic::SystemEvents, ""),
            KafkaEventBusBuilder::default().create_topics(0, 1),
            KafkaEventBusBuilder::default().create_topics(3, -2),
            KafkaEventBusBuilder::default().group_timeouts(1000, 1000),
            KafkaEventBusBuilder::default().property("group.id", "mine"),
            KafkaEventBusBuilder::default().property("enable.auto.commit", "true"),
            KafkaEventBusBuilder::default().mock_cluster(100),
        ];
        for builder in bad {
            let err = builder.clone().build().expect_err(&format!("{builder:?} should be rejected"));
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        }
        KafkaEventBusBuilder::default().brokers("").mock_cluster(1).build().unwrap();
        KafkaEventBusBuilder::default().create_topics(-1, -1).build().unwrap();
    }

    #[test]
    fn debug_hides_secrets() {
        let c = KafkaEventBusBuilder::default()
            .property("sasl.username", "alice")
            .property("sasl.password", "hunter2")
            .property("ssl.key.password", "s3cret")
            .build()
            .unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn config_round_trips_through_serde_with_defaults() {
        let c: KafkaConfig =
            serde_json::from_value(serde_json::json!({ "brokers": "k:1", "topics": { "job_events": "jobs" } }))
                .unwrap();
        assert_eq!(c.brokers, "k:1");
        assert_eq!(c.topic_name(Topic::JobEvents), "jobs");
        assert_eq!(c.topic_name(Topic::WorkflowEvents), "workflow_events");
        assert_eq!(c.partitions, 6);
        let back: KafkaConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
