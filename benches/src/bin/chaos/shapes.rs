//! The workflow shapes the harness submits, what each must end as, and the job runner that
//! records every run (start and end, with its lease token) before reporting its outcome.

use crate::record::{Mark, Recorder};
use async_trait::async_trait;
use baseshift_core::{JobContext, JobError, JobOutput, JobRunner, JobStatus, Result, WorkflowStatus, WorkflowTemplate};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A straight line of four jobs.
const CHAIN: &str = r#"
template_id: chain
version: 1.0.0
jobs:
  - { id: a, type: chaos, config: { ms: 60 } }
  - { id: b, type: chaos, config: { ms: 80 } }
  - { id: c, type: chaos, config: { ms: 40 } }
  - { id: d, type: chaos, config: { ms: 70 } }
"#;

/// One root, three parallel jobs, one join.
const DIAMOND: &str = r#"
template_id: diamond
version: 1.0.0
jobs:
  - { id: a, type: chaos, config: { ms: 50 } }
  - { id: b, type: chaos, depends_on: [a], config: { ms: 90 } }
  - { id: c, type: chaos, depends_on: [a], config: { ms: 60 } }
  - { id: d, type: chaos, depends_on: [a], config: { ms: 120 } }
  - { id: e, type: chaos, depends_on: [b, c, d], config: { ms: 40 } }
"#;

/// One root, eight parallel jobs, one join.
const FANOUT: &str = r#"
template_id: fanout
version: 1.0.0
jobs:
  - { id: root, type: chaos, config: { ms: 30 } }
  - { id: f1, type: chaos, depends_on: [root], config: { ms: 100 } }
  - { id: f2, type: chaos, depends_on: [root], config: { ms: 80 } }
  - { id: f3, type: chaos, depends_on: [root], config: { ms: 150 } }
  - { id: f4, type: chaos, depends_on: [root], config: { ms: 60 } }
  - { id: f5, type: chaos, depends_on: [root], config: { ms: 120 } }
  - { id: f6, type: chaos, depends_on: [root], config: { ms: 90 } }
  - { id: f7, type: chaos, depends_on: [root], config: { ms: 70 } }
  - { id: f8, type: chaos, depends_on: [root], config: { ms: 110 } }
  - { id: join, type: chaos, depends_on: [f1, f2, f3, f4, f5, f6, f7, f8], config: { ms: 30 } }
"#;

/// A job that fails retryably on its first two attempts, then succeeds.
const RETRY: &str = r#"
template_id: retry
version: 1.0.0
jobs:
  - id: flaky
    type: chaos
    config: { ms: 50, fail_until: 3 }
    retry: { max_attempts: 12, initial_delay: 100ms, max_delay: 400ms }
  - { id: after, type: chaos, config: { ms: 50 } }
"#;

/// A job that fails permanently: the workflow FAILS, its dependent is skipped, the
/// parallel sibling still runs.
const FAIL: &str = r#"
template_id: fail
version: 1.0.0
jobs:
  - { id: a, type: chaos, config: { ms: 40 } }
  - { id: bad, type: chaos, depends_on: [a], config: { ms: 60, permanent: true } }
  - { id: side, type: chaos, depends_on: [a], config: { ms: 80 } }
  - { id: after, type: chaos, depends_on: [bad], config: { ms: 40 } }
"#;

/// Two `when` branches, one of which runs (by input), and a `none_failed` join.
const BRANCH: &str = r#"
template_id: branch
version: 1.0.0
jobs:
  - { id: check, type: chaos, config: { ms: 40 } }
  - { id: left, type: chaos, depends_on: [check], when: "input.go == true", config: { ms: 60 } }
  - id: right
    type: chaos
    depends_on: [check]
    when: "input.go == false && jobs.check.output.attempt >= 1"
    config: { ms: 60 }
  - { id: join, type: chaos, depends_on: [left, right], trigger: none_failed, config: { ms: 30 } }
"#;

/// A job that runs longer than the lease (so it lives on renewals), then a short one.
const LONG: &str = r#"
template_id: long
version: 1.0.0
jobs:
  - { id: slow, type: chaos, config: { ms: 2500 } }
  - { id: after, type: chaos, config: { ms: 40 } }
"#;

/// Every shape, in submission rotation.
pub const SHAPES: [(&str, &str); 7] = [
    ("chain", CHAIN),
    ("diamond", DIAMOND),
    ("fanout", FANOUT),
    ("retry", RETRY),
    ("fail", FAIL),
    ("branch", BRANCH),
    ("long", LONG),
];

/// The templates, parsed.
pub fn templates() -> Result<Vec<WorkflowTemplate>> {
    SHAPES.iter().map(|(_, yaml)| WorkflowTemplate::from_yaml(yaml)).collect()
}

/// The input of the `i`-th workflow.
pub fn input(i: usize) -> Value {
    json!({ "i": i, "go": i % 4 < 2 })
}

/// What a workflow of `shape` with `input` must end as: its status and each job's.
pub fn expected(shape: &str, input: &Value) -> (WorkflowStatus, Vec<(&'static str, JobStatus)>) {
    use JobStatus::{Failed, Skipped, Succeeded};
    let ok = |ids: &[&'static str]| ids.iter().map(|id| (*id, Succeeded)).collect::<Vec<_>>();
    match shape {
        "chain" => (WorkflowStatus::Completed, ok(&["a", "b", "c", "d"])),
        "diamond" => (WorkflowStatus::Completed, ok(&["a", "b", "c", "d", "e"])),
        "fanout" => (WorkflowStatus::Completed, ok(&["root", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "join"])),
        "retry" => (WorkflowStatus::Completed, ok(&["flaky", "after"])),
        "long" => (WorkflowStatus::Completed, ok(&["slow", "after"])),
        "fail" => {
            (WorkflowStatus::Failed, vec![("a", Succeeded), ("bad", Failed), ("side", Succeeded), ("after", Skipped)])
        }
        _ => {
            let go = input.get("go").and_then(Value::as_bool).unwrap_or(false);
            let (left, right) = if go { (Succeeded, Skipped) } else { (Skipped, Succeeded) };
            (
                WorkflowStatus::Completed,
                vec![("check", Succeeded), ("left", left), ("right", right), ("join", Succeeded)],
            )
        }
    }
}

/// The `chaos` job type: sleeps `ms`, fails retryably while `attempt < fail_until`, fails
/// permanently with `permanent: true`. With a recorder, it records its start before doing
/// anything and its end after the sleep, both with its lease token.
pub struct ChaosRunner {
    /// Where runs are recorded (the supervisor's copy, used only to validate, has none).
    pub recorder: Option<Arc<Recorder>>,
}

#[async_trait]
impl JobRunner for ChaosRunner {
    fn job_type(&self) -> &str {
        "chaos"
    }

    fn validate_config(&self, _config: &Value) -> Result<()> {
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> std::result::Result<JobOutput, JobError> {
        let ms = ctx.config.get("ms").and_then(Value::as_u64).unwrap_or(50);
        let fail_until = ctx.config.get("fail_until").and_then(Value::as_u64).unwrap_or(0);
        let permanent = ctx.config.get("permanent").and_then(Value::as_bool).unwrap_or(false);
        let mark = Mark::new(&ctx);
        if let Some(r) = &self.recorder {
            r.write_until_done(&mark.start()).await;
        }
        let cancelled = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => false,
            _ = ctx.cancellation.cancelled() => true,
        };
        let result = if cancelled {
            Err(JobError::retryable("cancelled: the lease was lost"))
        } else if u64::from(ctx.attempt) < fail_until {
            Err(JobError::retryable(format!("planned failure on attempt {}", ctx.attempt)))
        } else if permanent {
            Err(JobError::permanent("planned permanent failure"))
        } else {
            Ok(JobOutput::json(json!({ "job": ctx.job_id, "attempt": ctx.attempt })))
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_retryable() => "retryable",
            Err(_) => "permanent",
        };
        if let Some(r) = &self.recorder {
            r.write_until_done(&mark.end(outcome)).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_parses_and_has_expectations_for_each_job() -> Result<()> {
        for (t, (name, _)) in templates()?.iter().zip(SHAPES) {
            assert_eq!(t.template_id, name);
            for i in 0..4 {
                let (_, jobs) = expected(name, &input(i));
                let ids: Vec<&str> = t.jobs.iter().map(|j| j.id.as_str()).collect();
                assert_eq!(ids, jobs.iter().map(|(id, _)| *id).collect::<Vec<_>>(), "{name}");
            }
        }
        Ok(())
    }
}
