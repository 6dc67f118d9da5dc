//! Output in the format of BENCH.md (`RESULT` lines, `#` notes) and the process facts the
//! notes quote: load average and resident memory from `/proc`.

use std::time::Instant;

/// The 1-minute load average, or `?` where `/proc/loadavg` is unreadable.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Prints a `#` note line.
pub fn note(text: impl AsRef<str>) {
    println!("# {}", text.as_ref());
}

/// Prints the load-average note that precedes every scenario.
pub fn before(system: &str, backend: &str, scenario: &str) {
    note(format!("load average {} before {system} {backend} {scenario}", load_average()));
}

/// Prints one `RESULT` line; `rate = n / secs`.
pub fn result(system: &str, backend: &str, scenario: &str, n: usize, secs: f64) {
    let rate = if secs > 0.0 { n as f64 / secs } else { f64::INFINITY };
    println!("RESULT {system} {backend} {scenario} n={n} secs={secs:.4} rate={rate:.1}");
}

/// The `RESULT` lines of a run's output, as (`<system> <backend> <scenario> n=<N>`, N,
/// secs): what [`result`] prints, read back.
pub fn results(output: &str) -> Vec<(String, usize, f64)> {
    output
        .lines()
        .filter_map(|line| {
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() < 6 || t[0] != "RESULT" {
                return None;
            }
            let n = t[4].strip_prefix("n=")?.parse().ok()?;
            let secs = t[5].strip_prefix("secs=")?.parse().ok()?;
            Some((t[1..5].join(" "), n, secs))
        })
        .collect()
}

/// Runs `exe` with `args` to its end, its errors going to this process's: its standard
/// output, or an error naming `what` if it could not start or exited unsuccessfully.
pub async fn run_child(exe: std::path::PathBuf, args: Vec<String>, what: String) -> baseshift_core::Result<String> {
    use baseshift_core::Error;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe).args(args).stderr(std::process::Stdio::inherit()).output()
    })
    .await
    .map_err(|e| Error::internal(format!("{what}: {e}")))?
    .map_err(|e| Error::internal(format!("{what}: cannot run the child: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        // The output up to the failure is still shown: the child's notes say where it stopped.
        print!("{text}");
        return Err(Error::internal(format!("{what}: the child {}", out.status)));
    }
    Ok(text)
}

/// The median of `samples` (the upper one of an even count), sorting them.
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

/// Seconds since `t0`.
pub fn secs(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// A field of `/proc/self/status` in kibibytes (`VmRSS`, `VmHWM`, ...).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// CPU time this process's threads have run, in seconds: the sum over
/// `/proc/self/task/*` of [`task_cpu_secs`]; `None` where unreadable. Threads that exited
/// are not counted, so take the difference across a window in which the runtime's
/// threads live (std has no process CPU clock, and the workspace forbids `unsafe`).
pub fn cpu_secs() -> Option<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        total += task_cpu_secs(&task.ok()?.path())?;
    }
    Some(total)
}

/// The time the thread whose `/proc` directory is `dir` has run on a CPU, in seconds (the
/// first field of its `schedstat`, in nanoseconds).
fn task_cpu_secs(dir: &std::path::Path) -> Option<f64> {
    let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
    Some(stat.split_whitespace().next()?.parse::<u64>().ok()? as f64 / 1e9)
}

/// Minor page faults of this process so far (field 10 of `/proc/self/stat`): a page
/// touched for the first time costs one, and the kernel zeroes it then.
pub fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow its `)`.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(7)?.parse().ok()
}

/// Resets the peak RSS (`VmHWM`) to the current RSS; false where the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The `p`-th percentile (0..=100) of sorted samples, in milliseconds.
pub fn percentile_ms(sorted_secs: &[f64], p: f64) -> f64 {
    if sorted_secs.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_secs.len() - 1) as f64).round() as usize;
    sorted_secs[rank.min(sorted_secs.len() - 1)] * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(|i| i as f64 / 1000.0).collect();
        assert!((percentile_ms(&samples, 50.0) - 51.0).abs() < 1e-9);
        assert!((percentile_ms(&samples, 99.0) - 99.0).abs() < 1e-9);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    /// Per thread: other tests' threads may exit meanwhile, which lowers the process sum.
    #[test]
    fn cpu_time_grows_while_working() {
        let me = std::path::Path::new("/proc/thread-self");
        let before = task_cpu_secs(me).expect("schedstat is readable on Linux");
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed().as_millis() < 30 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = task_cpu_secs(me).expect("schedstat is readable on Linux") - before;
        assert!(spent > 0.01, "30 ms of spinning counted {spent} s of CPU");
        assert!(cpu_secs().is_some_and(|all| all >= spent), "the process sum is below one thread's time");
    }

    #[test]
    fn touching_fresh_memory_counts_page_faults() {
        let before = minor_faults().expect("/proc/self/stat is readable on Linux");
        let mut pages = vec![0u8; 64 << 20];
        for i in (0..pages.len()).step_by(4096) {
            pages[i] = 1;
        }
        std::hint::black_box(&pages);
        let faults = minor_faults().expect("/proc/self/stat is readable on Linux") - before;
        assert!(faults > 0, "touching 64 MiB of fresh memory counted no page fault");
    }

    #[test]
    fn status_reads_resident_memory() {
        assert!(status_kib("VmRSS").is_some_and(|kib| kib > 0));
        assert!(status_kib("NoSuchField").is_none());
    }
}
