//! The workflow shapes of BENCH.md, built as templates of `noop` jobs.

use baseshift_core::{JobSpec, WorkflowTemplate};
use semver::Version;

/// Template id of [`single`].
pub const SINGLE: &str = "single";
/// Template id of [`diamond`].
pub const DIAMOND: &str = "diamond";
/// Template id of [`chain3`].
pub const CHAIN3: &str = "chain3";

/// One source, `n - 2` parallel jobs, one sink (`n` jobs in all).
pub fn fanout(n: usize) -> WorkflowTemplate {
    let mut t = WorkflowTemplate::new(format!("fanout{n}"), Version::new(1, 0, 0)).job(JobSpec::new("src", "noop"));
    let mids: Vec<String> = (0..n.saturating_sub(2)).map(|i| format!("m{i}")).collect();
    for m in &mids {
        t = t.job(JobSpec::new(m.clone(), "noop").depends_on(["src"]));
    }
    t.job(JobSpec::new("sink", "noop").depends_on(mids))
}

/// `n` jobs in a line, each depending on the previous one.
pub fn chain(n: usize) -> WorkflowTemplate {
    chain_named(format!("chain{n}"), n)
}

/// The three-job chain of the `latency` scenario.
pub fn chain3() -> WorkflowTemplate {
    chain_named(CHAIN3.into(), 3)
}

fn chain_named(id: String, n: usize) -> WorkflowTemplate {
    let mut t = WorkflowTemplate::new(id, Version::new(1, 0, 0));
    for i in 0..n {
        let job = JobSpec::new(format!("j{i}"), "noop");
        t = t.job(if i == 0 { job } else { job.depends_on([format!("j{}", i - 1)]) });
    }
    t
}

/// A -> {B, C, D} -> E.
pub fn diamond() -> WorkflowTemplate {
    WorkflowTemplate::new(DIAMOND, Version::new(1, 0, 0))
        .job(JobSpec::new("a", "noop"))
        .job(JobSpec::new("b", "noop").depends_on(["a"]))
        .job(JobSpec::new("c", "noop").depends_on(["a"]))
        .job(JobSpec::new("d", "noop").depends_on(["a"]))
        .job(JobSpec::new("e", "noop").depends_on(["b", "c", "d"]))
}

/// A workflow of one `noop` job.
pub fn single() -> WorkflowTemplate {
    WorkflowTemplate::new(SINGLE, Version::new(1, 0, 0)).job(JobSpec::new("job", "noop"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_stated_sizes_and_validate() -> baseshift_core::Result<()> {
        for (t, n) in [(fanout(10), 10), (chain(7), 7), (diamond(), 5), (single(), 1), (chain3(), 3)] {
            assert_eq!(t.jobs.len(), n);
            t.validate()?;
        }
        assert_eq!(chain(3).jobs[2].depends_on, Some(vec!["j1".to_owned()]));
        Ok(())
    }
}
