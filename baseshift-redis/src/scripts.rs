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
