//! The store's lock, and the steps that find it taken: queued for its holder to apply.
//!
//! Many workers on a multi-thread runtime step the store at once, and a step holds the
//! lock for a few microseconds. A worker that found the lock taken used to spin (and then
//! sleep) on it, its thread idle, while the store's records, indexes and outbox moved to
//! its core's cache and back. Now, when the lock is held for another step, it queues its
//! step and yields: its thread runs other tasks (other workers' jobs and plans), and
//! whoever holds the lock applies the queued steps before it leaves, one after another,
//! each atomic as before, then hands each its answer. Under load one thread keeps the
//! store hot in its cache and does the store's work; the others do everything else. Behind
//! a short hold (a read, a claim, the relay taking events) a step waits for the lock as
//! before: queueing there would only move its worker to another thread.
//!
//! No step is left behind: every release of the lock ([`Locked`]'s drop) looks at the
//! count of queued steps and, if there are any and the lock is free, takes the lock and
//! applies them; a step is counted before its worker tries the lock once more. A
//! sequentially consistent fence sits between the write and the read on both sides, so at
//! least one of them sees the other's: a queued step is applied by its worker, or by a
//! holder that released the lock after it was queued.

use super::MemoryStateStore;
use super::inner::{Inner, Wake};
use crate::error::{Error, Result};
use crate::ids::Name;
use crate::store::{Applied, Transition};
use chrono::{DateTime, Utc};
use parking_lot::MutexGuard;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{self, Ordering};
use tokio::sync::oneshot;

/// A step waiting for the lock's holder, and where its answer goes.
#[derive(Debug)]
pub(super) struct Queued {
    step: Transition,
    token: Option<Name>,
    answer: oneshot::Sender<Result<Applied>>,
}

/// Where the answer to a queued step comes; see [`MemoryStateStore::apply_or_queue`].
pub(super) struct Answer(oneshot::Receiver<Result<Applied>>);

impl Answer {
    /// The queued step's answer, once its turn came.
    pub(super) async fn get(self) -> Result<Applied> {
        self.0.await.unwrap_or_else(|_| Err(Error::internal("the memory store dropped a queued step unanswered")))
    }
}

/// The store's lock, held. Released, it applies the steps queued meanwhile (see the module
/// docs).
pub(super) struct Locked<'a> {
    // Fields drop in order: the lock is released before the queue is looked at.
    guard: MutexGuard<'a, Inner>,
    _then: ApplyQueued<'a>,
}

impl Deref for Locked<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.guard
    }
}

/// Dropped after a [`Locked`]'s guard: applies what queued while it was held.
struct ApplyQueued<'a>(&'a MemoryStateStore);

impl Drop for ApplyQueued<'_> {
    fn drop(&mut self) {
        self.0.apply_queued();
    }
}

impl MemoryStateStore {
    /// Takes the lock. It is never held across an `.await`, and it does not poison: a panic
    /// while holding it cannot leave a step half-applied (steps validate before writing).
    pub(super) fn lock(&self) -> Locked<'_> {
        Locked { guard: self.inner.lock(), _then: ApplyQueued(self) }
    }

    /// Applies `step` (see [`StateStore::apply`](crate::StateStore::apply)) and returns its
    /// answer, or queues it for the lock's holder and returns where its answer will come:
    /// queued only behind another step (a long hold); behind a read, a claim or the relay
    /// (short ones) it waits for the lock. Not `async`: the caller's future holds only the
    /// step and, while it waits, the receiver.
    pub(super) fn apply_or_queue(&self, mut step: Transition) -> std::result::Result<Result<Applied>, Answer> {
        // The lease token of the job the step claims is made before the lock is taken.
        let token = step.claim_after.is_some().then(crate::state::lease_token);
        let guard = match self.inner.try_lock() {
            Some(guard) => guard,
            None if !self.stepping.load(Ordering::Relaxed) => self.inner.lock(),
            None => {
                let (answer, answered) = oneshot::channel();
                {
                    let mut queued = self.queued.lock();
                    queued.push(Queued { step, token, answer });
                    self.waiting.fetch_add(1, Ordering::SeqCst);
                }
                self.apply_queued();
                return Err(Answer(answered));
            }
        };
        let mut locked = Locked { guard, _then: ApplyQueued(self) };
        self.stepping.store(true, Ordering::Relaxed);
        let (result, wake) = apply_one(&mut locked, &mut step, Utc::now(), token);
        self.stepping.store(false, Ordering::Relaxed);
        // The step's replaced records are freed, and waiters woken, outside the lock.
        drop(locked);
        drop(step);
        self.wake(wake);
        Ok(result)
    }

    /// Applies the queued steps while there are any and the lock is free; a holder that
    /// finds more queued when it is done goes on with them.
    fn apply_queued(&self) {
        loop {
            // Pairs with the same fence of a step that queued and then tried the lock: either
            // it sees this release of the lock, or this sees its step (see the module docs).
            // Reading the count writes nothing, so threads that never queue share its line.
            atomic::fence(Ordering::SeqCst);
            if self.waiting.load(Ordering::Relaxed) == 0 {
                return;
            }
            let Some(mut inner) = self.inner.try_lock() else {
                // Its holder applies them when it releases the lock.
                return;
            };
            let batch = {
                let mut queued = self.queued.lock();
                self.waiting.fetch_sub(queued.len(), Ordering::SeqCst);
                std::mem::take(&mut *queued)
            };
            self.stepping.store(true, Ordering::Relaxed);
            let now = Utc::now();
            let mut wake = Wake::default();
            let answers: Vec<_> = batch
                .into_iter()
                .map(|Queued { mut step, token, answer }| {
                    let (result, w) = apply_one(&mut inner, &mut step, now, token);
                    wake.0 |= w.0;
                    (answer, result, step)
                })
                .collect();
            self.stepping.store(false, Ordering::Relaxed);
            drop(inner);
            self.wake(wake);
            for (answer, result, step) in answers {
                // A caller that stopped waiting gets no answer; its step is applied all the same.
                let _ = answer.send(result);
                drop(step);
            }
        }
    }
}

/// Applies `step` under the lock, then claims the worker's next job when it asks for one
/// (under lease `token`); the step keeps what it replaced, for the caller to free after the
/// lock is released.
fn apply_one(
    inner: &mut Inner,
    step: &mut Transition,
    now: DateTime<Utc>,
    token: Option<Name>,
) -> (Result<Applied>, Wake) {
    let claim = step.claim_after.take();
    let (mut applied, mut wake) = match inner.apply(step, now) {
        Ok(done) => done,
        Err(e) => return (Err(e), Wake::default()),
    };
    if let Some(req) = claim {
        // The step is applied: a claim that cannot be made (a lease TTL out of range)
        // claims nothing rather than failing it.
        applied.claimed = inner.claim(req, now, token).map(|c| c.jobs).unwrap_or_default();
        // What the step made claimable may all be taken now: a waiting engine need only
        // look again for jobs still queued or delayed.
        wake.0 &= !inner.index.ready.is_empty() || inner.index.next_due().is_some();
    }
    (Ok(applied), wake)
}
