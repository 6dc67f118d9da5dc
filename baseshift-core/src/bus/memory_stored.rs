//! How the memory bus's logs keep an event: without its shared `Event` allocation, with
//! the common names as indexes, the workflow and job ids as their text in place (see
//! [`Text`]) and JSON results as text (see [`CompactValue`]).
//!
//! A log holds up to its capacity of events per topic, so their size is most of what an
//! idle bus costs; a delivery rebuilds an equal [`Event`]. A full log drops its oldest
//! event on every publish. An event that points at nothing frees nothing and touches no
//! other memory then: with the ids kept as shared `Arc`s, each drop decremented a count
//! written long ago, a likely cache miss or two per event once the log had wrapped (a
//! million-workflow drain evicts about five events per workflow). Keeping the ids in
//! place also spares the relay an increment and a decrement per id and event on counts
//! the workers update at the same time from the other core. A delivery allocates the ids
//! anew instead.

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

/// A name: one of [`KNOWN`], or its own text (in place up to [`SHORT`] bytes).
#[derive(Debug)]
enum Name {
    Known(u8),
    Own(Text<SHORT>),
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
            _ => return Name::Own(Text::new(name)),
        };
        Name::Known(i)
    }

    /// The name as an event label: a known one as static text.
    fn label(&self) -> Label {
        match self {
            Name::Known(i) => Label::from_static(KNOWN.get(usize::from(*i)).copied().unwrap_or_default()),
            Name::Own(text) => Label::from(text.as_str().to_owned()),
        }
    }
}

/// Workflow ids up to this long are kept in place (a hyphenated UUID is 36 bytes).
const ID_IN_PLACE: usize = 38;

/// Job ids up to this long are kept in place.
const JOB_IN_PLACE: usize = SHORT;

/// A text kept in place when at most `N` bytes long, else on the heap.
#[derive(Debug)]
enum Text<const N: usize> {
    Short(u8, [u8; N]),
    Other(Box<str>),
}

impl<const N: usize> Text<N> {
    fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= N => {
                let mut buf = [0; N];
                buf[..bytes.len()].copy_from_slice(bytes);
                Text::Short(len, buf)
            }
            _ => Text::Other(text.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `str` whole: always valid UTF-8.
            Text::Short(len, buf) => {
                buf.get(..usize::from(*len)).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or_default()
            }
            Text::Other(s) => s,
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
    workflow_id: Text<ID_IN_PLACE>,
    job_id: Option<Text<JOB_IN_PLACE>>,
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
            workflow_id: Text::new(p.workflow_id.as_str()),
            job_id: p.job_id.as_deref().map(Text::new),
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
                workflow_id: WorkflowId::from(self.workflow_id.as_str()),
                job_id: self.job_id.as_ref().map(|j| JobName::from(j.as_str())),
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
            assert_eq!(&*Name::new(name).label(), *name);
        }
        assert!(matches!(Name::new("job_runnin"), Name::Own(Text::Short(10, _))));
    }

    #[test]
    fn texts_are_kept_in_place_up_to_their_length() {
        for name in ["", "a", "fetch-ü", &"x".repeat(SHORT), &"y".repeat(SHORT + 1), &"é".repeat(SHORT)] {
            let kept = Text::<SHORT>::new(name);
            assert_eq!(kept.as_str(), name);
            assert_eq!(matches!(kept, Text::Short(..)), name.len() <= SHORT, "{name}");
        }
        let uuid = WorkflowId::generate();
        assert!(matches!(Text::<ID_IN_PLACE>::new(uuid.as_str()), Text::Short(36, _)));
        let long = "w".repeat(ID_IN_PLACE + 1);
        assert_eq!(Text::<ID_IN_PLACE>::new(&long).as_str(), long);
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
