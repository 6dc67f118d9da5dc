//! baseshift backend crate. PostgreSQL: durable state and a versioned template store with embedded migrations. Tracked in issue 4.
//!
//! **Status:** this crate reserves the name and the feature flag of the `baseshift`
//! facade; its backend is not implemented yet and it exports only the environment
//! variable it will read. Use the in-memory backends of `baseshift-core` meanwhile.

/// The environment variable this backend will read its connection settings from.
pub const ENV_VAR: &str = "BASESHIFT_POSTGRES_URL";
