//! The `delay` runner: waits for a while.

use super::fields::ConfigReader;
use crate::error::Error;
use crate::runner::{JobContext, JobError, JobOutput, JobRunner};
use crate::template::DurationSpec;
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};

const FIELDS: &[&str] = &["duration"];

/// The `delay` runner: sleeps for `config.duration` (`"30s"`, `"500ms"`, or seconds),
/// then succeeds with `{"slept_ms": n}`.
///
/// Cancellation ends the sleep at once with a retryable error; so does the job's
/// deadline when it comes before the end of the sleep.
///
/// ```yaml
/// - id: cool_down
///   type: delay
///   config: { duration: 5m }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DelayRunner;

impl DelayRunner {
    /// A `delay` runner.
    pub fn new() -> Self {
        DelayRunner
    }
}

#[async_trait]
impl JobRunner for DelayRunner {
    fn job_type(&self) -> &str {
        "delay"
    }

    fn validate_config(&self, config: &Value) -> Result<(), Error> {
        ConfigReader::raw(config, FIELDS)?.require::<DurationSpec>("duration").map(|_| ())
    }

    async fn run(&self, ctx: JobContext) -> Result<JobOutput, JobError> {
        let config = ConfigReader::resolved(&ctx.config, FIELDS)?;
        let duration = config
            .require::<DurationSpec>("duration")
            .map_err(JobError::permanent)?
            .value()
            .map_or_else(Default::default, |d| d.0);
        let start = Instant::now();
        let wake = start.checked_add(duration);
        let until = match (wake, ctx.deadline) {
            (Some(w), Some(d)) => Some(w.min(d)),
            (w, d) => w.or(d),
        };
        let sleep = async {
            match until {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = ctx.cancellation.cancelled() => Err(JobError::retryable("delay cancelled")),
            () = sleep => {
                let slept = start.elapsed();
                if slept < duration {
                    return Err(JobError::retryable(format!(
                        "delay of {} stopped at the job's deadline",
                        DurationSpec(duration)
                    )));
                }
                let slept_ms = u64::try_from(slept.as_millis()).unwrap_or(u64::MAX);
                Ok(JobOutput::json(json!({ "slept_ms": slept_ms })))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx(config: Value) -> JobContext {
        JobContext::new("wf-1", "wait", "delay", config)
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_for_the_duration() {
        let start = Instant::now();
        let out = DelayRunner.run(ctx(json!({"duration": "1500ms"}))).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert_eq!(out.value()["slept_ms"], json!(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn accepts_a_number_of_seconds() {
        let out = DelayRunner.run(ctx(json!({"duration": 2}))).await.unwrap();
        assert_eq!(out.value()["slept_ms"], json!(2000));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_the_sleep() {
        let c = ctx(json!({"duration": "1h"}));
        let token = c.cancellation.clone();
        let handle = tokio::spawn(async move { DelayRunner.run(c).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
        let err = handle.await.unwrap().unwrap_err();
        assert!(err.is_retryable());
        assert!(err.message().contains("cancelled"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_ends_the_sleep() {
        let mut c = ctx(json!({"duration": "1h"}));
        c.deadline = Some(Instant::now() + Duration::from_secs(3));
        let start = Instant::now();
        let err = DelayRunner.run(c).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(err.is_retryable());
    }

    #[test]
    fn validates_duration() {
        assert!(DelayRunner.validate_config(&json!({"duration": "30s"})).is_ok());
        assert!(DelayRunner.validate_config(&json!({"duration": "${input.wait}"})).is_ok());
        let missing = DelayRunner.validate_config(&json!({})).unwrap_err();
        assert!(missing.to_string().contains("config.duration"), "{missing}");
        assert!(DelayRunner.validate_config(&json!({"duration": "soon"})).is_err());
        assert!(DelayRunner.validate_config(&json!({"duration": -1})).is_err());
    }

    #[tokio::test]
    async fn bad_resolved_duration_is_permanent() {
        let err = DelayRunner.run(ctx(json!({"duration": "soon"}))).await.unwrap_err();
        assert!(!err.is_retryable());
    }
}
