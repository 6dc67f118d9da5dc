//! The [`StateStore`](crate::StateStore) conformance checks, one `pub async fn` per
//! clause of its contract. Each takes a fresh, empty store.

mod claims;
mod completion;
mod dead;
mod deps;
mod keys;
mod outbox;
mod records;
mod writes;

pub use claims::*;
pub use completion::*;
pub use dead::*;
pub use deps::*;
pub use keys::*;
pub use outbox::*;
pub use records::*;
pub use writes::*;
