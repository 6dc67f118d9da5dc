//! Circuit breakers per host for the `http_request` (and `serverless`) runner: after N
//! consecutive failed requests to one host (connection errors, timeouts, 5xx), requests
//! to that host wait for a cool-down instead of being sent; then one probe request goes
//! out, and its result closes the breaker or opens it for another cool-down.
//!
//! The engine's breakers ([`CircuitBreaker`](crate::engine::CircuitBreaker)) hold back a
//! whole job type before it is claimed; this one knows the host, which only the rendered
//! config tells, so it works inside the runner: a held-back job stays `RUNNING` (its
//! lease renewed) and waits, it does not fail. The job's own timeout still applies.

use crate::runner::JobError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// When a host's breaker opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostBreakerSettings {
    /// Consecutive failed requests to one host that open its breaker (at least 1).
    pub failures: u32,
    /// How long an open breaker holds requests back before one probe may go.
    pub cool_down: Duration,
}

#[derive(Debug, Default)]
struct HostState {
    consecutive: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// The breakers of one runner, by host.
#[derive(Debug)]
pub(super) struct HostBreakers {
    settings: HostBreakerSettings,
    hosts: Mutex<HashMap<String, HostState>>,
}

/// A request allowed through; report how it went with [`Pass::record`]. Dropped without a
/// verdict (the job was cancelled or timed out around it), a probe frees the probe slot.
pub(super) struct Pass {
    breakers: Arc<HostBreakers>,
    host: String,
    probe: bool,
    recorded: bool,
}

impl HostBreakers {
    pub(super) fn new(settings: HostBreakerSettings) -> Arc<Self> {
        Arc::new(HostBreakers { settings, hosts: Mutex::new(HashMap::new()) })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, HostState>> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits while `host`'s breaker is open (or another probe is out), then lets the
    /// request through. Fails only when `cancel` fires while waiting.
    pub(super) async fn enter(self: &Arc<Self>, host: &str, cancel: &CancellationToken) -> Result<Pass, JobError> {
        loop {
            let wake_at = {
                let mut hosts = self.lock();
                // A host with no failures on record has no entry: nothing to insert per request.
                let Some(state) = hosts.get_mut(host) else { return Ok(self.pass(host, false)) };
                let now = Instant::now();
                match state.open_until {
                    None => return Ok(self.pass(host, false)),
                    Some(until) if now >= until && !state.probing => {
                        state.probing = true;
                        return Ok(self.pass(host, true));
                    }
                    // Open, or half-open with the probe out: look again later.
                    Some(until) => until.max(now + Duration::from_millis(50)),
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                () = cancel.cancelled() => {
                    return Err(JobError::retryable(format!("cancelled while the circuit breaker of host `{host}` was open")));
                }
            }
        }
    }

    fn pass(self: &Arc<Self>, host: &str, probe: bool) -> Pass {
        Pass { breakers: self.clone(), host: host.to_owned(), probe, recorded: false }
    }

    fn record(&self, host: &str, probe: bool, healthy: bool) {
        let mut hosts = self.lock();
        if healthy {
            if hosts.remove(host).is_some_and(|s| s.open_until.is_some()) {
                tracing::warn!(host, "http circuit breaker closed: requests to this host go out again");
            }
            return;
        }
        let state = hosts.entry(host.to_owned()).or_default();
        if probe {
            state.probing = false;
        }
        state.consecutive = state.consecutive.saturating_add(1);
        // A failed probe re-opens at once; otherwise the threshold decides.
        if probe || state.consecutive >= self.settings.failures {
            if state.open_until.is_none() || probe {
                tracing::warn!(
                    host,
                    failures = state.consecutive,
                    cool_down = ?self.settings.cool_down,
                    "http circuit breaker opened: requests to this host wait"
                );
            }
            state.open_until = Some(Instant::now() + self.settings.cool_down);
        }
    }

    #[cfg(test)]
    pub(super) fn is_open(&self, host: &str) -> bool {
        self.lock().get(host).is_some_and(|s| s.open_until.is_some())
    }
}

impl Pass {
    /// Reports the request's outcome: `healthy` unless the host failed to answer
    /// (connection error, timeout) or answered with a 5xx status.
    pub(super) fn record(mut self, healthy: bool) {
        self.recorded = true;
        self.breakers.record(&self.host, self.probe, healthy);
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.recorded
            && self.probe
            && let Some(state) = self.breakers.lock().get_mut(&self.host)
        {
            state.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> Arc<HostBreakers> {
        HostBreakers::new(HostBreakerSettings { failures: 2, cool_down: Duration::from_millis(200) })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_probes_and_closes() {
        let b = breakers();
        let never = CancellationToken::new();
        b.enter("a", &never).await.unwrap().record(false);
        assert!(!b.is_open("a"), "one failure is below the threshold");
        b.enter("a", &never).await.unwrap().record(false);
        assert!(b.is_open("a"));
        assert!(!b.is_open("b"), "per host");
        b.enter("b", &never).await.unwrap().record(true);

        let start = Instant::now();
        let probe = b.enter("a", &never).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(200), "waited for the cool-down");
        assert!(probe.probe);
        // While the probe is out, others wait.
        let waiting = tokio::time::timeout(Duration::from_millis(500), b.enter("a", &never)).await;
        assert!(waiting.is_err(), "a second request waits while the probe is out");
        probe.record(true);
        assert!(!b.is_open("a"), "a healthy probe closes the breaker");
        assert!(!b.enter("a", &never).await.unwrap().probe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_a_dropped_one_frees_the_slot() {
        let b = breakers();
        let never = CancellationToken::new();
        for _ in 0..2 {
            b.enter("a", &never).await.unwrap().record(false);
        }
        b.enter("a", &never).await.unwrap().record(false);
        assert!(b.is_open("a"), "the failed probe re-opened it");
        let dropped = b.enter("a", &never).await.unwrap();
        assert!(dropped.probe);
        drop(dropped);
        let next = tokio::time::timeout(Duration::from_millis(100), b.enter("a", &never)).await;
        assert!(next.is_ok_and(|p| p.unwrap().probe), "the next request may probe at once");
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_the_wait() {
        let b = breakers();
        let never = CancellationToken::new();
        for _ in 0..2 {
            b.enter("a", &never).await.unwrap().record(false);
        }
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = b.enter("a", &cancel).await.err().unwrap();
        assert!(err.is_retryable() && err.message().contains("host `a`"), "{err:?}");
    }
}
