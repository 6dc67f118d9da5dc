//! The in-memory event bus and template store against their conformance suites.
#![cfg(feature = "testkit")]

use baseshift_core::{MemoryEventBus, MemoryTemplateStore};

baseshift_core::event_bus_conformance!(MemoryEventBus::new());
baseshift_core::template_store_conformance!(MemoryTemplateStore::new());
