//! librdkafka client contexts: logs go to `tracing`, rebalances update the member's bookkeeping.

use crate::offsets::Partitions;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Sends librdkafka's logs and global errors to `tracing`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

/// State shared by one group member's stream, its ack handles and its rebalance callbacks.
#[derive(Debug, Default)]
pub(crate) struct MemberState {
    partitions: Mutex<Partitions>,
    /// Wakes the member's stream when a seek became due.
    pub(crate) seek_due: Notify,
}

impl MemberState {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Partitions> {
        // Every update is a few collection operations that cannot panic halfway.
        self.partitions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The consumer context of a group member.
#[derive(Debug)]
pub(crate) struct MemberContext {
    pub(crate) state: Arc<MemberState>,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        TracingContext.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        TracingContext.error(error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut partitions = self.state.lock();
                for elem in tpl.elements() {
                    partitions.assign((elem.topic().to_owned(), elem.partition()));
                }
            }
            Rebalance::Revoke(tpl) => {
                let mut commits = TopicPartitionList::new();
                {
                    let mut partitions = self.state.lock();
                    for elem in tpl.elements() {
                        let key = (elem.topic().to_owned(), elem.partition());
                        if let Some(offset) = partitions.revoke(&key)
                            && let Err(error) = commits.add_partition_offset(&key.0, key.1, Offset::Offset(offset))
                        {
                            tracing::warn!(topic = key.0, partition = key.1, %error, "cannot record a final commit");
                        }
                    }
                }
                // Synchronous, so the next owner of the partition starts after what was acknowledged.
                if commits.count() > 0
                    && let Err(error) = consumer.commit(&commits, CommitMode::Sync)
                {
                    tracing::warn!(%error, "committing acknowledged events before a rebalance failed");
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "consumer group rebalance error"),
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        // A failed commit is retried by the next acknowledgement or rebalance; until then the
        // group would redeliver those events, which at-least-once allows.
        if let Err(error) = result {
            tracing::warn!(%error, ?offsets, "committing acknowledged offsets failed");
        }
    }
}
