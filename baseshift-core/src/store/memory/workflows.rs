//! The memory store's workflows: found by id through a hash table, listed in id order
//! through a B-tree of the ids.
//!
//! A B-tree alone costs a lookup a dozen or more string comparisons, each a likely cache
//! miss, at a million workflows; the ids are shared (`Arc<str>`), so the second copy
//! in the order is a pointer.
//!
//! The table keeps each entry's box alone, found by the id in its header: a slot is one
//! word, not three (a map keyed by a copy of the id). At a million workflows the slots
//! take 16 MiB instead of 48, so the table of the workflows a drain is running stays
//! mostly in cache, and growing it moves a third of the bytes.

use super::entry::WorkflowEntry;
use crate::ids::WorkflowId;
use hashbrown::HashTable;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::ops::Bound;

/// Every workflow of the store, by id.
#[derive(Debug, Default)]
pub(super) struct Workflows {
    /// Each entry under the hash of `header.id`, which never changes once stored (a step
    /// cannot write another workflow's header). Boxed: the table moves its slots when it
    /// grows; a box is one pointer to move.
    by_id: HashTable<Box<WorkflowEntry>>,
    hasher: foldhash::fast::RandomState,
    order: BTreeSet<WorkflowId>,
}

impl Workflows {
    fn hash(&self, id: &WorkflowId) -> u64 {
        self.hasher.hash_one(id)
    }

    pub(super) fn get(&self, id: &WorkflowId) -> Option<&WorkflowEntry> {
        self.by_id.find(self.hash(id), |wf| wf.header.id == *id).map(|wf| &**wf)
    }

    pub(super) fn get_mut(&mut self, id: &WorkflowId) -> Option<&mut WorkflowEntry> {
        let hash = self.hash(id);
        self.by_id.find_mut(hash, |wf| wf.header.id == *id).map(|wf| &mut **wf)
    }

    pub(super) fn contains_key(&self, id: &WorkflowId) -> bool {
        self.get(id).is_some()
    }

    /// Adds (or replaces) the workflow of `entry`'s header id.
    pub(super) fn insert(&mut self, entry: Box<WorkflowEntry>) {
        let Workflows { by_id, hasher, order } = self;
        let id = &entry.header.id;
        let hash = hasher.hash_one(id);
        if let Some(stored) = by_id.find_mut(hash, |wf| wf.header.id == *id) {
            *stored = entry;
            return;
        }
        order.insert(id.clone());
        by_id.insert_unique(hash, entry, |wf| hasher.hash_one(&wf.header.id));
    }

    pub(super) fn remove(&mut self, id: &WorkflowId) -> Option<Box<WorkflowEntry>> {
        let hash = self.hash(id);
        let (entry, _) = self.by_id.find_entry(hash, |wf| wf.header.id == *id).ok()?.remove();
        self.order.remove(id);
        Some(entry)
    }

    /// The workflows with ids after `after` (all with `None`), in id order.
    pub(super) fn after<'a>(&'a self, after: Option<&'a WorkflowId>) -> impl Iterator<Item = &'a WorkflowEntry> + 'a {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.order.range::<WorkflowId, _>((lower, Bound::Unbounded)).filter_map(|id| self.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::FastMap;
    use crate::state::WorkflowRecord;

    fn entry(id: &str) -> Box<WorkflowEntry> {
        let header = WorkflowRecord::initialized(WorkflowId::new(id), "t", "1.0.0", serde_json::json!({ "id": id }));
        WorkflowEntry::new(header, Vec::new(), FastMap::default())
    }

    #[test]
    fn lookups_and_id_order_agree_after_inserts_replacements_and_removals() {
        let mut wfs = Workflows::default();
        for id in ["c", "a", "d", "b"] {
            wfs.insert(entry(id));
        }
        let mut again = entry("a");
        again.header.version = 7;
        wfs.insert(again);
        assert!(wfs.remove(&WorkflowId::new("d")).is_some());
        assert!(wfs.remove(&WorkflowId::new("d")).is_none());
        let ids = |after: Option<&WorkflowId>| wfs.after(after).map(|e| e.header.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(None), ["a", "b", "c"]);
        assert_eq!(ids(Some(&WorkflowId::new("a"))), ["b", "c"]);
        assert_eq!(ids(Some(&WorkflowId::new("bb"))), ["c"]);
        assert!(wfs.contains_key(&WorkflowId::new("b")) && !wfs.contains_key(&WorkflowId::new("d")));
        assert_eq!(wfs.get(&WorkflowId::new("c")).map(|e| e.record().input), Some(serde_json::json!({ "id": "c" })));
        assert!(wfs.get_mut(&WorkflowId::new("zz")).is_none());
        assert_eq!(wfs.get(&WorkflowId::new("a")).map(|e| e.header.version), Some(7), "replaced in place");
        assert_eq!(wfs.after(None).count(), 3, "a replacement is listed once");
    }
}
