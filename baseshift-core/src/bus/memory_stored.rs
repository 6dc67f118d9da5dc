//! How the memory bus's logs keep an event: without its shared `Event` allocation, with
//! the common names as indexes, the job id as the shared [`JobName`] it was published
//! with (a reference count, no copy) and JSON results as text (see [`CompactValue`]).
//!
//! A log holds up to its capacity of events per topic, so their size is most of what an
//! idle bus costs; a delivery rebuilds an equal [`Event`]. A full log drops its oldest
//! event on every publish: an event that owns no allocation of its own (its job id is
//! shared) frees none then (the memory it would free was written long ago, out of cache,
//! and the allocator would hand it out again to the next allocations, out of cache as well).

use crate::event::{Event, EventPayload, Label};
use crate::ids::{Name as JobName, WorkflowId};
use crate::state::CompactValue;
use chrono::{DateTime, Utc};

/// Event types and statuses the engine publishes, kept as an index.
const KNOWN: [&str; 29] = [
    "job_pending",
    "job_ready",
    "job_running",
    "job_succeeded",
    "job_failed",
    "job_skipped",
    "job_cancelled",
    "job_retrying",
    "job_dead_lettered",
    "job_discarded",
    "job_replayed",
    "workflow_initialized",
    "workflow_running",
    "workflow_completed",
    "workflow_failed",
    "workflow_cancelled",
    "workflow_compensating",
    "policy_violation",
    "instance_started",
    "PENDING",
    "READY",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "SKIPPED",
    "CANCELLED",
    "INITIALIZED",
    "COMPLETED",
    "INFO",
];

/// The longest name kept in place.
const SHORT: usize = 22;

/// A name: one of [`KNOWN`], its own text in place (up to [`SHORT`] bytes) or on the heap.
#[derive(Debug)]
enum Name {
    Known(u8),
    Short(u8, [u8; SHORT]),
    Other(Box<str>),
}

impl Name {
    /// A `match` rather than a search of [`KNOWN`]: the compiler dispatches on the
    /// length first, so a name costs one or two comparisons, not up to 29.
    fn new(name: &str) -> Name {
        let i = match name {
            "job_pending" => 0,
            "job_ready" => 1,
            "job_running" => 2,
            "job_succeeded" => 3,
            "job_failed" => 4,
            "job_skipped" => 5,
            "job_cancelled" => 6,
            "job_retrying" => 7,
            "job_dead_lettered" => 8,
            "job_discarded" => 9,
            "job_replayed" => 10,
            "workflow_initialized" => 11,
            "workflow_running" => 12,
            "workflow_completed" => 13,
            "workflow_failed" => 14,
            "workflow_cancelled" => 15,
            "workflow_compensating" => 16,
            "policy_violation" => 17,
            "instance_started" => 18,
            "PENDING" => 19,
            "READY" => 20,
            "RUNNING" => 21,
            "SUCCEEDED" => 22,
            "FAILED" => 23,
            "SKIPPED" => 24,
            "CANCELLED" => 25,
            "INITIALIZED" => 26,
            "COMPLETED" => 27,
            "INFO" => 28,
            _ => return Name::own(name),
        };
        Name::Known(i)
    }

    /// `name` as its own text: in place when short enough.
    fn own(name: &str) -> Name {
        let bytes = name.as_bytes();
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= SHORT => {
                let mut text = [0; SHORT];
                text[..bytes.len()].copy_from_slice(bytes);
                Name::Short(len, text)
            }
            _ => Name::Other(name.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Name::Known(i) => KNOWN.get(usize::from(*i)).copied().unwrap_or_default(),
            // Copied from a `str` whole: always valid UTF-8.
            Name::Short(len, text) => {
                text.get(..usize::from(*len)).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or_default()
            }
            Name::Other(s) => s,
        }
    }

    /// The name as an event label: a known one as static text.
    fn label(&self) -> Label {
        match self {
            Name::Known(i) => Label::from_static(KNOWN.get(usize::from(*i)).copied().unwrap_or_default()),
            Name::Short(..) | Name::Other(_) => Label::from(self.as_str().to_owned()),
        }
    }
}

/// One logged event.
#[derive(Debug)]
pub(super) struct StoredEvent {
    /// The bus's global publish sequence number.
    pub(super) seq: u64,
    event_type: Name,
    status: Name,
    timestamp: DateTime<Utc>,
    workflow_id: WorkflowId,
    job_id: Option<JobName>,
    result: Option<CompactValue>,
    resource_usage: Option<CompactValue>,
    attempt: Option<u32>,
    duration_ms: Option<i64>,
}

impl StoredEvent {
    /// `event` as published with sequence number `seq`.
    pub(super) fn new(seq: u64, event: &Event) -> StoredEvent {
        let p = &event.payload;
        StoredEvent {
            seq,
            event_type: Name::new(&event.event_type),
            status: Name::new(&p.status),
            timestamp: event.timestamp,
            workflow_id: p.workflow_id.clone(),
            job_id: p.job_id.clone(),
            result: p.result.as_ref().map(CompactValue::from_ref),
            resource_usage: p.resource_usage.as_ref().map(CompactValue::from_ref),
            attempt: p.attempt,
            duration_ms: p.duration_ms,
        }
    }

    /// The event, equal to the one published.
    pub(super) fn event(&self) -> Event {
        Event {
            event_type: self.event_type.label(),
            timestamp: self.timestamp,
            payload: EventPayload {
                workflow_id: self.workflow_id.clone(),
                job_id: self.job_id.clone(),
                status: self.status.label(),
                result: self.result.as_ref().map(CompactValue::to_value),
                attempt: self.attempt,
                duration_ms: self.duration_ms,
                resource_usage: self.resource_usage.as_ref().map(CompactValue::to_value),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{JobStatus, WorkflowStatus};
    use serde_json::json;

    #[test]
    fn known_names_match_their_index() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert!(matches!(Name::new(name), Name::Known(k) if usize::from(k) == i), "{name}");
            assert_eq!(Name::new(name).as_str(), *name);
        }
        assert!(matches!(Name::new("job_runnin"), Name::Short(10, _)));
    }

    #[test]
    fn own_names_are_kept_in_place_up_to_the_short_length() {
        for name in ["", "a", "fetch-ü", &"x".repeat(SHORT), &"y".repeat(SHORT + 1), &"é".repeat(SHORT)] {
            let kept = Name::own(name);
            assert_eq!(kept.as_str(), name);
            assert_eq!(matches!(kept, Name::Short(..)), name.len() <= SHORT, "{name}");
        }
    }

    #[test]
    fn stored_events_read_back_equal() {
        let id = WorkflowId::new("w1");
        let mut custom = Event::system("custom_thing", json!({ "a": [1, 2] }));
        custom.payload.status = "SOMETHING".into();
        custom.payload.duration_ms = Some(12);
        custom.payload.resource_usage = Some(json!({ "cpu_ms": 3 }));
        let events = [
            Event::job(&id, "a", JobStatus::Ready, 0, None),
            Event::job(&id, "a", JobStatus::Succeeded, 2, Some(json!(null))),
            Event::job(&id, "a", JobStatus::Succeeded, 1, Some(json!({ "out": [1, "x"] }))),
            Event::workflow(&id, WorkflowStatus::Initialized, Some(json!({ "template_id": "t" }))),
            Event::job_retrying(&id, "b", 1, json!("boom")),
            custom,
        ];
        for e in events {
            assert_eq!(StoredEvent::new(7, &e).event(), e);
        }
    }
}
