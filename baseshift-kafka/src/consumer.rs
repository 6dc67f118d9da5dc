//! A consumer group member: the stream behind a [`Subscription`] and its ack handles.

use crate::bus::Shared;
use crate::context::{MemberContext, MemberState};
use crate::error::{BACKEND, error, kafka_error};
use crate::offsets::{Acked, Admission, PartitionKey};
use async_trait::async_trait;
use baseshift_core::bus::AckHandle;
use baseshift_core::{Delivery, ErrorKind, Event, Result, Subscription, Topic};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The consumer type of a member.
pub(crate) type MemberConsumer = StreamConsumer<MemberContext>;

const SUBSCRIBE: &str = "EventBus::subscribe";
const ACK: &str = "AckHandle::ack";

/// One member of a consumer group, owned by its subscription's stream.
struct Member {
    /// `None` only while being dropped.
    consumer: Option<Arc<MemberConsumer>>,
    state: Arc<MemberState>,
    /// Keeps the bus (and a mock cluster it owns) alive while the member consumes.
    shared: Arc<Shared>,
    group: Arc<str>,
}

impl Drop for Member {
    fn drop(&mut self) {
        // Closing leaves the group and commits what was acknowledged, blocking on the
        // coordinator's answers: keep that off the async worker threads when possible.
        if let (Some(consumer), Ok(runtime)) = (self.consumer.take(), tokio::runtime::Handle::try_current()) {
            drop(runtime.spawn_blocking(move || drop(consumer)));
        }
    }
}

/// Joins `group` for the Kafka topics `names` and returns the subscription's stream.
pub(crate) fn subscribe(shared: Arc<Shared>, names: &[String], group: &str) -> Result<Subscription> {
    let state = Arc::new(MemberState::default());
    let config = shared.config.consumer_config(&shared.bootstrap, group);
    let consumer: MemberConsumer = config
        .create_with_context(MemberContext { state: Arc::clone(&state) })
        .map_err(|e| kafka_error(SUBSCRIBE, format!("create a consumer for group `{group}`"), e))?;
    let topics: Vec<&str> = names.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| kafka_error(SUBSCRIBE, format!("subscribe to {topics:?}"), e))?;
    let member = Member { consumer: Some(Arc::new(consumer)), state, shared, group: Arc::from(group) };
    Ok(Subscription::new(futures_util::stream::unfold(member, |member| async move {
        let next = member.next().await;
        Some((next, member))
    })))
}

impl Member {
    /// The next delivery (or error) of this member; waits for one.
    async fn next(&self) -> Result<Delivery> {
        let Some(consumer) = self.consumer.as_ref() else {
            return Err(error(ErrorKind::Internal, SUBSCRIBE, "the subscription is closing"));
        };
        loop {
            self.seek_back(consumer);
            let message = tokio::select! {
                biased;
                () = self.state.seek_due.notified() => continue,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(e) => return Err(kafka_error(SUBSCRIBE, format!("consume for group `{}`", self.group), e)),
            };
            let key: PartitionKey = (message.topic().to_owned(), message.partition());
            let offset = message.offset();
            let Admission::Deliver(generation) = self.state.lock().admit(&key, offset) else { continue };
            let handle = KafkaAck {
                consumer: Arc::downgrade(consumer),
                state: Arc::clone(&self.state),
                key,
                offset,
                generation,
                settled: false,
            };
            let decoded = self.decode(&handle.key.0, message.payload());
            return match decoded {
                Ok((topic, event)) => Ok(Delivery::new(topic, event, Box::new(handle))),
                Err(e) => {
                    // A poison message is acknowledged, so it does not stop the partition.
                    let e = e.with_operation(SUBSCRIBE).with_backend(BACKEND);
                    tracing::warn!(topic = handle.key.0, partition = handle.key.1, offset, error = %e, "skipping an undecodable event");
                    let _ = Box::new(handle).ack().await;
                    Err(e)
                }
            };
        }
    }

    fn decode(&self, name: &str, payload: Option<&[u8]>) -> Result<(Topic, Event)> {
        let topic = self.shared.topic_of(name).ok_or_else(|| {
            baseshift_core::Error::internal(format!("a message from topic `{name}`, which the bus does not use"))
        })?;
        let event: Event = serde_json::from_slice(payload.unwrap_or_default()).map_err(|e| {
            baseshift_core::Error::invalid_input(format!("a message on `{name}` is not a baseshift event: {e}"))
                .with_source(e)
        })?;
        Ok((topic, event))
    }

    /// Seeks partitions back to deliveries dropped without acknowledgement.
    fn seek_back(&self, consumer: &MemberConsumer) {
        let seeks = self.state.lock().take_seeks();
        for ((topic, partition), offset) in seeks {
            // A zero timeout makes the seek asynchronous: it never blocks the runtime.
            if let Err(error) = consumer.seek(&topic, partition, Offset::Offset(offset), Duration::ZERO) {
                tracing::debug!(topic, partition, offset, %error, "seek back failed; retrying on the next poll");
                self.state.lock().retry_seek(&(topic, partition), offset);
            }
        }
    }
}

/// Acknowledges one delivered offset; dropped unacknowledged, it has the offset delivered again.
struct KafkaAck {
    consumer: Weak<MemberConsumer>,
    state: Arc<MemberState>,
    key: PartitionKey,
    offset: i64,
    generation: u64,
    settled: bool,
}

#[async_trait]
impl AckHandle for KafkaAck {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.settled = true;
        let acked = self.state.lock().ack(&self.key, self.offset, self.generation);
        let (topic, partition) = (&self.key.0, self.key.1);
        let stale = || {
            error(
                ErrorKind::Conflict,
                ACK,
                format!(
                    "`{topic}` partition {partition} offset {} was reassigned or its subscription closed before \
                     the acknowledgement; the group will deliver it again",
                    self.offset
                ),
            )
        };
        match acked {
            Acked::Recorded => Ok(()),
            Acked::Stale => Err(stale()),
            Acked::Commit(next) => {
                let Some(consumer) = self.consumer.upgrade() else { return Err(stale()) };
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, partition, Offset::Offset(next))
                    .map_err(|e| kafka_error(ACK, format!("commit `{topic}` partition {partition}"), e))?;
                consumer
                    .commit(&tpl, CommitMode::Async)
                    .map_err(|e| kafka_error(ACK, format!("commit `{topic}` partition {partition} at {next}"), e))
            }
        }
    }
}

impl Drop for KafkaAck {
    fn drop(&mut self) {
        if !self.settled && self.state.lock().release(&self.key, self.offset, self.generation) {
            self.state.seek_due.notify_one();
        }
    }
}
