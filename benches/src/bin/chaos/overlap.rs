//! `overlapping_leases`: runs of one job at the same moment while both leases were valid
//! (the definition is in `check.rs`), from the run and lease marks.

use crate::check::{Examples, Summary};
use crate::record::Mark;
use std::collections::HashMap;

/// One run of a job, from its marks.
#[derive(Default)]
struct Run {
    attempt: u32,
    pid: u32,
    start: Option<u64>,
    end: Option<u64>,
    lease_until: Option<u64>,
}

pub(crate) fn runs(s: &mut Summary, ex: &mut Examples, marks: &[Mark], killed: &HashMap<u32, u64>) {
    let mut by_token: HashMap<(&str, &str, &str), Run> = HashMap::new();
    for m in marks {
        let run = by_token.entry((m.wf.as_str(), m.job.as_str(), m.token.as_str())).or_default();
        match m.kind.as_str() {
            "start" => {
                (run.attempt, run.pid, run.start) = (m.attempt, m.pid, Some(m.t_us));
            }
            "end" => run.end = Some(m.t_us),
            _ => {
                s.lease_marks += 1;
                run.lease_until = run.lease_until.max(Some(m.t_us));
            }
        }
    }
    // Claims whose runner never started (killed first, or failed before running) are no runs.
    by_token.retain(|_, r| r.start.is_some());
    s.runs = by_token.len();
    let mut by_job: HashMap<(&str, &str), Vec<Run>> = HashMap::new();
    for ((wf, job, _), run) in by_token {
        by_job.entry((wf, job)).or_default().push(run);
    }
    for ((wf, job), mut list) in by_job {
        s.reruns += list.len() - 1;
        list.sort_by_key(|r| r.start);
        let until = |r: &Run| {
            let end = r.end.or_else(|| killed.get(&r.pid).copied()).unwrap_or(u64::MAX);
            end.min(r.lease_until.unwrap_or(u64::MAX))
        };
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let from = b.start.unwrap_or(0);
                if from < until(a).min(until(b)) {
                    s.overlapping_leases += 1;
                    ex.add(format!(
                        "{wf}/{job}: attempt {} (pid {}, {:?}..{:?}, lease until {:?}) overlaps attempt {} \
                         (pid {}, from {from}, lease until {:?})",
                        a.attempt, a.pid, a.start, a.end, a.lease_until, b.attempt, b.pid, b.lease_until
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(kind: &str, token: &str, attempt: u32, pid: u32, t_us: u64) -> Mark {
        Mark {
            kind: kind.into(),
            wf: "w".into(),
            job: "j".into(),
            attempt,
            token: token.into(),
            pid,
            t_us,
            outcome: None,
        }
    }

    fn overlaps(marks: &[Mark], killed: &[(u32, u64)]) -> usize {
        let mut s = Summary::default();
        runs(&mut s, &mut Examples(0), marks, &killed.iter().copied().collect());
        s.overlapping_leases
    }

    #[test]
    fn runs_overlap_only_when_their_intervals_intersect() {
        let one_after_other = [mark("start", "a", 1, 1, 10), mark("end", "a", 1, 1, 20), mark("start", "b", 2, 2, 21)];
        assert_eq!(overlaps(&one_after_other, &[]), 0);
        let concurrent = [mark("start", "a", 1, 1, 10), mark("start", "b", 2, 2, 15), mark("end", "a", 1, 1, 20)];
        assert_eq!(overlaps(&concurrent, &[]), 1);
        // A run cut by a kill ends when its process was seen dead.
        let killed = [mark("start", "a", 1, 1, 10), mark("start", "b", 2, 2, 30)];
        assert_eq!(overlaps(&killed, &[(1, 25)]), 0);
        assert_eq!(overlaps(&killed, &[(1, 35)]), 1);
        // Neither ended nor killed: it never ends.
        assert_eq!(overlaps(&killed, &[]), 1);
        // ...unless its lease lapsed before the next run started.
        let mut lapsed = killed.to_vec();
        lapsed.push(mark("lease", "a", 0, 1, 28));
        assert_eq!(overlaps(&lapsed, &[]), 0);
        lapsed.push(mark("lease", "a", 0, 1, 31));
        assert_eq!(overlaps(&lapsed, &[]), 1, "renewed past the next start");
    }
}
