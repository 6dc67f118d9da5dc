//! Running one `shell` job: spawning, feeding stdin, reading capped output, and killing
//! the child on timeout or cancellation.

use super::guard::{self, GroupKiller, Usage};
use super::{ShellJob, ShellRunnerConfig};
use crate::runner::{JobContext, JobError, JobOutput};
use crate::template::DurationSpec;
use serde_json::{Value, json};
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::time::{Instant, sleep_until};

/// How much of stderr a failure's details keep.
const STDERR_TAIL_BYTES: usize = 4096;
const READ_CHUNK_BYTES: usize = 8192;
/// `SIGXCPU`: the soft CPU-time limit set through `prlimit` was reached.
const SIGXCPU: i32 = 24;

/// One stream's output, capped.
#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

enum Outcome {
    Exited(io::Result<Captured>, io::Result<Captured>, io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

pub(super) async fn run(config: &ShellRunnerConfig, job: ShellJob, ctx: &JobContext) -> Result<JobOutput, JobError> {
    let Some((program, args)) = job.argv.split_first() else {
        return Err(JobError::permanent("config.argv: must not be empty"));
    };
    let started = Instant::now();
    let timeout = [job.timeout, config.default_timeout, config.max_execution_time].into_iter().flatten().min();
    let deadline = [timeout.and_then(|t| started.checked_add(t)), ctx.deadline].into_iter().flatten().min();

    let mut cmd = guard::command(config, program, args)?;
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.env_clear()
        .kill_on_drop(true)
        .stdin(if job.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for name in &config.inherit_env {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.envs(&job.env);
    if let Some(dir) = &job.working_dir {
        cmd.current_dir(dir);
    }

    if ctx.cancellation.is_cancelled() {
        return Err(JobError::retryable(format!("`{program}` cancelled before it started")));
    }
    let mut child = cmd.spawn().map_err(|e| spawn_error(program, &e))?;
    // Declared after `child`, so dropped first: the group is killed while its leader is unreaped.
    let reaped = Arc::new(AtomicBool::new(false));
    let mut group = GroupKiller::new(if cfg!(unix) { child.id() } else { None }, Arc::clone(&reaped));
    let pid = child.id();
    let usage = Mutex::new(Usage::default());
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let cap = config.max_output_bytes;

    let io = async {
        let feed = async {
            if let (Some(mut pipe), Some(data)) = (stdin, job.stdin.as_deref()) {
                // The child may exit without reading its input: a broken pipe is not our failure.
                let _ = pipe.write_all(data.as_bytes()).await;
                let _ = pipe.shutdown().await;
            }
        };
        let wait = async {
            let status = child.wait().await;
            reaped.store(true, Ordering::Release);
            status
        };
        let (out, err, (), status) = tokio::join!(read_capped(stdout, cap), read_capped(stderr, cap), feed, wait);
        Outcome::Exited(out, err, status)
    };
    let timer = async {
        match deadline {
            Some(at) => sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        outcome = io => outcome,
        () = guard::sample(pid, &usage, &reaped) => unreachable_outcome(),
        () = timer => Outcome::TimedOut,
        () = ctx.cancellation.cancelled() => Outcome::Cancelled,
    };

    let resource_usage = usage.lock().map(|u| u.to_json(started.elapsed())).unwrap_or(Value::Null);
    match outcome {
        Outcome::Exited(out, err, status) => {
            group.disarm();
            let read_error = |e: io::Error| JobError::retryable(format!("reading the output of `{program}`: {e}"));
            let status = status.map_err(|e| JobError::retryable(format!("waiting for `{program}`: {e}")))?;
            let limits = Limits { config, resource_usage };
            finish(program, &job, &limits, out.map_err(read_error)?, err.map_err(read_error)?, status)
        }
        Outcome::TimedOut => {
            group.kill_now().await;
            kill(&mut child).await;
            let elapsed = started.elapsed();
            Err(JobError::retryable(format!(
                "`{program}` timed out after {} and was killed",
                DurationSpec(elapsed_ms(elapsed))
            ))
            .with_details(json!({
                "timed_out": true,
                "elapsed_ms": elapsed.as_millis() as u64,
                "resource_usage": resource_usage,
            })))
        }
        Outcome::Cancelled => {
            group.kill_now().await;
            kill(&mut child).await;
            Err(JobError::retryable(format!("`{program}` cancelled; the process was killed")))
        }
    }
}

/// The sampler never finishes; this keeps `select!` arms typed.
fn unreachable_outcome() -> Outcome {
    Outcome::Cancelled
}

/// What `finish` needs beyond the job: the policy (to explain signals) and the usage record.
struct Limits<'a> {
    config: &'a ShellRunnerConfig,
    resource_usage: Value,
}

fn elapsed_ms(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis() as u64)
}

/// Kills and reaps the child (`kill` waits for it), so no zombie is left behind.
async fn kill(child: &mut Child) {
    if let Err(e) = child.kill().await {
        tracing::warn!(error = %e, "could not kill a shell job's process");
    }
}

fn spawn_error(program: &str, e: &io::Error) -> JobError {
    let message = format!("cannot start `{program}`: {e}");
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => {
            JobError::permanent(message)
        }
        _ => JobError::retryable(message),
    }
}

/// Reads a whole stream, keeping the first `cap` bytes. Reading goes on past the cap so
/// the child never blocks on a full pipe.
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>, cap: usize) -> io::Result<Captured> {
    let mut captured = Captured::default();
    let Some(mut pipe) = pipe else {
        return Ok(captured);
    };
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) => return Ok(captured),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = cap.saturating_sub(captured.bytes.len());
        if n > room {
            captured.truncated = true;
        }
        captured.bytes.extend_from_slice(&chunk[..n.min(room)]);
    }
}

fn finish(
    program: &str,
    job: &ShellJob,
    limits: &Limits<'_>,
    out: Captured,
    err: Captured,
    status: ExitStatus,
) -> Result<JobOutput, JobError> {
    let stdout = String::from_utf8_lossy(&out.bytes).into_owned();
    let stderr = String::from_utf8_lossy(&err.bytes).into_owned();
    match status.code() {
        Some(0) => {
            let mut output = json!({
                "exit_code": 0,
                "stdout": stdout,
                "stderr": stderr,
                "truncated": out.truncated || err.truncated,
                "resource_usage": limits.resource_usage,
            });
            if job.parse_json_stdout {
                if out.truncated {
                    return Err(JobError::permanent(format!(
                        "stdout of `{program}` was truncated at the output cap and cannot be parsed as JSON"
                    )));
                }
                let parsed: Value = serde_json::from_str(&stdout).map_err(|e| {
                    JobError::permanent(format!("stdout of `{program}` is not JSON: {e}"))
                        .with_details(json!({ "stdout": tail(&stdout, STDERR_TAIL_BYTES) }))
                })?;
                output["json"] = parsed;
            }
            Ok(JobOutput::json(output))
        }
        Some(code) => {
            let stderr_tail = tail(&stderr, STDERR_TAIL_BYTES);
            let last_line = stderr_tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            let mut message = format!("`{program}` exited with code {code}");
            if !last_line.is_empty() {
                message.push_str(": ");
                message.push_str(tail(last_line.trim(), 200));
            }
            let details = json!({ "exit_code": code, "stderr": stderr_tail, "resource_usage": limits.resource_usage });
            let error = if job.retry_on_exit_codes.contains(&code) {
                JobError::retryable(message)
            } else {
                JobError::permanent(message)
            };
            Err(error.with_details(details))
        }
        None => {
            let sig = signal(status);
            let details = json!({
                "signal": sig,
                "stderr": tail(&stderr, STDERR_TAIL_BYTES),
                "resource_usage": limits.resource_usage,
            });
            if sig == Some(SIGXCPU)
                && let Some(limit) = limits.config.cpu_time_limit
            {
                return Err(JobError::permanent(format!(
                    "`{program}` exceeded shell.cpu_time_limit ({}s of CPU time) and was stopped",
                    guard::cpu_seconds(limit)
                ))
                .with_details(details));
            }
            // Killed by a signal this runner did not send (OOM killer, an operator): may pass next time.
            Err(JobError::retryable(format!("`{program}` was killed by a signal")).with_details(details))
        }
    }
}

#[cfg(unix)]
fn signal(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn signal(_status: ExitStatus) -> Option<i32> {
    None
}

/// The last `max` bytes of `s`, moved forward to a character boundary.
pub(super) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
