//! Reads: records, snapshots, listings and the outbox.

use super::codec::{HEADER_FIELDS, array, decode_header, decode_job, text};
use crate::connection::Conn;
use crate::error::{bad_reply, corrupt, map_redis};
use crate::keys::Keys;
use crate::scripts::SCRIPTS;
use baseshift_core::store::{DeadLetterFilter, OutboxEntry, WorkflowFilter};
use baseshift_core::template::WorkflowTemplate;
use baseshift_core::{Error, Event, JobKey, JobRecord, Result, WorkflowId, WorkflowRecord};
use redis::Value;

const DEFAULT_PAGE: usize = 100;

fn not_found(op: &'static str, message: &str, id: &WorkflowId) -> Error {
    Error::not_found(message).with_operation(op).with_backend(crate::BACKEND).with_workflow(id.as_str())
}

/// See [`StateStore::workflow`](baseshift_core::StateStore::workflow).
pub(super) async fn workflow(conn: &Conn, keys: &Keys, id: &WorkflowId) -> Result<WorkflowRecord> {
    const OP: &str = "StateStore::workflow";
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(keys.workflow(id)).arg(&HEADER_FIELDS);
    let fields: Vec<Option<String>> = conn.query(&cmd, OP).await?;
    decode_header(OP, &fields)?.ok_or_else(|| not_found(OP, "no such workflow", id))
}

/// Runs the read script: `None` if the workflow is absent, else the records found.
async fn read_jobs(
    conn: &Conn,
    keys: &Keys,
    id: &WorkflowId,
    ids: Option<&[String]>,
    op: &'static str,
) -> Result<Option<Vec<JobRecord>>> {
    let mut args: Vec<&str> = Vec::new();
    match ids {
        None => args.push("all"),
        Some(ids) => {
            args.push("some");
            args.extend(ids.iter().map(String::as_str));
        }
    }
    let reply = conn.script(&SCRIPTS.read, &read_keys(keys, id), &args, op).await?;
    decode_read(op, reply)
}

/// The keys of the read script for workflow `id`.
fn read_keys(keys: &Keys, id: &WorkflowId) -> [String; 3] {
    [keys.workflow(id), keys.jobs(id), keys.outputs(id)]
}

/// Decodes the read script's reply: `None` if the workflow is absent, else its records.
fn decode_read(op: &'static str, reply: Value) -> Result<Option<Vec<JobRecord>>> {
    if matches!(reply, Value::Nil) {
        return Ok(None);
    }
    let items = array(op, reply)?;
    let records = items
        .chunks(3)
        .map(|triple| {
            let json = triple.get(1).and_then(text).ok_or_else(|| bad_reply(op, "job record missing"))?;
            decode_job(op, &json, triple.get(2).and_then(text).as_deref())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(records))
}

/// Workflows whose jobs [`jobs_of`] reads per pipeline: bounds the size of one request.
const JOB_LISTS_PER_PIPELINE: usize = 1000;

/// See [`StateStore::jobs_of`](baseshift_core::StateStore::jobs_of): one pipeline (one
/// round trip) of read scripts per [`JOB_LISTS_PER_PIPELINE`] ids, each reading one
/// workflow atomically exactly as [`jobs`] does; a second round only for scripts the
/// server answered `NOSCRIPT` (after loading the script).
pub(super) async fn jobs_of(conn: &Conn, keys: &Keys, ids: &[WorkflowId]) -> Result<Vec<Vec<JobRecord>>> {
    const OP: &str = "StateStore::jobs_of";
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(JOB_LISTS_PER_PIPELINE) {
        let mut replies: Vec<Option<Value>> = vec![None; chunk.len()];
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        for round in 0..2 {
            let mut pipe = redis::pipe();
            for &i in &pending {
                pipe.cmd("EVALSHA").arg(SCRIPTS.read.get_hash()).arg(3).arg(&read_keys(keys, &chunk[i])).arg("all");
            }
            let answers = conn.pipeline_each(pipe, OP).await?;
            if answers.len() != pending.len() {
                return Err(bad_reply(OP, format!("{} answers to {} reads", answers.len(), pending.len())));
            }
            let mut again = Vec::new();
            for (i, answer) in pending.into_iter().zip(answers) {
                match answer {
                    Ok(reply) => replies[i] = Some(reply),
                    Err(e) if round == 0 && super::create::no_script(&e) => again.push(i),
                    Err(e) => return Err(map_redis(e, OP).with_workflow(chunk[i].as_str())),
                }
            }
            if again.is_empty() {
                break;
            }
            conn.load(&SCRIPTS.read, OP).await?;
            pending = again;
        }
        for (id, reply) in chunk.iter().zip(replies) {
            let ctx = |e: Error| e.with_workflow(id.as_str());
            let reply = reply.ok_or_else(|| ctx(bad_reply(OP, "no answer to a read")))?;
            out.push(decode_read(OP, reply).map_err(ctx)?.unwrap_or_default());
        }
    }
    Ok(out)
}

/// See [`StateStore::job`](baseshift_core::StateStore::job).
pub(super) async fn job(conn: &Conn, keys: &Keys, key: &JobKey) -> Result<JobRecord> {
    const OP: &str = "StateStore::job";
    let ids = [String::from(&key.job_id)];
    let found = read_jobs(conn, keys, &key.workflow_id, Some(&ids), OP).await?;
    let Some(records) = found else {
        return Err(not_found(OP, "no such workflow", &key.workflow_id).with_job(&key.job_id));
    };
    records.into_iter().next().ok_or_else(|| not_found(OP, "no such job", &key.workflow_id).with_job(&key.job_id))
}

/// See [`StateStore::jobs`](baseshift_core::StateStore::jobs).
pub(super) async fn jobs(conn: &Conn, keys: &Keys, id: &WorkflowId, ids: Option<&[String]>) -> Result<Vec<JobRecord>> {
    const OP: &str = "StateStore::jobs";
    read_jobs(conn, keys, id, ids, OP).await?.ok_or_else(|| not_found(OP, "no such workflow", id))
}

/// See [`StateStore::template`](baseshift_core::StateStore::template).
pub(super) async fn template(conn: &Conn, keys: &Keys, template_id: &str, version: &str) -> Result<WorkflowTemplate> {
    const OP: &str = "StateStore::template";
    let mut cmd = redis::cmd("GET");
    cmd.arg(keys.template(template_id, version));
    let json: Option<String> = conn.query(&cmd, OP).await?;
    let json = json.ok_or_else(|| {
        Error::not_found(format!("no snapshot of template `{template_id}` {version}"))
            .with_operation(OP)
            .with_backend(crate::BACKEND)
    })?;
    serde_json::from_str(&json).map_err(|e| corrupt(OP, "template snapshot", e))
}

/// See [`StateStore::list_workflows`](baseshift_core::StateStore::list_workflows).
pub(super) async fn list(conn: &Conn, keys: &Keys, filter: WorkflowFilter) -> Result<Vec<WorkflowRecord>> {
    const OP: &str = "StateStore::list_workflows";
    let limit = if filter.limit == 0 { DEFAULT_PAGE } else { filter.limit };
    let min = filter.after.as_ref().map_or_else(|| "-".to_owned(), |after| format!("({after}"));
    let mut sets: Vec<String> = filter.statuses.iter().map(|s| keys.index(*s)).collect();
    sets.sort();
    sets.dedup();
    if sets.is_empty() {
        sets.push(keys.index_all());
    }
    let mut pipe = redis::pipe();
    for set in &sets {
        pipe.cmd("ZRANGEBYLEX").arg(set).arg(&min).arg("+").arg("LIMIT").arg(0).arg(limit);
    }
    let pages: Vec<Vec<String>> = conn.pipeline(&pipe, OP).await?;
    let mut ids: Vec<String> = pages.into_iter().flatten().collect();
    ids.sort();
    ids.dedup();
    ids.truncate(limit);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<WorkflowId> = ids.iter().map(|id| WorkflowId::new(id.as_str())).collect();
    // A workflow removed or re-filed between the two round trips is left out.
    let mut headers = headers(conn, keys, &ids, OP).await?;
    headers.retain(|h| filter.statuses.is_empty() || filter.statuses.contains(&h.status));
    Ok(headers)
}

/// Headers read per pipeline by [`headers`]: bounds the size of one request and reply.
const HEADERS_PER_PIPELINE: usize = 1000;

/// The headers of `ids`, in that order, absent ones left out: one pipeline of `HMGET`s
/// (one round trip) per [`HEADERS_PER_PIPELINE`] ids.
async fn headers(conn: &Conn, keys: &Keys, ids: &[WorkflowId], op: &'static str) -> Result<Vec<WorkflowRecord>> {
    let mut headers = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(HEADERS_PER_PIPELINE) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET").arg(keys.workflow(id)).arg(&HEADER_FIELDS);
        }
        let rows: Vec<Vec<Option<String>>> = conn.pipeline(&pipe, op).await?;
        for row in rows {
            headers.extend(decode_header(op, &row)?);
        }
    }
    Ok(headers)
}

/// See [`StateStore::workflows`](baseshift_core::StateStore::workflows).
pub(super) async fn workflows(conn: &Conn, keys: &Keys, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>> {
    headers(conn, keys, ids, "StateStore::workflows").await
}

/// See [`StateStore::dead_letters`](baseshift_core::StateStore::dead_letters).
pub(super) async fn dead_letters(conn: &Conn, keys: &Keys, filter: DeadLetterFilter) -> Result<Vec<JobRecord>> {
    const OP: &str = "StateStore::dead_letters";
    let start = match (&filter.after, &filter.workflow_id) {
        (Some(after), _) => format!("({}\0{}", after.workflow_id, after.job_id),
        (None, Some(wf)) => format!("[{wf}\0"),
        (None, None) => "-".to_owned(),
    };
    let only_wf = filter.workflow_id.as_ref().map(|w| w.to_string()).unwrap_or_default();
    let only_type = filter.job_type.clone().unwrap_or_default();
    let limit = filter.page().to_string();
    let args = [keys.prefix(), start.as_str(), only_wf.as_str(), only_type.as_str(), limit.as_str()];
    let reply = conn.script(&SCRIPTS.dead, &[keys.dead_letters()], &args, OP).await?;
    let records = array(OP, reply)?
        .iter()
        .map(|v| {
            let json = text(v).ok_or_else(|| bad_reply(OP, "dead letter record missing"))?;
            decode_job(OP, &json, None)
        })
        .collect::<Result<Vec<_>>>()?;
    // The script filters by workflow and type; `after` may also name a workflow filtered out.
    Ok(records.into_iter().filter(|r| filter.matches(r)).collect())
}

/// See [`StateStore::outbox_pending`](baseshift_core::StateStore::outbox_pending).
pub(super) async fn outbox_pending(conn: &Conn, keys: &Keys, limit: usize) -> Result<Vec<OutboxEntry>> {
    const OP: &str = "StateStore::outbox_pending";
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("XRANGE");
    cmd.arg(keys.outbox()).arg("-").arg("+").arg("COUNT").arg(limit);
    let reply: Value = conn.query(&cmd, OP).await?;
    array(OP, reply)?.into_iter().map(|entry| outbox_entry(OP, entry)).collect()
}

/// One stream entry `[id, [field, value, ...]]` (or a map, under RESP3) as an outbox entry.
fn outbox_entry(op: &'static str, entry: Value) -> Result<OutboxEntry> {
    let mut parts = array(op, entry)?.into_iter();
    let id = parts.next().as_ref().and_then(text).ok_or_else(|| bad_reply(op, "stream entry without id"))?;
    let seq = id
        .strip_prefix("0-")
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad_reply(op, format!("outbox entry id `{id}`")))?;
    let fields: Vec<Value> = match parts.next() {
        Some(Value::Map(pairs)) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Some(other) => array(op, other)?,
        None => Vec::new(),
    };
    // Read in place: no copy of the field names or of the event text.
    let json = fields
        .chunks(2)
        .find(|pair| pair.first().and_then(bytes) == Some(b"e".as_slice()))
        .and_then(|pair| pair.get(1).and_then(bytes))
        .ok_or_else(|| bad_reply(op, format!("outbox entry {id} has no event")))?;
    let event: Event = serde_json::from_slice(json).map_err(|e| corrupt(op, "outbox event", e))?;
    Ok(OutboxEntry { seq, event: event.into() })
}

/// The bytes of a string reply element, borrowed (`None` for anything else).
fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

/// See [`RedisStateStore::purge`](super::RedisStateStore::purge).
pub(super) async fn purge(conn: &Conn, keys: &Keys) -> Result<u64> {
    const OP: &str = "RedisStateStore::purge";
    let pattern = format!("{}:*", glob_escape(keys.prefix()));
    let mut cursor = 0u64;
    let mut removed = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
        let (next, found): (u64, Vec<String>) = conn.query(&scan, OP).await?;
        if !found.is_empty() {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(&found);
            removed += conn.query::<u64>(&unlink, OP).await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// `s` with the glob metacharacters of `SCAN MATCH` escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("app*[1]?"), r"app\*\[1\]\?");
        assert_eq!(glob_escape("plain-prefix"), "plain-prefix");
    }

    use super::*;

    #[test]
    fn stream_entries_parse_in_both_protocols() {
        let event = Event::system("marker", serde_json::json!({"n": 1}));
        let json = serde_json::to_string(&event).unwrap();
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![bulk("0-7"), Value::Array(vec![bulk("e"), bulk(&json)])]);
        let entry = outbox_entry("op", resp2).unwrap();
        assert_eq!((entry.seq, &*entry.event), (7, &event));
        let resp3 = Value::Array(vec![bulk("0-8"), Value::Map(vec![(bulk("e"), bulk(&json))])]);
        assert_eq!(outbox_entry("op", resp3).unwrap().seq, 8);
        assert!(outbox_entry("op", Value::Array(vec![bulk("5-1")])).is_err());
    }
}
