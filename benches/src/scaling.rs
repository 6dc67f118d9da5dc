//! The scaling curve: `memory drain` at 1k..1M and store-backed `process` at 1k..100k
//! single-job workflows, with time per job and peak RSS per pending job; `--repeat K`
//! runs either curve K times, interleaved (both report medians).

use crate::cli::Options;
use crate::curve::{self, Point, Run};
use crate::durable::{self, Durable};
use crate::memory;
use crate::report::{before, cpu_secs, minor_faults, note, reset_peak_rss, result, run_child, status_kib};
use baseshift_core::{Error, Result};
use std::future::Future;

/// The sizes to run: the `--n` override alone, the smoke sizes, or `full`.
fn sizes(opts: &Options, full: &[usize], smoke: &[usize]) -> Vec<usize> {
    match opts.n {
        Some(n) => vec![n],
        None if opts.smoke => smoke.to_vec(),
        None => full.to_vec(),
    }
}

/// Runs `body` for `n` items, printing its `RESULT` line (unless `quiet`: a run of a
/// repeated curve, whose medians get the `RESULT` lines) and a note with time per job and
/// peak RSS per pending job (`(VmHWM - VmRSS before) / n`). Returns the run: its seconds
/// and CPU per job.
async fn measure<F, Fut>(backend: &str, scenario: &str, n: usize, quiet: bool, body: F) -> Result<Run>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<f64>>,
{
    before("baseshift", backend, scenario);
    let reset = reset_peak_rss();
    let rss_before = status_kib("VmRSS").unwrap_or(0);
    let (faults_before, cpu_before) = (minor_faults(), cpu_secs());
    let secs = body().await?;
    let peak = status_kib("VmHWM").unwrap_or(0);
    let faults = minor_faults()
        .zip(faults_before)
        .map_or(String::new(), |(a, b)| format!("; {:.3} page faults per job", a.saturating_sub(b) as f64 / n as f64));
    let cpu_us = cpu_secs().zip(cpu_before).map(|(a, b)| (a - b) * 1e6 / n as f64);
    let cpu = cpu_us.map_or(String::new(), |c| format!("; cpu {c:.2} us/job"));
    if !quiet {
        result("baseshift", backend, scenario, n, secs);
    }
    let per_job = peak.saturating_sub(rss_before) as f64 * 1024.0 / n as f64;
    note(format!(
        "scaling {backend} {scenario} n={n}: {:.2} us/job, peak RSS per pending job {per_job:.0} B \
         (RSS before {rss_before} KiB, peak {peak} KiB{}){cpu}{faults}",
        secs * 1e6 / n as f64,
        if reset { "" } else { "; peak not reset: may be an earlier scenario's" }
    ));
    Ok(Run { secs, cpu_us })
}

/// `memory drain` at 1k..1M and `memory pending` at 100k and 1M (the whole curve
/// `--repeat` times, interleaved, so a slow spell of the machine does not fall on one
/// size only). A full run measures each point in a fresh process (this program with
/// `--scenario drain|pending --n N`): memory freed by an earlier point stays in the
/// allocator and would hide the next point's growth from RSS. Points below 100k run
/// [`curve::runs_per_round`] times per round, spread over it; the `RESULT` lines give each
/// point's median run, and a note the growth from 10k to 1M. The drain keeps every finished workflow
/// (and the bus its recent events), so its peak is history as much as backlog; `pending`
/// is the backlog alone.
pub async fn run_memory(opts: &Options) -> Result<()> {
    if opts.n.is_none() && !opts.smoke {
        let mut points: Vec<Point> = [1_000, 10_000, 100_000, 1_000_000]
            .map(|n| Point::new("memory", "drain", n))
            .into_iter()
            .chain([100_000, 1_000_000].map(|n| Point::new("memory", "pending", n)))
            .collect();
        // Each round in passes: every point in the first, the short ones again in the
        // next passes, so their runs are spread over the round.
        let passes = points.iter().map(|p| curve::runs_per_round(p.n)).max().unwrap_or(1);
        for _ in 0..opts.repeat.unwrap_or(1) {
            for pass in 0..passes {
                for point in points.iter_mut().filter(|p| pass < curve::runs_per_round(p.n)) {
                    point.runs.push(in_fresh_process(point.scenario, point.n).await?);
                }
            }
        }
        curve::summarize(&points);
        return Ok(());
    }
    for n in sizes(opts, &[], &[100, 300]) {
        if opts.scenario("drain") || opts.scenario("scaling") {
            measure("memory", "drain", n, false, || memory::drain(n)).await?;
        }
        if opts.scenario("pending") || opts.scenario("scaling") {
            measure("memory", "pending", n, false, || memory::pending(n)).await?;
        }
    }
    Ok(())
}

/// Runs `--backend memory --scenario <scenario> --n <n>` as a child process and prints
/// its output but for its `RESULT` line (the curve's summary prints the median run's)
/// and the header lines this process printed already; returns the run it reports.
async fn in_fresh_process(scenario: &'static str, n: usize) -> Result<Run> {
    let exe = std::env::current_exe().map_err(|e| Error::internal(format!("scaling: own executable: {e}")))?;
    let args = ["--backend", "memory", "--scenario", scenario, "--n", &n.to_string()].map(str::to_owned).to_vec();
    let text = run_child(exe, args, format!("scaling {scenario} n={n}")).await?;
    let repeated = |l: &&str| l.starts_with("RESULT ") || curve::is_header(l);
    text.lines().filter(|l| !repeated(l)).for_each(|l| println!("{l}"));
    curve::parse_run(&text, scenario, n)
        .ok_or_else(|| Error::internal(format!("scaling {scenario} n={n}: the child printed no RESULT line")))
}

/// `process` on `backend` at each size, the whole curve `--repeat` times (each round in
/// the other direction, so a slow spell of the machine does not fall on one size only),
/// with the medians' `RESULT` lines and the growth of the time per job from each size to
/// the next. Every point starts on a fresh, empty store (see [`Durable::open`]).
pub async fn run_durable(opts: &Options, backend: &dyn Durable) -> Result<()> {
    let sizes = sizes(opts, &[1_000, 10_000, 100_000], &[20]);
    let repeat = opts.repeat.unwrap_or(1);
    let name = backend.name();
    let mut points: Vec<Point> = sizes.iter().map(|&n| Point::new(name, "process", n)).collect();
    for round in 0..repeat {
        let mut order: Vec<usize> = (0..points.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let n = points[i].n;
            let run =
                measure(name, "process", n, repeat > 1, || async { Ok(durable::process(backend, n).await?.0) }).await?;
            points[i].runs.push(run);
        }
    }
    if repeat > 1 {
        points.iter().for_each(Point::report);
    }
    for pair in points.windows(2) {
        note(format!(
            "scaling {name} process: time per job at n={} is {:.2}x that at n={}{}",
            pair[1].n,
            pair[1].wall_us() / pair[0].wall_us(),
            pair[0].n,
            if repeat > 1 { " (medians)" } else { "" }
        ));
    }
    Ok(())
}
