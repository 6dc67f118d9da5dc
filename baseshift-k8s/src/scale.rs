//! Idle-pod management: scaling a Deployment of worker pods from the queue depth.

use crate::errors::core_error;
use baseshift_core::{Error, ErrorKind};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How many replicas a queue depth asks for, and how long to wait before scaling down.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScalePolicy {
    /// Replicas kept even with an empty queue (the warm, idle pods).
    pub min_replicas: u32,
    /// Replicas never exceeded.
    pub max_replicas: u32,
    /// Queued jobs one replica is expected to handle.
    pub jobs_per_replica: u32,
    /// How long the queue must ask for fewer replicas before scaling down.
    pub idle_timeout: Duration,
}

impl ScalePolicy {
    /// A policy between `min` and `max` replicas, one replica per queued job, 5 minutes idle timeout.
    pub fn new(min_replicas: u32, max_replicas: u32) -> Self {
        ScalePolicy { min_replicas, max_replicas, jobs_per_replica: 1, idle_timeout: Duration::from_secs(300) }
    }

    /// Sets how many queued jobs one replica handles.
    #[must_use]
    pub fn jobs_per_replica(mut self, n: u32) -> Self {
        self.jobs_per_replica = n;
        self
    }

    /// Sets how long fewer replicas must suffice before scaling down.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Checks `min <= max` and `jobs_per_replica > 0`.
    pub fn validate(&self) -> Result<(), Error> {
        if self.min_replicas > self.max_replicas || self.jobs_per_replica == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "ScalePolicy: need min_replicas ({}) <= max_replicas ({}) and jobs_per_replica > 0",
                    self.min_replicas, self.max_replicas
                ),
            ));
        }
        Ok(())
    }

    /// The replicas `queue_depth` asks for: `ceil(depth / jobs_per_replica)` within min and max.
    pub fn desired(&self, queue_depth: u64) -> u32 {
        let per = u64::from(self.jobs_per_replica.max(1));
        let wanted = u32::try_from(queue_depth.div_ceil(per)).unwrap_or(u32::MAX);
        wanted.clamp(self.min_replicas, self.max_replicas.max(self.min_replicas))
    }

    /// Decides the replicas given the `current` ones. `low_since` remembers since when fewer
    /// replicas have sufficed; it is updated here.
    pub fn decide(
        &self,
        current: u32,
        queue_depth: u64,
        low_since: &mut Option<Instant>,
        now: Instant,
    ) -> ScaleDecision {
        let desired = self.desired(queue_depth);
        if desired > current || current > self.max_replicas {
            *low_since = None;
            let to = desired.max(current.min(self.max_replicas));
            return if to > current {
                ScaleDecision::ScaledUp { from: current, to }
            } else {
                ScaleDecision::ScaledDown { from: current, to }
            };
        }
        if desired == current {
            *low_since = None;
            return ScaleDecision::Unchanged { replicas: current };
        }
        let since = *low_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.idle_timeout {
            *low_since = None;
            ScaleDecision::ScaledDown { from: current, to: desired }
        } else {
            ScaleDecision::HoldingDown { replicas: current, desired }
        }
    }
}

/// What one observation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScaleDecision {
    /// The replicas already fit the queue.
    Unchanged {
        /// The replicas.
        replicas: u32,
    },
    /// Replicas were added (at once: queued work should not wait).
    ScaledUp {
        /// Replicas before.
        from: u32,
        /// Replicas after.
        to: u32,
    },
    /// Replicas were removed after the idle timeout (or to respect the maximum).
    ScaledDown {
        /// Replicas before.
        from: u32,
        /// Replicas after.
        to: u32,
    },
    /// Fewer replicas would do, but not yet for the idle timeout: nothing changed.
    HoldingDown {
        /// The replicas kept.
        replicas: u32,
        /// The replicas the queue asks for.
        desired: u32,
    },
}

/// Scales a Deployment of worker pods (`spec.replicas`, through its `scale` subresource) from
/// the queue depth the host observes.
///
/// # Why a Deployment rather than a pool of warm per-job pods
///
/// A warm pod can only take a job if something hands the job to it: an exec into the pod, or
/// a worker process inside it that claims jobs itself. The second is exactly a baseshift host:
/// a worker binary that runs the engine against the shared Redis/Postgres store and claims jobs
/// with leases. Scaling those workers is scaling a Deployment, and Kubernetes then does what a
/// hand-made pool would have to re-implement: replacing crashed pods, rolling out new images,
/// disruption budgets. Idle replicas (`min_replicas`) are the warm pods;
/// [`KubernetesRunner`](crate::KubernetesRunner) covers one-off jobs that need their own image.
///
/// Each [`observe`](Self::observe) reads the current replicas (so manual or other changes are
/// respected), scales up at once, and scales down only when fewer replicas have sufficed for
/// `idle_timeout`.
#[derive(Debug)]
pub struct DeploymentScaler {
    api: Api<Deployment>,
    name: String,
    policy: ScalePolicy,
    low_since: Mutex<Option<Instant>>,
}

impl DeploymentScaler {
    /// A scaler of Deployment `name` in `namespace`; validates the policy, does no I/O.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: impl Into<String>,
        policy: ScalePolicy,
    ) -> Result<Self, Error> {
        policy.validate()?;
        Ok(DeploymentScaler {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            policy,
            low_since: Mutex::new(None),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &ScalePolicy {
        &self.policy
    }

    /// Observes the queue depth and scales the Deployment if the policy says so.
    pub async fn observe(&self, queue_depth: u64) -> Result<ScaleDecision, Error> {
        let op = "DeploymentScaler::observe";
        // Held across the calls so concurrent observations do not interleave their decisions.
        let mut low_since = self.low_since.lock().await;
        let scale = self.api.get_scale(&self.name).await.map_err(|e| core_error(op, e))?;
        let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0).max(0);
        let current = u32::try_from(current).unwrap_or(0);
        let decision = self.policy.decide(current, queue_depth, &mut low_since, Instant::now());
        if let ScaleDecision::ScaledUp { to, .. } | ScaleDecision::ScaledDown { to, .. } = decision {
            let patch = Patch::Merge(json!({ "spec": { "replicas": to } }));
            self.api.patch_scale(&self.name, &PatchParams::default(), &patch).await.map_err(|e| core_error(op, e))?;
            tracing::info!(deployment = %self.name, ?decision, queue_depth, "scaled");
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_is_clamped() {
        let p = ScalePolicy::new(1, 5).jobs_per_replica(10);
        assert_eq!(p.desired(0), 1);
        assert_eq!(p.desired(1), 1);
        assert_eq!(p.desired(11), 2);
        assert_eq!(p.desired(10_000), 5);
        assert!(ScalePolicy::new(3, 2).validate().is_err());
        assert!(ScalePolicy::new(0, 2).jobs_per_replica(0).validate().is_err());
    }

    #[test]
    fn scales_up_at_once_and_down_after_idle_timeout() {
        let p = ScalePolicy::new(1, 5).idle_timeout(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut low = None;
        assert_eq!(p.decide(1, 4, &mut low, t0), ScaleDecision::ScaledUp { from: 1, to: 4 });
        assert_eq!(p.decide(4, 4, &mut low, t0), ScaleDecision::Unchanged { replicas: 4 });
        assert_eq!(p.decide(4, 0, &mut low, t0), ScaleDecision::HoldingDown { replicas: 4, desired: 1 });
        let t30 = t0 + Duration::from_secs(30);
        assert_eq!(p.decide(4, 2, &mut low, t30), ScaleDecision::HoldingDown { replicas: 4, desired: 2 });
        // A busy moment resets the idle clock.
        assert_eq!(p.decide(4, 4, &mut low, t30), ScaleDecision::Unchanged { replicas: 4 });
        let t70 = t0 + Duration::from_secs(70);
        assert_eq!(p.decide(4, 0, &mut low, t70), ScaleDecision::HoldingDown { replicas: 4, desired: 1 });
        let t130 = t0 + Duration::from_secs(130);
        assert_eq!(p.decide(4, 0, &mut low, t130), ScaleDecision::ScaledDown { from: 4, to: 1 });
        assert_eq!(low, None);
    }

    #[test]
    fn respects_bounds_set_elsewhere() {
        let p = ScalePolicy::new(2, 5);
        let now = Instant::now();
        assert_eq!(p.decide(0, 0, &mut None, now), ScaleDecision::ScaledUp { from: 0, to: 2 });
        assert_eq!(p.decide(9, 0, &mut None, now), ScaleDecision::ScaledDown { from: 9, to: 5 });
        assert_eq!(p.decide(9, 100, &mut None, now), ScaleDecision::ScaledDown { from: 9, to: 5 });
    }
}
