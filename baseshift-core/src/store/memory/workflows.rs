//! The memory store's workflows: found by id through a hash map, listed in id order
//! through a B-tree of the ids.
//!
//! A B-tree alone costs a lookup a dozen or more string comparisons, each a likely cache
//! miss, at a million workflows; the ids are shared (`Arc<str>`), so the second copy
//! in the order is a pointer.

use super::entry::WorkflowEntry;
use crate::hash::FastMap;
use crate::ids::WorkflowId;
use std::collections::BTreeSet;
use std::ops::Bound;

/// Every workflow of the store, by id.
#[derive(Debug, Default)]
pub(super) struct Workflows {
    /// Boxed: the map moves its entries when it grows; a box is one pointer to move.
    by_id: FastMap<WorkflowId, Box<WorkflowEntry>>,
    order: BTreeSet<WorkflowId>,
}

impl Workflows {
    pub(super) fn get(&self, id: &WorkflowId) -> Option<&WorkflowEntry> {
        self.by_id.get(id).map(|wf| &**wf)
    }

    pub(super) fn get_mut(&mut self, id: &WorkflowId) -> Option<&mut WorkflowEntry> {
        self.by_id.get_mut(id).map(|wf| &mut **wf)
    }

    pub(super) fn contains_key(&self, id: &WorkflowId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Adds (or replaces) the workflow `id`.
    pub(super) fn insert(&mut self, id: WorkflowId, entry: Box<WorkflowEntry>) {
        if self.by_id.insert(id.clone(), entry).is_none() {
            self.order.insert(id);
        }
    }

    pub(super) fn remove(&mut self, id: &WorkflowId) -> Option<Box<WorkflowEntry>> {
        let entry = self.by_id.remove(id)?;
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
    use crate::state::WorkflowRecord;

    fn entry(id: &str) -> Box<WorkflowEntry> {
        let header = WorkflowRecord::initialized(WorkflowId::new(id), "t", "1.0.0", serde_json::json!({ "id": id }));
        WorkflowEntry::new(header, Vec::new(), FastMap::default())
    }

    #[test]
    fn lookups_and_id_order_agree_after_inserts_replacements_and_removals() {
        let mut wfs = Workflows::default();
        for id in ["c", "a", "d", "b"] {
            wfs.insert(WorkflowId::new(id), entry(id));
        }
        wfs.insert(WorkflowId::new("a"), entry("a"));
        assert!(wfs.remove(&WorkflowId::new("d")).is_some());
        assert!(wfs.remove(&WorkflowId::new("d")).is_none());
        let ids = |after: Option<&WorkflowId>| wfs.after(after).map(|e| e.header.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(None), ["a", "b", "c"]);
        assert_eq!(ids(Some(&WorkflowId::new("a"))), ["b", "c"]);
        assert_eq!(ids(Some(&WorkflowId::new("bb"))), ["c"]);
        assert!(wfs.contains_key(&WorkflowId::new("b")) && !wfs.contains_key(&WorkflowId::new("d")));
        assert_eq!(wfs.get(&WorkflowId::new("c")).map(|e| e.record().input), Some(serde_json::json!({ "id": "c" })));
        assert!(wfs.get_mut(&WorkflowId::new("zz")).is_none());
    }
}
