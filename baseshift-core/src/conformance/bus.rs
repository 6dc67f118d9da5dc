//! The [`EventBus`] contract as checks. Run them all with [`event_bus_conformance!`].
//!
//! Every check uses fresh consumer groups and fresh workflow ids, and ignores (and
//! acknowledges) events of other workflows, so the checks may run in parallel against one
//! shared broker that already holds events.
//!
//! [`event_bus_conformance!`]: crate::event_bus_conformance

use crate::bus::{Delivery, EventBus, Subscription};
use crate::error::{Error, Result};
use crate::event::{Event, EventPayload, Topic};
use crate::ids::WorkflowId;
use crate::state::{JobStatus, WorkflowStatus};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

/// How long a check waits for deliveries it expects. A passing check returns as soon as
/// they arrive; the bound only decides when a missing delivery is a failure. A consumer
/// group of two members on librdkafka's mock cluster took 4-7 s to be assigned alone and
/// over 10 s while the rest of the suite ran on a 2-core machine.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a check waits to see that no further delivery comes.
pub const QUIET_PERIOD: Duration = Duration::from_millis(500);

/// Returns a failure of `check` from the enclosing function unless `cond` holds.
macro_rules! ensure {
    ($check:expr, $cond:expr, $what:expr $(,)?) => {
        if !$cond {
            return Err(failure($check, ($what)()));
        }
    };
}

fn failure(check: &str, what: String) -> Error {
    Error::internal(format!("event bus conformance `{check}` failed: {what}"))
}

fn group(check: &str) -> String {
    format!("conformance-{check}-{}", uuid::Uuid::now_v7().simple())
}

fn job_event(workflow: &WorkflowId, n: u32) -> Event {
    Event::job(workflow, format!("job{n}"), JobStatus::Running, n, None)
}

/// A short description of an event, for failure messages.
fn describe(event: &Event) -> String {
    format!("{}({}/{})", event.event_type, event.payload.workflow_id, event.payload.job_id.as_deref().unwrap_or("-"))
}

/// Publishes every event in order.
async fn publish_all(bus: &dyn EventBus, check: &str, events: &[Event]) -> Result<()> {
    for event in events {
        bus.publish(event).await.map_err(|e| failure(check, format!("publish {}: {e}", describe(event))))?;
    }
    Ok(())
}

/// The next delivery of one of `workflows` before `deadline` (`None` at the deadline);
/// deliveries of other workflows (a shared broker's) are acknowledged and skipped.
async fn next_of(
    check: &str,
    sub: &mut Subscription,
    workflows: &HashSet<&WorkflowId>,
    deadline: Instant,
) -> Result<Option<Delivery>> {
    loop {
        // A stream that is always ready would never let the timeout fire.
        if Instant::now() >= deadline {
            return Ok(None);
        }
        match timeout_at(deadline, sub.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(failure(check, "the subscription ended".into())),
            Ok(Some(Err(e))) => {
                return Err(failure(check, format!("the subscription failed: {e}")));
            }
            Ok(Some(Ok(d))) if workflows.contains(&d.event.payload.workflow_id) => {
                return Ok(Some(d));
            }
            Ok(Some(Ok(d))) => {
                d.ack().await.map_err(|e| failure(check, format!("ack of a foreign event: {e}")))?;
            }
        }
    }
}

/// Receives `n` deliveries of `workflows`, acknowledging each, within [`DELIVERY_TIMEOUT`].
async fn receive_acked(
    check: &str,
    sub: &mut Subscription,
    workflows: &HashSet<&WorkflowId>,
    n: usize,
) -> Result<Vec<(Topic, Event)>> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let Some(d) = next_of(check, sub, workflows, deadline).await? else {
            return Err(failure(
                check,
                format!("received {} of {n} expected events within {DELIVERY_TIMEOUT:?}", got.len()),
            ));
        };
        got.push((d.topic, d.event.clone()));
        d.ack().await.map_err(|e| failure(check, format!("ack: {e}")))?;
    }
    Ok(got)
}

/// Fails if a delivery of `workflows` arrives within [`QUIET_PERIOD`].
async fn expect_quiet(check: &str, sub: &mut Subscription, workflows: &HashSet<&WorkflowId>) -> Result<()> {
    match next_of(check, sub, workflows, Instant::now() + QUIET_PERIOD).await? {
        None => Ok(()),
        Some(d) => Err(failure(check, format!("unexpected delivery of {} on {}", describe(&d.event), d.topic))),
    }
}

/// Waits until the two members of one group both hold partitions of the same group
/// generation, so that no rebalance is due when the check's own events are published.
///
/// A Kafka group assigns a first member alone before a second one joins, and the second
/// join moves partitions; while the group rebalances, commits are refused (librdkafka's mock
/// cluster refuses them for the whole rebalance), so events acknowledged just before are
/// delivered again: at least once. Checks that count deliveries in a steady group settle it
/// first: markers of fresh workflows are published until each member has received one
/// published after both had received one. Markers are acknowledged as they come; an
/// acknowledgement refused by a rebalance is fine here, the marker is simply delivered again.
async fn settle_pair(
    bus: &dyn EventBus,
    check: &str,
    first: &mut Subscription,
    second: &mut Subscription,
) -> Result<()> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut markers: HashMap<WorkflowId, usize> = HashMap::new();
    // Per member: whether it received any marker, and the latest marker index it received.
    let mut seen: [Option<usize>; 2] = [None, None];
    let mut settled_from: Option<usize> = None;
    while Instant::now() < deadline {
        if let Some(from) = settled_from
            && seen.iter().all(|s| s.is_some_and(|i| i >= from))
        {
            return Ok(());
        }
        let marker = WorkflowId::generate();
        let index = markers.len();
        let event = job_event(&marker, 0);
        bus.publish(&event).await.map_err(|e| failure(check, format!("publish a settling marker: {e}")))?;
        markers.insert(marker, index);
        let wait = Instant::now() + Duration::from_millis(100);
        loop {
            let got = tokio::select! {
                d = timeout_at(wait, first.next()) => d.map(|d| (0, d)),
                d = timeout_at(wait, second.next()) => d.map(|d| (1, d)),
            };
            let Ok((member, d)) = got else { break };
            let d = match d {
                None => return Err(failure(check, "a subscription ended while the group settled".into())),
                Some(Err(e)) => {
                    return Err(failure(check, format!("a subscription failed while the group settled: {e}")));
                }
                Some(Ok(d)) => d,
            };
            if let Some(&i) = markers.get(&d.event.payload.workflow_id) {
                seen[member] = Some(seen[member].map_or(i, |s| s.max(i)));
                if settled_from.is_none() && seen.iter().all(Option::is_some) {
                    settled_from = Some(markers.len());
                }
            }
            if let Err(e) = d.ack().await {
                tracing::debug!(check, error = %e, "acknowledging a settling marker failed; it comes again");
            }
        }
    }
    Err(failure(check, format!("the group's two members did not both receive events within {DELIVERY_TIMEOUT:?}")))
}

async fn subscribe(bus: &dyn EventBus, check: &str, topics: &[Topic], group: &str) -> Result<Subscription> {
    bus.subscribe(topics, group).await.map_err(|e| failure(check, format!("subscribe to group `{group}`: {e}")))
}

/// An event published before a group exists reaches the new group intact: same topic, and
/// equal after the round trip (event type, timestamp, every payload field, nested result).
pub async fn new_group_receives_published_event(bus: &dyn EventBus) -> Result<()> {
    let check = "new_group_receives_published_event";
    let wf = WorkflowId::generate();
    let result = serde_json::json!({
        "status_code": 201,
        "body": { "id": "pay_42", "amount": 12.5, "tags": ["a", "é", "☃"], "refund": null },
        "ok": true
    });
    let event = Event::job(&wf, "initialize_payment", JobStatus::Succeeded, 2, Some(result));
    publish_all(bus, check, std::slice::from_ref(&event)).await?;
    let mut sub = subscribe(bus, check, &[Topic::JobEvents], &group(check)).await?;
    let got = receive_acked(check, &mut sub, &HashSet::from([&wf]), 1).await?;
    let (topic, received) = &got[0];
    ensure!(check, *topic == Topic::JobEvents, || { format!("delivered on {topic}, published on job_events") });
    ensure!(check, *received == event, || {
        format!("round trip changed the event: sent {event:?}, got {received:?}")
    });
    Ok(())
}

/// Fifty events of one workflow, interleaved with fifty of another, arrive per workflow in
/// publish order.
pub async fn events_of_one_workflow_keep_their_order(bus: &dyn EventBus) -> Result<()> {
    let check = "events_of_one_workflow_keep_their_order";
    let (a, b) = (WorkflowId::generate(), WorkflowId::generate());
    let events: Vec<Event> = (0..50).flat_map(|n| [job_event(&a, n), job_event(&b, n)]).collect();
    publish_all(bus, check, &events).await?;
    let mut sub = subscribe(bus, check, &[Topic::JobEvents], &group(check)).await?;
    let got = receive_acked(check, &mut sub, &HashSet::from([&a, &b]), events.len()).await?;
    for wf in [&a, &b] {
        let order: Vec<u32> =
            got.iter().filter(|(_, e)| e.payload.workflow_id == *wf).filter_map(|(_, e)| e.payload.attempt).collect();
        let expected: Vec<u32> = (0..50).collect();
        ensure!(check, order == expected, || { format!("workflow {wf}: events arrived in order {order:?}") });
    }
    Ok(())
}

/// A subscription to `job_events` gets only job events; one to `workflow_events` and
/// `system_events` gets exactly the events of those two topics.
pub async fn topic_delivers_only_its_events(bus: &dyn EventBus) -> Result<()> {
    let check = "topic_delivers_only_its_events";
    let wf = WorkflowId::generate();
    let system = Event {
        event_type: "instance_started".into(),
        timestamp: chrono::Utc::now(),
        payload: EventPayload {
            workflow_id: wf.clone(),
            job_id: None,
            status: "INFO".into(),
            result: Some(serde_json::json!({ "instance": "conformance" })),
            attempt: None,
            duration_ms: None,
            resource_usage: None,
        },
    };
    let events = [
        Event::workflow(&wf, WorkflowStatus::Running, None),
        job_event(&wf, 0),
        system,
        job_event(&wf, 1),
        Event::workflow(&wf, WorkflowStatus::Completed, None),
        job_event(&wf, 2),
    ];
    publish_all(bus, check, &events).await?;
    let ours = HashSet::from([&wf]);
    let topic_sets: [&[Topic]; 2] = [&[Topic::JobEvents], &[Topic::WorkflowEvents, Topic::SystemEvents]];
    for topics in topic_sets {
        let expected: Vec<&Event> = events.iter().filter(|e| topics.contains(&e.topic())).collect();
        let mut sub = subscribe(bus, check, topics, &group(check)).await?;
        let got = receive_acked(check, &mut sub, &ours, expected.len()).await?;
        for (topic, event) in &got {
            ensure!(check, topics.contains(topic) && event.topic() == *topic, || {
                format!("subscribed to {topics:?}, got {} on {topic}", describe(event))
            },);
            ensure!(check, expected.contains(&event), || { format!("unexpected event {}", describe(event)) });
        }
        expect_quiet(check, &mut sub, &ours).await?;
    }
    Ok(())
}

/// Two groups each receive every event.
pub async fn each_group_gets_every_event(bus: &dyn EventBus) -> Result<()> {
    let check = "each_group_gets_every_event";
    let wf = WorkflowId::generate();
    let events: Vec<Event> = (0..10).map(|n| job_event(&wf, n)).collect();
    let mut first = subscribe(bus, check, &[Topic::JobEvents], &group(check)).await?;
    let mut second = subscribe(bus, check, &[Topic::JobEvents], &group(check)).await?;
    publish_all(bus, check, &events).await?;
    let ours = HashSet::from([&wf]);
    for sub in [&mut first, &mut second] {
        let got = receive_acked(check, sub, &ours, events.len()).await?;
        let got: Vec<Event> = got.into_iter().map(|(_, e)| e).collect();
        ensure!(check, got == events, || {
            format!("a group received {:?}", got.iter().map(describe).collect::<Vec<_>>())
        });
    }
    Ok(())
}

/// Two subscribers of one group, acknowledging everything, together receive every event
/// exactly once.
pub async fn group_members_share_events(bus: &dyn EventBus) -> Result<()> {
    let check = "group_members_share_events";
    let wf = WorkflowId::generate();
    let events: Vec<Event> = (0..20).map(|n| job_event(&wf, n)).collect();
    let g = group(check);
    let mut first = subscribe(bus, check, &[Topic::JobEvents], &g).await?;
    let mut second = subscribe(bus, check, &[Topic::JobEvents], &g).await?;
    settle_pair(bus, check, &mut first, &mut second).await?;
    publish_all(bus, check, &events).await?;
    let ours = HashSet::from([&wf]);
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut received = 0;
    while seen.len() < events.len() {
        let d = tokio::select! {
            d = next_of(check, &mut first, &ours, deadline) => d?,
            d = next_of(check, &mut second, &ours, deadline) => d?,
        };
        let Some(d) = d else {
            return Err(failure(
                check,
                format!("received {} of {} events within {DELIVERY_TIMEOUT:?}", seen.len(), events.len()),
            ));
        };
        *seen.entry(d.event.payload.attempt.unwrap_or(u32::MAX)).or_default() += 1;
        received += 1;
        d.ack().await.map_err(|e| failure(check, format!("ack: {e}")))?;
    }
    let quiet = Instant::now() + QUIET_PERIOD;
    loop {
        let d = tokio::select! {
            d = next_of(check, &mut first, &ours, quiet) => d?,
            d = next_of(check, &mut second, &ours, quiet) => d?,
        };
        let Some(d) = d else { break };
        *seen.entry(d.event.payload.attempt.unwrap_or(u32::MAX)).or_default() += 1;
        received += 1;
        d.ack().await.map_err(|e| failure(check, format!("ack: {e}")))?;
    }
    let duplicated: Vec<u32> = seen.iter().filter(|&(_, &c)| c > 1).map(|(&n, _)| n).collect();
    ensure!(check, duplicated.is_empty() && received == events.len(), || {
        format!("{received} deliveries for {} events; delivered more than once: {duplicated:?}", events.len())
    },);
    Ok(())
}

/// A delivery dropped without acknowledgement is delivered again to its group (to either
/// member), and once acknowledged it is not delivered a third time.
pub async fn dropped_delivery_is_redelivered(bus: &dyn EventBus) -> Result<()> {
    let check = "dropped_delivery_is_redelivered";
    let wf = WorkflowId::generate();
    let event = job_event(&wf, 0);
    let g = group(check);
    let mut first = subscribe(bus, check, &[Topic::JobEvents], &g).await?;
    let mut second = subscribe(bus, check, &[Topic::JobEvents], &g).await?;
    settle_pair(bus, check, &mut first, &mut second).await?;
    publish_all(bus, check, std::slice::from_ref(&event)).await?;
    let ours = HashSet::from([&wf]);
    let mut deliveries = 0;
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while deliveries < 2 {
        let d = tokio::select! {
            d = next_of(check, &mut first, &ours, deadline) => d?,
            d = next_of(check, &mut second, &ours, deadline) => d?,
        };
        let Some(d) = d else {
            return Err(failure(check, format!("got {deliveries} of 2 deliveries within {DELIVERY_TIMEOUT:?}")));
        };
        ensure!(check, d.event == event, || { format!("got {}", describe(&d.event)) });
        deliveries += 1;
        if deliveries == 2 {
            d.ack().await.map_err(|e| failure(check, format!("ack: {e}")))?;
        }
        // The first delivery is dropped here without acknowledgement.
    }
    let quiet = Instant::now() + QUIET_PERIOD;
    let d = tokio::select! {
        d = next_of(check, &mut first, &ours, quiet) => d?,
        d = next_of(check, &mut second, &ours, quiet) => d?,
    };
    ensure!(check, d.is_none(), || { "the event came a third time after its acknowledgement".into() });
    Ok(())
}

/// A delivery left unacknowledged when its subscriber leaves is delivered to the next
/// member of the group.
pub async fn delivery_of_departed_subscriber_is_redelivered(bus: &dyn EventBus) -> Result<()> {
    let check = "delivery_of_departed_subscriber_is_redelivered";
    let wf = WorkflowId::generate();
    let event = job_event(&wf, 0);
    let g = group(check);
    let ours = HashSet::from([&wf]);
    let mut leaving = subscribe(bus, check, &[Topic::JobEvents], &g).await?;
    publish_all(bus, check, std::slice::from_ref(&event)).await?;
    let first = next_of(check, &mut leaving, &ours, Instant::now() + DELIVERY_TIMEOUT).await?;
    ensure!(check, first.is_some(), || { format!("no delivery within {DELIVERY_TIMEOUT:?}") });
    drop(first);
    drop(leaving);
    let mut next = subscribe(bus, check, &[Topic::JobEvents], &g).await?;
    let got = receive_acked(check, &mut next, &ours, 1).await?;
    ensure!(check, got[0].1 == event, || { format!("got {}", describe(&got[0].1)) });
    Ok(())
}

/// Events a group acknowledged are not delivered again to a later member of that group,
/// which receives only what was published after.
pub async fn acked_events_are_not_redelivered(bus: &dyn EventBus) -> Result<()> {
    let check = "acked_events_are_not_redelivered";
    let wf = WorkflowId::generate();
    let events: Vec<Event> = (0..3).map(|n| job_event(&wf, n)).collect();
    let g = group(check);
    let ours = HashSet::from([&wf]);
    let mut first = subscribe(bus, check, &[Topic::JobEvents], &g).await?;
    publish_all(bus, check, &events[..2]).await?;
    receive_acked(check, &mut first, &ours, 2).await?;
    drop(first);
    publish_all(bus, check, &events[2..]).await?;
    let mut second = subscribe(bus, check, &[Topic::JobEvents], &g).await?;
    // Same workflow and topic: a redelivered earlier event would arrive before the new one.
    let got = receive_acked(check, &mut second, &ours, 1).await?;
    ensure!(check, got[0].1 == events[2], || {
        format!("after acknowledging two events, got {}", describe(&got[0].1))
    });
    expect_quiet(check, &mut second, &ours).await
}

/// A subscriber waiting on an idle topic is woken by events published after it subscribed.
pub async fn subscriber_receives_later_events(bus: &dyn EventBus) -> Result<()> {
    let check = "subscriber_receives_later_events";
    let wf = WorkflowId::generate();
    let events: Vec<Event> = (0..3).map(|n| job_event(&wf, n)).collect();
    let mut sub = subscribe(bus, check, &[Topic::JobEvents], &group(check)).await?;
    let ours = HashSet::from([&wf]);
    let publish_later = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        publish_all(bus, check, &events).await
    };
    let (published, got) = tokio::join!(publish_later, receive_acked(check, &mut sub, &ours, events.len()));
    published?;
    let got: Vec<Event> = got?.into_iter().map(|(_, e)| e).collect();
    ensure!(check, got == events, || { format!("received {:?}", got.iter().map(describe).collect::<Vec<_>>()) });
    Ok(())
}

/// Expands to a module `event_bus_conformance` with one `#[tokio::test]` per check of
/// [`conformance::bus`](crate::conformance::bus), each running against a fresh bus.
///
/// The argument is an expression that evaluates to a value implementing
/// [`EventBus`](crate::EventBus); it may use `.await` and names in scope at the call site.
/// The calling crate needs `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
///
/// ```
/// use baseshift_core::MemoryEventBus;
///
/// baseshift_core::event_bus_conformance!(MemoryEventBus::new());
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! event_bus_conformance {
    ($make:expr) => {
        $crate::event_bus_conformance!(@checks $make;
            new_group_receives_published_event,
            events_of_one_workflow_keep_their_order,
            topic_delivers_only_its_events,
            each_group_gets_every_event,
            group_members_share_events,
            dropped_delivery_is_redelivered,
            delivery_of_departed_subscriber_is_redelivered,
            acked_events_are_not_redelivered,
            subscriber_receives_later_events,
        );
    };
    (@checks $make:expr; $($check:ident),+ $(,)?) => {
        mod event_bus_conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let bus = $make;
                    if let Err(e) = $crate::conformance::bus::$check(&bus).await {
                        panic!("{e}");
                    }
                }
            )+
        }
    };
}
