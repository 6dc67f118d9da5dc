//! Coalescing concurrent [`StateStore::apply`](crate::StateStore::apply) calls for a
//! durable store: steps queue up, and a few writer tasks each take everything queued and
//! write it as one batch (one transaction, one script call), each caller getting its own
//! result. The PostgreSQL store's group commit and the Redis store's coalesced script
//! calls both run on it; they differ only in how a batch is written ([`BatchWrite`]).
//!
//! - **No added latency**: a step that finds a writer slot free starts a writer at once;
//!   there is no timer. Batches form only while every writer is busy. With
//!   [`BatchLimits::inline_when_idle`], a step that finds nothing queued and a slot free
//!   is written from its caller's task (no task hop).
//! - **Each caller gets its own result**: the writer answers each step with the result
//!   at its position in what [`BatchWrite::write`] returns.
//! - The writers are tokio tasks: a caller that stops waiting (drops its future) does not
//!   abandon the steps batched with it, and its own queued step is still written as if it
//!   had waited.

use super::Applied;
use crate::error::{Error, ErrorKind, Result};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;

/// How a [`Batcher`] forms batches.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Writers (batches being written) at once; at least 1.
    pub writers: usize,
    /// The most steps in one batch; at least 1.
    pub max_steps: usize,
    /// The most bytes (as [`BatchWrite::size`] counts them) in one batch; a larger step
    /// goes alone.
    pub max_bytes: usize,
    /// Whether a step on an idle batcher is written from its caller's task.
    pub inline_when_idle: bool,
}

/// A store that writes batches of steps.
pub trait BatchWrite: Send + Sync + 'static {
    /// A step as the store queues it.
    type Step: Send + 'static;

    /// The batcher whose queue this store's steps wait in.
    fn batcher(&self) -> &Batcher<Self::Step>;

    /// The step's size toward [`BatchLimits::max_bytes`].
    fn size(step: &Self::Step) -> usize;

    /// Writes `steps` in their order: one result per step, in the same order. A missing
    /// result is answered with an `Internal` error.
    fn write(self: Arc<Self>, steps: Vec<Self::Step>) -> impl Future<Output = Vec<Result<Applied>>> + Send;

    /// The store's backend name, for the errors the batcher itself returns.
    const BACKEND: &'static str;
}

/// The error of a step whose writer stopped before answering (e.g. the runtime shut down).
fn writer_stopped<W: BatchWrite>() -> Error {
    Error::new(ErrorKind::Unavailable, "the step's writer stopped before answering (runtime shutting down?)")
        .with_operation("StateStore::apply")
        .with_backend(W::BACKEND)
}

/// A queued step and where its result goes.
struct Pending<S> {
    step: S,
    reply: oneshot::Sender<Result<Applied>>,
}

struct Queue<S> {
    pending: Vec<Pending<S>>,
    writers: usize,
}

/// The queue of steps waiting for a writer.
pub struct Batcher<S> {
    queue: Mutex<Queue<S>>,
    limits: BatchLimits,
}

impl<S> std::fmt::Debug for Batcher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.lock();
        f.debug_struct("Batcher")
            .field("queued", &queue.pending.len())
            .field("writers", &queue.writers)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<S> Batcher<S> {
    /// An empty batcher forming batches within `limits`.
    pub fn new(mut limits: BatchLimits) -> Self {
        limits.writers = limits.writers.max(1);
        limits.max_steps = limits.max_steps.max(1);
        Batcher { queue: Mutex::new(Queue { pending: Vec::new(), writers: 0 }), limits }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<S>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a writer slot if one is free (and, with `only_if_idle`, nothing is queued).
    fn take_slot(&self, only_if_idle: bool) -> bool {
        let mut queue = self.lock();
        let free = queue.writers < self.limits.writers && (!only_if_idle || queue.pending.is_empty());
        if free {
            queue.writers += 1;
        }
        free
    }

    /// The next batch, or `None` when the queue is empty.
    fn take(&self, size: impl Fn(&S) -> usize) -> Option<Vec<Pending<S>>> {
        let mut queue = self.lock();
        if queue.pending.is_empty() {
            return None;
        }
        let (mut n, mut bytes) = (0, 0);
        for p in queue.pending.iter().take(self.limits.max_steps) {
            bytes += size(&p.step);
            if n > 0 && bytes > self.limits.max_bytes {
                break;
            }
            n += 1;
        }
        Some(queue.pending.drain(..n).collect())
    }
}

/// Writes `step` through `store`'s batcher and returns its result.
pub async fn submit<W: BatchWrite>(store: &Arc<W>, step: W::Step) -> Result<Applied> {
    let batcher = store.batcher();
    if batcher.limits.inline_when_idle && batcher.take_slot(true) {
        // The slot passes to a new writer if steps queued meanwhile (also if this future
        // is dropped mid-write; then only this step's outcome is unknown).
        let _slot = WriterSlot(store.clone());
        return first(store.clone().write(vec![step]).await);
    }
    let (reply, result) = oneshot::channel();
    batcher.lock().pending.push(Pending { step, reply });
    if batcher.take_slot(false) {
        spawn_writer(store.clone());
    }
    result.await.unwrap_or_else(|_| Err(writer_stopped::<W>()))
}

fn first(results: Vec<Result<Applied>>) -> Result<Applied> {
    results.into_iter().next().unwrap_or_else(|| Err(Error::internal("no result for the step")))
}

fn spawn_writer<W: BatchWrite>(store: Arc<W>) {
    tokio::spawn(async move {
        let _slot = WriterSlot(store.clone());
        while let Some(batch) = store.batcher().take(W::size) {
            let (steps, replies): (Vec<W::Step>, Vec<_>) = batch.into_iter().map(|p| (p.step, p.reply)).unzip();
            let mut results = store.clone().write(steps).await.into_iter();
            for reply in replies {
                let result = results.next().unwrap_or_else(|| Err(Error::internal("no result for the step")));
                // A caller that stopped waiting does not want its answer.
                let _ = reply.send(result);
            }
        }
    });
}

/// A writer's slot: freed when the writer ends (also by a panic or an abort), and taken
/// again at once by a new writer if steps were queued meanwhile. Dropped where no runtime
/// can run a new writer (the runtime is shutting down), the last slot answers the queued
/// steps with [`writer_stopped`] instead of leaving their callers waiting for a writer
/// that may never come.
struct WriterSlot<W: BatchWrite>(Arc<W>);

impl<W: BatchWrite> Drop for WriterSlot<W> {
    fn drop(&mut self) {
        let batcher = self.0.batcher();
        let mut queue = batcher.lock();
        if queue.pending.is_empty() {
            queue.writers -= 1;
        } else if tokio::runtime::Handle::try_current().is_ok() {
            drop(queue);
            spawn_writer(self.0.clone());
        } else {
            queue.writers -= 1;
            // Another writer still running takes them; else their senders are dropped
            // (outside the lock), which answers each caller with `writer_stopped`.
            let orphans = if queue.writers == 0 { std::mem::take(&mut queue.pending) } else { Vec::new() };
            drop(queue);
            drop(orphans);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Writes steps `n` as `Applied { remaining: n }` (an odd `n` is refused), counting
    /// batches and the largest; each write yields so that steps queue behind it.
    struct Echo {
        batcher: Batcher<u64>,
        batches: AtomicUsize,
        largest: AtomicUsize,
    }

    impl BatchWrite for Echo {
        type Step = u64;
        const BACKEND: &'static str = "echo";

        fn batcher(&self) -> &Batcher<u64> {
            &self.batcher
        }

        fn size(_: &u64) -> usize {
            1
        }

        async fn write(self: Arc<Self>, steps: Vec<u64>) -> Vec<Result<Applied>> {
            self.batches.fetch_add(1, Ordering::SeqCst);
            self.largest.fetch_max(steps.len(), Ordering::SeqCst);
            tokio::task::yield_now().await;
            steps
                .into_iter()
                .map(|n| {
                    if n % 2 == 1 {
                        Err(Error::conflict(format!("odd {n}")))
                    } else {
                        Ok(Applied { remaining: n, ..Applied::default() })
                    }
                })
                .collect()
        }
    }

    fn echo(inline_when_idle: bool) -> Arc<Echo> {
        let limits = BatchLimits { writers: 1, max_steps: 8, max_bytes: usize::MAX, inline_when_idle };
        Arc::new(Echo { batcher: Batcher::new(limits), batches: AtomicUsize::new(0), largest: AtomicUsize::new(0) })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_caller_gets_its_own_result_and_steps_share_batches() {
        for inline in [false, true] {
            let store = echo(inline);
            let calls: Vec<_> = (0..40u64)
                .map(|n| {
                    let store = store.clone();
                    tokio::spawn(async move { (n, submit(&store, n).await) })
                })
                .collect();
            for call in calls {
                let (n, result) = call.await.unwrap();
                match result {
                    Ok(applied) => assert_eq!(applied.remaining, n),
                    Err(e) => assert!(n % 2 == 1 && e.kind() == ErrorKind::Conflict, "{n}: {e}"),
                }
            }
            let (batches, largest) = (store.batches.load(Ordering::SeqCst), store.largest.load(Ordering::SeqCst));
            assert!(
                batches < 40 && (2..=8).contains(&largest),
                "inline {inline}: {batches} batches, largest {largest}"
            );
            assert_eq!(store.batcher.lock().writers, 0, "every slot was given back");
        }
    }

    #[tokio::test]
    async fn an_idle_inline_batcher_writes_from_the_callers_task() {
        let store = echo(true);
        assert_eq!(submit(&store, 4).await.unwrap().remaining, 4);
        assert_eq!(store.batches.load(Ordering::SeqCst), 1);
        assert_eq!(store.batcher.lock().writers, 0);
    }

    /// The last slot freed where no runtime runs (a runtime shutting down) cannot start a
    /// writer: the queued steps' callers get `writer_stopped` rather than waiting forever.
    #[test]
    fn a_slot_freed_outside_a_runtime_answers_the_queued_steps() {
        let store = echo(false);
        let (reply, mut answer) = oneshot::channel();
        store.batcher.lock().pending.push(Pending { step: 2, reply });
        assert!(store.batcher.take_slot(false));
        drop(WriterSlot(store.clone()));
        let queue = store.batcher.lock();
        assert_eq!((queue.writers, queue.pending.len()), (0, 0), "the slot was freed and the queue emptied");
        drop(queue);
        assert!(
            matches!(answer.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "the caller was answered (its sender dropped), so `submit` returns writer_stopped"
        );
    }

    #[test]
    fn a_batch_stops_at_its_byte_limit_but_takes_at_least_one_step() {
        let batcher = Batcher::new(BatchLimits { writers: 1, max_steps: 10, max_bytes: 5, inline_when_idle: false });
        for step in [3usize, 3, 9, 1] {
            batcher.lock().pending.push(Pending { step, reply: oneshot::channel().0 });
        }
        let sizes = |b: Option<Vec<Pending<usize>>>| b.map(|b| b.into_iter().map(|p| p.step).collect::<Vec<_>>());
        assert_eq!(sizes(batcher.take(|s| *s)), Some(vec![3]));
        assert_eq!(sizes(batcher.take(|s| *s)), Some(vec![3]));
        assert_eq!(sizes(batcher.take(|s| *s)), Some(vec![9]));
        assert_eq!(sizes(batcher.take(|s| *s)), Some(vec![1]));
        assert_eq!(sizes(batcher.take(|s| *s)), None);
    }
}
