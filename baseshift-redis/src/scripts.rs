//! The Lua scripts: one atomic round trip per state transition.
//!
//! Each script is `lib.lua` (shared helpers) plus its own body, preceded by the legal
//! transitions generated from [`JobStatus::can_become`] and
//! [`WorkflowStatus::can_become`], so Lua and Rust can never disagree on them.

use baseshift_core::{JobStatus, WorkflowStatus};
use redis::Script;
use std::sync::LazyLock;

const LIB: &str = include_str!("lua/lib.lua");

/// Every job status.
pub(crate) const JOB_STATUSES: [JobStatus; 7] = [
    JobStatus::Pending,
    JobStatus::Ready,
    JobStatus::Running,
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::Skipped,
    JobStatus::Cancelled,
];

/// Every workflow status.
pub(crate) const WORKFLOW_STATUSES: [WorkflowStatus; 5] = [
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
    dead: build(include_str!("lua/dead.lua")),
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

    /// `job_head` (lib.lua) on the real server reads the head of what the store writes
    /// (codec.rs) for records of every shape (a concurrency key, quotes and a newline in
    /// strings, a lease), and a head rewritten as a claim rewrites it (`head_line`,
    /// `lease_json`) decodes to the claimed record.
    #[tokio::test(flavor = "multi_thread")]
    async fn job_head_reads_the_stored_layout() {
        use crate::store::{decode_job, stored_job};
        use baseshift_core::state::{ConcurrencyKey, Lease};
        use baseshift_core::{JobRecord, WorkflowId};
        let config = crate::RedisConfig::from_env();
        let conn = crate::connection::connect(&config).await.unwrap_or_else(|e| panic!("Redis is not reachable: {e}"));
        let script = Script::new(&source(
            "local raw = ARGV[1]
             local h = job_head(raw)
             local claimed = head_line('RUNNING', h.version + 1, h.attempt + 1, h.flags)
               .. lease_json(cjson.encode('o/\"1'), cjson.encode('t-1'), cjson.encode('2030-01-01T00:00:00Z')) .. '\\n'
               .. cjson.encode('2029-12-31T23:59:59.5Z') .. '\\n' .. string.sub(raw, h.m)
             return {h.status, h.version, h.attempt, h.flags, h.member, string.sub(raw, h.j), claimed,
               tostring(h.awaiting) .. tostring(h.propagated) .. tostring(h.comp)}",
        ));
        let mut plain = JobRecord::pending(WorkflowId::new("w-1"), "a", "noop", 2);
        (plain.version, plain.priority, plain.attempt, plain.status) = (41, -3, 1, JobStatus::Ready);
        plain.propagated = true;
        let mut keyed = plain.clone();
        keyed.concurrency = Some(ConcurrencyKey { key: "k\"1".into(), limit: 2 });
        keyed.compensation_of = Some("x".into());
        let mut quoted = plain.clone();
        (quoted.job_id, quoted.job_type) = ("a\"b\nc".into(), "t/\\".into());
        quoted.status = JobStatus::Running;
        quoted.awaiting_external = true;
        quoted.lease = Some(Lease { owner: "old\n".into(), token: "t-0".into(), expires_at: chrono::Utc::now() });
        quoted.started_at = Some(chrono::Utc::now());
        for rec in [plain, keyed, quoted] {
            let (stored, member) = stored_job(&rec).unwrap_or_default();
            let json = serde_json::to_string(&rec).unwrap_or_default();
            let reply = conn.script(&script, &[], &[&stored], "test").await.unwrap_or_else(|e| panic!("{e}"));
            let items: Vec<String> =
                crate::store::array("test", reply).unwrap_or_default().iter().filter_map(crate::store::text).collect();
            let flag = |b: bool| if b { '1' } else { '0' };
            let flags = format!(
                "{}{}{}",
                flag(rec.awaiting_external),
                flag(rec.propagated),
                flag(rec.compensation_of.is_some())
            );
            let expected =
                [rec.status.as_str(), &rec.version.to_string(), &rec.attempt.to_string(), &flags, &member, &json];
            assert_eq!(items[..6], expected, "{stored}");
            assert_eq!(
                items[7],
                format!("{}{}{}", rec.awaiting_external, rec.propagated, rec.compensation_of.is_some())
            );
            let claimed = decode_job("test", &items[6], None).unwrap_or_else(|e| panic!("{e}: {}", items[6]));
            let mut expected = rec.clone();
            (expected.status, expected.version, expected.attempt) =
                (JobStatus::Running, rec.version + 1, rec.attempt + 1);
            expected.lease = Some(Lease {
                owner: "o/\"1".into(),
                token: "t-1".into(),
                expires_at: "2030-01-01T00:00:00Z".parse().unwrap_or_default(),
            });
            expected.started_at = "2029-12-31T23:59:59.5Z".parse().ok();
            assert_eq!(claimed, expected);
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
