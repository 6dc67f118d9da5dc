//! The conformance suites against the in-memory backends (every `cargo test`).

use baseshift_core::{MemoryEventBus, MemoryTemplateStore};

baseshift_core::state_store_conformance!(baseshift_core::MemoryStateStore::new());
baseshift_core::engine_conformance!(baseshift_core::MemoryStateStore::new());
baseshift_core::event_bus_conformance!(MemoryEventBus::new());
baseshift_core::template_store_conformance!(MemoryTemplateStore::new());

/// The macro also takes an `Arc<dyn StateStore>`, and a second suite can live beside the first.
mod shared {
    use baseshift_core::StateStore;
    use std::sync::Arc;

    fn shared_store() -> Arc<dyn StateStore> {
        Arc::new(baseshift_core::MemoryStateStore::new())
    }

    baseshift_core::state_store_conformance!(shared_store());
}
