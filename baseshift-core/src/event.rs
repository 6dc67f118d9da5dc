//! Events: what every state transition publishes on the [`EventBus`](crate::EventBus).

use crate::ids::{Name, WorkflowId};
use crate::state::{JobStatus, WorkflowStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

mod label;

pub use label::Label;

/// The three topics of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Job transitions.
    JobEvents,
    /// Workflow transitions.
    WorkflowEvents,
    /// Engine-level events (instance start, recovery, dead letters).
    SystemEvents,
}

impl Topic {
    /// All topics.
    pub const ALL: [Topic; 3] = [Topic::JobEvents, Topic::WorkflowEvents, Topic::SystemEvents];

    /// The topic's name: `job_events`, `workflow_events` or `system_events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::JobEvents => "job_events",
            Topic::WorkflowEvents => "workflow_events",
            Topic::SystemEvents => "system_events",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload of an event, as the plan shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventPayload {
    /// The workflow concerned (empty for some system events).
    pub workflow_id: WorkflowId,
    /// The job concerned, for job events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Name>,
    /// The new status (`RUNNING`, `SUCCEEDED`, ...).
    pub status: Label,
    /// The job's output, or details of the transition. `Some(null)` (a job whose output is
    /// `null`) is written as `"result": null` and read back as `Some(null)`; `None` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub result: Option<Value>,
    /// The attempt number, for job events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// For a job that finished an attempt: how long it ran (`started_at` to `finished_at`
    /// of its record), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// For a job whose runner measured it (e.g. `shell`): the runner's `resource_usage`
    /// (`duration_ms`, `cpu_ms`, `max_rss_kb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_usage: Option<Value>,
}

/// A field that is present is `Some`, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One event: `{"event_type", "timestamp", "payload": {"workflow_id", "job_id", "status", "result"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// e.g. `job_succeeded`, `workflow_completed`.
    pub event_type: Label,
    /// When the transition happened.
    pub timestamp: DateTime<Utc>,
    /// What happened.
    pub payload: EventPayload,
}

impl Event {
    /// A job transition event: `job_<status>`.
    pub fn job(
        workflow_id: &WorkflowId,
        job_id: impl Into<Name>,
        status: JobStatus,
        attempt: u32,
        result: Option<Value>,
    ) -> Event {
        Event::job_at(Utc::now(), workflow_id, job_id, status, attempt, result)
    }

    /// [`Event::job`] with the time of the transition given: a step that already read the
    /// clock stamps its events with that reading.
    ///
    /// ```
    /// use baseshift_core::{Event, JobStatus, WorkflowId};
    ///
    /// let at = chrono::Utc::now();
    /// let e = Event::job_at(at, &WorkflowId::new("w1"), "fetch", JobStatus::Ready, 0, None);
    /// assert_eq!((e.event_type.as_str(), e.timestamp), ("job_ready", at));
    /// ```
    pub fn job_at(
        at: DateTime<Utc>,
        workflow_id: &WorkflowId,
        job_id: impl Into<Name>,
        status: JobStatus,
        attempt: u32,
        result: Option<Value>,
    ) -> Event {
        Event {
            event_type: Label::from_static(job_event_type(status)),
            timestamp: at,
            payload: EventPayload {
                workflow_id: workflow_id.clone(),
                job_id: Some(job_id.into()),
                status: Label::from_static(status.as_str()),
                result,
                attempt: Some(attempt),
                duration_ms: None,
                resource_usage: None,
            },
        }
    }

    /// A job retry event (`job_retrying`): the job goes back to `READY` after a failed attempt.
    pub fn job_retrying(workflow_id: &WorkflowId, job_id: impl Into<Name>, attempt: u32, result: Value) -> Event {
        let mut e = Event::job(workflow_id, job_id, JobStatus::Ready, attempt, Some(result));
        e.event_type = "job_retrying".into();
        e
    }

    /// An audit event on `system_events`: a runner refused job `job_id` of `job_type` for
    /// breaking policy rule `rule` (`policy_violation`).
    pub fn policy_violation(
        workflow_id: &WorkflowId,
        job_id: impl Into<Name>,
        job_type: &str,
        rule: &str,
        message: &str,
    ) -> Event {
        let mut e = Event::system(
            "policy_violation",
            serde_json::json!({ "job_type": job_type, "rule": rule, "message": message }),
        );
        e.payload.workflow_id = workflow_id.clone();
        e.payload.job_id = Some(job_id.into());
        e.payload.status = Label::from_static(JobStatus::Failed.as_str());
        e
    }

    /// A workflow transition event: `workflow_<status>`.
    pub fn workflow(workflow_id: &WorkflowId, status: WorkflowStatus, result: Option<Value>) -> Event {
        Event {
            event_type: Label::from_static(workflow_event_type(status)),
            timestamp: Utc::now(),
            payload: EventPayload {
                workflow_id: workflow_id.clone(),
                job_id: None,
                status: Label::from_static(status.as_str()),
                result,
                attempt: None,
                duration_ms: None,
                resource_usage: None,
            },
        }
    }

    /// A system event, e.g. `instance_started`.
    pub fn system(event_type: impl Into<Label>, result: Value) -> Event {
        Event {
            event_type: event_type.into(),
            timestamp: Utc::now(),
            payload: EventPayload {
                workflow_id: WorkflowId::new(""),
                job_id: None,
                status: "INFO".into(),
                result: Some(result),
                attempt: None,
                duration_ms: None,
                resource_usage: None,
            },
        }
    }

    /// The topic this event belongs on, from its type.
    pub fn topic(&self) -> Topic {
        if self.event_type.starts_with("job_") {
            Topic::JobEvents
        } else if self.event_type.starts_with("workflow_") {
            Topic::WorkflowEvents
        } else {
            Topic::SystemEvents
        }
    }

    /// The partitioning key: the workflow id, so one workflow's events stay in order.
    pub fn key(&self) -> &str {
        self.payload.workflow_id.as_str()
    }
}

/// `job_<status>`, without formatting (events are built on every transition).
fn job_event_type(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Pending => "job_pending",
        JobStatus::Ready => "job_ready",
        JobStatus::Running => "job_running",
        JobStatus::Succeeded => "job_succeeded",
        JobStatus::Failed => "job_failed",
        JobStatus::Skipped => "job_skipped",
        JobStatus::Cancelled => "job_cancelled",
    }
}

/// `workflow_<status>`, without formatting.
fn workflow_event_type(status: WorkflowStatus) -> &'static str {
    match status {
        WorkflowStatus::Initialized => "workflow_initialized",
        WorkflowStatus::Running => "workflow_running",
        WorkflowStatus::Completed => "workflow_completed",
        WorkflowStatus::Failed => "workflow_failed",
        WorkflowStatus::Cancelled => "workflow_cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_the_lower_case_status_names() {
        use JobStatus as J;
        use WorkflowStatus as W;
        for s in [J::Pending, J::Ready, J::Running, J::Succeeded, J::Failed, J::Skipped, J::Cancelled] {
            assert_eq!(job_event_type(s), format!("job_{}", s.as_str().to_ascii_lowercase()));
        }
        for s in [W::Initialized, W::Running, W::Completed, W::Failed, W::Cancelled] {
            assert_eq!(workflow_event_type(s), format!("workflow_{}", s.as_str().to_ascii_lowercase()));
        }
    }

    #[test]
    fn events_round_trip_through_json_including_null_results() {
        let id = WorkflowId::new("w1");
        for result in [None, Some(Value::Null), Some(serde_json::json!({ "ok": true }))] {
            let e = Event::job(&id, "a", JobStatus::Succeeded, 1, result);
            let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
            assert_eq!(back, e);
        }
        let v = serde_json::to_value(Event::workflow(&id, WorkflowStatus::Completed, None)).unwrap();
        assert_eq!(v["event_type"], "workflow_completed");
        assert_eq!(v["payload"]["workflow_id"], "w1");
        assert!(v["payload"].get("result").is_none());
    }
}
