//! The scaling curves' points and their medians. The in-memory curve runs each point in a
//! child process (see `scaling::run_memory`), whose `RESULT` line and `scaling` note this
//! module reads back, so the parent can print one median `RESULT` line per point and the
//! growth of time and CPU per job from 10k to the largest size.

use crate::report::{median, note, result, results};

/// Runs of a point per round of the curve: points shorter than 100 000 jobs run several
/// times (a 10k drain lasts about 0.1 s, and on a shared VM one slow spell can make a
/// single run of it 1.6x slower), at most 10.
pub fn runs_per_round(n: usize) -> usize {
    (100_000 / n.max(1)).clamp(1, 10)
}

/// Whether `line` is one of the header lines every run of the program prints (machine,
/// allocator): a child's repeat the parent's.
pub fn is_header(line: &str) -> bool {
    line.starts_with("# machine:") || line.starts_with("# allocator:")
}

/// One run of a point as its child reported it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    /// Wall-clock seconds of the timed part.
    pub secs: f64,
    /// CPU microseconds per job, where the child could read them.
    pub cpu_us: Option<f64>,
}

/// The run a child's output reports for `scenario` at `n`: the seconds of its `RESULT`
/// line and the CPU per job of its `scaling` note; `None` without a `RESULT` line.
pub fn parse_run(output: &str, scenario: &str, n: usize) -> Option<Run> {
    let key = format!("baseshift memory {scenario} n={n}");
    let (_, _, secs) = results(output).into_iter().find(|(k, _, _)| *k == key)?;
    let tag = format!("# scaling memory {scenario} n={n}:");
    let cpu_us = output
        .lines()
        .filter(|l| l.starts_with(&tag))
        .find_map(|l| l.split_once("; cpu ")?.1.split_whitespace().next()?.parse().ok());
    Some(Run { secs, cpu_us })
}

/// The runs of one point of a scaling curve.
#[derive(Debug)]
pub struct Point {
    /// The backend (`memory`, `redis`, `postgres`).
    pub backend: String,
    /// The scenario (`drain`, `pending`, `process`).
    pub scenario: &'static str,
    /// Jobs per run.
    pub n: usize,
    /// Every run so far.
    pub runs: Vec<Run>,
}

impl Point {
    /// A point with no runs yet.
    pub fn new(backend: &str, scenario: &'static str, n: usize) -> Self {
        Point { backend: backend.to_owned(), scenario, n, runs: Vec::new() }
    }

    /// Median wall-clock seconds of a run.
    fn median_secs(&self) -> f64 {
        let mut secs: Vec<f64> = self.runs.iter().map(|r| r.secs).collect();
        median(&mut secs)
    }

    /// Median wall time per job in microseconds.
    pub fn wall_us(&self) -> f64 {
        self.median_secs() * 1e6 / self.n as f64
    }

    /// Median CPU per job in microseconds, over the runs that reported it.
    fn cpu_us(&self) -> Option<f64> {
        let mut cpu: Vec<f64> = self.runs.iter().filter_map(|r| r.cpu_us).collect();
        (!cpu.is_empty()).then(|| median(&mut cpu))
    }

    /// Prints the median run's `RESULT` line and a note with every run and the median CPU
    /// per job.
    pub fn report(&self) {
        result("baseshift", &self.backend, self.scenario, self.n, self.median_secs());
        let all: Vec<String> = self.runs.iter().map(|r| format!("{:.2}", r.secs * 1e6 / self.n as f64)).collect();
        let cpu = self.cpu_us().map_or(String::new(), |c| format!(", cpu median {c:.2} us/job"));
        note(format!(
            "scaling {} {} n={}: median {:.2} us/job of {}{cpu} (us/job: {})",
            self.backend,
            self.scenario,
            self.n,
            self.wall_us(),
            runs(self.runs.len()),
            all.join(", ")
        ));
    }
}

/// Reports each point of the memory curve, then the growth from 10k to the largest size
/// of the drain's median time and CPU per job.
pub fn summarize(points: &[Point]) {
    points.iter().filter(|p| !p.runs.is_empty()).for_each(Point::report);
    let drains = || points.iter().filter(|p| p.scenario == "drain" && !p.runs.is_empty());
    if let (Some(base), Some(top)) = (drains().find(|p| p.n == 10_000), drains().max_by_key(|p| p.n))
        && top.n > base.n
    {
        let (b, t) = (base.wall_us(), top.wall_us());
        let cpu = base
            .cpu_us()
            .zip(top.cpu_us())
            .map_or(String::new(), |(b, t)| format!("; CPU per job {:.2}x ({b:.2} -> {t:.2} us)", t / b));
        note(format!(
            "scaling memory drain: time per job at n={} is {:.2}x that at n=10000 (medians of {} and {}: \
             {b:.2} -> {t:.2} us){cpu}",
            top.n,
            t / b,
            runs(top.runs.len()),
            runs(base.runs.len()),
        ));
    }
}

/// `1 run`, `3 runs`.
fn runs(n: usize) -> String {
    format!("{n} run{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "# load average 0.50 before baseshift memory drain\n\
        RESULT baseshift memory drain n=10000 secs=0.0950 rate=105263.2\n\
        # scaling memory drain n=10000: 9.50 us/job, peak RSS per pending job 900 B (RSS before 9000 KiB, \
        peak 17000 KiB); cpu 12.26 us/job; 0.210 page faults per job\n";

    #[test]
    fn a_childs_run_is_read_back() {
        let run = parse_run(CHILD, "drain", 10_000).expect("the RESULT line is there");
        assert!((run.secs - 0.095).abs() < 1e-12);
        assert_eq!(run.cpu_us, Some(12.26));
        assert_eq!(parse_run(CHILD, "drain", 1_000), None, "another size's line is not this point's");
        assert_eq!(parse_run(CHILD, "pending", 10_000), None);
        let no_cpu = "RESULT baseshift memory drain n=10000 secs=0.1 rate=100000.0\n";
        assert_eq!(parse_run(no_cpu, "drain", 10_000), Some(Run { secs: 0.1, cpu_us: None }));
    }

    #[test]
    fn header_lines_are_told_from_figures() {
        assert!(is_header("# machine: 2 cores; load average 0.81"));
        assert!(is_header("# allocator: mimalloc v2, transparent huge pages off"));
        assert!(!is_header("# scaling memory drain n=10000: 9.50 us/job"));
        assert_eq!(runs(1), "1 run");
        assert_eq!(runs(30), "30 runs");
    }

    #[test]
    fn short_points_run_more_often() {
        assert_eq!(runs_per_round(1_000), 10);
        assert_eq!(runs_per_round(10_000), 10);
        assert_eq!(runs_per_round(50_000), 2);
        assert_eq!(runs_per_round(100_000), 1);
        assert_eq!(runs_per_round(1_000_000), 1);
        assert_eq!(runs_per_round(0), 10);
    }

    #[test]
    fn medians_ignore_one_slow_run() {
        let run = |secs| Run { secs, cpu_us: Some(secs * 1e2) };
        let p = Point { runs: vec![run(0.09), run(0.2), run(0.1)], ..Point::new("memory", "drain", 10_000) };
        assert!((p.wall_us() - 10.0).abs() < 1e-9);
        assert!((p.cpu_us().unwrap() - 10.0).abs() < 1e-9);
    }
}
