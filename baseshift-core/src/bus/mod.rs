//! The [`EventBus`] trait: publishing events and consuming them in groups with acknowledgement.

mod memory;

pub use memory::MemoryEventBus;

use crate::error::Result;
use crate::event::{Event, Topic};
use async_trait::async_trait;
use futures_core::Stream;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What an event bus backend can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusCapabilities {
    /// The backend's name, e.g. `memory`, `kafka`.
    pub name: &'static str,
    /// Events survive a restart of the host process.
    pub durable: bool,
}

impl BusCapabilities {
    /// Capabilities of a backend called `name`.
    pub const fn new(name: &'static str, durable: bool) -> Self {
        BusCapabilities { name, durable }
    }
}

/// Publishes events and delivers them to consumer groups.
///
/// # Contract
///
/// - `publish` returns once the event is accepted by the bus (for a durable bus: stored).
/// - Events with the same key ([`Event::key`], the workflow id) published in order by one
///   publisher are delivered to each group in that order.
/// - `subscribe(topics, group)` yields every event published on `topics`, to exactly one
///   subscriber of `group` at a time; distinct groups each get every event. A new group
///   starts from the earliest event the bus still retains.
/// - At least once: a [`Delivery`] dropped without [`Delivery::ack`] (or whose subscriber
///   went away) is delivered again to the group.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> BusCapabilities;

    /// Publishes one event on its topic ([`Event::topic`]).
    async fn publish(&self, event: &Event) -> Result<()>;

    /// [`publish`](Self::publish) for a shared event (the outbox relay's path): a bus
    /// that keeps events in memory stores the `Arc` instead of a copy. The default
    /// publishes `&event`.
    async fn publish_shared(&self, event: std::sync::Arc<Event>) -> Result<()> {
        self.publish(&event).await
    }

    /// Publishes `events` in order, stopping at the first failure: how many were
    /// published, and the failure if one stopped it (the relay acknowledges the
    /// published ones). A bus may take them in one operation; the default calls
    /// [`publish_shared`](Self::publish_shared) for each.
    async fn publish_batch(&self, events: Vec<std::sync::Arc<Event>>) -> (usize, Result<()>) {
        let mut published = 0;
        for event in events {
            if let Err(e) = self.publish_shared(event).await {
                return (published, Err(e));
            }
            published += 1;
        }
        (published, Ok(()))
    }

    /// Joins `group` as a consumer of `topics`.
    async fn subscribe(&self, topics: &[Topic], group: &str) -> Result<Subscription>;
}

/// Acknowledges one delivery; implemented by each backend.
#[async_trait]
pub trait AckHandle: Send + 'static {
    /// Marks the delivery as processed (it will not be delivered again).
    async fn ack(self: Box<Self>) -> Result<()>;
}

/// One event handed to a subscriber; acknowledge it with [`Delivery::ack`].
pub struct Delivery {
    /// The topic it came from.
    pub topic: Topic,
    /// The event.
    pub event: Event,
    handle: Box<dyn AckHandle>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery").field("topic", &self.topic).field("event", &self.event).finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery with its backend's ack handle.
    pub fn new(topic: Topic, event: Event, handle: Box<dyn AckHandle>) -> Self {
        Delivery { topic, event, handle }
    }

    /// Acknowledges the event.
    pub async fn ack(self) -> Result<()> {
        self.handle.ack().await
    }
}

/// A stream of [`Delivery`]s for one group member; dropping it leaves the group.
pub struct Subscription {
    inner: Pin<Box<dyn Stream<Item = Result<Delivery>> + Send>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subscription")
    }
}

impl Subscription {
    /// Wraps a backend's stream.
    pub fn new(stream: impl Stream<Item = Result<Delivery>> + Send + 'static) -> Self {
        Subscription { inner: Box::pin(stream) }
    }

    /// The next delivery (`None` when the bus closed the subscription).
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
