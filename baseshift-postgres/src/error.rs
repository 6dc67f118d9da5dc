//! Driver errors mapped to [`baseshift_core::Error`] at the backend boundary.

use baseshift_core::{Error, ErrorKind};

/// The backend's name in errors and capabilities.
pub(crate) const BACKEND: &str = "postgres";

/// Converts a driver error of operation `op` (`"Trait::method"`).
///
/// Connection trouble is `Unavailable`, a cancelled statement (`statement_timeout`)
/// is `Timeout` (for a write: an unknown outcome), serialization failures, deadlocks and
/// unique violations are `Conflict`; everything unexpected is `Internal`.
pub(crate) fn db_error(op: &'static str, e: sqlx::Error) -> Error {
    let (kind, message) = classify(&e);
    Error::new(kind, message).with_operation(op).with_backend(BACKEND).with_source(e)
}

/// A closure for `map_err` that converts a driver error of `op`.
pub(crate) fn db(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| db_error(op, e)
}

/// An error of `kind` raised by this backend in `op`.
pub(crate) fn backend_error(kind: ErrorKind, op: &'static str, message: impl Into<String>) -> Error {
    Error::new(kind, message).with_operation(op).with_backend(BACKEND)
}

fn classify(e: &sqlx::Error) -> (ErrorKind, String) {
    use sqlx::Error as E;
    match e {
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let kind = match code.as_str() {
                "23505" | "40001" | "40P01" | "55P03" => ErrorKind::Conflict,
                "57014" => ErrorKind::Timeout,
                c if c.starts_with("08") || c.starts_with("53") || c == "57P01" || c == "57P03" => {
                    ErrorKind::Unavailable
                }
                c if c.starts_with("22") => ErrorKind::InvalidInput,
                _ => ErrorKind::Internal,
            };
            (kind, format!("database error {code}: {}", db.message()))
        }
        E::PoolTimedOut => (ErrorKind::Unavailable, "timed out waiting for a database connection".into()),
        E::PoolClosed => (ErrorKind::Unavailable, "the connection pool is closed".into()),
        E::Io(io) => (ErrorKind::Unavailable, format!("database connection failed: {io}")),
        E::Tls(t) => (ErrorKind::Unavailable, format!("TLS with the database failed: {t}")),
        E::Protocol(p) => (ErrorKind::Unavailable, format!("database protocol error: {p}")),
        E::BeginFailed | E::WorkerCrashed => (ErrorKind::Unavailable, e.to_string()),
        E::RowNotFound => (ErrorKind::NotFound, "no such row".into()),
        E::Configuration(c) => (ErrorKind::InvalidInput, format!("database configuration: {c}")),
        E::InvalidArgument(a) => (ErrorKind::InvalidInput, format!("invalid argument: {a}")),
        other => (ErrorKind::Internal, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_retryable() {
        let e = db_error("StateStore::claim", sqlx::Error::PoolTimedOut);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert_eq!((e.operation(), e.backend()), (Some("StateStore::claim"), Some(BACKEND)));
        let io = db_error("StateStore::job", sqlx::Error::Io(std::io::Error::other("reset")));
        assert_eq!(io.kind(), ErrorKind::Unavailable);
        assert_eq!(db_error("x", sqlx::Error::RowNotFound).kind(), ErrorKind::NotFound);
        assert_eq!(db_error("x", sqlx::Error::ColumnNotFound("c".into())).kind(), ErrorKind::Internal);
    }
}
