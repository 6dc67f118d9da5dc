//! Creating workflows: one script per workflow; a batch is one pipeline of those scripts.
//!
//! The template snapshot body goes with a create only while this store does not know it
//! stored: after a create succeeded with it, later creates of the same template version
//! leave it out, and the script answers `need_tpl` (writing nothing) if it is missing
//! after all (e.g. the keys were deleted behind this store's back), so it is sent again.

use super::codec::{BulkArgs, JobArg, now, script_reply, text};
use super::write::{events_json, invalid, step_keys};
use crate::connection::Conn;
use crate::error::{bad_reply, map_redis};
use crate::keys::Keys;
use crate::scripts::SCRIPTS;
use baseshift_core::store::{CreateOutcome, NewWorkflow};
use baseshift_core::template::WorkflowTemplate;
use baseshift_core::{Error, Result, WorkflowId};
use redis::{ErrorKind as RedisKind, RedisError, ServerErrorKind, Value};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

const OP: &str = "StateStore::create_workflow";
const BATCH_OP: &str = "StateStore::create_workflows";

/// Creates per pipeline: a batch larger than this is sent as several, one after another.
const PIPELINE: usize = 500;

/// How many rounds a batch gets: the first, one after a `NOSCRIPT` or `need_tpl`
/// answer, and one more should both happen.
const ROUNDS: usize = 3;

/// Template snapshots this store knows are stored (by key), at most [`SnapshotCache::CAP`].
#[derive(Debug, Default)]
pub(crate) struct SnapshotCache {
    known: Mutex<HashSet<String>>,
}

impl SnapshotCache {
    /// Entries kept before the set is emptied (snapshots are small in number).
    const CAP: usize = 4096;

    fn contains(&self, key: &str) -> bool {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).contains(key)
    }

    fn insert(&self, key: &str) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= Self::CAP {
            known.clear();
        }
        known.insert(key.to_owned());
    }

    fn forget(&self, key: &str) {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// Forgets everything (after the store's keys were purged).
    pub(crate) fn clear(&self) {
        self.known.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// The control argument of one create (`ARGV[1]`; the numbers are `ARGV` indexes of
/// the bulk strings).
#[derive(Serialize)]
struct CreateArg<'a> {
    prefix: &'a str,
    wf: String,
    idem: Option<String>,
    tpl_key: String,
    /// The snapshot body, or `None` when it is believed stored.
    tpl: Option<usize>,
    header: usize,
    status: &'static str,
    remaining: u64,
    /// Whether the header's compensation queue is not empty (the `q` field).
    queue: bool,
    order: usize,
    jobs: Vec<JobArg>,
    events: Vec<usize>,
}

/// One workflow checked and encoded, ready to send (again, if need be).
struct Prepared<'a> {
    id: WorkflowId,
    keys: Vec<String>,
    arg: CreateArg<'a>,
    bulk: BulkArgs,
    template: Arc<WorkflowTemplate>,
}

impl Prepared<'_> {
    fn attach_template(&mut self) -> Result<()> {
        if self.arg.tpl.is_none() {
            self.arg.tpl = Some(self.bulk.push(serde_json::to_string(&*self.template)?));
        }
        Ok(())
    }

    /// The control JSON (`ARGV[1]`); [`BulkArgs::argv`] adds the rest.
    fn payload(&self) -> Result<String> {
        Ok(serde_json::to_string(&self.arg)?)
    }
}

/// The script's answer to one create.
enum Answer {
    Done(CreateOutcome),
    NeedTemplate,
}

fn prepare<'a>(keys: &'a Keys, new: NewWorkflow, op: &'static str) -> Result<Prepared<'a>> {
    let NewWorkflow { mut header, jobs, template, events } = new;
    let id = header.id.clone();
    let mut seen = HashSet::with_capacity(jobs.len());
    for job in &jobs {
        if job.workflow_id != id {
            return Err(invalid(op, &id, "job record belongs to another workflow").with_job(job.job_id.as_str()));
        }
        if !seen.insert(job.job_id.as_str()) {
            return Err(invalid(op, &id, "duplicate job id").with_job(job.job_id.as_str()));
        }
    }
    let now = now();
    header.version = 1;
    header.remaining = jobs.iter().filter(|j| j.compensation_of.is_none()).count() as u64;
    let order: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    let mut bulk = BulkArgs::default();
    let order = bulk.push(serde_json::to_string(&order)?);
    let jobs = jobs.into_iter().map(|j| JobArg::new(j, 1, None, now, &mut bulk)).collect::<Result<Vec<_>>>()?;
    let header_json = bulk.push(serde_json::to_string(&header)?);
    let events = bulk.push_all(events_json(&events)?);
    let arg = CreateArg {
        prefix: keys.prefix(),
        wf: id.to_string(),
        idem: header.idempotency_key.clone(),
        tpl_key: keys.template(&template.template_id, &template.version.to_string()),
        tpl: None,
        header: header_json,
        status: header.status.as_str(),
        remaining: header.remaining,
        queue: !header.compensation_queue.is_empty(),
        order,
        jobs,
        events,
    };
    Ok(Prepared { keys: step_keys(keys, &id), id, arg, bulk, template })
}

fn answer(op: &'static str, reply: Value) -> Result<Answer> {
    let items = script_reply(op, reply)?;
    let field = |i: usize| items.get(i).and_then(text);
    match (field(0).as_deref(), field(1)) {
        (Some("created"), Some(id)) => Ok(Answer::Done(CreateOutcome::Created(WorkflowId::new(id)))),
        (Some("existing"), Some(id)) => Ok(Answer::Done(CreateOutcome::Existing(WorkflowId::new(id)))),
        (Some("need_tpl"), _) => Ok(Answer::NeedTemplate),
        other => Err(bad_reply(op, format!("{other:?}"))),
    }
}

/// Whether the server answered `NOSCRIPT` (the script is not in its cache).
pub(super) fn no_script(e: &RedisError) -> bool {
    e.kind() == RedisKind::Server(ServerErrorKind::NoScript)
}

/// Records what an answer taught about the snapshot.
fn learn(cache: &SnapshotCache, p: &Prepared<'_>, answer: &Answer) {
    match answer {
        Answer::Done(CreateOutcome::Created(_)) => cache.insert(&p.arg.tpl_key),
        Answer::NeedTemplate => cache.forget(&p.arg.tpl_key),
        Answer::Done(CreateOutcome::Existing(_)) => {}
    }
}

/// See [`StateStore::create_workflow`](baseshift_core::StateStore::create_workflow).
pub(super) async fn create(conn: &Conn, keys: &Keys, cache: &SnapshotCache, new: NewWorkflow) -> Result<CreateOutcome> {
    let mut p = prepare(keys, new, OP)?;
    let id = p.id.clone();
    let ctx = |e: Error| e.with_workflow(id.as_str());
    if !cache.contains(&p.arg.tpl_key) {
        p.attach_template().map_err(ctx)?;
    }
    for _ in 0..2 {
        let payload = p.payload().map_err(ctx)?;
        let reply = conn.script(&SCRIPTS.create, &p.keys, &p.bulk.argv(&payload), OP).await.map_err(ctx)?;
        let answer = answer(OP, reply).map_err(ctx)?;
        learn(cache, &p, &answer);
        match answer {
            Answer::Done(outcome) => return Ok(outcome),
            Answer::NeedTemplate => p.attach_template().map_err(ctx)?,
        }
    }
    Err(ctx(bad_reply(OP, "the template snapshot was asked for although it was sent")))
}

/// See [`StateStore::create_workflows`](baseshift_core::StateStore::create_workflows):
/// every workflow's script in one pipeline; each runs atomically and in input order, so
/// an idempotency key used earlier in the batch is found by the later ones.
pub(super) async fn create_many(
    conn: &Conn,
    keys: &Keys,
    cache: &SnapshotCache,
    news: Vec<NewWorkflow>,
) -> Vec<Result<CreateOutcome>> {
    let mut results: Vec<Option<Result<CreateOutcome>>> = Vec::with_capacity(news.len());
    let mut pending: Vec<(usize, Prepared<'_>)> = Vec::with_capacity(news.len());
    let mut carried: HashSet<String> = HashSet::new();
    for new in news {
        let slot = results.len();
        results.push(None);
        let prepared = prepare(keys, new, BATCH_OP).and_then(|mut p| {
            // The first create of an unknown snapshot carries it; the later ones find it.
            if !cache.contains(&p.arg.tpl_key) && carried.insert(p.arg.tpl_key.clone()) {
                p.attach_template().map_err(|e| e.with_workflow(p.id.as_str()))?;
            }
            Ok(p)
        });
        match prepared {
            Ok(p) => pending.push((slot, p)),
            Err(e) => results[slot] = Some(Err(e)),
        }
    }
    // One pipeline per chunk, in order, each chunk finished (resends included) before the
    // next, so no pipeline runs long enough to hit the command timeout.
    let mut rest = pending.into_iter().peekable();
    while rest.peek().is_some() {
        let mut chunk: Vec<_> = rest.by_ref().take(PIPELINE).collect();
        for _ in 0..ROUNDS {
            if chunk.is_empty() {
                break;
            }
            chunk = round(conn, cache, chunk, &mut results).await;
        }
        for (slot, p) in chunk {
            let e = bad_reply(BATCH_OP, "the script or the template snapshot kept going missing");
            results[slot] = Some(Err(e.with_workflow(p.id.as_str())));
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(Error::internal("a create of the batch got no answer").with_operation(BATCH_OP)))
        })
        .collect()
}

/// Sends `pending` as one pipeline and files each answer in `results`; returns the
/// creates to send again (after `NOSCRIPT`, the script loaded; after `need_tpl`, with
/// the snapshot attached), in their order.
async fn round<'a>(
    conn: &Conn,
    cache: &SnapshotCache,
    pending: Vec<(usize, Prepared<'a>)>,
    results: &mut [Option<Result<CreateOutcome>>],
) -> Vec<(usize, Prepared<'a>)> {
    let mut pipe = redis::pipe();
    let mut sent = Vec::with_capacity(pending.len());
    for (slot, p) in pending {
        match p.payload() {
            Ok(payload) => {
                pipe.cmd("EVALSHA")
                    .arg(SCRIPTS.create.get_hash())
                    .arg(p.keys.len())
                    .arg(&p.keys)
                    .arg(p.bulk.argv(&payload));
                sent.push((slot, p));
            }
            Err(e) => results[slot] = Some(Err(e.with_workflow(p.id.as_str()))),
        }
    }
    if sent.is_empty() {
        return Vec::new();
    }
    let replies = match conn.pipeline_each(pipe, BATCH_OP).await {
        Ok(replies) if replies.len() == sent.len() => replies,
        outcome => {
            // The whole round failed (or answered out of shape): each create gets the error.
            let base = match outcome {
                Err(e) => e,
                Ok(r) => bad_reply(BATCH_OP, format!("{} answers to {} creates", r.len(), sent.len())),
            };
            for (slot, p) in sent {
                let e = Error::new(base.kind(), base.message()).with_operation(BATCH_OP).with_backend(crate::BACKEND);
                results[slot] = Some(Err(e.with_workflow(p.id.as_str())));
            }
            return Vec::new();
        }
    };
    let mut again = Vec::new();
    let mut load = false;
    for ((slot, mut p), reply) in sent.into_iter().zip(replies) {
        let id = p.id.clone();
        let ctx = |e: Error| e.with_workflow(id.as_str());
        match reply {
            Err(e) if no_script(&e) => {
                load = true;
                again.push((slot, p));
            }
            Err(e) => results[slot] = Some(Err(ctx(map_redis(e, BATCH_OP)))),
            Ok(value) => match answer(BATCH_OP, value) {
                Ok(a) => {
                    learn(cache, &p, &a);
                    match a {
                        Answer::Done(outcome) => results[slot] = Some(Ok(outcome)),
                        Answer::NeedTemplate => match p.attach_template() {
                            Ok(()) => again.push((slot, p)),
                            Err(e) => results[slot] = Some(Err(ctx(e))),
                        },
                    }
                }
                Err(e) => results[slot] = Some(Err(ctx(e))),
            },
        }
    }
    if load && let Err(e) = conn.load(&SCRIPTS.create, BATCH_OP).await {
        for (slot, p) in again.drain(..) {
            let e = Error::new(e.kind(), e.message()).with_operation(BATCH_OP).with_backend(crate::BACKEND);
            results[slot] = Some(Err(e.with_workflow(p.id.as_str())));
        }
    }
    again
}

#[cfg(test)]
mod tests {
    use super::*;
    use baseshift_core::ErrorKind;

    fn reply(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::BulkString(s.as_bytes().to_vec())).collect())
    }

    #[test]
    fn answers_are_read_by_their_tag() {
        let created = answer(OP, reply(&["created", "w1"])).unwrap();
        assert!(matches!(created, Answer::Done(CreateOutcome::Created(id)) if id.as_str() == "w1"));
        let existing = answer(OP, reply(&["existing", "w0"])).unwrap();
        assert!(matches!(existing, Answer::Done(CreateOutcome::Existing(id)) if id.as_str() == "w0"));
        assert!(matches!(answer(OP, reply(&["need_tpl"])).unwrap(), Answer::NeedTemplate));
        let clash = answer(OP, reply(&["err", "conflict", "", "a workflow with this id exists"]));
        assert_eq!(clash.err().map(|e| e.kind()), Some(ErrorKind::Conflict));
        let odd = answer(OP, reply(&["created"]));
        assert_eq!(odd.err().map(|e| e.kind()), Some(ErrorKind::Internal));
    }

    #[test]
    fn the_snapshot_cache_forgets_and_stays_bounded() {
        let cache = SnapshotCache::default();
        cache.insert("t:1");
        assert!(cache.contains("t:1"));
        cache.forget("t:1");
        assert!(!cache.contains("t:1"));
        for i in 0..SnapshotCache::CAP + 1 {
            cache.insert(&format!("t:{i}"));
        }
        let held = cache.known.lock().map(|k| k.len()).unwrap_or(usize::MAX);
        assert!(held <= SnapshotCache::CAP, "{held} entries");
        cache.clear();
        assert!(!cache.contains(&format!("t:{}", SnapshotCache::CAP)));
    }
}
