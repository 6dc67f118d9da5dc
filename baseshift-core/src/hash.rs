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

/// Up to this many members, a [`SeenSet`] is a list searched in order.
const FEW: usize = 16;

/// A set for the few members a single step names (most steps write one or two jobs): a
/// list while small, a [`FastSet`] past [`FEW`]. A step of one job allocates no hash table.
#[derive(Debug)]
pub(crate) enum SeenSet<K> {
    /// Few members, searched in order.
    Few(Vec<K>),
    /// Many members.
    Many(FastSet<K>),
}

impl<K: std::hash::Hash + Eq> SeenSet<K> {
    /// An empty set for about `n` members.
    pub(crate) fn with_capacity(n: usize) -> Self {
        if n <= FEW { SeenSet::Few(Vec::with_capacity(n)) } else { SeenSet::Many(set_with_capacity(n)) }
    }

    /// Adds `k`; whether it was absent.
    pub(crate) fn insert(&mut self, k: K) -> bool {
        match self {
            SeenSet::Few(list) if list.contains(&k) => false,
            SeenSet::Few(list) if list.len() < FEW => {
                list.push(k);
                true
            }
            SeenSet::Few(list) => {
                let mut set: FastSet<K> = set_with_capacity(list.len() * 2);
                set.extend(list.drain(..));
                let added = set.insert(k);
                *self = SeenSet::Many(set);
                added
            }
            SeenSet::Many(set) => set.insert(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_sets_agree_with_a_hash_set_while_small_and_after_growing() {
        for n in [0, 1, FEW, 100] {
            let mut seen = SeenSet::with_capacity(n);
            let mut reference = std::collections::HashSet::new();
            for k in (0..3 * FEW).chain(0..3 * FEW).map(|i| i % (2 * FEW + 1)) {
                assert_eq!(seen.insert(k), reference.insert(k), "capacity {n}, key {k}");
            }
        }
    }
}
