//! The memory store's workflows: kept in numbered places (a workflow's handle, which the
//! job indexes name it by), found by id through a hash map of handles, listed in id order
//! through a B-tree of the ids.
//!
//! A B-tree alone costs a lookup a dozen or more string comparisons, each a likely cache
//! miss, at a million workflows; the ids are shared (`Arc<str>`), so the second copy
//! in the order is a pointer. A handle is an index: an index entry that names its
//! workflow by handle is 4 bytes, is compared without reading an id, and touches no
//! reference count when it is made or dropped.

use super::entry::WorkflowEntry;
use crate::hash::FastMap;
use crate::ids::WorkflowId;
use std::collections::BTreeSet;
use std::ops::Bound;

/// Every workflow of the store, by handle and by id.
///
/// A removed workflow's handle is given to a later one. The job indexes hold no entry of
/// a removed workflow (only finished workflows with terminal jobs are removed, and
/// terminal jobs are in no index), so no entry names the new one by mistake.
#[derive(Debug, Default)]
pub(super) struct Workflows {
    handles: FastMap<WorkflowId, u32>,
    /// Boxed: a box is one pointer to move when the vector grows.
    places: Vec<Option<Box<WorkflowEntry>>>,
    free: Vec<u32>,
    order: BTreeSet<WorkflowId>,
}

impl Workflows {
    pub(super) fn get(&self, id: &WorkflowId) -> Option<&WorkflowEntry> {
        self.at(*self.handles.get(id)?)
    }

    /// The workflow `id` with its handle.
    pub(super) fn with_handle_mut(&mut self, id: &WorkflowId) -> Option<(u32, &mut WorkflowEntry)> {
        let handle = *self.handles.get(id)?;
        self.at_mut(handle).map(|wf| (handle, wf))
    }

    /// The handle of workflow `id`.
    #[cfg(test)]
    pub(super) fn handle(&self, id: &WorkflowId) -> Option<u32> {
        self.handles.get(id).copied()
    }

    /// The workflow at `handle`.
    pub(super) fn at(&self, handle: u32) -> Option<&WorkflowEntry> {
        self.places.get(handle as usize)?.as_deref()
    }

    pub(super) fn at_mut(&mut self, handle: u32) -> Option<&mut WorkflowEntry> {
        self.places.get_mut(handle as usize)?.as_deref_mut()
    }

    pub(super) fn contains_key(&self, id: &WorkflowId) -> bool {
        self.handles.contains_key(id)
    }

    /// Adds (or replaces) the workflow `id`; returns its handle and the entry as stored.
    pub(super) fn insert(&mut self, id: WorkflowId, entry: Box<WorkflowEntry>) -> (u32, &WorkflowEntry) {
        let handle = match self.handles.get(&id) {
            Some(&handle) => handle,
            None => {
                let handle = self.free.pop().unwrap_or_else(|| {
                    self.places.push(None);
                    // More than 4 billion workflows at once would exhaust memory long before.
                    u32::try_from(self.places.len() - 1).expect("fewer than 2^32 workflows")
                });
                self.handles.insert(id.clone(), handle);
                self.order.insert(id);
                handle
            }
        };
        (handle, &**self.places[handle as usize].insert(entry))
    }

    pub(super) fn remove(&mut self, id: &WorkflowId) -> Option<Box<WorkflowEntry>> {
        let handle = self.handles.remove(id)?;
        self.order.remove(id);
        let entry = self.places[handle as usize].take();
        self.free.push(handle);
        entry
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
        assert!(wfs.with_handle_mut(&WorkflowId::new("zz")).is_none());
        // A handle names its workflow until it is removed; a later workflow reuses it.
        let b = wfs.handle(&WorkflowId::new("b")).unwrap();
        assert_eq!(wfs.at(b).map(|e| e.header.id.to_string()), Some("b".to_owned()));
        assert!(wfs.remove(&WorkflowId::new("b")).is_some());
        assert!(wfs.at(b).is_none() && wfs.handle(&WorkflowId::new("b")).is_none());
        assert_eq!(wfs.insert(WorkflowId::new("e"), entry("e")).0, b);
        assert_eq!(
            wfs.with_handle_mut(&WorkflowId::new("e")).map(|(h, e)| (h, e.header.id.to_string())),
            Some((b, "e".to_owned()))
        );
        let ids: Vec<String> = wfs.after(None).map(|e| e.header.id.to_string()).collect();
        assert_eq!(ids, ["a", "c", "e"]);
    }
}
