//! Assertions for conformance checks: a failed check is an `Err`, not a panic, so a
//! backend's test can report it with the store's own errors alongside.

use crate::error::{Error, ErrorKind, Result};
use std::fmt::Debug;

/// The error a failed check returns.
pub fn failure(message: impl Into<String>) -> Error {
    Error::internal(format!("conformance check failed: {}", message.into()))
}

/// `Ok` if `result` failed with `kind`; otherwise a failure naming `what`.
pub fn expect_kind<T: Debug>(result: Result<T>, kind: ErrorKind, what: &str) -> Result<()> {
    match result {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(failure(format!("{what}: expected a {kind} error, got: {e}"))),
        Ok(v) => Err(failure(format!("{what}: expected a {kind} error, got Ok({v:?})"))),
    }
}

/// Returns a check failure unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::conformance::check::failure(format!($($fmt)+)));
        }
    };
}

/// Returns a check failure unless `actual == expected`, showing both.
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $($fmt:tt)+) => {{
        let (actual, expected) = (&$actual, &$expected);
        if actual != expected {
            return Err($crate::conformance::check::failure(format!(
                "{}: expected {:?}, got {:?}",
                format!($($fmt)+),
                expected,
                actual
            )));
        }
    }};
}

pub(crate) use {ensure, ensure_eq};
