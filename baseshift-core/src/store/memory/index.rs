//! The memory store's job indexes: the ready queue, the delayed set and lease expiries.
//!
//! Every entry is derived from a job record's own fields, so an entry can be removed
//! by recomputing it from the record as it was before a write. Callers keep the
//! invariant: [`Indexes::remove`] with the stored record before changing it,
//! [`Indexes::insert`] with the record after.
//!
//! An entry names its job by [`Slot`]: its workflow's handle and the job's position in
//! the workflow's records, which never move. Writing an entry copies no id and touches
//! no reference count, and a claim finds the record without searching its workflow.

use crate::hash::FastMap;
use crate::state::{JobRecord, JobStatus};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// A queue score as an integer of the same order as `f64::total_cmp`: comparing two
/// entries of an index is two integer comparisons, in the tree searches every write makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Score(u64);

impl Score {
    /// The key of `score` (see [`JobRecord::queue_score`]).
    pub(super) fn new(score: f64) -> Score {
        let bits = score.to_bits();
        // Negative numbers descend as their bits ascend: all their bits flip; positive
        // ones only gain the top bit, so they sort above every negative one.
        Score(if bits >> 63 == 1 { !bits } else { bits | 1 << 63 })
    }
}

/// An instant as an integer key of the same order: nanoseconds since the epoch, clamped
/// to `i64` (beyond the years 1677-2262 instants compare equal, and entries then go by
/// slot; the key is recomputed the same way to remove them, so none is ever lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct At(i64);

impl At {
    /// The key of `at`.
    pub(super) fn new(at: DateTime<Utc>) -> At {
        At(at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 { i64::MIN } else { i64::MAX }))
    }
}

/// Where a job record is: its workflow's handle in the store (see
/// [`Workflows`](super::workflows::Workflows)) and its position among the workflow's
/// records, packed in one integer (the handle in the high half). Entries of equal score
/// are taken in handle order, then in template order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Slot(u64);

impl Slot {
    /// The slot of the record at position `pos` of the workflow at `wf`.
    pub(super) fn new(wf: u32, pos: usize) -> Slot {
        // A workflow's records are far fewer than 2^32 (a template's jobs are limited).
        Slot(u64::from(wf) << 32 | u64::from(pos as u32))
    }

    /// The workflow's handle.
    pub(super) fn wf(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The record's position among its workflow's records.
    pub(super) fn pos(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }
}

/// Which index a record belongs in, as of `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Placement {
    /// `READY` and due: the ready queue.
    Ready,
    /// `READY` with `ready_at` in the future: the delayed set.
    Delayed(DateTime<Utc>),
    /// `RUNNING` under a lease: the lease-expiry index.
    Leased(DateTime<Utc>),
    /// Not claimable (pending, terminal, or awaiting an external completion).
    None,
}

impl Placement {
    /// Where `record` goes when written at `now`.
    pub(super) fn of(record: &JobRecord, now: DateTime<Utc>) -> Placement {
        match record.status {
            JobStatus::Ready => match record.ready_at {
                Some(at) if at > now => Placement::Delayed(at),
                _ => Placement::Ready,
            },
            JobStatus::Running if !record.awaiting_external => match &record.lease {
                Some(lease) => Placement::Leased(lease.expires_at),
                None => Placement::None,
            },
            _ => Placement::None,
        }
    }
}

/// The three ordered indexes over claimable jobs.
#[derive(Debug, Default)]
pub(super) struct Indexes {
    /// `READY` jobs that are due, by `(queue_score, slot)`.
    pub(super) ready: BTreeSet<(Score, Slot)>,
    /// `READY` jobs not yet due, by `(ready_at, slot)`; moved to `ready` once due. Its
    /// instants are kept as they are (not as [`At`] keys): only retries and delays write
    /// it, and [`Indexes::next_due`] gives them back.
    pub(super) delayed: BTreeSet<(DateTime<Utc>, Slot)>,
    /// `RUNNING` jobs under a lease, by `(expires_at, slot)`, the expiry as its [`At`] key.
    pub(super) leased: BTreeSet<(At, Slot)>,
    /// `RUNNING` jobs (leased or awaiting an external call) per concurrency key.
    pub(super) running_keys: FastMap<String, usize>,
}

impl Indexes {
    /// Adds `record`, at `slot`, to the index its state calls for; returns which one.
    pub(super) fn insert(&mut self, record: &JobRecord, slot: Slot, now: DateTime<Utc>) -> Placement {
        if record.status == JobStatus::Running
            && let Some(c) = &record.concurrency
        {
            *self.running_keys.entry(c.key.clone()).or_default() += 1;
        }
        let placement = Placement::of(record, now);
        match placement {
            Placement::Ready => {
                self.ready.insert((Score::new(record.queue_score()), slot));
            }
            Placement::Delayed(at) => {
                self.delayed.insert((at, slot));
            }
            Placement::Leased(at) => {
                self.leased.insert((At::new(at), slot));
            }
            Placement::None => {}
        }
        placement
    }

    /// Removes `record` (as stored before a write, at `slot`) from every index it may be
    /// in. Returns whether it held a concurrency key's slot (it was `RUNNING` with a key).
    pub(super) fn remove(&mut self, record: &JobRecord, slot: Slot) -> bool {
        let mut released = false;
        if record.status == JobStatus::Running
            && let Some(c) = &record.concurrency
            && let Some(n) = self.running_keys.get_mut(&c.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running_keys.remove(&c.key);
            }
            released = true;
        }
        match record.status {
            // A READY record may sit in `delayed` past its due time until the next claim
            // promotes it, so both sets are tried.
            JobStatus::Ready => {
                if let Some(at) = record.ready_at {
                    self.delayed.remove(&(at, slot));
                }
                let entry = (Score::new(record.queue_score()), slot);
                // A claim takes the queue's head: popping it needs no search from the root.
                if self.ready.first() == Some(&entry) {
                    self.ready.pop_first();
                } else {
                    self.ready.remove(&entry);
                }
            }
            JobStatus::Running => {
                if let Some(lease) = &record.lease {
                    self.leased.remove(&(At::new(lease.expires_at), slot));
                }
            }
            _ => {}
        }
        released
    }

    /// `RUNNING` jobs holding concurrency key `key`.
    pub(super) fn running_with_key(&self, key: &str) -> usize {
        self.running_keys.get(key).copied().unwrap_or(0)
    }

    /// Moves delayed jobs due at `now` to the ready queue; `score` gives each one's score.
    /// Returns whether any moved.
    pub(super) fn promote_due(&mut self, now: DateTime<Utc>, score: impl Fn(&Slot) -> Option<f64>) -> bool {
        let mut promoted = false;
        while let Some((at, _)) = self.delayed.first()
            && *at <= now
        {
            if let Some((_, slot)) = self.delayed.pop_first()
                && let Some(s) = score(&slot)
            {
                self.ready.insert((Score::new(s), slot));
                promoted = true;
            }
        }
        promoted
    }

    /// The earliest time a delayed job becomes due.
    pub(super) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.delayed.first().map(|(at, _)| *at)
    }

    /// Jobs whose lease expired at `now`, earliest expiry first.
    pub(super) fn expired(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Slot> {
        let now = At::new(now);
        self.leased.iter().take_while(move |(at, _)| *at <= now).map(|(_, slot)| slot)
    }

    /// Due ready jobs, best score first.
    pub(super) fn ready(&self) -> impl Iterator<Item = &Slot> {
        self.ready.iter().map(|(_, slot)| slot)
    }

    /// The number of entries in all indexes.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.leased.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    /// The integer keys sort as the values they stand for: scores as `f64::total_cmp`,
    /// instants as instants (clamped ones at the ends), slots by handle then position.
    #[test]
    fn keys_keep_the_order_of_their_values() {
        let scores = [f64::NEG_INFINITY, -1e300, -2.5, -1.0, -0.0, 0.0, 1e-300, 1.0, 3.5, 1e300, f64::INFINITY];
        for a in scores {
            for b in scores {
                assert_eq!(Score::new(a).cmp(&Score::new(b)), a.total_cmp(&b), "{a} against {b}");
            }
        }
        let instants = [
            DateTime::<Utc>::MIN_UTC,
            DateTime::from_timestamp(-10_000_000_000, 0).unwrap(),
            DateTime::from_timestamp(-1, 999_999_999).unwrap(),
            DateTime::from_timestamp(0, 0).unwrap(),
            DateTime::from_timestamp(0, 1).unwrap(),
            DateTime::from_timestamp(1_764_000_000, 5).unwrap(),
            DateTime::from_timestamp(1_764_000_000, 6).unwrap(),
            DateTime::from_timestamp(10_000_000_000, 0).unwrap(),
            DateTime::<Utc>::MAX_UTC,
        ];
        for (i, a) in instants.iter().enumerate() {
            for (j, b) in instants.iter().enumerate() {
                // The first two and the last two are beyond i64 nanoseconds: equal keys.
                let clamped = (i < 2 && j < 2) || (i > 6 && j > 6);
                let expected = if clamped { Ordering::Equal } else { a.cmp(b) };
                assert_eq!(At::new(*a).cmp(&At::new(*b)), expected, "{a} against {b}");
            }
        }
        let slots = [(0, 0), (0, 1), (0, u32::MAX as usize), (1, 0), (u32::MAX, 7)];
        for &(wa, pa) in &slots {
            let a = Slot::new(wa, pa);
            assert_eq!((a.wf(), a.pos()), (wa, pa));
            for &(wb, pb) in &slots {
                assert_eq!(a.cmp(&Slot::new(wb, pb)), (wa, pa).cmp(&(wb, pb)));
            }
        }
    }
}
