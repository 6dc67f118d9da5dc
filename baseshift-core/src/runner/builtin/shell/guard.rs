//! Process-level helpers of the `shell` runner that need no `unsafe`: killing a job's
//! process group through `/bin/kill`, wrapping a program in `prlimit`, and sampling the
//! child's resource usage from `/proc`.

use super::ShellRunnerConfig;
use crate::runner::JobError;
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;

/// `kill` binaries tried in order (procps-ng and util-linux both take `-KILL -- -<pgid>`).
const KILL_PATHS: &[&str] = &["/bin/kill", "/usr/bin/kill"];
/// Linux reports CPU time in `/proc/<pid>/stat` in units of `USER_HZ`, 100 on every
/// architecture Linux user space sees (`sysconf(_SC_CLK_TCK)` would need `unsafe`).
const USER_HZ: u64 = 100;
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Kills a job's process group with `SIGKILL` when told to, or when dropped armed (the job's
/// future was dropped).
///
/// Once the group leader is reaped its pid may be reused, but Linux never hands out a pid
/// that is still some live group's id. So after `reaped` is set the group is only signalled
/// when `/proc/<pgid>` is gone: survivors still hold the id, and no new process has it.
pub(super) struct GroupKiller {
    pgid: Option<u32>,
    reaped: Arc<AtomicBool>,
}

impl GroupKiller {
    pub(super) fn new(pgid: Option<u32>, reaped: Arc<AtomicBool>) -> Self {
        GroupKiller { pgid, reaped }
    }

    fn target(&mut self) -> Option<u32> {
        let pgid = self.pgid.take()?;
        if self.reaped.load(Ordering::Acquire) && Path::new(&format!("/proc/{pgid}")).exists() {
            return None;
        }
        Some(pgid)
    }

    /// Kills the group and waits for `kill` to finish.
    pub(super) async fn kill_now(&mut self) {
        let Some(pgid) = self.target() else { return };
        let Some(kill) = kill_binary() else {
            tracing::warn!(pgid, "no kill binary found: a shell job's process group may survive");
            return;
        };
        match Command::new(kill).args(kill_args(pgid)).kill_on_drop(true).output().await {
            Ok(out) if !out.status.success() => {
                tracing::debug!(pgid, stderr = %String::from_utf8_lossy(&out.stderr), "kill of a process group failed");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(pgid, error = %e, "could not run kill for a shell job's process group"),
        }
    }

    /// The job ended normally: leave the group alone.
    pub(super) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let Some(pgid) = self.target() else { return };
        let Some(kill) = kill_binary() else { return };
        // Within a runtime, tokio reaps the dropped `kill` child in the background; outside
        // one, a blocking `kill` takes a few milliseconds.
        let result = if tokio::runtime::Handle::try_current().is_ok() {
            Command::new(kill).args(kill_args(pgid)).spawn().map(drop)
        } else {
            std::process::Command::new(kill).args(kill_args(pgid)).status().map(drop)
        };
        if let Err(e) = result {
            tracing::warn!(pgid, error = %e, "could not kill a dropped shell job's process group");
        }
    }
}

fn kill_binary() -> Option<&'static str> {
    KILL_PATHS.iter().copied().find(|p| Path::new(p).is_file())
}

fn kill_args(pgid: u32) -> [String; 3] {
    ["-KILL".to_owned(), "--".to_owned(), format!("-{pgid}")]
}

/// The command to spawn: the program itself, or `prlimit` running it when the host set a
/// CPU or address-space limit.
pub(super) fn command(config: &ShellRunnerConfig, program: &str, args: &[String]) -> Result<Command, JobError> {
    let Some(setting) = config.limit_setting() else {
        let mut cmd = Command::new(program);
        cmd.args(args);
        return Ok(cmd);
    };
    if !config.prlimit_path.is_file() {
        return Err(JobError::permanent(format!("shell.{setting}: {}", config.prlimit_missing())));
    }
    let mut cmd = Command::new(&config.prlimit_path);
    if let Some(cpu) = config.cpu_time_limit {
        // Soft limit: SIGXCPU, which names the cause; the hard limit a second later: SIGKILL.
        let soft = cpu_seconds(cpu);
        cmd.arg(format!("--cpu={soft}:{}", soft.saturating_add(1)));
    }
    if let Some(bytes) = config.max_address_space {
        cmd.arg(format!("--as={bytes}:{bytes}"));
    }
    cmd.arg("--").arg(program).args(args);
    Ok(cmd)
}

/// Whole seconds, rounded up, at least 1.
pub(super) fn cpu_seconds(limit: Duration) -> u64 {
    let secs = limit.as_secs() + u64::from(limit.subsec_nanos() > 0);
    secs.max(1)
}

/// The child's CPU time and peak RSS, as last sampled.
#[derive(Debug, Default)]
pub(super) struct Usage {
    cpu_ms: Option<u64>,
    max_rss_kb: Option<u64>,
}

impl Usage {
    /// `{"duration_ms", "cpu_ms"?, "max_rss_kb"?}`.
    pub(super) fn to_json(&self, elapsed: Duration) -> Value {
        let mut out = Map::new();
        out.insert("duration_ms".to_owned(), json!(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)));
        if let Some(cpu) = self.cpu_ms {
            out.insert("cpu_ms".to_owned(), json!(cpu));
        }
        if let Some(rss) = self.max_rss_kb {
            out.insert("max_rss_kb".to_owned(), json!(rss));
        }
        Value::Object(out)
    }

    fn record(&mut self, pid: u32) {
        if let Some(ticks) = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| cpu_ticks(&s)) {
            let ms = ticks.saturating_mul(1000) / USER_HZ;
            self.cpu_ms = Some(self.cpu_ms.map_or(ms, |old| old.max(ms)));
        }
        if let Some(kb) = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| vm_hwm_kb(&s)) {
            self.max_rss_kb = Some(self.max_rss_kb.map_or(kb, |old| old.max(kb)));
        }
    }
}

/// Samples `pid` until dropped, skipping every sample once `reaped` is set (the pid may then
/// belong to another process). Runs in the job's task, so `reaped` is set before any later poll.
pub(super) async fn sample(pid: Option<u32>, usage: &Mutex<Usage>, reaped: &AtomicBool) {
    let Some(pid) = pid else { return std::future::pending().await };
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    loop {
        ticker.tick().await;
        if reaped.load(Ordering::Acquire) {
            return std::future::pending().await;
        }
        if let Ok(mut usage) = usage.lock() {
            usage.record(pid);
        }
    }
}

/// `utime + stime` from `/proc/<pid>/stat`; the command name may hold spaces and parentheses,
/// so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn vm_hwm_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 100 1000 10";
        assert_eq!(cpu_ticks(stat), Some(12));
        assert_eq!(cpu_ticks("garbage"), None);
        assert_eq!(vm_hwm_kb("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1 kB\n"), Some(2048));
        assert_eq!(vm_hwm_kb("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_seconds_round_up() {
        assert_eq!(cpu_seconds(Duration::from_millis(1)), 1);
        assert_eq!(cpu_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(cpu_seconds(Duration::from_secs(4)), 4);
    }

    #[test]
    fn usage_json_omits_unknowns() {
        let usage = Usage::default();
        assert_eq!(usage.to_json(Duration::from_millis(12)), json!({"duration_ms": 12}));
        let usage = Usage { cpu_ms: Some(3), max_rss_kb: Some(900) };
        assert_eq!(usage.to_json(Duration::ZERO), json!({"duration_ms": 0, "cpu_ms": 3, "max_rss_kb": 900}));
    }
}
