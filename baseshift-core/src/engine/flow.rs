//! Flow control on one engine instance: token-bucket rate limits and circuit breakers per
//! job type. Both only hold jobs back (they stay `READY` in the store and wait); neither
//! fails a job.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// At most `per_second` job starts per second of one job type, with bursts of `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RateLimit {
    /// Sustained starts per second (> 0).
    pub per_second: f64,
    /// Starts allowed at once after a quiet period (>= 1).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` starts per second, bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        RateLimit { per_second, burst }
    }
}

/// Opens after `failure_threshold` consecutive failed attempts of a job type (retryable
/// errors and timeouts), holds that type's jobs for `cool_down`, then lets one attempt
/// through (half-open): its success closes the breaker, its failure opens it again.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker (>= 1).
    pub failure_threshold: u32,
    /// How long an open breaker holds jobs back.
    #[serde(with = "super::builder::duration_serde")]
    pub cool_down: Duration,
}

impl CircuitBreaker {
    /// A breaker opening after `failure_threshold` failures for `cool_down`.
    pub fn new(failure_threshold: u32, cool_down: Duration) -> Self {
        CircuitBreaker { failure_threshold, cool_down }
    }
}

/// A breaker's state, as reported in `system_events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BreakerChange {
    Opened,
    Closed,
}

#[derive(Debug)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<String, Bucket>,
    breakers: HashMap<String, Breaker>,
}

/// The rate limits and breakers of one engine instance.
#[derive(Debug, Default)]
pub(crate) struct FlowControl {
    rates: HashMap<String, RateLimit>,
    breaker: Option<CircuitBreaker>,
    state: Mutex<State>,
}

impl FlowControl {
    pub fn new(rates: HashMap<String, RateLimit>, breaker: Option<CircuitBreaker>) -> Self {
        FlowControl { rates, breaker, state: Mutex::new(State::default()) }
    }

    /// Whether no rate limit and no breaker is configured: nothing ever holds a job back.
    pub fn is_inactive(&self) -> bool {
        self.rates.is_empty() && self.breaker.is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many jobs of `job_type` may start now (`None`: no flow limit applies).
    pub fn room(&self, job_type: &str, now: Instant) -> Option<usize> {
        let mut st = self.lock();
        let mut room: Option<usize> = None;
        if let Some(b) = st.breakers.get_mut(job_type) {
            match b {
                Breaker::Open { until } if now >= *until => *b = Breaker::HalfOpen { probing: false },
                _ => {}
            }
            match b {
                Breaker::Open { .. } | Breaker::HalfOpen { probing: true } => return Some(0),
                Breaker::HalfOpen { probing: false } => room = Some(1),
                Breaker::Closed { .. } => {}
            }
        }
        if let Some(rate) = self.rates.get(job_type) {
            let bucket = refill(&mut st, job_type, rate, now);
            let tokens = bucket.tokens.floor().max(0.0) as usize;
            room = Some(room.map_or(tokens, |r| r.min(tokens)));
        }
        room
    }

    /// Records that `n` jobs of `job_type` were claimed.
    pub fn claimed(&self, job_type: &str, n: usize, now: Instant) {
        let mut st = self.lock();
        if let Some(rate) = self.rates.get(job_type) {
            let bucket = refill(&mut st, job_type, rate, now);
            bucket.tokens -= n as f64;
        }
        if let Some(b @ Breaker::HalfOpen { probing: false }) = st.breakers.get_mut(job_type) {
            *b = Breaker::HalfOpen { probing: true };
        }
    }

    /// Records an attempt's outcome; returns a breaker change to report.
    pub fn outcome(&self, job_type: &str, failed: bool, now: Instant) -> Option<BreakerChange> {
        let cfg = self.breaker?;
        let mut st = self.lock();
        let b = st.breakers.entry(job_type.to_owned()).or_insert(Breaker::Closed { failures: 0 });
        match (&*b, failed) {
            (Breaker::Closed { failures }, true) => {
                let failures = failures + 1;
                if failures >= cfg.failure_threshold.max(1) {
                    *b = Breaker::Open { until: now + cfg.cool_down };
                    return Some(BreakerChange::Opened);
                }
                *b = Breaker::Closed { failures };
            }
            (Breaker::Closed { .. }, false) => *b = Breaker::Closed { failures: 0 },
            (Breaker::HalfOpen { .. }, true) | (Breaker::Open { .. }, true) => {
                let was_open = matches!(b, Breaker::Open { .. });
                *b = Breaker::Open { until: now + cfg.cool_down };
                return (!was_open).then_some(BreakerChange::Opened);
            }
            (Breaker::HalfOpen { .. }, false) | (Breaker::Open { .. }, false) => {
                *b = Breaker::Closed { failures: 0 };
                return Some(BreakerChange::Closed);
            }
        }
        None
    }

    /// An attempt of `job_type` ended without a verdict: a half-open probe slot is freed.
    pub fn released(&self, job_type: &str) {
        if let Some(b @ Breaker::HalfOpen { probing: true }) = self.lock().breakers.get_mut(job_type) {
            *b = Breaker::HalfOpen { probing: false };
        }
    }

    /// When held-back work may next be allowed (a token refills or a breaker half-opens).
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let st = self.lock();
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for b in st.breakers.values() {
            if let Breaker::Open { until } = b {
                consider(*until);
            }
        }
        for (ty, bucket) in &st.buckets {
            if let Some(rate) = self.rates.get(ty)
                && bucket.tokens < 1.0
            {
                let missing = 1.0 - bucket.tokens;
                consider(now + Duration::from_secs_f64(missing / rate.per_second.max(1e-9)));
            }
        }
        next
    }
}

fn refill<'a>(st: &'a mut State, job_type: &str, rate: &RateLimit, now: Instant) -> &'a mut Bucket {
    let burst = f64::from(rate.burst.max(1));
    let bucket = st.buckets.entry(job_type.to_owned()).or_insert(Bucket { tokens: burst, last: now });
    let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(burst);
    bucket.last = now;
    bucket
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let f = FlowControl::new(HashMap::from([("h".to_owned(), RateLimit::new(10.0, 3))]), None);
        let t0 = Instant::now();
        assert_eq!(f.room("h", t0), Some(3));
        f.claimed("h", 3, t0);
        assert_eq!(f.room("h", t0), Some(0));
        assert_eq!(f.room("other", t0), None, "unlimited types have no room limit");
        let next = f.next_change(t0).expect("a refill is due");
        assert!(next - t0 <= Duration::from_millis(101));
        assert_eq!(f.room("h", t0 + Duration::from_millis(100)), Some(1));
        assert_eq!(f.room("h", t0 + Duration::from_secs(10)), Some(3), "never more than the burst");
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let f = FlowControl::new(HashMap::new(), Some(CircuitBreaker::new(2, Duration::from_secs(1))));
        let t0 = Instant::now();
        assert_eq!(f.outcome("x", true, t0), None);
        assert_eq!(f.room("x", t0), None);
        assert_eq!(f.outcome("x", true, t0), Some(BreakerChange::Opened));
        assert_eq!(f.room("x", t0), Some(0), "open: held back");
        assert_eq!(f.next_change(t0), Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(f.room("x", t1), Some(1), "half-open: one probe");
        f.claimed("x", 1, t1);
        assert_eq!(f.room("x", t1), Some(0), "only one probe at a time");
        assert_eq!(f.outcome("x", true, t1), Some(BreakerChange::Opened), "a failed probe reopens");
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(f.room("x", t2), Some(1));
        f.claimed("x", 1, t2);
        assert_eq!(f.outcome("x", false, t2), Some(BreakerChange::Closed));
        assert_eq!(f.room("x", t2), None);
        assert_eq!(f.outcome("x", false, t2), None);
    }
}
