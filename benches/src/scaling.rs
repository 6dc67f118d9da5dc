//! The scaling curve: `memory drain` at 1k..1M and store-backed `process` at 1k..100k
//! single-job workflows, with time per job and peak RSS per pending job.

use crate::cli::Options;
use crate::durable::{self, Durable};
use crate::memory;
use crate::report::{before, note, reset_peak_rss, result, status_kib};
use baseshift_core::Result;
use std::future::Future;

/// The sizes to run: the `--n` override alone, the smoke sizes, or `full`.
fn sizes(opts: &Options, full: &[usize], smoke: &[usize]) -> Vec<usize> {
    match opts.n {
        Some(n) => vec![n],
        None if opts.smoke => smoke.to_vec(),
        None => full.to_vec(),
    }
}

/// Runs `body` for `n` items, printing its `RESULT` line and a note with time per job and
/// peak RSS per pending job (`(VmHWM - VmRSS before) / n`).
async fn measure<F, Fut>(backend: &str, scenario: &str, n: usize, body: F) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<f64>>,
{
    before("baseshift", backend, scenario);
    let reset = reset_peak_rss();
    let rss_before = status_kib("VmRSS").unwrap_or(0);
    let secs = body().await?;
    let peak = status_kib("VmHWM").unwrap_or(0);
    result("baseshift", backend, scenario, n, secs);
    let per_job = peak.saturating_sub(rss_before) as f64 * 1024.0 / n as f64;
    note(format!(
        "scaling {backend} {scenario} n={n}: {:.2} us/job, peak RSS per pending job {per_job:.0} B \
         (RSS before {rss_before} KiB, peak {peak} KiB{})",
        secs * 1e6 / n as f64,
        if reset { "" } else { "; peak not reset: may be an earlier scenario's" }
    ));
    Ok(())
}

/// `memory drain` at each size.
pub async fn run_memory(opts: &Options) -> Result<()> {
    for n in sizes(opts, &[1_000, 10_000, 100_000, 1_000_000], &[100, 300]) {
        measure("memory", "drain", n, || memory::drain(n)).await?;
    }
    // The drain keeps every finished workflow (and the bus its recent events), so its
    // peak is history as much as backlog; this is the backlog alone.
    for n in sizes(opts, &[100_000, 1_000_000], &[100]) {
        measure("memory", "pending", n, || memory::pending(n)).await?;
    }
    Ok(())
}

/// `process` on `backend` at each size.
pub async fn run_durable(opts: &Options, backend: &dyn Durable) -> Result<()> {
    for n in sizes(opts, &[1_000, 10_000, 100_000], &[20]) {
        measure(backend.name(), "process", n, || async { Ok(durable::process(backend, n).await?.0) }).await?;
    }
    Ok(())
}
