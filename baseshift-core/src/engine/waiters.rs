//! Who waits for which workflow: a registry from workflow id to the waiters' inboxes, so
//! a workflow this instance finishes is handed to exactly the waiters that asked for it.
//!
//! A broadcast of every finished id would make each waiter filter every finish, and a
//! waiter that falls behind a bounded channel could only re-read all it waits for: with
//! many open workflows, one re-read per lag.

use crate::hash::FastMap;
use crate::ids::WorkflowId;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::Notify;

/// One waiter's inbox: the ids this instance finished since the waiter last looked.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    ids: Mutex<Vec<WorkflowId>>,
    wake: Notify,
}

impl Inbox {
    /// Takes what arrived, waiting until something does.
    pub async fn next(&self) -> Vec<WorkflowId> {
        loop {
            // Registered before the check: a push between the check and the wait still wakes.
            let notified = self.wake.notified();
            let got = std::mem::take(&mut *self.ids.lock());
            if !got.is_empty() {
                return got;
            }
            notified.await;
        }
    }
}

/// The registry of [`Inbox`]es by workflow id.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    by_id: Mutex<FastMap<WorkflowId, Vec<Arc<Inbox>>>>,
}

impl Waiters {
    /// Registers a new inbox for `ids`; the guard unregisters what it still waits for.
    pub fn register<'b>(&self, ids: impl IntoIterator<Item = &'b WorkflowId>) -> Registration<'_> {
        let inbox = Arc::new(Inbox::default());
        let mut map = self.by_id.lock();
        let mut ids_held = Vec::new();
        for id in ids {
            let list = map.entry(id.clone()).or_default();
            if !list.iter().any(|i| Arc::ptr_eq(i, &inbox)) {
                list.push(inbox.clone());
                ids_held.push(id.clone());
            }
        }
        drop(map);
        Registration { waiters: self, inbox, ids: ids_held }
    }

    /// Hands `id` to every waiter registered for it (and forgets them for it).
    pub fn finished(&self, id: &WorkflowId) {
        let Some(inboxes) = self.by_id.lock().remove(id) else { return };
        for inbox in inboxes {
            inbox.ids.lock().push(id.clone());
            inbox.wake.notify_one();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.lock().len()
    }
}

/// A waiter's registration; dropping it removes the inbox from every id it still holds.
pub(crate) struct Registration<'a> {
    waiters: &'a Waiters,
    inbox: Arc<Inbox>,
    ids: Vec<WorkflowId>,
}

impl Registration<'_> {
    /// The waiter's inbox.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.by_id.lock();
        for id in &self.ids {
            if let Some(list) = map.get_mut(id) {
                list.retain(|i| !Arc::ptr_eq(i, &self.inbox));
                if list.is_empty() {
                    map.remove(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_finished_id_reaches_only_its_waiters_and_drop_unregisters() {
        let waiters = Waiters::default();
        let (a, b, c) = (WorkflowId::new("a"), WorkflowId::new("b"), WorkflowId::new("c"));
        let first = waiters.register([&a, &b, &a]);
        let second = waiters.register([&b]);
        waiters.finished(&b);
        waiters.finished(&c);
        assert_eq!(first.inbox().next().await, vec![b.clone()]);
        assert_eq!(second.inbox().next().await, vec![b.clone()]);
        assert_eq!(waiters.len(), 1, "only `a` is still waited for");
        drop(first);
        assert_eq!(waiters.len(), 0);
        drop(second);
        waiters.finished(&a);
        assert_eq!(waiters.len(), 0);
    }

    #[tokio::test]
    async fn next_wakes_on_a_finish_that_comes_later() {
        let waiters = Arc::new(Waiters::default());
        let id = WorkflowId::new("late");
        let reg = waiters.register([&id]);
        let finisher = {
            let (waiters, id) = (waiters.clone(), id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                waiters.finished(&id);
            })
        };
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), reg.inbox().next()).await;
        assert_eq!(got.expect("woken"), vec![id]);
        finisher.await.unwrap();
    }
}
