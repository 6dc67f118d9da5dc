//! The in-memory event bus: an append-only log per topic and a cursor per consumer group.

use super::{AckHandle, BusCapabilities, Delivery, EventBus, Subscription};
use crate::error::{Error, Result};
use crate::event::{Event, Topic};
use crate::hash::FastMap;
use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeSet, VecDeque};
use std::pin::pin;
use std::sync::Arc;
use stored::StoredEvent;
use tokio::sync::Notify;

/// The in-memory [`EventBus`]: consumer groups, acknowledgement and redelivery in process.
///
/// Each topic keeps an append-only log of its events, up to a capacity per topic (by default
/// [`MemoryEventBus::DEFAULT_CAPACITY`]); when a log is full its oldest event is dropped, and
/// groups that had not consumed it yet move past it. Each consumer group has, per topic, the
/// next offset to hand out and the offsets released without acknowledgement, which are handed
/// out again first. A subscriber receives the events of all its topics in publish order.
///
/// Events are kept in process memory only: they are lost when the process exits. A log keeps
/// each event in a compact form (JSON results as text) and a delivery rebuilds an equal
/// [`Event`]. Cloning the bus gives another handle to the same logs and groups.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use baseshift_core::{Event, EventBus, JobStatus, MemoryEventBus, Topic, WorkflowId};
///
/// let bus = MemoryEventBus::new();
/// let workflow = WorkflowId::generate();
/// bus.publish(&Event::job(&workflow, "fetch", JobStatus::Running, 1, None)).await?;
///
/// let mut sub = bus.subscribe(&[Topic::JobEvents], "auditor").await?;
/// let delivery = sub.next().await.expect("the bus stays open")?;
/// assert_eq!(delivery.event.payload.workflow_id, workflow);
/// delivery.ack().await?;
/// # Ok::<(), baseshift_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct MemoryEventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    state: Mutex<State>,
    /// Signalled on every publish and every release, so waiting subscribers look again.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The next global publish sequence number, used to merge topics in publish order.
    seq: u64,
    logs: FastMap<Topic, TopicLog>,
    groups: FastMap<Arc<str>, FastMap<Topic, Cursor>>,
}

#[derive(Debug, Default)]
struct TopicLog {
    /// The offset of `entries[0]`.
    base: u64,
    /// Each event with its global publish sequence number, in place: dropping the oldest
    /// from a full log frees no allocation of the event's own.
    entries: VecDeque<StoredEvent>,
}

/// Logs retaining up to this many events get their whole buffer when first written.
const RESERVE_UP_TO: usize = 1 << 20;

impl TopicLog {
    /// An empty log that holds `capacity` events without growing, when that is at most
    /// [`RESERVE_UP_TO`]: the buffer's pages cost memory only once written, while a growing
    /// log holds its old and its new buffer at once as it moves (at 100 000 events of about
    /// 200 B, 13 MiB more at the peak: about 130 B per event, more than a pending job's
    /// share of everything else in the bus).
    fn with_room(capacity: usize) -> TopicLog {
        let room = if capacity <= RESERVE_UP_TO { capacity } else { 0 };
        TopicLog { base: 0, entries: VecDeque::with_capacity(room) }
    }

    fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn entry(&self, offset: u64) -> Option<&StoredEvent> {
        let index = usize::try_from(offset.checked_sub(self.base)?).ok()?;
        self.entries.get(index)
    }
}

#[derive(Debug, Default)]
struct Cursor {
    next: u64,
    released: BTreeSet<u64>,
    in_flight: BTreeSet<u64>,
}

impl Cursor {
    /// The offset this group should receive next on a topic, if any.
    fn candidate(&mut self, log: &TopicLog) -> Option<u64> {
        // Offsets the log has dropped can no longer be delivered.
        self.next = self.next.max(log.base);
        while self.released.first().is_some_and(|&o| o < log.base) {
            self.released.pop_first();
        }
        self.released.first().copied().or((self.next < log.end()).then_some(self.next))
    }

    fn take(&mut self, offset: u64) {
        if offset == self.next {
            self.next += 1;
        } else {
            self.released.remove(&offset);
        }
        self.in_flight.insert(offset);
    }
}

impl Default for MemoryEventBus {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl MemoryEventBus {
    /// The number of events retained per topic by [`MemoryEventBus::new`].
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty bus retaining up to [`MemoryEventBus::DEFAULT_CAPACITY`] events per topic.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty bus retaining up to `capacity` events per topic (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryEventBus {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// The number of events retained per topic.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // (No poisoning: every update is a few field writes that cannot panic halfway.)
        self.state.lock()
    }

    /// Hands the next event of `topics` to a member of `group`, in global publish order.
    fn take(self: &Arc<Self>, group: &Arc<str>, topics: &[Topic]) -> Option<Delivery> {
        let mut guard = self.lock();
        let State { logs, groups, .. } = &mut *guard;
        let cursors = groups.entry(Arc::clone(group)).or_default();
        let mut best: Option<(u64, Topic, u64)> = None;
        for &topic in topics {
            let Some(log) = logs.get(&topic) else {
                continue;
            };
            let Some(offset) = cursors.entry(topic).or_default().candidate(log) else {
                continue;
            };
            let Some(seq) = log.entry(offset).map(|e| e.seq) else {
                continue;
            };
            if best.is_none_or(|(best_seq, ..)| seq < best_seq) {
                best = Some((seq, topic, offset));
            }
        }
        let (_, topic, offset) = best?;
        let event = logs.get(&topic)?.entry(offset)?.event();
        cursors.entry(topic).or_default().take(offset);
        let handle = MemoryAck { inner: Arc::clone(self), group: Arc::clone(group), topic, offset, done: false };
        Some(Delivery::new(topic, event, Box::new(handle)))
    }

    /// Ends the delivery of `offset`; a release makes it deliverable to the group again.
    fn settle(&self, group: &str, topic: Topic, offset: u64, release: bool) {
        let mut guard = self.lock();
        let State { logs, groups, .. } = &mut *guard;
        let Some(cursor) = groups.get_mut(group).and_then(|c| c.get_mut(&topic)) else {
            return;
        };
        if !cursor.in_flight.remove(&offset) || !release {
            return;
        }
        if logs.get(&topic).is_some_and(|log| offset >= log.base) {
            cursor.released.insert(offset);
            drop(guard);
            self.changed.notify_waiters();
        }
    }
}

#[async_trait]
impl EventBus for MemoryEventBus {
    fn capabilities(&self) -> BusCapabilities {
        BusCapabilities::new("memory", false)
    }

    async fn publish(&self, event: &Event) -> Result<()> {
        self.publish_shared(Arc::new(event.clone())).await
    }

    async fn publish_shared(&self, event: Arc<Event>) -> Result<()> {
        self.publish_batch(vec![event]).await.1
    }

    /// One lock and one wake-up for the whole batch; the events are made compact first,
    /// outside the lock, and the evicted ones are freed after it.
    async fn publish_batch(&self, events: Vec<Arc<Event>>) -> (usize, Result<()>) {
        let n = events.len();
        let stored: Vec<(Topic, StoredEvent)> = events.iter().map(|e| (e.topic(), StoredEvent::new(0, e))).collect();
        drop(events);
        let mut evicted = Vec::new();
        {
            let mut state = self.inner.lock();
            for (topic, mut event) in stored {
                event.seq = state.seq;
                state.seq += 1;
                let log = state.logs.entry(topic).or_insert_with(|| TopicLog::with_room(self.inner.capacity));
                if log.entries.len() >= self.inner.capacity {
                    evicted.extend(log.entries.pop_front());
                    log.base += 1;
                }
                log.entries.push_back(event);
            }
        }
        drop(evicted);
        if n > 0 {
            self.inner.changed.notify_waiters();
        }
        (n, Ok(()))
    }

    async fn subscribe(&self, topics: &[Topic], group: &str) -> Result<Subscription> {
        let op = "EventBus::subscribe";
        if group.is_empty() {
            return Err(Error::invalid_input("the consumer group name is empty")
                .with_operation(op)
                .with_backend("memory"));
        }
        if topics.is_empty() {
            return Err(Error::invalid_input(format!("no topics given for group `{group}`"))
                .with_operation(op)
                .with_backend("memory"));
        }
        let mut topics = topics.to_vec();
        topics.sort_unstable();
        topics.dedup();
        let member = Member { inner: Arc::clone(&self.inner), group: Arc::from(group), topics };
        {
            // Join now, so that a new group starts from what the logs retain at this moment.
            let mut state = member.inner.lock();
            let State { logs, groups, .. } = &mut *state;
            let cursors = groups.entry(Arc::clone(&member.group)).or_default();
            for &topic in &member.topics {
                let base = logs.get(&topic).map_or(0, |log| log.base);
                cursors.entry(topic).or_insert_with(|| Cursor { next: base, ..Cursor::default() });
            }
        }
        Ok(Subscription::new(futures_util::stream::unfold(member, |member| async move {
            loop {
                let inner = Arc::clone(&member.inner);
                let mut changed = pin!(inner.changed.notified());
                // Register before looking, so a publish between the look and the wait wakes us.
                changed.as_mut().enable();
                if let Some(delivery) = inner.take(&member.group, &member.topics) {
                    return Some((Ok(delivery), member));
                }
                changed.await;
            }
        })))
    }
}

/// One subscriber's view: its group and topics.
struct Member {
    inner: Arc<Inner>,
    group: Arc<str>,
    topics: Vec<Topic>,
}

/// Acknowledges one offset; dropped unacknowledged, it releases the offset for redelivery.
struct MemoryAck {
    inner: Arc<Inner>,
    group: Arc<str>,
    topic: Topic,
    offset: u64,
    done: bool,
}

#[async_trait]
impl AckHandle for MemoryAck {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.done = true;
        self.inner.settle(&self.group, self.topic, self.offset, false);
        Ok(())
    }
}

impl Drop for MemoryAck {
    fn drop(&mut self) {
        if !self.done {
            self.inner.settle(&self.group, self.topic, self.offset, true);
        }
    }
}

#[path = "memory_stored.rs"]
mod stored;

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
