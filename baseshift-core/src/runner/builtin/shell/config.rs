//! [`ShellRunnerConfig`]: the host-side policy of the `shell` runner, built in code or
//! loaded from YAML/JSON at start-up.

use super::super::settings::{self, ByteSize};
use crate::error::Error;
use crate::template::DurationSpec;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default cap on each of stdout and stderr: 1 MiB.
const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The default cap on one argv element or env value: Linux's `MAX_ARG_STRLEN` (128 KiB).
const DEFAULT_MAX_ARG_BYTES: usize = 128 * 1024;
/// Where util-linux installs `prlimit` on Debian.
pub(super) const DEFAULT_PRLIMIT: &str = "/usr/bin/prlimit";

/// Environment variable name prefixes a job may never set, even when allowlisted: they
/// make the dynamic loader run code of the caller's choosing.
pub(super) const DENIED_ENV_PREFIXES: &[&str] = &["LD_", "DYLD_"];

/// Host-side policy of the `shell` runner.
///
/// The default allows nothing: no command may run until the host lists it with
/// [`allow_command`](Self::allow_command). Build one with the builder methods, or load one
/// with [`from_yaml`](Self::from_yaml) / [`from_json`](Self::from_json):
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
///
/// # Resource limits
///
/// [`cpu_time_limit`](Self::cpu_time_limit) and [`max_address_space`](Self::max_address_space)
/// are applied by running the program through util-linux `prlimit`
/// (`prlimit --cpu=N:N+1 --as=B:B -- <program> <args...>`), which sets the limits on
/// itself and then executes the program in the same process. When either limit is set and
/// `prlimit` is missing, [`validate`](Self::validate) fails and so does every job, permanently.
/// A program that runs out of CPU time gets `SIGXCPU` (then `SIGKILL` a second later);
/// one that runs out of address space sees its allocations fail.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShellRunnerConfig {
    /// Programs a job's `argv[0]` must match: exact names (looked up in `PATH`), absolute
    /// paths, or absolute patterns where `*` matches any characters but `/` and `?` one
    /// character (`/usr/bin/*`). Empty: nothing runs.
    pub allowed_commands: Vec<String>,
    /// Directories (and their subdirectories) a job may use as `working_dir`.
    /// Empty: jobs run in the process's working directory and may not set one.
    pub allowed_working_dirs: Vec<PathBuf>,
    /// Names of the environment variables a job may set through `env`. `LD_*` and `DYLD_*`
    /// are refused even when listed.
    pub env_allowlist: Vec<String>,
    /// Names of host environment variables passed to every child. Apart from these and
    /// `PATH`, a child starts with an empty environment.
    pub inherit_env: Vec<String>,
    /// Bytes kept of each of stdout and stderr; the rest is read and dropped.
    pub max_output_bytes: usize,
    /// The largest argv element, env value or stdin a job may pass; default 128 KiB.
    pub max_arg_bytes: usize,
    /// The timeout of jobs that set none (the job's deadline still applies).
    pub default_timeout: Option<Duration>,
    /// The longest any job may run, whatever timeout it asks for.
    pub max_execution_time: Option<Duration>,
    /// CPU time a job's process may use (rounded up to whole seconds); needs `prlimit`.
    pub cpu_time_limit: Option<Duration>,
    /// Address space (virtual memory) a job's process may map, in bytes; needs `prlimit`.
    pub max_address_space: Option<u64>,
    /// Path of util-linux `prlimit`; default `/usr/bin/prlimit`.
    pub prlimit_path: PathBuf,
}

impl Default for ShellRunnerConfig {
    fn default() -> Self {
        ShellRunnerConfig {
            allowed_commands: Vec::new(),
            allowed_working_dirs: Vec::new(),
            env_allowlist: Vec::new(),
            inherit_env: Vec::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_arg_bytes: DEFAULT_MAX_ARG_BYTES,
            default_timeout: None,
            max_execution_time: None,
            cpu_time_limit: None,
            max_address_space: None,
            prlimit_path: PathBuf::from(DEFAULT_PRLIMIT),
        }
    }
}

/// The document shape: `{execution_type: local_process, security: {...}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ShellDocument {
    execution_type: Option<String>,
    security: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ShellSecurity {
    allowed_commands: Vec<String>,
    allowed_working_dirs: Vec<PathBuf>,
    env_allowlist: Vec<String>,
    inherit_env: Vec<String>,
    max_output_bytes: Option<ByteSize>,
    max_arg_bytes: Option<ByteSize>,
    default_timeout: Option<DurationSpec>,
    max_execution_time: Option<DurationSpec>,
    cpu_time_limit: Option<DurationSpec>,
    max_address_space: Option<ByteSize>,
    prlimit_path: Option<PathBuf>,
}

impl ShellRunnerConfig {
    /// Loads and [validates](Self::validate) a config from YAML, in the shape
    ///
    /// ```yaml
    /// execution_type: local_process   # optional; the only supported value
    /// security:
    ///   allowed_commands: ["/usr/bin/convert", "/opt/tools/bin/*"]
    ///   allowed_working_dirs: ["/srv/jobs"]
    ///   env_allowlist: [QUALITY]
    ///   inherit_env: [HOME]
    ///   default_timeout: 1m
    ///   max_execution_time: 10m
    ///   cpu_time_limit: 5m
    ///   max_address_space: 2GiB
    ///   max_output_bytes: 1MiB
    ///   max_arg_bytes: 128KiB
    ///   prlimit_path: /usr/bin/prlimit
    /// ```
    ///
    /// Fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the field
    /// (e.g. `shell.security.cpu_time_limit`) on unknown fields, bad values or a failed check.
    pub fn from_yaml(src: &str) -> Result<Self, Error> {
        Self::from_value(&settings::yaml_value(src, "shell")?)
    }

    /// Loads and validates a config from JSON, in the shape of [`from_yaml`](Self::from_yaml).
    pub fn from_json(src: &str) -> Result<Self, Error> {
        Self::from_value(&settings::json_value(src, "shell")?)
    }

    fn from_value(value: &Value) -> Result<Self, Error> {
        let doc: ShellDocument = settings::decode(value, "shell")?;
        if let Some(kind) = doc.execution_type.as_deref()
            && kind != "local_process"
        {
            return Err(settings::invalid(
                "shell.execution_type",
                format!("`{kind}` is not supported (only `local_process`)"),
            ));
        }
        let s: ShellSecurity = settings::decode(&doc.security, "shell.security")?;
        let defaults = ShellRunnerConfig::default();
        let size = |v: Option<ByteSize>, field: &str, default: usize| match v {
            Some(ByteSize(n)) => usize::try_from(n)
                .map_err(|_| settings::invalid(&format!("shell.security.{field}"), "too large for this platform")),
            None => Ok(default),
        };
        let config = ShellRunnerConfig {
            max_output_bytes: size(s.max_output_bytes, "max_output_bytes", defaults.max_output_bytes)?,
            max_arg_bytes: size(s.max_arg_bytes, "max_arg_bytes", defaults.max_arg_bytes)?,
            allowed_commands: s.allowed_commands,
            allowed_working_dirs: s.allowed_working_dirs,
            env_allowlist: s.env_allowlist,
            inherit_env: s.inherit_env,
            default_timeout: s.default_timeout.map(|d| d.0),
            max_execution_time: s.max_execution_time.map(|d| d.0),
            cpu_time_limit: s.cpu_time_limit.map(|d| d.0),
            max_address_space: s.max_address_space.map(|b| b.0),
            prlimit_path: s.prlimit_path.unwrap_or(defaults.prlimit_path),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the policy itself: command patterns are well formed, directories absolute,
    /// env names valid and not loader variables, limits non-zero, and `prlimit` present when
    /// a CPU or address-space limit is set. Errors name the field (`shell.security.<field>`).
    pub fn validate(&self) -> Result<(), Error> {
        let field = |name: &str| format!("shell.security.{name}");
        for pattern in &self.allowed_commands {
            check_command_pattern(pattern).map_err(|why| settings::invalid(&field("allowed_commands"), why))?;
        }
        for dir in &self.allowed_working_dirs {
            if !dir.is_absolute() || dir.components().any(|c| c == std::path::Component::ParentDir) {
                return Err(settings::invalid(
                    &field("allowed_working_dirs"),
                    format!("`{}` must be an absolute path without `..`", dir.display()),
                ));
            }
        }
        for (list, names) in [("env_allowlist", &self.env_allowlist), ("inherit_env", &self.inherit_env)] {
            for name in names {
                if let Some(why) = env_name_problem(name) {
                    return Err(settings::invalid(&field(list), format!("`{name}`: {why}")));
                }
            }
        }
        if self.max_arg_bytes == 0 {
            return Err(settings::invalid(&field("max_arg_bytes"), "must be greater than zero"));
        }
        for (name, value) in [
            ("default_timeout", self.default_timeout),
            ("max_execution_time", self.max_execution_time),
            ("cpu_time_limit", self.cpu_time_limit),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(settings::invalid(&field(name), "must be greater than zero"));
            }
        }
        if self.max_address_space == Some(0) {
            return Err(settings::invalid(&field("max_address_space"), "must be greater than zero"));
        }
        if let Some(setting) = self.limit_setting()
            && !self.prlimit_path.is_file()
        {
            return Err(settings::invalid(&field(setting), self.prlimit_missing()));
        }
        Ok(())
    }

    /// The name of a configured setting that needs `prlimit`, if any.
    pub(super) fn limit_setting(&self) -> Option<&'static str> {
        if self.cpu_time_limit.is_some() {
            Some("cpu_time_limit")
        } else if self.max_address_space.is_some() {
            Some("max_address_space")
        } else {
            None
        }
    }

    pub(super) fn prlimit_missing(&self) -> String {
        format!(
            "this limit is applied with util-linux `prlimit`, which is missing at `{}` \
             (install util-linux or set shell.security.prlimit_path)",
            self.prlimit_path.display()
        )
    }

    /// Allows a program: a name (looked up in `PATH`), an absolute path, or an absolute
    /// pattern such as `/usr/bin/*`.
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

    /// Sets the cap on one argv element, env value or stdin.
    #[must_use]
    pub fn max_arg_bytes(mut self, bytes: usize) -> Self {
        self.max_arg_bytes = bytes;
        self
    }

    /// Sets the timeout of jobs that set none.
    #[must_use]
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Caps every job's run time, whatever timeout it asks for.
    #[must_use]
    pub fn max_execution_time(mut self, limit: Duration) -> Self {
        self.max_execution_time = Some(limit);
        self
    }

    /// Limits each job's CPU time (applied with `prlimit`).
    #[must_use]
    pub fn cpu_time_limit(mut self, limit: Duration) -> Self {
        self.cpu_time_limit = Some(limit);
        self
    }

    /// Limits each job's address space, in bytes (applied with `prlimit`).
    #[must_use]
    pub fn max_address_space(mut self, bytes: u64) -> Self {
        self.max_address_space = Some(bytes);
        self
    }

    /// Sets where `prlimit` is.
    #[must_use]
    pub fn prlimit_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.prlimit_path = path.into();
        self
    }

    pub(super) fn is_command_allowed(&self, program: &str) -> bool {
        if program.contains('/') && (program.ends_with('/') || program.split('/').skip(1).any(is_odd_segment)) {
            return false;
        }
        self.allowed_commands.iter().any(|pattern| glob_match(pattern.as_bytes(), program.as_bytes()))
    }

    pub(super) fn is_env_allowed(&self, name: &str) -> bool {
        self.env_allowlist.iter().any(|n| n == name)
    }
}

/// `.`, `..` and empty segments: a path spelled so may leave a directory a pattern names.
fn is_odd_segment(segment: &str) -> bool {
    segment.is_empty() || segment == "." || segment == ".."
}

/// Why `name` cannot be an environment variable a job sets, if it cannot.
pub(super) fn env_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        Some("not a valid variable name")
    } else if DENIED_ENV_PREFIXES.iter().any(|p| name.starts_with(p)) {
        Some("dynamic loader variables (LD_*, DYLD_*) are never passed")
    } else {
        None
    }
}

fn check_command_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.contains('\0') {
        return Err("empty or malformed command".to_owned());
    }
    if pattern.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!("`{pattern}` must not contain `.` or `..` segments"));
    }
    let wild = pattern.contains(['*', '?']);
    if wild && !Path::new(pattern).is_absolute() {
        return Err(format!("`{pattern}`: a pattern must be an absolute path such as `/usr/bin/*`"));
    }
    if pattern.contains('/') && !Path::new(pattern).is_absolute() {
        return Err(format!("`{pattern}`: a path must be absolute"));
    }
    Ok(())
}

/// `*` matches any run of bytes other than `/`; `?` one byte other than `/`.
pub(super) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == text[t] || (pattern[p] == b'?' && text[t] != b'/')) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star
            && text[st] != b'/'
        {
            star = Some((sp, st + 1));
            p = sp + 1;
            t = st + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}
