//! Waiting for workflows to finish: batched header reads, woken by this instance's
//! finished workflows (see `waiters.rs`), polling (backing off) for those other
//! instances finish.

use super::Inner;
use crate::error::{Error, ErrorKind, Result};
use crate::hash::{FastMap, map_with_capacity};
use crate::ids::WorkflowId;
use crate::state::WorkflowRecord;
use std::time::Duration;

/// Headers read per store call while waiting.
const READ_CHUNK: usize = 1000;
/// A wait for more ids than this reads them all before registering, and registers only
/// those still open (see [`Inner::wait_all`]).
const REGISTER_FIRST_UP_TO: usize = READ_CHUNK;
/// The first poll interval; it doubles up to [`MAX_POLL`] while nothing finishes here.
const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(500);

impl Inner {
    /// Waits until every workflow of `ids` is terminal; their headers, in the order of
    /// `ids`. Reads the headers in batches (`StateStore::workflows`): first all of them,
    /// then those this instance finishes, as it finishes them; and, once a poll interval
    /// passes with none finished here, all that are still open (another instance may be
    /// finishing them). `NotFound` names the first id that does not exist; `Timeout` when
    /// `timeout` passes first.
    ///
    /// A long list (more than [`REGISTER_FIRST_UP_TO`] ids) is read once before anything
    /// is registered, each header put straight at its position, and only the ids still
    /// open are registered and waited for (read again once registered, for those that
    /// finished in between): a list of a million mostly finished workflows then costs no
    /// registration and no map entry per id. A short one registers first, saving a read.
    pub async fn wait_all(&self, ids: &[WorkflowId], timeout: Option<Duration>) -> Result<Vec<WorkflowRecord>> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        if ids.len() <= REGISTER_FIRST_UP_TO {
            return self.wait_registered(ids, deadline).await;
        }
        let mut done: Vec<Option<WorkflowRecord>> = Vec::new();
        done.resize_with(ids.len(), || None);
        // Positions still open after the first read.
        let mut open = Vec::new();
        for (c, chunk) in ids.chunks(READ_CHUNK).enumerate() {
            let headers = self.store.workflows(chunk).await?;
            if headers.len() < chunk.len() {
                return Err(not_found(chunk, &headers));
            }
            // In the order asked, none left out: header `i` is the one of `chunk[i]`.
            for (i, header) in headers.into_iter().enumerate() {
                let pos = c * READ_CHUNK + i;
                if header.status.is_terminal() {
                    done[pos] = Some(header);
                } else {
                    open.push(pos);
                }
            }
        }
        if !open.is_empty() {
            let rest: Vec<WorkflowId> = open.iter().map(|&pos| ids[pos].clone()).collect();
            for (pos, header) in open.into_iter().zip(self.wait_registered(&rest, deadline).await?) {
                done[pos] = Some(header);
            }
        }
        collect(done)
    }

    /// [`wait_all`](Self::wait_all) registering every id before its first read, with
    /// `deadline` for the timeout.
    async fn wait_registered(
        &self,
        ids: &[WorkflowId],
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<WorkflowRecord>> {
        // Registered before the first read: what finishes after it is handed over.
        let registration = self.waiters.register(ids);
        let mut open = Open::new(ids);
        let mut done: Vec<Option<WorkflowRecord>> = Vec::new();
        done.resize_with(ids.len(), || None);
        // The first read asks for every id: straight from `ids` when none repeats.
        let mut to_read: Vec<WorkflowId> = if open.len() == ids.len() { Vec::new() } else { open.ids() };
        let mut first = true;
        let mut poll = FIRST_POLL;
        loop {
            let asked = if first && to_read.is_empty() { ids } else { &to_read[..] };
            first = false;
            for chunk in asked.chunks(READ_CHUNK) {
                let headers = self.store.workflows(chunk).await?;
                if headers.len() < chunk.len() {
                    return Err(not_found(chunk, &headers));
                }
                for header in headers.into_iter().filter(|h| h.status.is_terminal()) {
                    open.finish(header, &mut done);
                }
            }
            if open.is_empty() {
                return collect(done);
            }
            let sleep_for = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        let first = open.first_open().map_or("", |id| id.as_str());
                        return Err(Error::new(ErrorKind::Timeout, format!("workflow {first} did not finish in time"))
                            .with_workflow(first));
                    }
                    poll.min(left)
                }
                None => poll,
            };
            to_read = tokio::time::timeout(sleep_for, registration.inbox().next()).await.unwrap_or_default();
            to_read.retain(|id| open.contains(id));
            if to_read.is_empty() {
                poll = (poll * 2).min(MAX_POLL);
                to_read = open.ids();
            }
        }
    }

    /// Waits until workflow `id` is terminal (see [`wait_all`](Self::wait_all)).
    pub async fn wait(&self, id: &WorkflowId, timeout: Option<Duration>) -> Result<WorkflowRecord> {
        let mut headers = self.wait_all(std::slice::from_ref(id), timeout).await?;
        headers.pop().ok_or_else(|| Error::internal(format!("waiting for workflow {id} returned no header")))
    }
}

/// `NotFound` for the first id of `chunk` that `headers` (read for it) leaves out.
fn not_found(chunk: &[WorkflowId], headers: &[WorkflowRecord]) -> Error {
    let absent = chunk.iter().find(|id| !headers.iter().any(|h| &h.id == *id)).unwrap_or(&chunk[0]);
    Error::new(ErrorKind::NotFound, format!("no such workflow: {absent}")).with_workflow(absent.as_str())
}

/// The headers of a finished wait, every position filled. In place: `done` becomes the
/// result without a second allocation.
fn collect(done: Vec<Option<WorkflowRecord>>) -> Result<Vec<WorkflowRecord>> {
    done.into_iter()
        .map(|h| h.ok_or_else(|| Error::internal("a finished workflow's header went missing while waiting")))
        .collect()
}

/// The ids a wait still waits for: each distinct id with the first of its positions in
/// the asked list, the further positions of a repeated id chained in `next` (no list per
/// id: a wait for a million ids keeps two words per id).
struct Open<'a> {
    first: FastMap<&'a WorkflowId, usize>,
    /// For each position, the next position of the same id (`usize::MAX`: none).
    next: Vec<usize>,
}

impl<'a> Open<'a> {
    fn new(ids: &'a [WorkflowId]) -> Self {
        let mut first: FastMap<&WorkflowId, usize> = map_with_capacity(ids.len());
        let mut last: FastMap<usize, usize> = FastMap::default();
        let mut next = vec![usize::MAX; ids.len()];
        for (i, id) in ids.iter().enumerate() {
            match first.get(id) {
                None => {
                    first.insert(id, i);
                }
                Some(&head) => {
                    // Appended after the id's last position, so positions stay in order.
                    let tail = last.get(&head).copied().unwrap_or(head);
                    next[tail] = i;
                    last.insert(head, i);
                }
            }
        }
        Open { first, next }
    }

    fn len(&self) -> usize {
        self.first.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    fn contains(&self, id: &WorkflowId) -> bool {
        self.first.contains_key(id)
    }

    fn first_open(&self) -> Option<&WorkflowId> {
        self.first.keys().next().copied()
    }

    fn ids(&self) -> Vec<WorkflowId> {
        self.first.keys().map(|id| (*id).clone()).collect()
    }

    /// Puts a terminal header at each position of its id (moved into the last), if the
    /// id is still open.
    fn finish(&mut self, header: WorkflowRecord, done: &mut [Option<WorkflowRecord>]) {
        let Some(mut i) = self.first.remove(&header.id) else { return };
        while self.next[i] != usize::MAX {
            done[i] = Some(header.clone());
            i = self.next[i];
        }
        done[i] = Some(header);
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, StartRequest};
    use crate::error::ErrorKind;
    use crate::ids::WorkflowId;
    use crate::state::WorkflowStatus;
    use crate::template::{JobSpec, WorkflowTemplate};
    use serde_json::json;
    use std::time::Duration;

    async fn engine() -> Engine {
        let engine = Engine::builder().build().unwrap();
        let one = WorkflowTemplate::new("one", semver::Version::new(1, 0, 0)).job(JobSpec::new("a", "noop"));
        let manual = WorkflowTemplate::new("manual", semver::Version::new(1, 0, 0)).job(JobSpec::new("m", "manual"));
        engine.register_template(one).await.unwrap();
        engine.register_template(manual).await.unwrap();
        engine
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_all_returns_headers_in_the_order_asked() {
        let engine = engine().await;
        // Started before the workers run: the first read finds them open, and the
        // finished notifications (or the poll) bring them in.
        let ids: Vec<WorkflowId> = engine
            .start_many((0..50).map(|i| StartRequest::new("one").input(json!({ "i": i }))))
            .await
            .into_iter()
            .collect::<crate::Result<_>>()
            .unwrap();
        engine.launch().await.unwrap();
        let ask = [ids[7].clone(), ids[0].clone(), ids[7].clone(), ids[49].clone(), ids[7].clone()];
        let done = engine.wait_all(&ask).await.unwrap();
        let got: Vec<&WorkflowId> = done.iter().map(|h| &h.id).collect();
        assert_eq!(got, ask.iter().collect::<Vec<_>>());
        assert!(done.iter().all(|h| h.status == WorkflowStatus::Completed));
        assert_eq!(engine.wait_all(&ids).await.unwrap().len(), 50);
        assert!(engine.wait_all(&[]).await.unwrap().is_empty());
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_wait_reads_first_then_waits_for_the_open_ones_in_place() {
        let engine = engine().await;
        engine.launch().await.unwrap();
        let finished: Vec<WorkflowId> = engine
            .start_many((0..super::REGISTER_FIRST_UP_TO + 5).map(|i| StartRequest::new("one").input(json!({ "i": i }))))
            .await
            .into_iter()
            .collect::<crate::Result<_>>()
            .unwrap();
        engine.wait_all(&finished[..1]).await.unwrap();
        let open = engine.start("manual", json!({})).await.unwrap();
        // The open workflow first, last and once more in the middle, among finished ones.
        let mut ask = vec![open.clone()];
        ask.extend(finished.iter().cloned());
        ask.insert(700, open.clone());
        ask.push(finished[3].clone());
        ask.push(open.clone());
        let completer = {
            let engine = engine.clone();
            let open = open.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                engine.complete_job(&open, "m", json!(1)).await.unwrap();
            })
        };
        let done = engine.wait_all(&ask).await.unwrap();
        completer.await.unwrap();
        let got: Vec<&WorkflowId> = done.iter().map(|h| &h.id).collect();
        assert_eq!(got, ask.iter().collect::<Vec<_>>());
        assert!(done.iter().all(|h| h.status == WorkflowStatus::Completed));

        let mut ask = finished.clone();
        ask.insert(1003, WorkflowId::new("absent-in-a-long-list"));
        let err = engine.wait_all(&ask).await.unwrap_err();
        assert_eq!((err.kind(), err.workflow_id()), (ErrorKind::NotFound, Some("absent-in-a-long-list")));

        let manual = engine.start("manual", json!({})).await.unwrap();
        ask[1003] = manual.clone();
        let err = engine.inner.wait_all(&ask, Some(Duration::from_millis(100))).await.unwrap_err();
        assert_eq!((err.kind(), err.workflow_id()), (ErrorKind::Timeout, Some(manual.as_str())));
        engine.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_all_names_an_absent_workflow_and_times_out() {
        let engine = engine().await;
        engine.launch().await.unwrap();
        let done = engine.start("one", json!({})).await.unwrap();
        let absent = WorkflowId::new("no-such-workflow");
        let err = engine.wait_all(&[done.clone(), absent.clone()]).await.unwrap_err();
        assert_eq!((err.kind(), err.workflow_id()), (ErrorKind::NotFound, Some("no-such-workflow")));

        let open = engine.start("manual", json!({})).await.unwrap();
        let err = engine.inner.wait_all(&[done, open.clone()], Some(Duration::from_millis(100))).await.unwrap_err();
        assert_eq!((err.kind(), err.workflow_id()), (ErrorKind::Timeout, Some(open.as_str())));
        engine.complete_job(&open, "m", json!(1)).await.unwrap();
        assert_eq!(engine.wait(&open).await.unwrap().status, WorkflowStatus::Completed);
        engine.shutdown().await;
    }
}
