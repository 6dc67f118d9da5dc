//! STUB (helper D replaces): in-memory event bus.
use super::*;

/// The in-memory [`EventBus`]: consumer groups, acknowledgement and redelivery in process.
#[derive(Debug, Default)]
pub struct MemoryEventBus {}

impl MemoryEventBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventBus for MemoryEventBus {
    fn capabilities(&self) -> BusCapabilities {
        BusCapabilities::new("memory", false)
    }
    async fn publish(&self, event: &Event) -> Result<()> {
        let _ = event;
        todo!()
    }
    async fn subscribe(&self, topics: &[Topic], group: &str) -> Result<Subscription> {
        let _ = (topics, group);
        todo!()
    }
}
