//! The Lua scripts: one atomic round trip per state transition.
//!
//! Each script is `lib.lua` (shared helpers) plus its own body, preceded by the legal
//! transitions generated from [`JobStatus::can_become`] and
//! [`WorkflowStatus::can_become`], so Lua and Rust can never disagree on them.

use baseshift_core::{JobStatus, WorkflowStatus};
use redis::Script;
use std::sync::LazyLock;

const LIB: &str = include_str!("lua/lib.lua");

const JOB_STATUSES: [JobStatus; 7] = [
    JobStatus::Pending,
    JobStatus::Ready,
    JobStatus::Running,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Skipped,
    JobStatus::Cancelled,
];

const WORKFLOW_STATUSES: [WorkflowStatus; 5] = [
    WorkflowStatus::Initialized,
    WorkflowStatus::Running,
    WorkflowStatus::Completed,
    WorkflowStatus::Failed,
    WorkflowStatus::Cancelled,
];

/// Every script, compiled (hashed) once per process.
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) apply: Script,
    pub(crate) claim: Script,
    pub(crate) renew: Script,
    pub(crate) read: Script,
    pub(crate) wait: Script,
    pub(crate) dead: Script,
    pub(crate) retention: Script,
    pub(crate) cache_get: Script,
    pub(crate) ack: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    create: build(include_str!("lua/create.lua")),
    apply: build(concat!(include_str!("lua/complete.lua"), "\n", include_str!("lua/apply.lua"))),
    claim: build(include_str!("lua/claim.lua")),
    renew: build(include_str!("lua/renew.lua")),
    read: build(include_str!("lua/read.lua")),
    wait: build(include_str!("lua/wait.lua")),
    dead: Script::new(include_str!("lua/dead.lua")),
    retention: build(include_str!("lua/retention.lua")),
    cache_get: Script::new(include_str!("lua/cache_get.lua")),
    ack: Script::new(include_str!("lua/ack.lua")),
});

fn build(body: &str) -> Script {
    Script::new(&source(body))
}

/// The full source of a script: generated tables, shared helpers, body.
pub(crate) fn source(body: &str) -> String {
    format!("{}\n{LIB}\n{body}", transition_tables())
}

/// `local JOB_NEXT = ' FROM>TO ... '` and `local WF_NEXT = ...` from the core state
/// machines, and `JOB_REPLAY` / `WF_REPLAY`, the transitions a replay step may make
/// besides. Strings rather than tables: a script builds its tables on every call, and
/// these would be most of the cost of a small one; `lib.lua` searches them for
/// `' FROM>TO '` (a transition) or `' FROM>'` (a status that is not final).
pub(crate) fn transition_tables() -> String {
    fn edges<S: Copy>(name: &str, all: &[S], can: impl Fn(S, S) -> bool, label: impl Fn(S) -> &'static str) -> String {
        let mut pairs = Vec::new();
        for &from in all {
            for &to in all.iter().filter(|&&to| can(from, to)) {
                pairs.push(format!("{}>{}", label(from), label(to)));
            }
        }
        format!("local {name} = ' {} '", pairs.join(" "))
    }
    format!(
        "{}\n{}\n{}\n{}",
        edges("JOB_NEXT", &JOB_STATUSES, JobStatus::can_become, JobStatus::as_str),
        edges("WF_NEXT", &WORKFLOW_STATUSES, WorkflowStatus::can_become, WorkflowStatus::as_str),
        edges("JOB_REPLAY", &JOB_STATUSES, JobStatus::can_replay, JobStatus::as_str),
        edges("WF_REPLAY", &WORKFLOW_STATUSES, WorkflowStatus::can_replay, WorkflowStatus::as_str)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_tables_follow_the_core_state_machines() {
        let tables = transition_tables();
        let mut lines = tables.lines();
        let jobs = lines.next().unwrap_or_default();
        for edge in
            [" PENDING>READY ", " PENDING>SKIPPED ", " PENDING>CANCELLED ", " RUNNING>RUNNING ", " RUNNING>SUCCEEDED "]
        {
            assert!(jobs.contains(edge), "{edge} in {jobs}");
        }
        assert!(!jobs.contains(" SUCCEEDED>"), "a final status has no edges: {jobs}");
        let workflows = lines.next().unwrap_or_default();
        assert!(workflows.contains(" INITIALIZED>RUNNING INITIALIZED>FAILED INITIALIZED>CANCELLED "), "{workflows}");
        let job_replay = lines.next().unwrap_or_default();
        assert!(job_replay.contains(" FAILED>PENDING FAILED>READY "), "job replay edges: {job_replay}");
        let wf_replay = lines.next().unwrap_or_default();
        assert!(wf_replay.contains(" FAILED>RUNNING "), "workflow replay edge: {wf_replay}");
        assert!(!workflows.contains(" FAILED>RUNNING "), "not without a replay: {workflows}");
    }

    /// `peek_job` (lib.lua) on the real server: it reads serde's records by pattern and
    /// agrees with a full cjson decode on every field it returns, for records it must decode
    /// whole too (a concurrency key, quotes in an id, cjson's own key order).
    #[tokio::test(flavor = "multi_thread")]
    async fn peek_job_agrees_with_a_full_decode() {
        use baseshift_core::state::ConcurrencyKey;
        use baseshift_core::{JobRecord, WorkflowId};
        let config = crate::RedisConfig::from_env();
        let conn = crate::connection::connect(&config).await.unwrap_or_else(|e| panic!("Redis is not reachable: {e}"));
        let script = Script::new(&source(
            "local a, b = peek_job(ARGV[1]), cjson.decode(ARGV[1])
             local conc = a.concurrency and a.concurrency ~= cjson.null and a.concurrency.key or ''
             local same = a.status == b.status and a.version == b.version and a.job_type == b.job_type
               and a.priority == b.priority and conc == (has_key(b.concurrency) and b.concurrency.key or '')
             return {same and 1 or 0, (a.trigger == nil) and 'pattern' or 'decoded', a.status, a.version, a.priority}",
        ));
        let mut plain = JobRecord::pending(WorkflowId::new("w-1"), "a", "noop", 2);
        plain.version = 41;
        plain.priority = -3;
        plain.status = JobStatus::Running;
        let mut keyed = plain.clone();
        keyed.concurrency = Some(ConcurrencyKey { key: "k\"1".into(), limit: 2 });
        let mut quoted = plain.clone();
        quoted.job_id = "a\"b".into();
        let plain_json = serde_json::to_string(&plain).unwrap_or_default();
        let reordered = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&plain_json)
            .unwrap_or_default()
            .into_iter()
            .rev()
            .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k)))
            .collect::<Vec<_>>()
            .join(",");
        let reordered = format!("{{{reordered}}}");
        let cases = [
            (plain_json.clone(), "pattern"),
            (serde_json::to_string(&keyed).unwrap_or_default(), "decoded"),
            (serde_json::to_string(&quoted).unwrap_or_default(), "decoded"),
            (reordered, "decoded"),
        ];
        for (json, how) in cases {
            let reply = conn.script(&script, &[], &[&json], "test").await.unwrap_or_else(|e| panic!("{e}"));
            let items = crate::store::array("test", reply).unwrap_or_default();
            let texts: Vec<String> = items.iter().filter_map(crate::store::text).collect();
            assert_eq!(texts, ["1", how, "RUNNING", "41", "-3"], "{json}");
        }
    }

    /// `claim_view` (lib.lua) on the real server: the text edit of a serde-ordered record
    /// and the whole decode of the same record in another key order claim it alike.
    #[tokio::test(flavor = "multi_thread")]
    async fn claim_view_edits_as_a_decode_would() {
        use baseshift_core::state::Lease;
        use baseshift_core::{JobRecord, WorkflowId};
        let config = crate::RedisConfig::from_env();
        let conn = crate::connection::connect(&config).await.unwrap_or_else(|e| panic!("Redis is not reachable: {e}"));
        let script = Script::new(&source(
            "local lease = {owner = 'o/\"1', token = 't-1', expires_at = '2030-01-01T00:00:00Z'}
             local out = {}
             for i = 1, 2 do
               local v = claim_view(ARGV[i])
               out[#out + 1] = v.claimed(lease, '2029-12-31T23:59:59.5Z')
               out[#out + 1] = v.status .. ' ' .. tostring(v.awaiting_external) .. ' ' .. v.attempt
             end
             return out",
        ));
        let mut ready = JobRecord::pending(WorkflowId::new("w-1"), "a", "noop", 0);
        ready.status = JobStatus::Ready;
        ready.version = 3;
        ready.attempt = 1;
        ready.error = Some(baseshift_core::state::JobFailure::new("retryable", "x\",\"started_at\":1,"));
        let mut expired = ready.clone();
        expired.status = JobStatus::Running;
        expired.lease = Some(Lease { owner: "old".into(), token: "t-0".into(), expires_at: chrono::Utc::now() });
        expired.started_at = Some(chrono::Utc::now());
        for rec in [ready, expired] {
            let serde_order = serde_json::to_string(&rec).unwrap_or_default();
            let value = serde_json::to_value(&rec).unwrap_or_default();
            let fields: Vec<String> = value
                .as_object()
                .into_iter()
                .flatten()
                .rev()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect();
            let other_order = format!("{{{}}}", fields.join(","));
            assert_ne!(serde_order, other_order, "the second record must take the decoding path");
            let reply = conn
                .script(&script, &[], &[&serde_order, &other_order], "test")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let items: Vec<String> =
                crate::store::array("test", reply).unwrap_or_default().iter().filter_map(crate::store::text).collect();
            assert_eq!(items.len(), 4, "{items:?}");
            assert_eq!(items[1], items[3], "the views agree");
            assert_eq!(items[1], format!("{} false {}", rec.status, rec.attempt + 1));
            let edited: JobRecord = serde_json::from_str(&items[0]).unwrap_or_else(|e| panic!("{e}: {}", items[0]));
            let decoded: JobRecord = serde_json::from_str(&items[2]).unwrap_or_else(|e| panic!("{e}: {}", items[2]));
            assert_eq!(edited, decoded);
            assert_eq!(
                (edited.status, edited.version, edited.attempt),
                (JobStatus::Running, rec.version + 1, rec.attempt + 1)
            );
            assert_eq!(edited.lease.map(|l| l.owner), Some("o/\"1".to_owned()));
            assert!(items[0].starts_with("{\"workflow_id\":"), "serde's layout kept: {}", items[0]);
        }
    }

    #[test]
    fn every_script_has_the_helpers() {
        let scripts = &*SCRIPTS;
        for script in [
            &scripts.create,
            &scripts.apply,
            &scripts.claim,
            &scripts.renew,
            &scripts.read,
            &scripts.wait,
            &scripts.retention,
        ] {
            assert_eq!(script.get_hash().len(), 40);
        }
        assert!(source("return 1").contains("local function decide"));
    }
}
