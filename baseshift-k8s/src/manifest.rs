//! The pod built for one job attempt: name, labels, security context, spec.

use crate::config::KubernetesRunnerConfig;
use crate::job::{PodJob, is_label_value};
use baseshift_core::{JobContext, JobError};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Label put on every pod the runner creates (the plan's `app: base-shift`).
pub const APP_LABEL: (&str, &str) = ("app", "base-shift");
/// Label holding the (sanitised) workflow id.
pub const WORKFLOW_LABEL: &str = "baseshift.io/workflow-id";
/// Label holding the (sanitised) job id.
pub const JOB_LABEL: &str = "baseshift.io/job-id";
/// Label holding the attempt number.
pub const ATTEMPT_LABEL: &str = "baseshift.io/attempt";

/// FNV-1a, 64 bits: stable across Rust releases and platforms, unlike `DefaultHasher`.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn hash10(parts: &[&str]) -> String {
    format!("{:016x}", fnv1a(parts))[..10].to_owned()
}

/// Lower-case alphanumerics and single `-`, trimmed, at most `max` characters.
fn dns_part(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= max {
            break;
        }
    }
    out.trim_matches('-').to_owned()
}

/// The pod name of one attempt: `bs-<job>-<workflow>-a<attempt>-<hash>`, a DNS-1123 label of at
/// most 63 characters. The same (workflow, job, attempt) always gives the same name, and the
/// hash of the full ids keeps names distinct when the readable parts are truncated.
pub fn pod_name(workflow_id: &str, job_id: &str, attempt: u32) -> String {
    let attempt_s = attempt.to_string();
    let hash = hash10(&[workflow_id, job_id, &attempt_s]);
    let fixed = "bs-".len() + "-a".len() + attempt_s.len() + 1 + hash.len();
    let room = 63usize.saturating_sub(fixed);
    let job = dns_part(job_id, room.min(24));
    let wf = dns_part(workflow_id, room.saturating_sub(job.len() + 2).min(20));
    let mut name = String::from("bs");
    for part in [job, wf] {
        if !part.is_empty() {
            name.push('-');
            name.push_str(&part);
        }
    }
    format!("{name}-a{attempt_s}-{hash}")
}

/// A valid label value for any string: a valid value is kept as is; any other keeps at most 52
/// characters (invalid ones become `-`) plus a hash of the whole, so distinct ids stay distinct.
pub fn label_value(s: &str) -> String {
    if is_label_value(s) {
        return s.to_owned();
    }
    let cleaned: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    let head: String = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric()).chars().take(52).collect();
    let head = head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() { hash10(&[s]) } else { format!("{head}-{}", hash10(&[s])) }
}

/// Everything the pod is built from.
pub(crate) struct PodParams<'a> {
    pub config: &'a KubernetesRunnerConfig,
    pub ctx: &'a JobContext,
    pub job: &'a PodJob,
    pub image: &'a str,
    pub namespace: &'a str,
}

fn labels(p: &PodParams<'_>) -> BTreeMap<String, String> {
    let mut labels = p.config.labels.clone();
    labels.extend(p.job.labels.clone().unwrap_or_default());
    labels.insert(APP_LABEL.0.into(), APP_LABEL.1.into());
    labels.insert("app.kubernetes.io/managed-by".into(), "baseshift".into());
    labels.insert(WORKFLOW_LABEL.into(), label_value(p.ctx.workflow_id.as_str()));
    labels.insert(JOB_LABEL.into(), label_value(&p.ctx.job_id));
    labels.insert(ATTEMPT_LABEL.into(), p.ctx.attempt.to_string());
    labels
}

/// Inserts `value` under `key` when it is `Some`.
fn put<T: serde::Serialize>(map: &mut Map<String, Value>, key: &str, value: Option<&T>) -> Result<(), JobError> {
    if let Some(v) = value {
        let v = serde_json::to_value(v).map_err(|e| JobError::permanent(format!("pod field {key}: {e}")))?;
        map.insert(key.to_owned(), v);
    }
    Ok(())
}

/// Builds the pod manifest (as JSON) of one attempt.
pub(crate) fn pod_json(p: &PodParams<'_>) -> Result<Value, JobError> {
    let ctx = p.ctx;
    let name = pod_name(ctx.workflow_id.as_str(), &ctx.job_id, ctx.attempt);
    let read_only = p.job.read_only_root_filesystem.unwrap_or(true);
    let mut security = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": read_only,
        "runAsNonRoot": true,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    });
    if let Some(uid) = p.job.run_as_user {
        security["runAsUser"] = json!(uid);
    }
    let mut container = Map::new();
    container.insert("name".into(), json!(p.config.container_name));
    container.insert("image".into(), json!(p.image));
    put(&mut container, "command", p.job.command.as_ref())?;
    put(&mut container, "args", p.job.args.as_ref())?;
    put(&mut container, "env", p.job.env.as_ref())?;
    put(&mut container, "resources", p.job.resources.as_ref())?;
    put(&mut container, "workingDir", p.job.working_dir.as_ref())?;
    put(&mut container, "imagePullPolicy", p.job.image_pull_policy.as_ref())?;
    container.insert("securityContext".into(), security);
    let mut spec = Map::new();
    spec.insert("restartPolicy".into(), json!("Never"));
    if read_only {
        // A read-only root still gets a writable /tmp, which most programs expect.
        container.insert("volumeMounts".into(), json!([{ "name": "tmp", "mountPath": "/tmp" }]));
        spec.insert("volumes".into(), json!([{ "name": "tmp", "emptyDir": {} }]));
    }
    spec.insert("containers".into(), json!([Value::Object(container)]));
    spec.insert(
        "securityContext".into(),
        json!({ "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } }),
    );
    let service_account = p.job.service_account.as_ref().or(p.config.service_account.as_ref());
    put(&mut spec, "serviceAccountName", service_account)?;
    spec.insert("automountServiceAccountToken".into(), json!(service_account.is_some()));
    put(&mut spec, "nodeSelector", p.job.node_selector.as_ref())?;
    put(&mut spec, "tolerations", p.job.tolerations.as_ref())?;
    put(&mut spec, "affinity", p.job.affinity.as_ref())?;
    if let Some(left) = ctx.remaining() {
        // Bounds the pod's life even if this process dies before it can delete the pod.
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        spec.insert("activeDeadlineSeconds".into(), json!(secs.max(1)));
    }
    let mut metadata = json!({
        "name": name,
        "namespace": p.namespace,
        "labels": labels(p),
        "annotations": {
            WORKFLOW_LABEL: ctx.workflow_id.as_str(),
            JOB_LABEL: ctx.job_id,
            "baseshift.io/idempotency-key": ctx.idempotency_key(),
        },
    });
    if let Some(o) = &p.config.owner {
        metadata["ownerReferences"] = json!([{
            "apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid,
            "controller": false, "blockOwnerDeletion": false,
        }]);
    }
    Ok(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": Value::Object(spec) }))
}

/// Builds the typed pod of one attempt.
pub(crate) fn pod(p: &PodParams<'_>) -> Result<Pod, JobError> {
    serde_json::from_value(pod_json(p)?).map_err(|e| JobError::permanent(format!("building the pod: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(s: &str) -> bool {
        crate::config::check_dns_label(s).is_ok()
    }

    #[test]
    fn pod_names_are_deterministic_dns_labels() {
        let a = pod_name("0190a8e2-7c5b-7def-8a3e-1b2c3d4e5f60", "process_payment", 1);
        assert_eq!(a, pod_name("0190a8e2-7c5b-7def-8a3e-1b2c3d4e5f60", "process_payment", 1));
        assert!(a.starts_with("bs-process-payment-0190a8e2-"), "{a}");
        assert!(is_dns_label(&a), "{a}");
        assert_ne!(a, pod_name("0190a8e2-7c5b-7def-8a3e-1b2c3d4e5f60", "process_payment", 2));
        assert_ne!(a, pod_name("0190a8e2-7c5b-7def-8a3e-1b2c3d4e5f61", "process_payment", 1));
        let long = pod_name(&"W".repeat(300), &"Job_Ü".repeat(100), u32::MAX);
        assert!(long.len() <= 63 && is_dns_label(&long), "{long}");
        let odd = pod_name("___", "!!!", 3);
        assert!(is_dns_label(&odd), "{odd}");
        // Truncated readable parts still give distinct names.
        assert_ne!(
            pod_name("w", &format!("{}a", "j".repeat(80)), 1),
            pod_name("w", &format!("{}b", "j".repeat(80)), 1)
        );
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("process_payment"), "process_payment");
        assert_eq!(label_value("0190a8e2-7c5b"), "0190a8e2-7c5b");
        for s in ["a/b c", "-x-", &"y".repeat(100), "ÜÜÜ", "", "a.b_"] {
            let v = label_value(s);
            assert!(is_label_value(&v), "{s:?} -> {v:?}");
        }
        assert_ne!(label_value(&"y".repeat(100)), label_value(&"y".repeat(101)));
        assert_ne!(label_value("a/b"), label_value("a b"));
    }
}
