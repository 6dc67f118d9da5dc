//! The hasher of the crate's internal maps: foldhash's fast hasher, seeded per process.
//!
//! The standard library's SipHash was several percent of the in-memory engine's
//! instructions (job positions, running jobs, bus topics, waiters). foldhash keeps a
//! random per-process seed, so keys a caller chooses (workflow and job ids) cannot be
//! picked ahead of time to collide; it is not meant to resist an attacker who can time
//! the process, which these maps do not face.

/// A `HashMap` with the fast hasher.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A `HashSet` with the fast hasher.
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// An empty [`FastMap`] with room for `n` entries.
pub(crate) fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    FastMap::with_capacity_and_hasher(n, Default::default())
}

/// An empty [`FastSet`] with room for `n` entries.
pub(crate) fn set_with_capacity<K>(n: usize) -> FastSet<K> {
    FastSet::with_capacity_and_hasher(n, Default::default())
}
