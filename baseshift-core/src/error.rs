//! The one error type of the baseshift crate family.

use std::fmt;

/// What went wrong, as a category callers can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The workflow, job, template or version does not exist.
    NotFound,
    /// A stale version, a lost race or a duplicate id: re-read and decide again.
    Conflict,
    /// The backend cannot be reached right now; retrying later may succeed.
    Unavailable,
    /// An operation did not finish in time. For writes the outcome is unknown: re-read first.
    Timeout,
    /// A template failed validation; the error's location names the place.
    InvalidTemplate,
    /// Input (workflow input, a call argument, a payload) was rejected.
    InvalidInput,
    /// The backend or runner does not support the operation.
    Unsupported,
    /// The operation was cancelled.
    Cancelled,
    /// A state transition that the state machine does not allow.
    IllegalTransition,
    /// A bug or an unexpected backend answer.
    Internal,
}

impl ErrorKind {
    /// Whether an operation failing with this kind may succeed when retried unchanged.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::Conflict)
    }

    /// A stable lower-case name, used in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidTemplate => "invalid_template",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::IllegalTransition => "illegal_transition",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in a template (or its source text) an error was found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The template id, when known.
    pub template: Option<String>,
    /// The job id, when the error concerns one job.
    pub job: Option<String>,
    /// The field, e.g. `depends_on` or `config.url`.
    pub field: Option<String>,
    /// 1-based line in the YAML source, when parsed from YAML.
    pub line: Option<u32>,
    /// 1-based column in the YAML source, when parsed from YAML.
    pub column: Option<u32>,
}

impl Location {
    /// A location naming a template.
    pub fn template(id: impl Into<String>) -> Self {
        Location { template: Some(id.into()), ..Default::default() }
    }

    /// This location, narrowed to one job.
    #[must_use]
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = Some(job.into());
        self
    }

    /// This location, narrowed to one field.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// This location with a line and column in the source text.
    #[must_use]
    pub fn at(mut self, line: u32, column: u32) -> Self {
        if line > 0 {
            self.line = Some(line);
            self.column = Some(column);
        }
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = &self.template {
            parts.push(format!("template `{t}`"));
        }
        if let Some(j) = &self.job {
            parts.push(format!("job `{j}`"));
        }
        if let Some(fl) = &self.field {
            parts.push(format!("field `{fl}`"));
        }
        if let (Some(l), Some(c)) = (self.line, self.column) {
            parts.push(format!("line {l}, column {c}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// The error type of every fallible baseshift operation.
///
/// It carries a [`ErrorKind`], a message, and optional context: the operation
/// (as `"Trait::method"`), the backend, the workflow and job ids, and a template
/// [`Location`]. Driver errors are converted at the backend boundary and kept
/// only as a source for `Error::source`. The context is boxed so `Result<T, Error>`
/// stays small on the happy path.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Option<Box<Context>>,
}

#[derive(Debug, Default)]
struct Context {
    operation: Option<&'static str>,
    backend: Option<&'static str>,
    workflow_id: Option<String>,
    job_id: Option<String>,
    location: Option<Location>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let src = self.context.as_ref()?.source.as_ref()?;
        Some(src.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), context: None }
    }

    fn ctx(&self) -> Option<&Context> {
        self.context.as_deref()
    }

    fn ctx_mut(&mut self) -> &mut Context {
        self.context.get_or_insert_with(Default::default)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// An [`ErrorKind::InvalidTemplate`] error at `location`.
    pub fn invalid_template(location: Location, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidTemplate, message).with_location(location)
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The operation that failed, as `"Trait::method"`.
    pub fn operation(&self) -> Option<&'static str> {
        self.ctx().and_then(|c| c.operation)
    }

    /// The backend that failed, e.g. `"memory"` or `"redis"`.
    pub fn backend(&self) -> Option<&'static str> {
        self.ctx().and_then(|c| c.backend)
    }

    /// The workflow concerned, if any.
    pub fn workflow_id(&self) -> Option<&str> {
        self.ctx().and_then(|c| c.workflow_id.as_deref())
    }

    /// The job concerned, if any.
    pub fn job_id(&self) -> Option<&str> {
        self.ctx().and_then(|c| c.job_id.as_deref())
    }

    /// Where in a template the error was found.
    pub fn location(&self) -> Option<&Location> {
        self.ctx().and_then(|c| c.location.as_ref())
    }

    /// Adds the operation context.
    #[must_use]
    pub fn with_operation(mut self, op: &'static str) -> Self {
        self.ctx_mut().operation = Some(op);
        self
    }

    /// Adds the backend context.
    #[must_use]
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.ctx_mut().backend = Some(backend);
        self
    }

    /// Adds the workflow id.
    #[must_use]
    pub fn with_workflow(mut self, id: impl Into<String>) -> Self {
        self.ctx_mut().workflow_id = Some(id.into());
        self
    }

    /// Adds the job id.
    #[must_use]
    pub fn with_job(mut self, id: impl Into<String>) -> Self {
        self.ctx_mut().job_id = Some(id.into());
        self
    }

    /// Adds a template location.
    #[must_use]
    pub fn with_location(mut self, location: Location) -> Self {
        self.ctx_mut().location = Some(location);
        self
    }

    /// Adds the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.ctx_mut().source = Some(Box::new(source));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        let Some(c) = self.ctx() else { return Ok(()) };
        if let Some(loc) = &c.location {
            write!(f, " (at {loc})")?;
        }
        if let Some(w) = &c.workflow_id {
            write!(f, " [workflow {w}")?;
            if let Some(j) = &c.job_id {
                write!(f, ", job {j}")?;
            }
            f.write_str("]")?;
        } else if let Some(j) = &c.job_id {
            write!(f, " [job {j}]")?;
        }
        if let Some(op) = c.operation {
            write!(f, " in {op}")?;
        }
        if let Some(b) = c.backend {
            write!(f, " on {b}")?;
        }
        Ok(())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::InvalidInput, format!("invalid JSON: {e}")).with_source(e)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_and_keeps_context() {
        assert!(std::mem::size_of::<Error>() <= 48, "{}", std::mem::size_of::<Error>());
        let e = Error::conflict("stale").with_workflow("w1").with_job("j1").with_operation("StateStore::apply");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "conflict: stale [workflow w1, job j1] in StateStore::apply");
        let io = std::io::Error::other("disk");
        let e = Error::internal("write").with_source(io);
        assert!(std::error::Error::source(&e).is_some());
    }
}
