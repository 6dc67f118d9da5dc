//! The `shell` runner: runs one program with an argv, never through a shell.

mod config;
mod exec;
mod guard;

pub use config::ShellRunnerConfig;

use super::fields::{ConfigReader, Field, is_templated};
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner, config_error};
use crate::template::DurationSpec;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

const FIELDS: &[&str] = &["argv", "working_dir", "env", "stdin", "timeout", "retry_on_exit_codes", "parse_json_stdout"];

/// The `shell` runner: runs a program with an argv (never through a shell).
///
/// Job config:
///
/// | field | meaning |
/// |---|---|
/// | `argv` | required: `[program, arg, ...]`; `program` must be allowed by the host |
/// | `working_dir` | directory to run in; must be under an allowed directory |
/// | `env` | `{NAME: value}`; each name must be on the host's allowlist |
/// | `stdin` | text written to the program's standard input |
/// | `timeout` | e.g. `"30s"`; the earliest of this, the host default and the job deadline applies |
/// | `retry_on_exit_codes` | exit codes that make the failure retryable (others are permanent) |
/// | `parse_json_stdout` | parse stdout as JSON into the output's `json` field |
///
/// Output: `{"exit_code", "stdout", "stderr", "truncated", "resource_usage"}` (plus `json`),
/// where `resource_usage` is `{"duration_ms", "cpu_ms"?, "max_rss_kb"?}`: the wall time, and
/// the child's CPU time and peak resident set as last sampled from `/proc/<pid>/stat` and
/// `/proc/<pid>/status` while it ran (every 50 ms, best effort: absent for a child too short
/// to be sampled, or off Linux). A non-zero exit fails with details
/// `{"exit_code", "stderr", "resource_usage"}` (the last 4 KiB of stderr). A child killed by a
/// signal this runner did not send (e.g. the OOM killer) fails retryably; one stopped by
/// `SIGXCPU` under [`ShellRunnerConfig::cpu_time_limit`] fails permanently.
///
/// # Safety rules
///
/// Every violation is a permanent error naming the rule, e.g. ``command `/bin/rm` is not
/// allowed by shell.allowed_commands``: `argv[0]` must match `allowed_commands` and may not
/// contain `.`/`..` segments; `working_dir` must resolve (symlinks included) under
/// `allowed_working_dirs`; `env` names must be on `env_allowlist` and never `LD_*`/`DYLD_*`;
/// no argv element, env value or working dir may hold a NUL byte, and none (nor stdin) may
/// exceed `max_arg_bytes`. The argv is passed to `execve` as is, so shell syntax in an
/// argument (`; rm -rf /`, `$(id)`) is inert text.
///
/// The child runs in its own process group. On timeout or cancellation (and when the job's
/// future is dropped) the whole group is killed with `SIGKILL` (through `/bin/kill`, as the
/// crate has no `unsafe`), so background processes it started die with it; a process that
/// left the group (`setsid`) is not tracked. After a normal exit the group is left alone.
#[derive(Clone, Debug)]
pub struct ShellRunner {
    config: ShellRunnerConfig,
}

/// The policy rule a working directory outside the allowlist breaks.
const WORKING_DIRS: &str = "shell.allowed_working_dirs";

impl ShellRunner {
    /// A runner with these host-side limits. The policy is not checked here: call
    /// [`ShellRunnerConfig::validate`] at start-up (the YAML/JSON loaders do).
    pub fn new(config: ShellRunnerConfig) -> Self {
        ShellRunner { config }
    }

    /// The host-side limits.
    pub fn config(&self) -> &ShellRunnerConfig {
        &self.config
    }

    fn check_command(&self, program: &str) -> Result<(), Error> {
        if program.is_empty() {
            return Err(config_error("argv", "the program (argv[0]) must not be empty"));
        }
        if self.config.is_command_allowed(program) {
            Ok(())
        } else {
            Err(config_error("argv", format!("command `{program}` is not allowed by shell.allowed_commands")))
        }
    }

    fn check_env_names(&self, names: impl IntoIterator<Item = impl AsRef<str>>) -> Result<(), Error> {
        for name in names {
            let name = name.as_ref();
            if let Some(why) = config::env_name_problem(name) {
                return Err(config_error("env", format!("variable `{name}`: {why} (shell.env_allowlist)")));
            }
            if !self.config.is_env_allowed(name) {
                return Err(config_error("env", format!("variable `{name}` is not allowed by shell.env_allowlist")));
            }
        }
        Ok(())
    }

    /// NUL bytes cannot reach `execve` intact, and oversized values are refused before the
    /// kernel's own `E2BIG`, with a message naming the rule.
    fn check_values(&self, argv: &[String], env: &BTreeMap<String, String>, stdin: Option<&str>) -> Result<(), Error> {
        let max = self.config.max_arg_bytes;
        for (i, arg) in argv.iter().enumerate() {
            if arg.contains('\0') {
                return Err(config_error("argv", format!("argument {i} contains a NUL byte")));
            }
            if arg.len() > max {
                return Err(config_error(
                    "argv",
                    format!("argument {i} is {} bytes, over shell.max_arg_bytes ({max})", arg.len()),
                ));
            }
        }
        for (name, value) in env {
            if value.contains('\0') {
                return Err(config_error("env", format!("value of `{name}` contains a NUL byte")));
            }
            if value.len() > max {
                return Err(config_error(
                    "env",
                    format!("value of `{name}` is {} bytes, over shell.max_arg_bytes ({max})", value.len()),
                ));
            }
        }
        if let Some(stdin) = stdin
            && stdin.len() > max
        {
            return Err(config_error("stdin", format!("{} bytes, over shell.max_arg_bytes ({max})", stdin.len())));
        }
        Ok(())
    }

    /// A lexical check, used at load time, when the directory may not exist yet.
    fn check_working_dir_lexically(&self, dir: &str) -> Result<(), Error> {
        let path = Path::new(dir);
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(config_error("working_dir", "must be an absolute path without `..`"));
        }
        if dir.contains('\0') {
            return Err(config_error("working_dir", "must not contain a NUL byte"));
        }
        if self.config.allowed_working_dirs.iter().any(|allowed| path.starts_with(allowed)) {
            Ok(())
        } else {
            Err(config_error(
                "working_dir",
                format!("`{dir}` is not under an allowed directory (shell.allowed_working_dirs)"),
            ))
        }
    }

    /// Resolves symlinks on both sides before comparing, so a link cannot escape the allowlist.
    async fn resolve_working_dir(&self, dir: &str) -> Result<PathBuf, JobError> {
        self.check_working_dir_lexically(dir).map_err(|e| JobError::policy_violation(WORKING_DIRS, e))?;
        let real = canonicalize(PathBuf::from(dir))
            .await
            .map_err(|e| JobError::permanent(format!("config.working_dir: `{dir}`: {e}")))?;
        for allowed in &self.config.allowed_working_dirs {
            if let Ok(allowed) = canonicalize(allowed.clone()).await
                && real.starts_with(&allowed)
            {
                return Ok(real);
            }
        }
        Err(JobError::policy_violation(
            WORKING_DIRS,
            format!(
                "config.working_dir: `{dir}` resolves to `{}`, which is not under an allowed directory \
             (shell.allowed_working_dirs)",
                real.display()
            ),
        ))
    }
}

/// `std::fs::canonicalize` off the async threads: the path may sit on a slow file system.
async fn canonicalize(path: PathBuf) -> std::io::Result<PathBuf> {
    tokio::task::spawn_blocking(move || std::fs::canonicalize(path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// A job's resolved config.
#[derive(Debug)]
struct ShellJob {
    argv: Vec<String>,
    working_dir: Option<PathBuf>,
    env: BTreeMap<String, String>,
    stdin: Option<String>,
    timeout: Option<Duration>,
    retry_on_exit_codes: Vec<i32>,
    parse_json_stdout: bool,
}

#[async_trait]
impl JobRunner for ShellRunner {
    fn job_type(&self) -> &str {
        "shell"
    }

    fn validate_config(&self, config: &Value) -> Result<(), Error> {
        let reader = ConfigReader::raw(config, FIELDS)?;
        if let Field::Value(argv) = reader.require::<Vec<Value>>("argv")? {
            let Some(program) = argv.first() else {
                return Err(config_error("argv", "must not be empty"));
            };
            if let Some(bad) = argv.iter().find(|a| !a.is_string()) {
                return Err(config_error("argv", format!("every item must be a string, found `{bad}`")));
            }
            if !is_templated(program) {
                self.check_command(program.as_str().unwrap_or_default())?;
            }
        }
        if let Field::Value(dir) = reader.get::<String>("working_dir")?
            && !dir.contains("${")
        {
            self.check_working_dir_lexically(&dir)?;
        }
        if let Field::Value(env) = reader.get::<BTreeMap<String, Value>>("env")? {
            self.check_env_names(env.keys())?;
            if let Some((name, _)) = env.iter().find(|(_, v)| !v.is_string() && !v.is_number() && !v.is_boolean()) {
                return Err(config_error("env", format!("value of `{name}` must be a string")));
            }
        }
        reader.get::<String>("stdin")?;
        reader.get::<DurationSpec>("timeout")?;
        reader.get::<Vec<i32>>("retry_on_exit_codes")?;
        reader.get::<bool>("parse_json_stdout")?;
        Ok(())
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let job = self.resolve(&ctx).await?;
        exec::run(&self.config, job, &ctx).await
    }
}

impl ShellRunner {
    async fn resolve(&self, ctx: &JobContext) -> Result<ShellJob, JobError> {
        let reader = ConfigReader::resolved(&ctx.config, FIELDS)?;
        let argv: Vec<String> = reader.require("argv").map_err(JobError::permanent)?.value().unwrap_or_default();
        let Some(program) = argv.first() else {
            return Err(JobError::permanent("config.argv: must not be empty"));
        };
        self.check_command(program).map_err(|e| JobError::policy_violation("shell.allowed_commands", e))?;
        let env: BTreeMap<String, Value> = reader.get("env").map_err(JobError::permanent)?.value().unwrap_or_default();
        self.check_env_names(env.keys()).map_err(|e| JobError::policy_violation("shell.env_allowlist", e))?;
        let env = env
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
                _ => Err(JobError::permanent(format!("config.env: value of `{k}` must be a string"))),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let stdin = reader.get::<String>("stdin").map_err(JobError::permanent)?.value();
        self.check_values(&argv, &env, stdin.as_deref())
            .map_err(|e| JobError::policy_violation("shell.max_arg_bytes", e))?;
        let working_dir = match reader.get::<String>("working_dir").map_err(JobError::permanent)?.value() {
            Some(dir) => Some(self.resolve_working_dir(&dir).await?),
            None => None,
        };
        Ok(ShellJob {
            argv,
            working_dir,
            env,
            stdin,
            timeout: reader.get::<DurationSpec>("timeout").map_err(JobError::permanent)?.value().map(|d| d.0),
            retry_on_exit_codes: reader
                .get("retry_on_exit_codes")
                .map_err(JobError::permanent)?
                .value()
                .unwrap_or_default(),
            parse_json_stdout: reader.get("parse_json_stdout").map_err(JobError::permanent)?.value().unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod safety_tests;
