//! baseshift backend crate. Redis: durable workflow state (hashes per workflow and job, Lua-scripted atomic steps, a sorted-set ready queue) and a template cache. Tracked in issue 3.
//!
//! **Status:** this crate reserves the name and the feature flag of the `baseshift`
//! facade; its backend is not implemented yet and it exports only the environment
//! variable it will read. Use the in-memory backends of `baseshift-core` meanwhile.

/// The environment variable this backend will read its connection settings from.
pub const ENV_VAR: &str = "BASESHIFT_REDIS_URL";
