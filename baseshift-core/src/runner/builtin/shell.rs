//! The `shell` runner: runs one program with an argv, never through a shell.

mod exec;

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

/// The default cap on each of stdout and stderr: 1 MiB.
const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Host-side limits of the `shell` runner.
///
/// The default allows nothing: no command may run until the host lists it with
/// [`allow_command`](Self::allow_command). Build one with the builder methods:
///
/// ```
/// use baseshift_core::runner::builtin::{ShellRunner, ShellRunnerConfig};
/// use std::time::Duration;
///
/// let runner = ShellRunner::new(
///     ShellRunnerConfig::default()
///         .allow_command("/usr/bin/convert")
///         .allow_working_dir("/srv/jobs")
///         .allow_env("QUALITY")
///         .inherit_env("HOME")
///         .default_timeout(Duration::from_secs(60)),
/// );
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShellRunnerConfig {
    /// Program names or absolute paths a job's `argv[0]` must equal exactly. Empty: nothing runs.
    pub allowed_commands: Vec<String>,
    /// Directories (and their subdirectories) a job may use as `working_dir`.
    /// Empty: jobs run in the process's working directory and may not set one.
    pub allowed_working_dirs: Vec<PathBuf>,
    /// Names of the environment variables a job may set through `env`.
    pub env_allowlist: Vec<String>,
    /// Names of host environment variables passed to every child. Apart from these and
    /// `PATH`, a child starts with an empty environment.
    pub inherit_env: Vec<String>,
    /// Bytes kept of each of stdout and stderr; the rest is read and dropped.
    pub max_output_bytes: usize,
    /// The timeout of jobs that set none (the job's deadline still applies).
    pub default_timeout: Option<Duration>,
}

impl Default for ShellRunnerConfig {
    fn default() -> Self {
        ShellRunnerConfig {
            allowed_commands: Vec::new(),
            allowed_working_dirs: Vec::new(),
            env_allowlist: Vec::new(),
            inherit_env: Vec::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            default_timeout: None,
        }
    }
}

impl ShellRunnerConfig {
    /// Allows a program, by name (looked up in `PATH`) or by absolute path.
    #[must_use]
    pub fn allow_command(mut self, command: impl Into<String>) -> Self {
        self.allowed_commands.push(command.into());
        self
    }

    /// Allows several programs.
    #[must_use]
    pub fn allow_commands<I, S>(mut self, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_commands.extend(commands.into_iter().map(Into::into));
        self
    }

    /// Allows a directory and everything below it as a job's `working_dir`.
    #[must_use]
    pub fn allow_working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.allowed_working_dirs.push(dir.into());
        self
    }

    /// Lets jobs set the environment variable `name`.
    #[must_use]
    pub fn allow_env(mut self, name: impl Into<String>) -> Self {
        self.env_allowlist.push(name.into());
        self
    }

    /// Passes the host's variable `name` (when set) to every child.
    #[must_use]
    pub fn inherit_env(mut self, name: impl Into<String>) -> Self {
        self.inherit_env.push(name.into());
        self
    }

    /// Sets the per-stream output cap.
    #[must_use]
    pub fn max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// Sets the timeout of jobs that set none.
    #[must_use]
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    fn is_command_allowed(&self, program: &str) -> bool {
        self.allowed_commands.iter().any(|c| c == program)
    }

    fn is_env_allowed(&self, name: &str) -> bool {
        self.env_allowlist.iter().any(|n| n == name)
    }
}

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
/// Output: `{"exit_code", "stdout", "stderr", "truncated"}` (plus `json`). A non-zero exit
/// fails with details `{"exit_code", "stderr"}` (the last 4 KiB of stderr). A child killed
/// by a signal it was not sent by this runner (e.g. the OOM killer) fails retryably.
/// On timeout or cancellation the child is killed (`SIGKILL`) and reaped; processes it
/// started itself are not tracked.
#[derive(Clone, Debug)]
pub struct ShellRunner {
    config: ShellRunnerConfig,
}

impl ShellRunner {
    /// A runner with these host-side limits.
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
            Err(config_error("argv", format!("command `{program}` is not on the host's allowlist")))
        }
    }

    fn check_env_names(&self, names: impl IntoIterator<Item = impl AsRef<str>>) -> Result<(), Error> {
        for name in names {
            let name = name.as_ref();
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(config_error("env", format!("invalid variable name `{name}`")));
            }
            if !self.config.is_env_allowed(name) {
                return Err(config_error("env", format!("variable `{name}` is not on the host's allowlist")));
            }
        }
        Ok(())
    }

    /// A lexical check, used at load time, when the directory may not exist yet.
    fn check_working_dir_lexically(&self, dir: &str) -> Result<(), Error> {
        let path = Path::new(dir);
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(config_error("working_dir", "must be an absolute path without `..`"));
        }
        if self.config.allowed_working_dirs.iter().any(|allowed| path.starts_with(allowed)) {
            Ok(())
        } else {
            Err(config_error("working_dir", format!("`{dir}` is not under an allowed directory")))
        }
    }

    /// Resolves symlinks on both sides before comparing, so a link cannot escape the allowlist.
    async fn resolve_working_dir(&self, dir: &str) -> Result<PathBuf, JobError> {
        self.check_working_dir_lexically(dir).map_err(JobError::permanent)?;
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
        Err(JobError::permanent(format!(
            "config.working_dir: `{dir}` resolves to `{}`, which is not under an allowed directory",
            real.display()
        )))
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
        self.check_command(program).map_err(JobError::permanent)?;
        let env: BTreeMap<String, Value> = reader.get("env").map_err(JobError::permanent)?.value().unwrap_or_default();
        self.check_env_names(env.keys()).map_err(JobError::permanent)?;
        let env = env
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
                _ => Err(JobError::permanent(format!("config.env: value of `{k}` must be a string"))),
            })
            .collect::<Result<_, _>>()?;
        let working_dir = match reader.get::<String>("working_dir").map_err(JobError::permanent)?.value() {
            Some(dir) => Some(self.resolve_working_dir(&dir).await?),
            None => None,
        };
        Ok(ShellJob {
            argv,
            working_dir,
            env,
            stdin: reader.get::<String>("stdin").map_err(JobError::permanent)?.value(),
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
