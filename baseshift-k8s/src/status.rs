//! Reading a pod's status: still going, succeeded, or failed (retryable or permanent).

use baseshift_core::JobError;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use serde_json::{Value, json};

/// Container waiting reasons that no amount of waiting fixes.
pub const PERMANENT_WAITING_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Pod failure reasons caused by the node or the cluster, not by the job: another attempt may succeed.
pub const RETRYABLE_POD_REASONS: &[&str] = &[
    "Evicted",
    "NodeLost",
    "NodeShutdown",
    "Shutdown",
    "Terminated",
    "Preempting",
    "UnexpectedAdmissionError",
    "OutOfcpu",
    "OutOfmemory",
    "OutOfpods",
    "DeadlineExceeded",
];

/// Where a pod is.
#[derive(Debug, PartialEq)]
pub(crate) enum Progress {
    /// Pending or running: keep watching. Holds a short description for tracing.
    Going(String),
    /// The container exited 0.
    Succeeded,
    /// The pod failed; the error says whether another attempt may help.
    Failed(JobError),
}

fn container_terminated<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStateTerminated> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = statuses.iter().find(|s| s.name == container)?;
    status.state.as_ref()?.terminated.as_ref()
}

fn details(pod: &Pod, extra: Value) -> Value {
    let mut d = json!({
        "pod": pod.metadata.name,
        "namespace": pod.metadata.namespace,
        "phase": pod.status.as_ref().and_then(|s| s.phase.clone()),
    });
    if let (Some(d), Value::Object(extra)) = (d.as_object_mut(), extra) {
        d.extend(extra);
    }
    d
}

/// Classifies a pod. `retryable_exit_codes` are the exit codes that make a failure retryable.
pub(crate) fn classify(pod: &Pod, container: &str, retryable_exit_codes: &[i32]) -> Progress {
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let reason = status.reason.as_deref().unwrap_or("");
    let message = status.message.clone().unwrap_or_default();
    match phase {
        "Succeeded" => return Progress::Succeeded,
        "Unknown" => {
            let e = JobError::retryable(format!("pod state unknown (node lost?): {message}"));
            return Progress::Failed(e.with_details(details(pod, json!({ "reason": "NodeLost" }))));
        }
        "Failed" => return Progress::Failed(failed(pod, container, reason, &message, retryable_exit_codes)),
        _ => {}
    }
    let disrupted = status.conditions.iter().flatten().find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    if let Some(c) = disrupted {
        let why = c.reason.clone().unwrap_or_default();
        let e =
            JobError::retryable(format!("pod is being disrupted ({why}): {}", c.message.clone().unwrap_or_default()));
        return Progress::Failed(e.with_details(details(pod, json!({ "reason": why }))));
    }
    for s in status.container_statuses.iter().flatten() {
        let Some(waiting) = s.state.as_ref().and_then(|st| st.waiting.as_ref()) else { continue };
        let why = waiting.reason.as_deref().unwrap_or("");
        if PERMANENT_WAITING_REASONS.contains(&why) {
            let msg = waiting.message.clone().unwrap_or_default();
            let e = JobError::permanent(format!("container `{}` cannot start: {why}: {msg}", s.name));
            return Progress::Failed(e.with_details(details(pod, json!({ "reason": why, "message": msg }))));
        }
    }
    Progress::Going(phase.to_owned())
}

fn failed(pod: &Pod, container: &str, reason: &str, message: &str, retryable_exit_codes: &[i32]) -> JobError {
    if RETRYABLE_POD_REASONS.contains(&reason) {
        let e = JobError::retryable(format!("pod failed: {reason}: {message}"));
        return e.with_details(details(pod, json!({ "reason": reason, "message": message })));
    }
    let Some(t) = container_terminated(pod, container) else {
        let e = JobError::permanent(format!("pod failed without a container exit status: {reason} {message}"));
        return e.with_details(details(pod, json!({ "reason": reason, "message": message })));
    };
    let extra = json!({ "exit_code": t.exit_code, "reason": t.reason, "message": t.message, "signal": t.signal });
    let what = format!(
        "container exited with code {}{}",
        t.exit_code,
        t.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    if retryable_exit_codes.contains(&t.exit_code) {
        JobError::retryable(what).with_details(details(pod, extra))
    } else {
        JobError::permanent(what).with_details(details(pod, extra))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "p", "namespace": "ns" }, "status": status })).unwrap()
    }

    fn terminated(code: i32, reason: &str) -> Value {
        json!({ "phase": "Failed", "containerStatuses": [{
            "name": "job", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "terminated": { "exitCode": code, "reason": reason } } }] })
    }

    #[test]
    fn phases() {
        assert_eq!(classify(&pod(json!({ "phase": "Pending" })), "job", &[]), Progress::Going("Pending".into()));
        assert_eq!(classify(&pod(json!({ "phase": "Running" })), "job", &[]), Progress::Going("Running".into()));
        assert_eq!(classify(&pod(json!({})), "job", &[]), Progress::Going("Pending".into()));
        assert_eq!(classify(&pod(json!({ "phase": "Succeeded" })), "job", &[]), Progress::Succeeded);
    }

    fn failure(p: Progress) -> JobError {
        match p {
            Progress::Failed(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn exit_codes() {
        let e = failure(classify(&pod(terminated(3, "Error")), "job", &[]));
        assert!(!e.is_retryable());
        assert_eq!(e.details().unwrap()["exit_code"], 3);
        assert_eq!(e.details().unwrap()["pod"], "p");
        let e = failure(classify(&pod(terminated(75, "Error")), "job", &[75]));
        assert!(e.is_retryable());
        let e = failure(classify(&pod(terminated(137, "OOMKilled")), "job", &[]));
        assert!(e.message().contains("OOMKilled"), "{e}");
    }

    #[test]
    fn node_and_cluster_failures_are_retryable() {
        let evicted = json!({ "phase": "Failed", "reason": "Evicted", "message": "low on memory" });
        let e = failure(classify(&pod(evicted), "job", &[]));
        assert!(e.is_retryable());
        assert_eq!(e.details().unwrap()["reason"], "Evicted");
        assert!(failure(classify(&pod(json!({ "phase": "Unknown" })), "job", &[])).is_retryable());
        let disrupted = json!({ "phase": "Running", "conditions": [
            { "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler" }] });
        assert!(failure(classify(&pod(disrupted), "job", &[])).is_retryable());
    }

    #[test]
    fn image_and_config_errors_are_permanent() {
        for reason in ["ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"] {
            let s = json!({ "phase": "Pending", "containerStatuses": [{
                "name": "job", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": { "waiting": { "reason": reason, "message": "nope" } } }] });
            let e = failure(classify(&pod(s), "job", &[]));
            assert!(!e.is_retryable(), "{reason}");
            assert_eq!(e.details().unwrap()["reason"], reason);
        }
        let s = json!({ "phase": "Pending", "containerStatuses": [{
            "name": "job", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "waiting": { "reason": "ContainerCreating" } } }] });
        assert!(matches!(classify(&pod(s), "job", &[]), Progress::Going(_)));
    }
}
