//! The Lua scripts: one atomic round trip per state transition.
//!
//! Each script is `lib.lua` (shared helpers) plus its own body, preceded by the legal
//! transition tables generated from [`JobStatus::can_become`] and
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
    apply: build(include_str!("lua/apply.lua")),
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

/// `local JOB_NEXT = {...}` and `local WF_NEXT = {...}` from the core state machines, and
/// `JOB_REPLAY` / `WF_REPLAY`, the transitions a replay step may make besides.
pub(crate) fn transition_tables() -> String {
    fn table<S: Copy>(name: &str, all: &[S], can: impl Fn(S, S) -> bool, label: impl Fn(S) -> &'static str) -> String {
        let rows: Vec<String> = all
            .iter()
            .map(|&from| {
                let next: Vec<String> =
                    all.iter().filter(|&&to| can(from, to)).map(|&to| format!("{}=true", label(to))).collect();
                format!("{}={{{}}}", label(from), next.join(","))
            })
            .collect();
        format!("local {name} = {{{}}}", rows.join(", "))
    }
    format!(
        "{}\n{}\n{}\n{}",
        table("JOB_NEXT", &JOB_STATUSES, JobStatus::can_become, JobStatus::as_str),
        table("WF_NEXT", &WORKFLOW_STATUSES, WorkflowStatus::can_become, WorkflowStatus::as_str),
        table("JOB_REPLAY", &JOB_STATUSES, JobStatus::can_replay, JobStatus::as_str),
        table("WF_REPLAY", &WORKFLOW_STATUSES, WorkflowStatus::can_replay, WorkflowStatus::as_str)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_tables_follow_the_core_state_machines() {
        let tables = transition_tables();
        assert!(tables.contains("PENDING={READY=true,SKIPPED=true,CANCELLED=true}"), "{tables}");
        assert!(tables.contains("SUCCEEDED={}"), "{tables}");
        assert!(tables.contains("INITIALIZED={RUNNING=true,FAILED=true,CANCELLED=true}"), "{tables}");
        let running = tables.lines().next().unwrap_or_default();
        assert!(running.contains("RUNNING={READY=true,RUNNING=true,SUCCEEDED=true"), "{running}");
        assert!(tables.contains("FAILED={RUNNING=true}"), "workflow replay edge: {tables}");
        assert!(tables.contains("FAILED={PENDING=true,READY=true}"), "job replay edges: {tables}");
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
