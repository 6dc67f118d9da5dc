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
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// A queue score, totally ordered (`f64::total_cmp`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Score(pub(super) f64);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Where a job record is: its workflow's handle in the store (see
/// [`Workflows`](super::workflows::Workflows)) and its position among the workflow's
/// records. Entries of equal score are taken in handle order, then in template order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Slot {
    pub(super) wf: u32,
    pub(super) pos: u32,
}

impl Slot {
    /// The slot of the record at position `pos` of the workflow at `wf`.
    pub(super) fn new(wf: u32, pos: usize) -> Slot {
        // A workflow's records are far fewer than 2^32 (a template's jobs are limited).
        Slot { wf, pos: pos as u32 }
    }

    /// The record's position among its workflow's records.
    pub(super) fn pos(self) -> usize {
        self.pos as usize
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
    /// `READY` jobs not yet due, by `(ready_at, slot)`; moved to `ready` once due.
    pub(super) delayed: BTreeSet<(DateTime<Utc>, Slot)>,
    /// `RUNNING` jobs under a lease, by `(expires_at, slot)`.
    pub(super) leased: BTreeSet<(DateTime<Utc>, Slot)>,
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
                self.ready.insert((Score(record.queue_score()), slot));
            }
            Placement::Delayed(at) => {
                self.delayed.insert((at, slot));
            }
            Placement::Leased(at) => {
                self.leased.insert((at, slot));
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
                self.ready.remove(&(Score(record.queue_score()), slot));
            }
            JobStatus::Running => {
                if let Some(lease) = &record.lease {
                    self.leased.remove(&(lease.expires_at, slot));
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
                self.ready.insert((Score(s), slot));
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
