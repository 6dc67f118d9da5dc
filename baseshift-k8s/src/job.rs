//! A pod job's config: the fields a template may set, read at load time and at run time.

use crate::config::{KubernetesRunnerConfig, check_dns_label};
use baseshift_core::runner::config_error;
use baseshift_core::{Error, ErrorKind, JobError};
use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The job config of a pod job. Unknown fields are rejected, so nothing outside this list
/// (volumes, host paths, privileged mode) reaches the pod spec.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PodJob {
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<EnvVar>>,
    pub resources: Option<ResourceRequirements>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(alias = "serviceAccountName", alias = "service_account_name")]
    pub service_account: Option<String>,
    #[serde(alias = "nodeSelector")]
    pub node_selector: Option<BTreeMap<String, String>>,
    pub tolerations: Option<Vec<Toleration>>,
    pub affinity: Option<Affinity>,
    #[serde(alias = "imagePullPolicy")]
    pub image_pull_policy: Option<String>,
    #[serde(alias = "workingDir")]
    pub working_dir: Option<String>,
    #[serde(alias = "readOnlyRootFilesystem")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(alias = "runAsUser")]
    pub run_as_user: Option<i64>,
}

/// Whether `value` holds a `${...}` reference anywhere.
pub(crate) fn is_templated(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("${"),
        Value::Array(items) => items.iter().any(is_templated),
        Value::Object(map) => map.values().any(is_templated),
        _ => false,
    }
}

fn object(config: &Value) -> Result<&Map<String, Value>, Error> {
    config
        .as_object()
        .ok_or_else(|| Error::new(ErrorKind::InvalidTemplate, "config: a pod job's config must be an object"))
}

/// Load-time check of a raw config: known fields, types, quantities, names and the allowlists.
/// A field holding `${...}` that does not type-check yet is accepted; it is checked again at run time.
pub(crate) fn validate(config: &Value, rc: &KubernetesRunnerConfig, home: &str) -> Result<(), Error> {
    let map = object(config)?;
    let mut known = PodJob::default();
    for (field, value) in map {
        let mut one = Map::new();
        one.insert(field.clone(), Value::Null);
        if let Err(e) = serde_json::from_value::<PodJob>(Value::Object(one.clone())) {
            return Err(config_error(field, e));
        }
        one.insert(field.clone(), value.clone());
        match serde_json::from_value::<PodJob>(Value::Object(one)) {
            Ok(parsed) if !is_templated(value) => merge(&mut known, parsed),
            Ok(_) => {}
            Err(_) if is_templated(value) => {}
            Err(e) => return Err(config_error(field, e)),
        }
    }
    if !map.contains_key("image") {
        return Err(config_error("image", "required"));
    }
    known.check(rc, home).map_err(|(field, msg)| config_error(field, msg))
}

/// Run-time parse of a resolved config; every error is permanent.
pub(crate) fn resolve(config: &Value, rc: &KubernetesRunnerConfig, home: &str) -> Result<(PodJob, String), JobError> {
    let job: PodJob = serde_json::from_value(config.clone())
        .map_err(|e| JobError::permanent(format!("invalid pod job config: {e}")))?;
    let image = job.image.clone().ok_or_else(|| JobError::permanent("config.image: required"))?;
    job.check(rc, home).map_err(|(field, msg)| JobError::permanent(format!("config.{field}: {msg}")))?;
    Ok((job, image))
}

fn merge(into: &mut PodJob, from: PodJob) {
    macro_rules! take {
        ($($f:ident),*) => { $( if from.$f.is_some() { into.$f = from.$f; } )* };
    }
    take!(image, command, args, env, resources, namespace, labels, service_account, node_selector);
    take!(tolerations, affinity, image_pull_policy, working_dir, read_only_root_filesystem, run_as_user);
}

impl PodJob {
    /// Checks the known (non-templated) fields; the error names the field.
    fn check(&self, rc: &KubernetesRunnerConfig, home: &str) -> Result<(), (&'static str, String)> {
        if let Some(image) = &self.image {
            if image.trim().is_empty() {
                return Err(("image", "must not be empty".into()));
            }
            if !rc.is_image_allowed(image) {
                return Err(("image", format!("`{image}` is not in the runner's image allowlist")));
            }
        }
        if let Some(ns) = &self.namespace {
            check_dns_label(ns).map_err(|m| ("namespace", m))?;
            if !rc.is_namespace_allowed(ns, home) {
                return Err(("namespace", format!("`{ns}` is not in the runner's namespace allowlist")));
            }
        }
        if let Some(sa) = &self.service_account {
            check_dns_label(sa).map_err(|m| ("service_account", m))?;
        }
        if let Some(p) = &self.image_pull_policy
            && !matches!(p.as_str(), "Always" | "IfNotPresent" | "Never")
        {
            return Err(("image_pull_policy", format!("`{p}` is not Always, IfNotPresent or Never")));
        }
        for env in self.env.iter().flatten() {
            if env.name.is_empty() {
                return Err(("env", "every entry needs a name".into()));
            }
        }
        if let Some(r) = &self.resources {
            for (kind, map) in [("requests", &r.requests), ("limits", &r.limits)] {
                for (name, q) in map.iter().flatten() {
                    if !is_quantity(&q.0) {
                        return Err(("resources", format!("{kind}.{name}: `{}` is not a quantity", q.0)));
                    }
                }
            }
        }
        for (k, v) in self.labels.iter().flatten() {
            if k.is_empty() || k.len() > 253 || !is_label_value(v) {
                return Err(("labels", format!("`{k}: {v}` is not a valid label")));
            }
        }
        Ok(())
    }
}

/// A Kubernetes quantity: a decimal number with an optional suffix (`250m`, `64Mi`, `1.5`, `1e3`).
pub(crate) fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return false;
    }
    const SUFFIXES: &[&str] = &["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if SUFFIXES.contains(&suffix) {
        return true;
    }
    let exp = suffix.strip_prefix(['e', 'E']).map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    matches!(exp, Some(e) if !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()))
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub(crate) fn is_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    v.len() <= 63
        && ends_ok(v.chars().next())
        && ends_ok(v.chars().last())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc() -> KubernetesRunnerConfig {
        KubernetesRunnerConfig::builder()
            .allow_image("registry.example.com/*")
            .allow_image("payment-processor:*")
            .build()
            .unwrap()
    }

    #[test]
    fn plan_config_validates() {
        validate(&json!({ "image": "payment-processor:v1" }), &rc(), "default").unwrap();
        let full = json!({
            "image": "registry.example.com/pay:v2",
            "command": ["/bin/pay"], "args": ["--fast"],
            "env": [
                { "name": "MODE", "value": "live" },
                { "name": "DB_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db-secret", "key": "password" } } }
            ],
            "resources": { "requests": { "memory": "64Mi", "cpu": "250m" }, "limits": { "memory": "128Mi", "cpu": "500m" } },
            "nodeSelector": { "disk": "ssd" },
            "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "jobs", "effect": "NoSchedule" }],
            "readOnlyRootFilesystem": false,
        });
        validate(&full, &rc(), "default").unwrap();
        let (job, image) = resolve(&full, &rc(), "default").unwrap();
        assert_eq!(image, "registry.example.com/pay:v2");
        let env = job.env.unwrap();
        let secret = env[1].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((secret.name.as_str(), secret.key.as_str()), ("db-secret", "password"));
    }

    #[test]
    fn rejects_with_the_field_named() {
        let cases = [
            (json!({}), "config.image"),
            (json!({ "image": "docker.io/evil:1" }), "config.image"),
            (json!({ "image": "payment-processor:v1", "privileged": true }), "config.privileged"),
            (json!({ "image": "payment-processor:v1", "namespace": "kube-system" }), "config.namespace"),
            (json!({ "image": "payment-processor:v1", "command": "ls -l" }), "config.command"),
            (
                json!({ "image": "payment-processor:v1", "resources": { "limits": { "cpu": "lots" } } }),
                "config.resources",
            ),
            (json!({ "image": "payment-processor:v1", "imagePullPolicy": "Sometimes" }), "config.image_pull_policy"),
            (json!("payment-processor:v1"), "config:"),
        ];
        for (config, field) in cases {
            let e = validate(&config, &rc(), "default").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidTemplate, "{config}");
            assert!(e.message().starts_with(field), "{config}: {e}");
        }
    }

    #[test]
    fn templated_values_wait_for_run_time() {
        let raw = json!({ "image": "${input.image}", "namespace": "${input.ns}", "args": "${input.args}" });
        validate(&raw, &rc(), "default").unwrap();
        let resolved = json!({ "image": "docker.io/evil:1", "namespace": "default", "args": [] });
        let e = resolve(&resolved, &rc(), "default").unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.message().contains("allowlist"), "{e}");
    }

    #[test]
    fn quantities_and_label_values() {
        for q in ["64Mi", "250m", "1", "1.5", "0.5Gi", "1e3", "+2k"] {
            assert!(is_quantity(q), "{q}");
        }
        for q in ["", "lots", "1.2.3", "64MiB", "e3", "1e"] {
            assert!(!is_quantity(q), "{q}");
        }
        assert!(is_label_value("a.b_c-1"));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
