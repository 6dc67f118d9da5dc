//! The StateStore conformance suite against the in-memory store.
#![cfg(feature = "testkit")]

baseshift_core::state_store_conformance!(baseshift_core::MemoryStateStore::new());

/// The macro also takes an `Arc<dyn StateStore>`, and a second suite can live beside the first.
mod shared {
    use baseshift_core::StateStore;
    use std::sync::Arc;

    fn shared_store() -> Arc<dyn StateStore> {
        Arc::new(baseshift_core::MemoryStateStore::new())
    }

    baseshift_core::state_store_conformance!(shared_store());
}
