//! Per-partition delivery bookkeeping of one group member: what was handed out, what is
//! acknowledged, what must be delivered again, and how far the group may commit.
//!
//! Kafka commits one offset per partition: "everything below is processed". Deliveries are
//! acknowledged in any order, so the member commits only the contiguous acknowledged prefix:
//! up to the lowest delivered offset still unacknowledged. A delivery dropped without
//! acknowledgement makes the member seek the partition back to it; offsets that come around
//! again are skipped unless they were released.

use std::collections::{BTreeSet, HashMap};

/// A partition of a topic.
pub(crate) type PartitionKey = (String, i32);

/// The bookkeeping of every partition assigned to one group member.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    map: HashMap<PartitionKey, PartitionState>,
    /// Bumped on every assignment, so handles from an earlier assignment are recognised.
    next_generation: u64,
}

#[derive(Debug)]
struct PartitionState {
    generation: u64,
    /// The highest offset handed out in this assignment.
    delivered_max: Option<i64>,
    /// Handed out and not acknowledged (in flight or released).
    pending: BTreeSet<i64>,
    /// Dropped without acknowledgement: to be handed out again.
    released: BTreeSet<i64>,
    /// The offset last sent for commit.
    committed: Option<i64>,
    /// Where the consumer must seek back to, if anywhere.
    seek_to: Option<i64>,
}

impl PartitionState {
    fn new(generation: u64) -> Self {
        PartitionState {
            generation,
            delivered_max: None,
            pending: BTreeSet::new(),
            released: BTreeSet::new(),
            committed: None,
            seek_to: None,
        }
    }

    /// The offset the group may commit: the lowest unacknowledged delivery, or past the last.
    fn commit_point(&self) -> Option<i64> {
        self.pending.first().copied().or(self.delivered_max.map(|m| m + 1))
    }

    /// The commit point, when it moved past what was last committed.
    fn advance(&mut self) -> Option<i64> {
        let point = self.commit_point()?;
        if self.committed.is_some_and(|c| c >= point) {
            return None;
        }
        self.committed = Some(point);
        Some(point)
    }
}

/// What a new message of a partition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Hand it out; its acknowledgement belongs to this generation.
    Deliver(u64),
    /// Already handed out and acknowledged or still in flight: skip it.
    Skip,
}

/// What acknowledging a delivery did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acked {
    /// Recorded; commit this offset for the partition.
    Commit(i64),
    /// Recorded; the commit point did not move.
    Recorded,
    /// The partition was revoked since the delivery: the group will deliver it again.
    Stale,
}

impl Partitions {
    /// Starts fresh bookkeeping for newly assigned partitions.
    pub(crate) fn assign(&mut self, key: PartitionKey) {
        let generation = self.bump();
        self.map.insert(key, PartitionState::new(generation));
    }

    /// Forgets a revoked partition; returns the offset to commit before handing it over.
    pub(crate) fn revoke(&mut self, key: &PartitionKey) -> Option<i64> {
        let mut state = self.map.remove(key)?;
        state.advance().or(state.committed)
    }

    /// Decides whether a message fetched at `offset` is handed out.
    pub(crate) fn admit(&mut self, key: &PartitionKey, offset: i64) -> Admission {
        if !self.map.contains_key(key) {
            // Assignment callbacks run before fetching; this only guards against surprises.
            let generation = self.bump();
            self.map.insert(key.clone(), PartitionState::new(generation));
        }
        let Some(state) = self.map.get_mut(key) else { return Admission::Skip };
        let fresh = state.delivered_max.is_none_or(|m| offset > m);
        if !fresh && !state.released.remove(&offset) {
            return Admission::Skip;
        }
        // The first message of an assignment sits at the group's position: nothing to commit below it.
        state.committed.get_or_insert(offset);
        state.delivered_max = Some(state.delivered_max.map_or(offset, |m| m.max(offset)));
        state.pending.insert(offset);
        Admission::Deliver(state.generation)
    }

    /// Records the acknowledgement of `offset`.
    pub(crate) fn ack(&mut self, key: &PartitionKey, offset: i64, generation: u64) -> Acked {
        let Some(state) = self.map.get_mut(key).filter(|s| s.generation == generation) else {
            return Acked::Stale;
        };
        if !state.pending.remove(&offset) {
            return Acked::Stale;
        }
        state.released.remove(&offset);
        state.advance().map_or(Acked::Recorded, Acked::Commit)
    }

    /// Records that `offset` was dropped unacknowledged; returns whether a seek is now due.
    pub(crate) fn release(&mut self, key: &PartitionKey, offset: i64, generation: u64) -> bool {
        let Some(state) = self.map.get_mut(key).filter(|s| s.generation == generation) else {
            return false;
        };
        if !state.pending.contains(&offset) || !state.released.insert(offset) {
            return false;
        }
        state.seek_to = Some(state.seek_to.map_or(offset, |s| s.min(offset)));
        true
    }

    /// The seeks due, each partition once, at its lowest released offset.
    pub(crate) fn take_seeks(&mut self) -> Vec<(PartitionKey, i64)> {
        self.map.iter_mut().filter_map(|(key, state)| Some((key.clone(), state.seek_to.take()?))).collect()
    }

    /// Puts back a seek that could not be made, to be tried again.
    pub(crate) fn retry_seek(&mut self, key: &PartitionKey, offset: i64) {
        if let Some(state) = self.map.get_mut(key) {
            state.seek_to = Some(state.seek_to.map_or(offset, |s| s.min(offset)));
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PartitionKey {
        ("job_events".into(), 0)
    }

    fn deliver(p: &mut Partitions, offset: i64) -> u64 {
        match p.admit(&key(), offset) {
            Admission::Deliver(g) => g,
            Admission::Skip => panic!("offset {offset} skipped"),
        }
    }

    #[test]
    fn commits_only_the_contiguous_acknowledged_prefix() {
        let mut p = Partitions::default();
        p.assign(key());
        let g = deliver(&mut p, 10);
        deliver(&mut p, 11);
        deliver(&mut p, 12);
        assert_eq!(p.ack(&key(), 11, g), Acked::Recorded, "10 is still in flight");
        assert_eq!(p.ack(&key(), 12, g), Acked::Recorded);
        assert_eq!(p.ack(&key(), 10, g), Acked::Commit(13));
        assert_eq!(p.ack(&key(), 10, g), Acked::Stale, "a second ack is not recorded");
    }

    #[test]
    fn offset_gaps_do_not_stall_commits() {
        let mut p = Partitions::default();
        p.assign(key());
        let g = deliver(&mut p, 3);
        deliver(&mut p, 7);
        assert_eq!(p.ack(&key(), 3, g), Acked::Commit(7));
        assert_eq!(p.ack(&key(), 7, g), Acked::Commit(8));
    }

    #[test]
    fn a_released_offset_is_sought_and_delivered_again_others_are_skipped() {
        let mut p = Partitions::default();
        p.assign(key());
        let g = deliver(&mut p, 0);
        deliver(&mut p, 1);
        deliver(&mut p, 2);
        assert_eq!(p.ack(&key(), 0, g), Acked::Commit(1));
        assert_eq!(p.ack(&key(), 2, g), Acked::Recorded);
        assert!(p.release(&key(), 1, g));
        assert!(!p.release(&key(), 1, g), "released once");
        assert_eq!(p.take_seeks(), vec![(key(), 1)]);
        assert!(p.take_seeks().is_empty());
        assert_eq!(p.admit(&key(), 1), Admission::Deliver(g));
        assert_eq!(p.admit(&key(), 1), Admission::Skip, "now in flight again");
        assert_eq!(p.admit(&key(), 2), Admission::Skip, "acknowledged");
        assert_eq!(p.admit(&key(), 3), Admission::Deliver(g), "new");
        assert_eq!(p.ack(&key(), 1, g), Acked::Commit(3));
    }

    #[test]
    fn the_lowest_release_wins_the_seek_and_failed_seeks_come_back() {
        let mut p = Partitions::default();
        p.assign(key());
        let g = deliver(&mut p, 5);
        deliver(&mut p, 6);
        assert!(p.release(&key(), 6, g));
        assert!(p.release(&key(), 5, g));
        assert_eq!(p.take_seeks(), vec![(key(), 5)]);
        p.retry_seek(&key(), 5);
        assert_eq!(p.take_seeks(), vec![(key(), 5)]);
    }

    #[test]
    fn revocation_makes_old_handles_stale_and_returns_the_final_commit() {
        let mut p = Partitions::default();
        p.assign(key());
        let g = deliver(&mut p, 0);
        deliver(&mut p, 1);
        assert_eq!(p.ack(&key(), 0, g), Acked::Commit(1));
        assert_eq!(p.revoke(&key()), Some(1));
        p.assign(key());
        assert_eq!(p.ack(&key(), 1, g), Acked::Stale);
        assert!(!p.release(&key(), 1, g));
        let g2 = deliver(&mut p, 1);
        assert_ne!(g, g2);
        assert_eq!(p.revoke(&key()), Some(1), "nothing acknowledged in the new assignment");
        assert_eq!(p.revoke(&key()), None);
    }

    #[test]
    fn release_after_ack_is_ignored() {
        let mut p = Partitions::default();
        p.assign(key());
        let g = deliver(&mut p, 0);
        assert_eq!(p.ack(&key(), 0, g), Acked::Commit(1));
        assert!(!p.release(&key(), 0, g));
        assert!(p.take_seeks().is_empty());
    }
}
