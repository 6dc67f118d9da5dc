//! Mapping driver errors and script answers to [`baseshift_core::Error`] kinds.

use baseshift_core::{Error, ErrorKind};
use redis::{RedisError, ServerErrorKind};

/// Converts a driver error of operation `op` into a core error.
///
/// Connection failures are `Unavailable` and timeouts `Timeout` (both retryable; for a
/// write, a timeout leaves the outcome unknown); a server that is loading, read-only or
/// failing over is `Unavailable`; bad credentials and bad settings are `InvalidInput`;
/// anything else is `Internal`.
pub(crate) fn map_redis(e: RedisError, op: &'static str) -> Error {
    let (kind, hint) = classify(&e);
    Error::new(kind, format!("{hint}: {e}")).with_operation(op).with_backend(crate::BACKEND).with_source(e)
}

fn classify(e: &RedisError) -> (ErrorKind, &'static str) {
    if e.is_timeout() {
        return (ErrorKind::Timeout, "Redis did not answer in time (the outcome of a write is unknown)");
    }
    if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        return (ErrorKind::Unavailable, "Redis cannot be reached");
    }
    match e.kind() {
        redis::ErrorKind::Io => (ErrorKind::Unavailable, "Redis cannot be reached"),
        redis::ErrorKind::AuthenticationFailed => (ErrorKind::InvalidInput, "Redis refused the credentials"),
        redis::ErrorKind::InvalidClientConfig => (ErrorKind::InvalidInput, "invalid Redis settings"),
        redis::ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::ClusterDown,
        ) => (ErrorKind::Unavailable, "Redis is not accepting writes right now"),
        redis::ErrorKind::Server(ServerErrorKind::NoPerm) => (ErrorKind::InvalidInput, "Redis denied the command"),
        _ => (ErrorKind::Internal, "unexpected Redis error"),
    }
}

/// The error a Lua script reports as `{"err", kind, job, message}`.
pub(crate) fn script_error(kind: &str, job: &str, message: &str, op: &'static str) -> Error {
    let kind = match kind {
        "not_found" => ErrorKind::NotFound,
        "conflict" => ErrorKind::Conflict,
        "illegal_transition" => ErrorKind::IllegalTransition,
        "invalid_input" => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    };
    let mut err = Error::new(kind, message).with_operation(op).with_backend(crate::BACKEND);
    if !job.is_empty() {
        err = err.with_job(job);
    }
    err
}

/// An answer of an unexpected shape from Redis.
pub(crate) fn bad_reply(op: &'static str, what: impl std::fmt::Display) -> Error {
    Error::internal(format!("unexpected reply from Redis: {what}")).with_operation(op).with_backend(crate::BACKEND)
}

/// A stored record that no longer parses.
pub(crate) fn corrupt(op: &'static str, what: &str, e: serde_json::Error) -> Error {
    Error::internal(format!("stored {what} does not parse: {e}"))
        .with_operation(op)
        .with_backend(crate::BACKEND)
        .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_map_to_core_kinds() {
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        let err = map_redis(io, "StateStore::claim");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert_eq!(err.operation(), Some("StateStore::claim"));
        assert_eq!(err.backend(), Some("redis"));
        assert!(err.is_retryable());

        let timeout = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        assert_eq!(map_redis(timeout, "StateStore::apply").kind(), ErrorKind::Timeout);

        let parse = RedisError::from((redis::ErrorKind::UnexpectedReturnType, "odd"));
        assert_eq!(map_redis(parse, "StateStore::job").kind(), ErrorKind::Internal);
        let auth = RedisError::from((redis::ErrorKind::AuthenticationFailed, "no"));
        assert_eq!(map_redis(auth, "connect").kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn script_errors_keep_kind_and_job() {
        let err = script_error("conflict", "a", "stale job version 1 (stored 2)", "StateStore::apply");
        assert_eq!((err.kind(), err.job_id()), (ErrorKind::Conflict, Some("a")));
        assert_eq!(script_error("illegal_transition", "", "x", "op").kind(), ErrorKind::IllegalTransition);
        assert_eq!(script_error("not_found", "", "x", "op").job_id(), None);
        assert_eq!(script_error("???", "", "x", "op").kind(), ErrorKind::Internal);
    }
}
