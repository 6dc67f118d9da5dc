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
/// list kept inline while small, a [`FastSet`] past [`FEW`]. A step of up to [`FEW`]
/// members allocates nothing.
#[derive(Debug)]
pub(crate) enum SeenSet<K> {
    /// Few members (the first `len` of `items`), searched in order.
    Few {
        /// How many of `items` are members.
        len: usize,
        /// The members, then unused defaults.
        items: [K; FEW],
    },
    /// Many members.
    Many(FastSet<K>),
}

impl<K: std::hash::Hash + Eq + Copy + Default> SeenSet<K> {
    /// An empty set for about `n` members.
    pub(crate) fn with_capacity(n: usize) -> Self {
        if n <= FEW { SeenSet::Few { len: 0, items: [K::default(); FEW] } } else { SeenSet::Many(set_with_capacity(n)) }
    }

    /// Adds `k`; whether it was absent.
    pub(crate) fn insert(&mut self, k: K) -> bool {
        match self {
            SeenSet::Few { len, items } if items[..*len].contains(&k) => false,
            SeenSet::Few { len, items } if *len < FEW => {
                items[*len] = k;
                *len += 1;
                true
            }
            SeenSet::Few { items, .. } => {
                let mut set: FastSet<K> = set_with_capacity(FEW * 2);
                set.extend(items.iter().copied());
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
