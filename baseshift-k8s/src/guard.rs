//! Deleting a job's pod on every exit path, including a dropped future.

use crate::errors::is_not_found;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

/// Deletes its pod when asked, or when dropped while still armed.
///
/// The engine drops a runner's future at the job's deadline or on cancellation, so the
/// `Drop` path is what keeps pods from outliving their attempt; it spawns the deletion on
/// the current tokio runtime (there is always one while a runner's future is polled).
pub(crate) struct PodGuard {
    api: Api<Pod>,
    name: String,
    params: DeleteParams,
    armed: bool,
}

impl PodGuard {
    /// An armed guard for pod `name`.
    pub(crate) fn new(api: Api<Pod>, name: String, params: DeleteParams) -> Self {
        PodGuard { api, name, params, armed: true }
    }

    /// Leaves the pod in place.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }

    /// Deletes the pod now; a missing pod is fine, other failures are logged.
    pub(crate) async fn delete(mut self) {
        self.armed = false;
        delete(&self.api, &self.name, &self.params).await;
    }
}

async fn delete(api: &Api<Pod>, name: &str, params: &DeleteParams) {
    match api.delete(name, params).await {
        Ok(_) => tracing::debug!(pod = %name, "pod deleted"),
        Err(e) if is_not_found(&e) => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "could not delete the pod"),
    }
}

impl Drop for PodGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (api, name, params) = (self.api.clone(), std::mem::take(&mut self.name), self.params.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { delete(&api, &name, &params).await });
            }
            Err(_) => tracing::warn!(pod = %name, "no tokio runtime to delete the pod of a dropped attempt"),
        }
    }
}
