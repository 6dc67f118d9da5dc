//! Encoding records for the scripts and decoding their replies.

use crate::error::{bad_reply, corrupt, script_error};
use baseshift_core::{Error, JobRecord, JobStatus, Result, WorkflowRecord};
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use redis::Value;
use serde::Serialize;

/// The current time at the millisecond precision the indexes keep.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A timestamp as `chrono` serializes it (RFC 3339), for records the scripts edit.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Where a record goes in the queues when written at `now`: `r` ready, `d` delayed,
/// `l` leased, `n` none; and its score there.
pub(crate) fn placement(rec: &JobRecord, now: DateTime<Utc>) -> (&'static str, f64) {
    match rec.status {
        JobStatus::Ready => match rec.ready_at {
            Some(at) if at > now => ("d", at.timestamp_millis() as f64),
            _ => ("r", rec.queue_score()),
        },
        JobStatus::Running if !rec.awaiting_external => match &rec.lease {
            Some(lease) => ("l", lease.expires_at.timestamp_millis() as f64),
            None => ("n", 0.0),
        },
        _ => ("n", 0.0),
    }
}

/// The bulk strings of one script call, sent as `ARGV[2..]` after the control JSON in
/// `ARGV[1]`, which names them by their `ARGV` index: record and event JSON goes to the
/// script as it is, neither escaped into the control JSON nor decoded there by cjson
/// (decoding a 2 KB payload of nested JSON cost the scripts more than all their
/// Redis calls together).
#[derive(Debug, Default)]
pub(crate) struct BulkArgs {
    values: Vec<String>,
}

impl BulkArgs {
    /// Adds `value`; returns its index in the script's `ARGV`.
    pub(crate) fn push(&mut self, value: String) -> usize {
        self.values.push(value);
        self.values.len() + 1
    }

    /// Adds each of `values`; returns their `ARGV` indexes.
    pub(crate) fn push_all(&mut self, values: Vec<String>) -> Vec<usize> {
        values.into_iter().map(|v| self.push(v)).collect()
    }

    /// The whole `ARGV`: `control` first, then the bulk strings in their index order.
    pub(crate) fn argv<'a>(&'a self, control: &'a str) -> Vec<&'a str> {
        std::iter::once(control).chain(self.values.iter().map(String::as_str)).collect()
    }
}

/// One job record as a script argument.
#[derive(Debug, Serialize)]
pub(crate) struct JobArg {
    id: String,
    /// The stored version a write expects (absent on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: Option<u64>,
    status: &'static str,
    /// The `ARGV` index of the record as it will be stored (see [`stored_job`]): its new
    /// version, without its output.
    value: usize,
    /// The `ARGV` index of its output JSON, if it has one.
    out: Option<usize>,
    place: &'static str,
    score: f64,
    /// The `ARGV` index of its queue member (see [`queue_member`]).
    member: usize,
    /// Whether the record is a dead letter (kept in the dead-letter set).
    dead: bool,
    /// Whether it is a compensation job (completion at zero needs none of those).
    comp: bool,
    /// Whether its outcome was propagated to its children.
    prop: bool,
}

impl JobArg {
    /// `rec` to be stored with `version`, the write expecting `expect`; its JSON and
    /// output go to `bulk`.
    pub(crate) fn new(
        mut rec: JobRecord,
        version: u64,
        expect: Option<u64>,
        now: DateTime<Utc>,
        bulk: &mut BulkArgs,
    ) -> Result<Self> {
        let (place, score) = placement(&rec, now);
        let dead = rec.is_dead_letter();
        let out = rec.output.take().map(|o| serde_json::to_string(&o)).transpose()?.map(|o| bulk.push(o));
        rec.version = version;
        let (value, member) = stored_job(&rec)?;
        let (value, member) = (bulk.push(value), bulk.push(member));
        Ok(JobArg {
            value,
            id: String::from(&rec.job_id),
            expect,
            status: rec.status.as_str(),
            out,
            place,
            score,
            member,
            dead,
            comp: rec.compensation_of.is_some(),
            prop: rec.propagated,
        })
    }
}

/// A job's member in the queues (ready, delayed, leases): `[workflow, job, type,
/// priority]`, then `key, limit` if it has a concurrency key (claim.lua reads them). It
/// is built here only and kept in the stored record (see [`decode_job`]), so the scripts
/// find the member a record is queued under without building it.
pub(crate) fn queue_member(rec: &JobRecord) -> Result<String> {
    let (wf, job, jtype, prio) = (rec.workflow_id.as_str(), &rec.job_id, &rec.job_type, rec.priority);
    Ok(match &rec.concurrency {
        Some(c) => serde_json::to_string(&(wf, job, jtype, prio, &c.key, c.limit))?,
        None => serde_json::to_string(&(wf, job, jtype, prio))?,
    })
}

/// `rec` as its jobs hash stores it (see [`decode_job`]), and its queue member.
pub(crate) fn stored_job(rec: &JobRecord) -> Result<(String, String)> {
    let member = queue_member(rec)?;
    Ok((format!("{}\n{member}\n{}", job_head(rec)?, serde_json::to_string(rec)?), member))
}

/// The head of a stored job record: the first three of its lines (see [`decode_job`]).
pub(crate) fn job_head(rec: &JobRecord) -> Result<String> {
    let flag = |b: bool| if b { '1' } else { '0' };
    Ok(format!(
        "{} {} {} {}{}{}\n{}\n{}",
        rec.status.as_str(),
        rec.version,
        rec.attempt,
        flag(rec.awaiting_external),
        flag(rec.propagated),
        flag(rec.compensation_of.is_some()),
        serde_json::to_string(&rec.lease)?,
        serde_json::to_string(&rec.started_at)?,
    ))
}

/// A job record read back, `stored` as its jobs hash keeps it, plus its output (stored
/// apart). The stored value is five lines (no JSON string holds a raw newline):
///
/// ```text
/// RUNNING 4 1 010                          status, version, attempt, flags
/// {"owner":"w","token":"t-1","expires_at":"..."}   lease JSON (or null)
/// "2026-12-01T21:55:01.123Z"               started_at JSON (or null)
/// ["wf","job","noop",0]                    queue member (`member` in lib.lua)
/// {"workflow_id":"wf",...}                 the record JSON (serde's), output left out
/// ```
///
/// The flags are awaiting_external, propagated and "is a compensation job", `1` or `0`
/// each. The head (the first four lines) is what the scripts read and edit: a claim or a
/// lease renewal rewrites only the head, so the head wins over the record JSON for the
/// fields a claim changes (status, version, attempt, awaiting_external, lease and
/// started_at); every other write (create, apply, a parent's outcome) writes both, in
/// agreement.
pub(crate) fn decode_job(op: &'static str, stored: &str, output: Option<&str>) -> Result<JobRecord> {
    let layout = || bad_reply(op, "stored job record is not of the stored layout");
    let mut lines = stored.splitn(5, '\n');
    let (Some(first), Some(lease), Some(started), Some(_member), Some(json)) =
        (lines.next(), lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(layout());
    };
    let mut rec: JobRecord = serde_json::from_str(json).map_err(|e| corrupt(op, "job record", e))?;
    let mut words = first.split(' ');
    let (Some(status), Some(version), Some(attempt), Some(flags), None) =
        (words.next(), words.next(), words.next(), words.next(), words.next())
    else {
        return Err(layout());
    };
    rec.status = job_status(status).ok_or_else(layout)?;
    rec.version = version.parse().map_err(|_| layout())?;
    rec.attempt = attempt.parse().map_err(|_| layout())?;
    rec.awaiting_external = flags.starts_with('1');
    rec.lease = serde_json::from_str(lease).map_err(|e| corrupt(op, "job lease", e))?;
    rec.started_at = serde_json::from_str(started).map_err(|e| corrupt(op, "job start time", e))?;
    rec.output = match output {
        Some(out) => Some(serde_json::from_str(out).map_err(|e| corrupt(op, "job output", e))?),
        None => None,
    };
    Ok(rec)
}

/// The status named `name` (as [`JobStatus::as_str`] writes it).
fn job_status(name: &str) -> Option<JobStatus> {
    crate::scripts::JOB_STATUSES.into_iter().find(|s| s.as_str() == name)
}

/// The fields of a workflow's hash a header is read from: the header JSON (`h`), then
/// the fields that win over it, which the scripts write without touching the JSON:
/// version (`v`), remaining count (`r`), status (`s`) and the time completion at zero
/// finished it (`f`, also its `updated_at`; absent or empty otherwise). The hash also
/// holds `o` (the job ids in template order) and `q` (`1` while the header's compensation
/// queue is not empty, which completion at zero needs to know).
pub(crate) const HEADER_FIELDS: [&str; 5] = ["h", "v", "r", "s", "f"];

/// A header read back from its [`HEADER_FIELDS`]; `None` if the workflow is absent.
pub(crate) fn decode_header(op: &'static str, fields: &[Option<String>]) -> Result<Option<WorkflowRecord>> {
    let [Some(json), Some(version), Some(remaining), Some(status), finished] = fields else {
        return Ok(None);
    };
    let mut header: WorkflowRecord = serde_json::from_str(json).map_err(|e| corrupt(op, "workflow header", e))?;
    header.version = version.parse().map_err(|_| bad_reply(op, format!("header version `{version}`")))?;
    header.remaining = remaining.parse().map_err(|_| bad_reply(op, format!("remaining count `{remaining}`")))?;
    header.status = crate::scripts::WORKFLOW_STATUSES
        .into_iter()
        .find(|s| s.as_str() == status)
        .ok_or_else(|| bad_reply(op, format!("workflow status `{status}`")))?;
    if let Some(at) = finished.as_deref().filter(|f| !f.is_empty()) {
        let at = DateTime::parse_from_rfc3339(at)
            .map_err(|_| bad_reply(op, format!("finish time `{at}`")))?
            .with_timezone(&Utc);
        (header.updated_at, header.finished_at) = (at, Some(at));
    }
    Ok(Some(header))
}

/// The text of a reply element (`None` for nil).
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

/// A reply element as an integer.
pub(crate) fn int(op: &'static str, v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Double(d) => Ok(*d as i64),
        other => text(other)
            .and_then(|s| s.parse::<f64>().ok())
            .map(|f| f as i64)
            .ok_or_else(|| bad_reply(op, format!("expected a number, got {other:?}"))),
    }
}

/// A reply element that is an array.
pub(crate) fn array(op: &'static str, v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(bad_reply(op, format!("expected an array, got {other:?}"))),
    }
}

/// A script reply `{'err', kind, job, message}` as an error; anything else as its items.
pub(crate) fn script_reply(op: &'static str, v: Value) -> Result<Vec<Value>> {
    let items = array(op, v)?;
    if items.first().and_then(text).as_deref() == Some("err") {
        let field = |i: usize| items.get(i).and_then(text).unwrap_or_default();
        return Err(script_error(&field(1), &field(2), &field(3), op));
    }
    Ok(items)
}

/// Epoch milliseconds (as a reply element) to a time, if present.
pub(crate) fn millis_to_time(op: &'static str, v: &Value) -> Result<Option<DateTime<Utc>>> {
    if matches!(v, Value::Nil) {
        return Ok(None);
    }
    let ms = int(op, v)?;
    DateTime::from_timestamp_millis(ms).map(Some).ok_or_else(|| bad_reply(op, format!("time {ms} ms out of range")))
}

/// Adds workflow context to an error.
pub(crate) fn in_workflow(id: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| e.with_workflow(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baseshift_core::state::Lease;
    use baseshift_core::{ErrorKind, WorkflowId};
    use chrono::TimeDelta;
    use serde_json::json;

    #[test]
    fn placement_matches_the_record_state() {
        let now = now();
        let mut rec = JobRecord::pending(WorkflowId::new("w"), "a", "noop", 0);
        assert_eq!(placement(&rec, now).0, "n");
        rec.status = JobStatus::Ready;
        rec.priority = 2;
        rec.ready_at = Some(now);
        assert_eq!(placement(&rec, now), ("r", rec.queue_score()));
        rec.ready_at = Some(now + TimeDelta::seconds(5));
        assert_eq!(placement(&rec, now), ("d", (now + TimeDelta::seconds(5)).timestamp_millis() as f64));
        rec.status = JobStatus::Running;
        rec.lease = Some(Lease { owner: "o".into(), token: "t".into(), expires_at: now });
        assert_eq!(placement(&rec, now), ("l", now.timestamp_millis() as f64));
        rec.awaiting_external = true;
        assert_eq!(placement(&rec, now).0, "n");
    }

    #[test]
    fn output_is_stored_apart_and_merged_back() {
        let mut rec = JobRecord::pending(WorkflowId::new("w"), "a", "noop", 0);
        rec.output = Some(json!({"big": 12345678901234567890u64, "fine": 1.0000000000000002, "list": []}));
        let mut bulk = BulkArgs::default();
        let arg = JobArg::new(rec.clone(), 4, Some(3), now(), &mut bulk).unwrap();
        let argv = bulk.argv("control");
        let (value, out) = (argv[arg.value - 1], arg.out.map(|i| argv[i - 1]));
        assert_eq!((argv[0], arg.out, arg.value, arg.member), ("control", Some(2), 3, 4));
        assert!(!value.contains("12345678901234567890"), "{value}");
        assert!(value.contains("\n[\"w\",\"a\",\"noop\",0]\n{"), "{value}");
        assert!(out.is_some_and(|o| o.contains("12345678901234567890")), "{out:?}");
        let back = decode_job("op", value, out).unwrap();
        rec.version = 4;
        assert_eq!(back, rec);
    }

    /// A stored record's head wins over its JSON for what a claim edits; a value of
    /// another layout is an error, not a record.
    #[test]
    fn the_head_wins_over_the_record_json() {
        let rec = JobRecord::pending(WorkflowId::new("w"), "a", "noop", 0);
        let json = serde_json::to_string(&rec).unwrap();
        let mut claimed = rec.clone();
        claimed.status = JobStatus::Running;
        claimed.version = 9;
        claimed.attempt = 2;
        claimed.lease = Some(Lease { owner: "o\n".into(), token: "t".into(), expires_at: now() });
        claimed.started_at = Some(now());
        let head = job_head(&claimed).unwrap();
        assert!(head.starts_with("RUNNING 9 2 000\n"), "{head}");
        let stored = format!("{head}\n[]\n{json}");
        assert_eq!(decode_job("op", &stored, None).unwrap(), claimed);
        for bad in [json.as_str(), "READY 1 0 000\nnull\nnull\n[]", "LOST 1 0 000\nnull\nnull\n[]\n{}"] {
            assert_eq!(decode_job("op", bad, None).unwrap_err().kind(), ErrorKind::Internal, "{bad}");
        }
    }

    /// The hash fields win over the header JSON: version, remaining, status and, once
    /// completion at zero wrote it, the finish time (`f`, empty when cleared).
    #[test]
    fn header_fields_win_over_the_json() {
        let h = WorkflowRecord::initialized(WorkflowId::new("w"), "t", "1.0.0", json!({"n": 1}));
        let json = serde_json::to_string(&h).unwrap();
        let at = "2026-12-01T21:55:01.123Z";
        let fields = |s: &str, f: Option<&str>| {
            [Some(json.clone()), Some("7".into()), Some("0".into()), Some(s.into()), f.map(str::to_owned)]
        };
        let done = decode_header("op", &fields("COMPLETED", Some(at))).unwrap().unwrap();
        assert_eq!((done.status, done.version, done.remaining), (baseshift_core::WorkflowStatus::Completed, 7, 0));
        assert_eq!((rfc3339(done.updated_at), done.finished_at.map(rfc3339)), (at.to_owned(), Some(at.to_owned())));
        let open = decode_header("op", &fields("RUNNING", Some(""))).unwrap().unwrap();
        assert_eq!((open.updated_at, open.finished_at), (h.updated_at, None));
        assert!(decode_header("op", &fields("LOST", None)).is_err());
        assert!(decode_header("op", &[None, None, None, None, None]).unwrap().is_none());
    }

    #[test]
    fn script_errors_become_core_errors() {
        let reply = Value::Array(vec![
            Value::BulkString(b"err".to_vec()),
            Value::BulkString(b"conflict".to_vec()),
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"stale".to_vec()),
        ]);
        let err = script_reply("StateStore::apply", reply).unwrap_err();
        assert_eq!((err.kind(), err.job_id()), (ErrorKind::Conflict, Some("a")));
        assert_eq!(millis_to_time("op", &Value::Nil).unwrap(), None);
        let t = millis_to_time("op", &Value::BulkString(b"1700000000123".to_vec())).unwrap().unwrap();
        assert_eq!(t.timestamp_millis(), 1_700_000_000_123);
    }
}
