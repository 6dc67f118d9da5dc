//! Conformance suites: the contracts of [`StateStore`](crate::StateStore),
//! [`EventBus`](crate::EventBus) and [`TemplateStore`](crate::TemplateStore) as plain
//! `pub async fn` checks that every backend runs against its real server.

pub mod bus;
pub mod templates;
