//! The runner's configuration: namespace, allowlists, log capture, cleanup.

use baseshift_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The job type [`KubernetesRunner`](crate::KubernetesRunner) serves unless told otherwise.
pub const DEFAULT_JOB_TYPE: &str = "k8s_pod";

/// The prefix of the log line that carries a job's JSON result.
pub const DEFAULT_RESULT_MARKER: &str = "BASESHIFT_RESULT ";

/// Configuration of a [`KubernetesRunner`](crate::KubernetesRunner).
///
/// Every field has a default (`#[serde(default)]`), so `{}` is a valid config: pods go to the
/// client's default namespace, any image is allowed, finished pods are deleted.
///
/// # Allowlists
///
/// `allowed_images` holds patterns where `*` matches any run of characters (`/` included):
/// `registry.example.com/*` allows every image of that registry, `payment-processor:v1` exactly
/// that reference. Images are compared as written in the job config (no registry or tag
/// normalisation), so `nginx` and `docker.io/library/nginx` are different strings. An empty list
/// allows every image. `allowed_namespaces` uses the same patterns; when it is empty a job may only
/// use the runner's own namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct KubernetesRunnerConfig {
    /// The namespace of jobs that name none; `None` uses the client's default namespace.
    pub namespace: Option<String>,
    /// Image patterns a job may use; empty allows every image.
    pub allowed_images: Vec<String>,
    /// Namespace patterns a job may use besides the runner's own; empty allows only that one.
    pub allowed_namespaces: Vec<String>,
    /// The service account of jobs that name none; `None` runs them without a token mounted.
    pub service_account: Option<String>,
    /// Extra labels put on every pod (the runner's own labels win on a clash).
    pub labels: BTreeMap<String, String>,
    /// The owner every pod gets (e.g. the host's Deployment), so Kubernetes garbage-collects
    /// pods the host could not delete.
    pub owner: Option<PodOwner>,
    /// Leave pods whose outcome the runner saw (succeeded, failed, or stuck on a permanent error
    /// such as `ImagePullBackOff`) in place for debugging. Pods that may still be running (the
    /// attempt was cancelled, timed out or lost its watch) are deleted regardless.
    pub keep_pods: bool,
    /// Log lines read from the end of the container's log (`tailLines`).
    pub log_tail_lines: u32,
    /// Bytes read at most from the log (`limitBytes`), also the size of `logs_tail` in outputs.
    pub log_limit_bytes: u32,
    /// Exit codes that make a failed pod retryable (all other non-zero codes are permanent).
    pub retryable_exit_codes: Vec<i32>,
    /// The prefix of the log line whose remainder is the job's JSON result.
    pub result_marker: String,
    /// The name of the job's container.
    pub container_name: String,
    /// Grace period of pod deletion, in seconds; `None` keeps the pod's own.
    pub delete_grace_period_seconds: Option<u32>,
}

impl Default for KubernetesRunnerConfig {
    fn default() -> Self {
        KubernetesRunnerConfig {
            namespace: None,
            allowed_images: Vec::new(),
            allowed_namespaces: Vec::new(),
            service_account: None,
            labels: BTreeMap::new(),
            owner: None,
            keep_pods: false,
            log_tail_lines: 200,
            log_limit_bytes: 64 * 1024,
            retryable_exit_codes: Vec::new(),
            result_marker: DEFAULT_RESULT_MARKER.to_owned(),
            container_name: "job".to_owned(),
            delete_grace_period_seconds: None,
        }
    }
}

/// The owner reference put on every pod (`metadata.ownerReferences`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PodOwner {
    /// The owner's `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// The owner's kind, e.g. `Deployment`.
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// The owner's uid (ownership is by uid, not name).
    pub uid: String,
}

impl PodOwner {
    /// An owner reference.
    pub fn new(
        api_version: impl Into<String>,
        kind: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        PodOwner { api_version: api_version.into(), kind: kind.into(), name: name.into(), uid: uid.into() }
    }
}

impl KubernetesRunnerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> KubernetesRunnerConfigBuilder {
        KubernetesRunnerConfigBuilder { config: KubernetesRunnerConfig::default() }
    }

    /// Checks the config (names, limits, patterns); does no I/O.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(ns) = &self.namespace {
            check_dns_label(ns).map_err(|m| config_field_error("namespace", m))?;
        }
        for (field, list) in
            [("allowed_images", &self.allowed_images), ("allowed_namespaces", &self.allowed_namespaces)]
        {
            if list.iter().any(|p| p.trim().is_empty()) {
                return Err(config_field_error(field, "empty pattern"));
            }
        }
        check_dns_label(&self.container_name).map_err(|m| config_field_error("container_name", m))?;
        if self.log_limit_bytes == 0 || self.log_tail_lines == 0 {
            return Err(config_field_error("log_limit_bytes", "log_tail_lines and log_limit_bytes must be positive"));
        }
        if self.result_marker.is_empty() {
            return Err(config_field_error("result_marker", "must not be empty"));
        }
        if let Some(owner) = &self.owner
            && [&owner.api_version, &owner.kind, &owner.name, &owner.uid].iter().any(|s| s.is_empty())
        {
            return Err(config_field_error("owner", "api_version, kind, name and uid are all required"));
        }
        Ok(())
    }

    /// Whether `image` matches `allowed_images` (an empty list allows every image).
    pub fn is_image_allowed(&self, image: &str) -> bool {
        self.allowed_images.is_empty() || self.allowed_images.iter().any(|p| glob_match(p, image))
    }

    /// Whether a job may use `namespace`, given the runner's own namespace `home`.
    pub fn is_namespace_allowed(&self, namespace: &str, home: &str) -> bool {
        namespace == home || self.allowed_namespaces.iter().any(|p| glob_match(p, namespace))
    }
}

/// Builder of a [`KubernetesRunnerConfig`]; [`build`](Self::build) validates.
#[must_use]
#[derive(Clone, Debug)]
pub struct KubernetesRunnerConfigBuilder {
    config: KubernetesRunnerConfig,
}

impl KubernetesRunnerConfigBuilder {
    /// Sets the namespace of jobs that name none.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = Some(namespace.into());
        self
    }

    /// Allows images matching `pattern` (`*` matches anything).
    pub fn allow_image(mut self, pattern: impl Into<String>) -> Self {
        self.config.allowed_images.push(pattern.into());
        self
    }

    /// Allows namespaces matching `pattern` besides the runner's own.
    pub fn allow_namespace(mut self, pattern: impl Into<String>) -> Self {
        self.config.allowed_namespaces.push(pattern.into());
        self
    }

    /// Sets the service account of jobs that name none.
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.config.service_account = Some(name.into());
        self
    }

    /// Adds a label put on every pod.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the owner reference of every pod.
    pub fn owner(mut self, owner: PodOwner) -> Self {
        self.config.owner = Some(owner);
        self
    }

    /// Leaves finished pods in place (for debugging).
    pub fn keep_pods(mut self, keep: bool) -> Self {
        self.config.keep_pods = keep;
        self
    }

    /// Sets how much of the log is read: the last `lines` lines, at most `bytes` bytes.
    pub fn log_tail(mut self, lines: u32, bytes: u32) -> Self {
        self.config.log_tail_lines = lines;
        self.config.log_limit_bytes = bytes;
        self
    }

    /// Makes a failure with `code` retryable.
    pub fn retryable_exit_code(mut self, code: i32) -> Self {
        self.config.retryable_exit_codes.push(code);
        self
    }

    /// Sets the result-line prefix.
    pub fn result_marker(mut self, marker: impl Into<String>) -> Self {
        self.config.result_marker = marker.into();
        self
    }

    /// Sets the container name.
    pub fn container_name(mut self, name: impl Into<String>) -> Self {
        self.config.container_name = name.into();
        self
    }

    /// Sets the grace period of pod deletion.
    pub fn delete_grace_period_seconds(mut self, seconds: u32) -> Self {
        self.config.delete_grace_period_seconds = Some(seconds);
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<KubernetesRunnerConfig, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

fn config_field_error(field: &str, message: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("KubernetesRunnerConfig.{field}: {message}")).with_backend("k8s")
}

/// Checks an RFC 1123 label (namespaces, container names): lower-case alphanumerics and `-`,
/// starting and ending alphanumeric, at most 63 characters.
pub(crate) fn check_dns_label(s: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if s.is_empty() || s.len() > 63 {
        return Err(format!("`{s}` must be 1-63 characters"));
    }
    if !s.chars().all(ok_char) || s.starts_with('-') || s.ends_with('-') {
        return Err(format!("`{s}` is not a DNS-1123 label (lower-case alphanumerics and '-')"));
    }
    Ok(())
}

/// Matches `text` against `pattern`, where `*` matches any run of characters.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob_match("registry.example.com/*", "registry.example.com/team/app:v1"));
        assert!(!glob_match("registry.example.com/*", "evil.com/registry.example.com"));
        assert!(!glob_match("registry.example.com/*", "registry.example.com.evil.com/x"));
        assert!(glob_match("payment-processor:v1", "payment-processor:v1"));
        assert!(!glob_match("payment-processor:v1", "payment-processor:v10"));
        assert!(glob_match("jobs-*", "jobs-a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn allowlists() {
        let c = KubernetesRunnerConfig::builder()
            .allow_image("registry.example.com/*")
            .allow_namespace("jobs-*")
            .build()
            .unwrap();
        assert!(c.is_image_allowed("registry.example.com/x:1"));
        assert!(!c.is_image_allowed("docker.io/x:1"));
        assert!(c.is_namespace_allowed("default", "default"));
        assert!(c.is_namespace_allowed("jobs-payments", "default"));
        assert!(!c.is_namespace_allowed("kube-system", "default"));
        assert!(KubernetesRunnerConfig::default().is_image_allowed("anything"));
    }

    #[test]
    fn build_validates() {
        let e = KubernetesRunnerConfig::builder().namespace("Bad_NS").build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("namespace"), "{e}");
        assert!(KubernetesRunnerConfig::builder().allow_image(" ").build().is_err());
        assert!(KubernetesRunnerConfig::builder().log_tail(0, 10).build().is_err());
        assert!(
            KubernetesRunnerConfig::builder().owner(PodOwner::new("apps/v1", "Deployment", "h", "")).build().is_err()
        );
        let c: KubernetesRunnerConfig = serde_json::from_value(serde_json::json!({"keep_pods": true})).unwrap();
        assert!(c.keep_pods);
        assert_eq!(c.log_tail_lines, 200);
    }
}
