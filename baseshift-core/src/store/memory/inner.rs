//! The memory store's data and its atomic steps, run under the store's lock.

use super::entry::{SCAN_LIMIT, WorkflowEntry};
use super::index::{Indexes, Placement, Slot};
use super::validate::validate_step;
use super::workflows::Workflows;
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::hash::{FastMap, SeenSet};
use crate::ids::{JobKey, Name, WorkflowId};
use crate::state::{JobRecord, JobStatus, WorkflowRecord};
use crate::store::{
    Applied, ClaimRequest, Claimed, CreateOutcome, DeadLetterFilter, NewWorkflow, OutboxEntry, Transition,
    WorkflowFilter, completion,
};
use crate::template::WorkflowTemplate;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

const BACKEND: &str = "memory";
const DEFAULT_PAGE: usize = 100;

/// Whether a step put jobs where a waiting engine should look again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Wake(pub(super) bool);

impl Wake {
    fn note(&mut self, placement: Placement) {
        self.0 |= matches!(placement, Placement::Ready | Placement::Delayed(_));
    }
}

/// Everything the memory store holds.
#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) workflows: Workflows,
    /// Template snapshots by id, then version: a create finds its template's without
    /// copying the id or formatting the version.
    templates: FastMap<String, FastMap<semver::Version, Arc<WorkflowTemplate>>>,
    pub(super) idempotency: FastMap<String, WorkflowId>,
    /// Finished workflows by the time they finished, for retention.
    pub(super) finished: BTreeSet<(DateTime<Utc>, WorkflowId)>,
    /// Pending events by increasing `seq` (appended in order; acknowledged mostly from the front).
    outbox: VecDeque<(u64, Arc<Event>)>,
    next_seq: u64,
    pub(super) index: Indexes,
    /// Dead-lettered jobs by (workflow id, job id).
    pub(super) dead: BTreeSet<(WorkflowId, Name)>,
}

fn err(kind: ErrorKind, op: &'static str, message: impl Into<String>) -> Error {
    Error::new(kind, message).with_operation(op).with_backend(BACKEND)
}

impl Inner {
    fn push_events(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            push_event(&mut self.outbox, &mut self.next_seq, event);
        }
    }

    /// See [`StateStore::create_workflow`](crate::StateStore::create_workflow).
    pub(super) fn create(&mut self, new: NewWorkflow, now: DateTime<Utc>) -> Result<(CreateOutcome, Wake)> {
        const OP: &str = "StateStore::create_workflow";
        let NewWorkflow { mut header, jobs, template, events } = new;
        let id = header.id.clone();
        let ctx = |e: Error| e.with_workflow(id.as_str());
        if let Some(key) = &header.idempotency_key
            && let Some(existing) = self.idempotency.get(key)
        {
            return Ok((CreateOutcome::Existing(existing.clone()), Wake::default()));
        }
        if self.workflows.contains_key(&id) {
            return Err(ctx(err(ErrorKind::Conflict, OP, "a workflow with this id exists")));
        }
        let mut positions = FastMap::default();
        for (pos, job) in jobs.iter().enumerate() {
            if job.workflow_id != id {
                return Err(ctx(err(ErrorKind::InvalidInput, OP, "job record belongs to another workflow")
                    .with_job(job.job_id.as_str())));
            }
            let duplicate = if jobs.len() <= SCAN_LIMIT {
                jobs[..pos].iter().any(|j| j.job_id == job.job_id)
            } else {
                positions.insert(job.job_id.clone(), pos).is_some()
            };
            if duplicate {
                return Err(ctx(err(ErrorKind::InvalidInput, OP, "duplicate job id").with_job(job.job_id.as_str())));
            }
        }

        header.version = 1;
        header.remaining = jobs.iter().filter(|j| j.compensation_of.is_none()).count() as u64;
        let mut wake = Wake(true);
        let jobs: Vec<JobRecord> = jobs
            .into_iter()
            .map(|mut job| {
                job.version = 1;
                job
            })
            .collect();
        if let Some(key) = &header.idempotency_key {
            self.idempotency.insert(key.clone(), id.clone());
        }
        let stored =
            self.templates.get(template.template_id.as_str()).is_some_and(|v| v.contains_key(&template.version));
        if !stored {
            let versions = self.templates.entry(template.template_id.clone()).or_default();
            versions.insert(template.version.clone(), template);
        }
        let (handle, wf) = self.workflows.insert(id.clone(), WorkflowEntry::new(header, jobs, positions));
        for (pos, job) in wf.jobs.iter().enumerate() {
            wake.note(self.index.insert(job, Slot::new(handle, pos), now));
        }
        self.push_events(events);
        Ok((CreateOutcome::Created(id), wake))
    }

    /// See [`StateStore::workflow`](crate::StateStore::workflow).
    pub(super) fn workflow(&self, id: &WorkflowId) -> Result<WorkflowRecord> {
        self.entry(id, "StateStore::workflow").map(|wf| wf.record())
    }

    fn entry(&self, id: &WorkflowId, op: &'static str) -> Result<&WorkflowEntry> {
        self.workflows
            .get(id)
            .ok_or_else(|| err(ErrorKind::NotFound, op, "no such workflow").with_workflow(id.as_str()))
    }

    /// See [`StateStore::job`](crate::StateStore::job).
    pub(super) fn job(&self, key: &JobKey) -> Result<JobRecord> {
        const OP: &str = "StateStore::job";
        let wf = self.entry(&key.workflow_id, OP)?;
        wf.position(&key.job_id).map(|pos| wf.jobs[pos].clone()).ok_or_else(|| {
            err(ErrorKind::NotFound, OP, "no such job").with_workflow(key.workflow_id.as_str()).with_job(&key.job_id)
        })
    }

    /// See [`StateStore::jobs`](crate::StateStore::jobs).
    pub(super) fn jobs(&self, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
        let wf = self.entry(id, "StateStore::jobs")?;
        Ok(match ids {
            None => wf.jobs.clone(),
            Some(ids) => ids.iter().filter_map(|j| wf.position(j)).map(|pos| wf.jobs[pos].clone()).collect(),
        })
    }

    /// See [`StateStore::jobs_of`](crate::StateStore::jobs_of): an absent workflow's list
    /// is empty.
    pub(super) fn jobs_of(&self, ids: &[WorkflowId]) -> Vec<Vec<JobRecord>> {
        ids.iter().map(|id| self.workflows.get(id).map(|wf| wf.jobs.clone()).unwrap_or_default()).collect()
    }

    /// See [`StateStore::template`](crate::StateStore::template).
    pub(super) fn template(&self, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
        let parsed = semver::Version::parse(version).ok();
        let snapshot = parsed.and_then(|v| self.templates.get(template_id)?.get(&v));
        snapshot.map(|t| t.as_ref().clone()).ok_or_else(|| {
            err(
                ErrorKind::NotFound,
                "StateStore::template",
                format!("no snapshot of template `{template_id}` {version}"),
            )
        })
    }

    /// See [`StateStore::apply`](crate::StateStore::apply): validates every precondition,
    /// then writes; a failed check writes nothing.
    ///
    /// The step is taken by reference and left holding what it replaced (the records as
    /// they were, the old header) and the buffers it came in: the caller drops them once
    /// the lock is released, so the other threads do not wait on their frees.
    pub(super) fn apply(&mut self, step: &mut Transition, now: DateTime<Utc>) -> Result<(Applied, Wake)> {
        const OP: &str = "StateStore::apply";
        let ctx = |e: Error| e.with_workflow(step.workflow_id.as_str());
        let Inner { workflows, index, dead, finished, .. } = self;
        let (handle, wf) = workflows
            .with_handle_mut(&step.workflow_id)
            .ok_or_else(|| ctx(err(ErrorKind::NotFound, OP, "no such workflow")))?;
        let positions = validate_step(wf, step).map_err(|e| ctx(e.with_operation(OP).with_backend(BACKEND)))?;
        let (job_positions, child_positions) = positions.split_at(step.jobs.len());

        let Transition { header, jobs, parent_outcomes, terminal_delta, reopened, events, complete_at_zero, .. } = step;
        if let Some(header) = header {
            header.remaining = wf.header.remaining;
            header.version = wf.header.version + 1;
            if header.status.is_terminal() && !wf.header.status.is_terminal() {
                finished.insert((header.finished_at.unwrap_or(now), header.id.clone()));
            }
            wf.swap_header(header);
        }
        let mut wake = Wake::default();
        let mut written = SeenSet::with_capacity(jobs.len() + parent_outcomes.len());
        for (job, &pos) in jobs.iter_mut().zip(job_positions) {
            let stored = &mut wf.jobs[pos];
            // A freed concurrency slot may make a held-back job claimable.
            wake.0 |= index.remove(stored, Slot::new(handle, pos));
            let was_dead = stored.is_dead_letter();
            job.version = stored.version + 1;
            std::mem::swap(stored, job);
            if stored.is_dead_letter() != was_dead {
                let dead_key = (stored.workflow_id.clone(), stored.job_id.clone());
                if was_dead {
                    dead.remove(&dead_key);
                } else {
                    dead.insert(dead_key);
                }
            }
            wake.note(index.insert(stored, Slot::new(handle, pos), now));
            written.insert(pos);
        }

        let mut applied = Applied::default();
        let mut derived = Vec::new();
        let mut skipped_main = 0u64;
        for (outcome, &pos) in parent_outcomes.iter().zip(child_positions) {
            let child = &mut wf.jobs[pos];
            index.remove(child, Slot::new(handle, pos));
            let change = child.record_parent(outcome.status, now);
            if written.insert(pos) {
                child.version += 1;
            }
            skipped_main += change.report(child, now, &mut applied, &mut derived);
            wake.note(index.insert(child, Slot::new(handle, pos), now));
        }
        wf.header.remaining =
            (wf.header.remaining + *reopened).saturating_sub(skipped_main).saturating_sub(*terminal_delta);
        applied.remaining = wf.header.remaining;
        if let Some((mut done, event)) = complete_at_zero.and_then(|at| completion(&wf.header, &wf.jobs, at)) {
            done.version = wf.header.version + 1;
            finished.insert((done.finished_at.unwrap_or(now), done.id.clone()));
            wf.header = done;
            derived.push(event);
            applied.completed = true;
        }
        // The step's own events (e.g. the parent's `job_succeeded`) precede the changes they caused.
        self.push_events(events.drain(..));
        self.push_events(derived);
        Ok((applied, wake))
    }

    /// See [`StateStore::claim`](crate::StateStore::claim).
    /// `token`: a lease token made before the lock was taken, for the first job claimed.
    pub(super) fn claim(&mut self, req: ClaimRequest, now: DateTime<Utc>, mut token: Option<Name>) -> Result<Claimed> {
        const OP: &str = "StateStore::claim";
        let expires_at = add(now, req.lease_ttl).map_err(|e| e.with_operation(OP))?;
        let Inner { workflows, index, outbox, next_seq, .. } = self;
        index.promote_due(now, |slot| at(workflows, slot).map(JobRecord::queue_score));

        let excluded = |slot: &Slot| {
            !req.exclude_types.is_empty()
                && at(workflows, slot).is_some_and(|job| req.exclude_types.iter().any(|t| *t == job.job_type))
        };
        // A job is taken only if both its type cap and its concurrency key have room. Ready
        // jobs with a key take a slot of it (expired leases already hold one); a key at its
        // limit holds its jobs back, in order.
        let mut taken: HashMap<&str, usize> = HashMap::new();
        let mut key_taken: HashMap<String, usize> = HashMap::new();
        let mut admit = |slot: &Slot| {
            let Some(job) = at(workflows, slot) else { return true };
            let cap = req.type_limits.get_key_value(job.job_type.as_str());
            if let Some((ty, cap)) = cap
                && taken.get(ty.as_str()).copied().unwrap_or(0) >= *cap
            {
                return false;
            }
            let slot = job.concurrency.as_ref().filter(|_| job.status == JobStatus::Ready);
            if let Some(c) = slot {
                let n = key_taken.entry(c.key.clone()).or_insert_with(|| index.running_with_key(&c.key));
                if *n >= c.limit as usize {
                    return false;
                }
                *n += 1;
            }
            if let Some((ty, _)) = cap {
                *taken.entry(ty.as_str()).or_default() += 1;
            }
            true
        };
        // The first pick apart from the rest: a claim of one job (a worker's next) builds
        // no list of picks.
        let (first, rest) = {
            let mut candidates =
                index.expired(now).chain(index.ready()).filter(|slot| !excluded(slot) && admit(slot)).cloned();
            let first = if req.limit == 0 { None } else { candidates.next() };
            let rest: Vec<Slot> =
                if first.is_some() && req.limit > 1 { candidates.take(req.limit - 1).collect() } else { Vec::new() };
            (first, rest)
        };

        let picks = usize::from(first.is_some()) + rest.len();
        let mut claimed = Vec::with_capacity(picks);
        for slot in first.into_iter().chain(rest) {
            let Some(job) = workflows.at_mut(slot.wf()).and_then(|wf| wf.jobs.get_mut(slot.pos())) else {
                continue;
            };
            index.remove(job, slot);
            let token = token.take().unwrap_or_else(crate::state::lease_token);
            push_event(outbox, next_seq, job.start_attempt_with(&req.owner, token, expires_at, now));
            job.version += 1;
            index.insert(job, slot, now);
            claimed.push(job.clone());
        }
        let next_ready_at = index.next_due();
        Ok(Claimed { jobs: claimed, next_ready_at })
    }

    /// See [`StateStore::renew_lease`](crate::StateStore::renew_lease). The record's version
    /// is left alone: the holder's next write still carries the version its claim returned.
    pub(super) fn renew(
        &mut self,
        key: &JobKey,
        token: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        const OP: &str = "StateStore::renew_lease";
        let ctx = |e: Error| e.with_operation(OP).with_workflow(key.workflow_id.as_str()).with_job(&key.job_id);
        let expires_at = add(now, ttl).map_err(ctx)?;
        let Inner { workflows, index, .. } = self;
        let wf = workflows.with_handle_mut(&key.workflow_id);
        let (slot, job) = wf
            .and_then(|(handle, wf)| wf.position(&key.job_id).map(|pos| (Slot::new(handle, pos), &mut wf.jobs[pos])))
            .ok_or_else(|| ctx(err(ErrorKind::NotFound, OP, "no such job")))?;
        let holds = job.status == JobStatus::Running && job.lease.as_ref().is_some_and(|l| l.token == token);
        if !holds {
            return Err(ctx(err(ErrorKind::Conflict, OP, "the lease is no longer held with this token")));
        }
        index.remove(job, slot);
        if let Some(lease) = job.lease.as_mut() {
            lease.expires_at = expires_at;
        }
        index.insert(job, slot, now);
        Ok(expires_at)
    }

    /// See [`StateStore::list_workflows`](crate::StateStore::list_workflows).
    pub(super) fn list(&self, filter: &WorkflowFilter) -> Vec<WorkflowRecord> {
        let limit = if filter.limit == 0 { DEFAULT_PAGE } else { filter.limit };
        self.workflows
            .after(filter.after.as_ref())
            .filter(|wf| filter.statuses.is_empty() || filter.statuses.contains(&wf.header.status))
            .take(limit)
            .map(|wf| wf.record())
            .collect()
    }

    /// See [`StateStore::dead_letters`](crate::StateStore::dead_letters).
    pub(super) fn dead_letters(&self, filter: &DeadLetterFilter) -> Vec<JobRecord> {
        use std::ops::Bound;
        let lower = match (&filter.after, &filter.workflow_id) {
            (Some(a), _) => Bound::Excluded((a.workflow_id.clone(), a.job_id.clone())),
            (None, Some(w)) => Bound::Included((w.clone(), Name::default())),
            (None, None) => Bound::Unbounded,
        };
        self.dead
            .range((lower, Bound::Unbounded))
            .take_while(|(w, _)| filter.workflow_id.as_ref().is_none_or(|f| f == w))
            .filter_map(|(w, j)| lookup(&self.workflows, &JobKey::new(w.clone(), j.clone())))
            .filter(|rec| filter.matches(rec))
            .take(filter.page())
            .cloned()
            .collect()
    }

    /// See [`StateStore::outbox_pending`](crate::StateStore::outbox_pending).
    pub(super) fn outbox_pending(&self, limit: usize) -> Vec<OutboxEntry> {
        self.outbox.iter().take(limit).map(|(seq, event)| OutboxEntry { seq: *seq, event: event.clone() }).collect()
    }

    /// See [`StateStore::outbox_ack`](crate::StateStore::outbox_ack). Returns the front
    /// entries removed, for the caller to drop once the lock is released (the outbox often
    /// holds an event's last reference: freeing a batch is not work to hold the lock for).
    pub(super) fn outbox_ack(&mut self, seqs: &[u64]) -> Vec<(u64, Arc<Event>)> {
        // The relay acknowledges the oldest entries, in order: pop them off the front.
        let front = seqs.iter().zip(&self.outbox).take_while(|(seq, (at, _))| *seq == at).count();
        let acked: Vec<_> = self.outbox.drain(..front).collect();
        if front < seqs.len() {
            let rest: HashSet<u64> = seqs[front..].iter().copied().collect();
            self.outbox.retain(|(seq, _)| !rest.contains(seq));
        }
        acked
    }

    /// Moves due delayed jobs to the ready queue: whether any moved, and when the next is due.
    pub(super) fn promote_due(&mut self, now: DateTime<Utc>) -> (bool, Option<DateTime<Utc>>) {
        let Inner { workflows, index, .. } = self;
        let promoted = index.promote_due(now, |slot| at(workflows, slot).map(JobRecord::queue_score));
        (promoted, index.next_due())
    }
}

/// Appends `event` to the outbox as the next in order.
fn push_event(outbox: &mut VecDeque<(u64, Arc<Event>)>, next_seq: &mut u64, event: Event) {
    *next_seq += 1;
    outbox.push_back((*next_seq, Arc::new(event)));
}

fn lookup<'a>(workflows: &'a Workflows, key: &JobKey) -> Option<&'a JobRecord> {
    let wf = workflows.get(&key.workflow_id)?;
    wf.position(&key.job_id).map(|pos| &wf.jobs[pos])
}

/// The record an index entry names.
fn at<'a>(workflows: &'a Workflows, slot: &Slot) -> Option<&'a JobRecord> {
    workflows.at(slot.wf())?.jobs.get(slot.pos())
}

fn add(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>> {
    TimeDelta::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| Error::invalid_input(format!("lease ttl {ttl:?} is out of range")).with_backend(BACKEND))
}
