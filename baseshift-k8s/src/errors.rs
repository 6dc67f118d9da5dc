//! Mapping kube errors to baseshift errors at the crate boundary.

use baseshift_core::{Error, ErrorKind, JobError};
use kube::core::Status;

/// The error kind of an API status code.
fn status_kind(status: &Status) -> ErrorKind {
    match status.code {
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        // A resource quota is reported as 403 but frees up as other pods finish.
        403 if status.message.contains("exceeded quota") => ErrorKind::Unavailable,
        400 | 401 | 403 | 405 | 406 | 410 | 415 | 422 => ErrorKind::InvalidInput,
        408 | 504 => ErrorKind::Timeout,
        429 | 500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// The baseshift error kind of a kube error: transport failures and 5xx/429 are retryable.
pub(crate) fn kind_of(e: &kube::Error) -> ErrorKind {
    match e {
        kube::Error::Api(status) => status_kind(status),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => ErrorKind::Unavailable,
        kube::Error::InferConfig(_) | kube::Error::BuildRequest(_) => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    }
}

/// A baseshift [`Error`] for a failed Kubernetes call.
pub(crate) fn core_error(operation: &'static str, e: kube::Error) -> Error {
    Error::new(kind_of(&e), format!("kubernetes: {e}")).with_operation(operation).with_backend("k8s").with_source(e)
}

/// A job error for a failed Kubernetes call; retryable when the call may succeed later.
pub(crate) fn job_error(what: &str, e: &kube::Error) -> JobError {
    let msg = format!("{what}: {e}");
    if kind_of(e).is_retryable() { JobError::retryable(msg) } else { JobError::permanent(msg) }
}

/// Whether a kube error is a 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a kube error is a 409 `AlreadyExists`.
pub(crate) fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether a kube error is a 403 that retrying does not fix (RBAC, admission policy).
pub(crate) fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && !s.message.contains("exceeded quota"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        let mut s = Status::failure(message, "");
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of(&api(404, "")), ErrorKind::NotFound);
        assert_eq!(kind_of(&api(422, "bad spec")), ErrorKind::InvalidInput);
        assert_eq!(kind_of(&api(403, "forbidden")), ErrorKind::InvalidInput);
        assert_eq!(kind_of(&api(403, "exceeded quota: pods")), ErrorKind::Unavailable);
        assert_eq!(kind_of(&api(503, "")), ErrorKind::Unavailable);
        assert!(job_error("create", &api(500, "")).is_retryable());
        assert!(!job_error("create", &api(422, "")).is_retryable());
        let e = core_error("DeploymentScaler::observe", api(404, "gone"));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.backend(), Some("k8s"));
        assert!(is_forbidden(&api(403, "no")) && !is_forbidden(&api(403, "exceeded quota")));
    }
}
