//! The writing steps: each one script, one round trip, all or nothing (a batch of
//! applies is one script too, each of its steps all or nothing on its own).

use super::codec::{array, in_workflow, int, millis_to_time, now, placement, rfc3339, script_reply, stored_job, text};
use crate::connection::Conn;
use crate::error::bad_reply;
use crate::keys::Keys;
use crate::scripts::SCRIPTS;
use baseshift_core::store::{Applied, ClaimRequest, Claimed, Transition};
use baseshift_core::{Error, JobKey, JobRecord, Name, Result, WorkflowId};
use chrono::{DateTime, TimeDelta, Utc};
use redis::Value;
use serde::Serialize;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

/// The keys every state-changing script gets, in its `KEYS` order.
pub(super) fn step_keys(keys: &Keys, id: &WorkflowId) -> Vec<String> {
    vec![
        keys.workflow(id),
        keys.jobs(id),
        keys.outputs(id),
        keys.ready(),
        keys.delayed(),
        keys.leases(),
        keys.outbox(),
        keys.outbox_seq(),
    ]
}

pub(super) fn invalid(op: &'static str, id: &WorkflowId, message: impl Into<String>) -> Error {
    Error::invalid_input(message).with_operation(op).with_backend(crate::BACKEND).with_workflow(id.as_str())
}

pub(super) fn events_json(events: &[baseshift_core::Event]) -> Result<Vec<String>> {
    events.iter().map(|e| serde_json::to_string(e).map_err(Error::from)).collect()
}

/// The operation of [`StateStore::apply`](baseshift_core::StateStore::apply) in errors.
pub(super) const APPLY_OP: &str = "StateStore::apply";

/// Checks what needs no stored state; the script checks the rest.
fn check_step(step: &Transition) -> Result<()> {
    const OP: &str = APPLY_OP;
    let id = &step.workflow_id;
    if let Some(header) = &step.header
        && header.id != *id
    {
        return Err(invalid(OP, id, format!("header of workflow `{}` in a step on another workflow", header.id)));
    }
    let mut seen = HashSet::with_capacity(step.jobs.len());
    for job in &step.jobs {
        if job.workflow_id != *id {
            return Err(invalid(OP, id, "job record belongs to another workflow").with_job(job.job_id.as_str()));
        }
        if !seen.insert(job.job_id.as_str()) {
            return Err(invalid(OP, id, "job written twice in one step").with_job(job.job_id.as_str()));
        }
    }
    for outcome in &step.parent_outcomes {
        if !outcome.status.is_terminal() {
            return Err(invalid(OP, id, format!("parent outcome {} is not a terminal status", outcome.status))
                .with_job(outcome.child.as_str()));
        }
    }
    Ok(())
}

/// One step encoded for the apply script: its workflow's keys and its positional
/// arguments (see `apply.lua` for their order), built in the caller's task so a batch
/// only joins them.
pub(crate) struct EncodedStep {
    pub(super) id: WorkflowId,
    pub(super) keys: [String; 3],
    pub(super) args: Vec<String>,
}

impl EncodedStep {
    /// The bytes of its arguments (for the batch size bound).
    pub(super) fn size(&self) -> usize {
        self.args.iter().map(String::len).sum()
    }
}

/// Checks `step` and encodes it for the apply script, at the current time.
pub(super) fn encode_step(keys: &Keys, step: Transition) -> Result<EncodedStep> {
    check_step(&step)?;
    let now = now();
    let id = step.workflow_id;
    let mut args = Vec::with_capacity(15 + 13 * step.jobs.len() + 2 * step.parent_outcomes.len() + step.events.len());
    args.push(id.to_string());
    args.push(now.timestamp_millis().to_string());
    args.push(rfc3339(now));
    match step.header {
        Some(mut h) => {
            let expect = h.version;
            h.version = expect + 1;
            args.push(expect.to_string());
            args.push(h.status.as_str().to_owned());
            args.push(serde_json::to_string(&h)?);
            args.push(flag(!h.compensation_queue.is_empty()));
        }
        None => args.extend([String::new(), String::new(), String::new(), String::new()]),
    }
    args.push(step.terminal_delta.to_string());
    args.push(step.reopened.to_string());
    args.push(flag(step.replay));
    match step.complete_at_zero {
        Some(at) => {
            args.push(rfc3339(at));
            args.push(at.timestamp_millis().to_string());
        }
        None => args.extend([String::new(), String::new()]),
    }
    args.push(step.jobs.len().to_string());
    args.push(step.parent_outcomes.len().to_string());
    args.push(step.events.len().to_string());
    for job in step.jobs {
        job_args(job, now, &mut args)?;
    }
    for outcome in step.parent_outcomes {
        args.push(String::from(&outcome.child));
        args.push(outcome.status.as_str().to_owned());
    }
    args.extend(events_json(&step.events)?);
    Ok(EncodedStep { keys: [keys.workflow(&id), keys.jobs(&id), keys.outputs(&id)], id, args })
}

/// `1` or `0`.
fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_owned()
}

/// The 13 arguments of one written job (see `apply.lua`): stored with its version bumped,
/// the write expecting its current one.
fn job_args(mut rec: JobRecord, now: DateTime<Utc>, args: &mut Vec<String>) -> Result<()> {
    let (place, score) = placement(&rec, now);
    let dead = rec.is_dead_letter();
    let out = rec.output.take().map(|o| serde_json::to_string(&o)).transpose()?;
    let expect = rec.version;
    rec.version = expect + 1;
    let (value, member) = stored_job(&rec)?;
    let (key, limit) = match rec.concurrency {
        Some(c) => (c.key, c.limit.to_string()),
        None => (String::new(), String::new()),
    };
    args.extend([
        String::from(&rec.job_id),
        expect.to_string(),
        rec.status.as_str().to_owned(),
        value,
        out.unwrap_or_default(),
        place.to_owned(),
        score.to_string(),
        member,
        flag(dead),
        flag(rec.compensation_of.is_some()),
        flag(rec.propagated),
        key,
        limit,
    ]);
    Ok(())
}

/// The apply script's reply for one step, as its result.
pub(super) fn step_result(reply: Value) -> Result<Applied> {
    let items = script_reply(APPLY_OP, reply)?;
    let number = |i: usize| items.get(i).map_or(Err(bad_reply(APPLY_OP, "short apply reply")), |v| int(APPLY_OP, v));
    let remaining = u64::try_from(number(1)?).unwrap_or(0);
    let counts = [number(2)?, number(3)?, number(4)?].map(|n| usize::try_from(n).unwrap_or(0));
    let completed = number(5)? == 1;
    let mut ids = items.iter().skip(6).filter_map(text);
    let mut take = |n: usize| ids.by_ref().take(n).map(Name::from).collect::<Vec<_>>();
    Ok(Applied {
        remaining,
        ready: take(counts[0]),
        eligible: take(counts[1]),
        skipped: take(counts[2]),
        completed,
        claimed: Vec::new(),
    })
}

/// Applies encoded steps in one apply script call (one round trip): one result per step,
/// in order. A failure of the call itself is every step's failure (for a timeout, each
/// step's outcome is unknown).
pub(super) async fn apply_steps(conn: &Conn, keys: &Keys, steps: &[EncodedStep]) -> Vec<Result<Applied>> {
    let mut script_keys = Vec::with_capacity(5 + 3 * steps.len());
    script_keys.extend([keys.ready(), keys.delayed(), keys.leases(), keys.outbox(), keys.outbox_seq()]);
    let mut args: Vec<&str> = Vec::with_capacity(1 + steps.iter().map(|s| s.args.len()).sum::<usize>());
    args.push(keys.prefix());
    for step in steps {
        script_keys.extend(step.keys.iter().cloned());
        args.extend(step.args.iter().map(String::as_str));
    }
    let replies = match conn.script(&SCRIPTS.apply, &script_keys, &args, APPLY_OP).await {
        Ok(reply) => array(APPLY_OP, reply),
        Err(e) => Err(e),
    };
    match replies {
        Ok(replies) if replies.len() == steps.len() => replies
            .into_iter()
            .zip(steps)
            .map(|(reply, step)| step_result(reply).map_err(in_workflow(step.id.as_str())))
            .collect(),
        Ok(replies) => {
            let e = bad_reply(APPLY_OP, format!("{} replies to {} steps", replies.len(), steps.len()));
            steps.iter().map(|s| Err(copy_error(&e).with_workflow(s.id.as_str()))).collect()
        }
        Err(e) => steps.iter().map(|s| Err(copy_error(&e).with_workflow(s.id.as_str()))).collect(),
    }
}

/// `e` again, for each step of a batch that failed as a whole (kind, message, operation, backend).
fn copy_error(e: &Error) -> Error {
    Error::new(e.kind(), e.message()).with_operation(APPLY_OP).with_backend(crate::BACKEND)
}

fn lease_expiry(now: DateTime<Utc>, ttl: Duration, op: &'static str) -> Result<DateTime<Utc>> {
    TimeDelta::from_std(ttl).ok().and_then(|d| now.checked_add_signed(d)).ok_or_else(|| {
        Error::invalid_input(format!("lease ttl {ttl:?} is out of range"))
            .with_operation(op)
            .with_backend(crate::BACKEND)
    })
}

/// The script argument of `claim` (see `claim.lua`).
#[derive(Serialize)]
struct ClaimArg<'a> {
    prefix: &'a str,
    now_ms: i64,
    now: &'a str,
    limit: usize,
    exp_ms: i64,
    exp: &'a str,
    owner: &'a str,
    token: &'a str,
    exclude: &'a [String],
    caps: &'a std::collections::HashMap<String, usize>,
}

/// See [`StateStore::claim`](baseshift_core::StateStore::claim).
pub(super) async fn claim(conn: &Conn, keys: &Keys, req: ClaimRequest) -> Result<Claimed> {
    const OP: &str = "StateStore::claim";
    let now = now();
    let expires_at = lease_expiry(now, req.lease_ttl, OP)?;
    let (now_text, exp_text) = (rfc3339(now), rfc3339(expires_at));
    let token = uuid::Uuid::now_v7().to_string();
    let payload = serde_json::to_string(&ClaimArg {
        prefix: keys.prefix(),
        now_ms: now.timestamp_millis(),
        now: &now_text,
        limit: req.limit,
        exp_ms: expires_at.timestamp_millis(),
        exp: &exp_text,
        owner: &req.owner,
        token: &token,
        exclude: &req.exclude_types,
        caps: &req.type_limits,
    })?;
    let claim_keys = [keys.ready(), keys.delayed(), keys.leases(), keys.outbox(), keys.outbox_seq()];
    let reply = conn.script(&SCRIPTS.claim, &claim_keys, &[&payload], OP).await?;
    let items = array(OP, reply)?;
    let next_ready_at = match items.first() {
        Some(v) => millis_to_time(OP, v)?,
        None => return Err(bad_reply(OP, "empty claim reply")),
    };
    let jobs = items[1..]
        .chunks(2)
        .map(|pair| {
            let json = pair.first().and_then(text).ok_or_else(|| bad_reply(OP, "claimed record missing"))?;
            super::codec::decode_job(OP, &json, pair.get(1).and_then(text).as_deref())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Claimed { jobs, next_ready_at })
}

/// See [`StateStore::renew_lease`](baseshift_core::StateStore::renew_lease).
pub(super) async fn renew(conn: &Conn, keys: &Keys, key: &JobKey, token: &str, ttl: Duration) -> Result<DateTime<Utc>> {
    const OP: &str = "StateStore::renew_lease";
    let ctx = |e: Error| e.with_workflow(key.workflow_id.as_str()).with_job(&key.job_id);
    let expires_at = lease_expiry(now(), ttl, OP).map_err(ctx)?;
    let payload = json!({
        "wf": key.workflow_id.as_str(),
        "job": key.job_id,
        "token": token,
        "exp_ms": expires_at.timestamp_millis(),
        "exp": rfc3339(expires_at),
    })
    .to_string();
    let renew_keys = [keys.jobs(&key.workflow_id), keys.leases()];
    let reply = conn.script(&SCRIPTS.renew, &renew_keys, &[&payload], OP).await.map_err(ctx)?;
    script_reply(OP, reply).map_err(ctx)?;
    Ok(expires_at)
}

/// See [`StateStore::outbox_ack`](baseshift_core::StateStore::outbox_ack): one script
/// (`ack.lua`), which trims the outbox's head when the seqs are the consecutive oldest
/// entries (the relay's case; `XTRIM MINID` drops whole listpack nodes, where `XDEL`
/// marks entries one by one), and deletes them by id otherwise.
pub(super) async fn outbox_ack(conn: &Conn, keys: &Keys, seqs: &[u64]) -> Result<()> {
    const OP: &str = "StateStore::outbox_ack";
    if seqs.is_empty() {
        return Ok(());
    }
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let args: Vec<String> = sorted.iter().map(u64::to_string).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    conn.script(&SCRIPTS.ack, &[keys.outbox()], &args, OP).await.map(|_| ())
}

/// Moves due retries to the ready queue: how many moved, and when the next one is due.
pub(super) async fn promote_due(conn: &Conn, keys: &Keys) -> Result<(i64, Option<DateTime<Utc>>)> {
    const OP: &str = "StateStore::wait_for_work";
    let ms = now().timestamp_millis().to_string();
    let reply = conn.script(&SCRIPTS.wait, &[keys.delayed(), keys.ready()], &[&ms], OP).await?;
    let items = array(OP, reply)?;
    let moved = items.first().map_or(Ok(0), |v| int(OP, v))?;
    let next = match items.get(1) {
        Some(v) => millis_to_time(OP, v)?,
        None => None,
    };
    Ok((moved, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use baseshift_core::store::ParentOutcome;
    use baseshift_core::{ErrorKind, JobRecord, JobStatus, WorkflowRecord};

    #[test]
    fn stateless_step_checks_reject_bad_input() {
        let id = WorkflowId::new("w");
        let mut step = Transition::new(id.clone());
        step.header = Some(Box::new(WorkflowRecord::initialized(WorkflowId::new("other"), "t", "1.0.0", json!({}))));
        assert_eq!(check_step(&step).unwrap_err().kind(), ErrorKind::InvalidInput);

        let mut step = Transition::new(id.clone());
        step.jobs =
            vec![JobRecord::pending(id.clone(), "a", "noop", 0), JobRecord::pending(id.clone(), "a", "noop", 0)];
        let err = check_step(&step).unwrap_err();
        assert_eq!((err.kind(), err.job_id()), (ErrorKind::InvalidInput, Some("a")));

        let mut step = Transition::new(id.clone());
        step.parent_outcomes.push(ParentOutcome { child: "b".into(), status: JobStatus::Running });
        assert!(check_step(&step).unwrap_err().message().contains("not a terminal status"));
    }

    /// `outbox_ack` removes exactly the seqs given on both of its paths: consecutive seqs
    /// from the head (trimmed), a consecutive run behind an entry left in place, and
    /// scattered seqs (deleted by id), given in any order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outbox_ack_trims_only_the_acknowledged_head() -> Result<()> {
        use baseshift_core::StateStore;
        use baseshift_core::conformance::fixtures::TestWorkflow;
        let config =
            crate::RedisConfig::builder().key_prefix(format!("bstest-{}", uuid::Uuid::now_v7().simple())).build()?;
        let store = crate::RedisStateStore::connect(&config).await?;
        for _ in 0..8 {
            TestWorkflow::new().job("a", &[]).create(&store).await?;
        }
        let seqs = |entries: Vec<baseshift_core::store::OutboxEntry>| entries.into_iter().map(|e| e.seq).collect();
        let all: Vec<u64> = seqs(store.outbox_pending(100).await?);
        assert!(all.len() >= 8, "{all:?}");
        // A consecutive run behind the head: the head stays.
        store.outbox_ack(&[all[2], all[1]]).await?;
        let mut expected: Vec<u64> = all.iter().copied().filter(|s| ![all[1], all[2]].contains(s)).collect();
        assert_eq!(seqs(store.outbox_pending(100).await?), expected);
        // The head and the next one present (the gap is below the last): trimmed.
        store.outbox_ack(&[all[0], all[1], all[2], all[3]]).await?;
        expected.retain(|s| *s > all[3]);
        assert_eq!(seqs(store.outbox_pending(100).await?), expected);
        // Scattered, and one unknown.
        store.outbox_ack(&[all[6], all[4], all[4], 1 << 40]).await?;
        expected.retain(|s| ![all[4], all[6]].contains(s));
        assert_eq!(seqs(store.outbox_pending(100).await?), expected);
        store.purge().await?;
        Ok(())
    }

    #[test]
    fn lease_expiry_rejects_overflow() {
        let err = lease_expiry(now(), Duration::from_secs(u64::MAX), "op").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
