use super::*;
use crate::error::ErrorKind;
use crate::ids::WorkflowId;
use crate::state::{JobStatus, WorkflowStatus};
use std::time::Duration;

fn job(workflow: &WorkflowId, n: u32) -> Event {
    Event::job(workflow, format!("job{n}"), JobStatus::Running, n, None)
}

async fn next(sub: &mut Subscription) -> Delivery {
    match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        Ok(Some(Ok(d))) => d,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

/// The next delivery's attempt number, acknowledged.
async fn recv(sub: &mut Subscription) -> Option<u32> {
    let d = next(sub).await;
    let n = attempt(&d);
    d.ack().await.unwrap();
    n
}

async fn assert_idle(sub: &mut Subscription) {
    if let Ok(d) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
        panic!("expected no delivery, got {d:?}");
    }
}

fn attempt(d: &Delivery) -> Option<u32> {
    d.event.payload.attempt
}

#[tokio::test]
async fn full_log_drops_oldest_and_new_group_starts_at_retained() {
    let bus = MemoryEventBus::with_capacity(3);
    let wf = WorkflowId::generate();
    for n in 0..5 {
        bus.publish(&job(&wf, n)).await.unwrap();
    }
    let mut sub = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    for n in 2..5 {
        assert_eq!(recv(&mut sub).await, Some(n));
    }
    assert_idle(&mut sub).await;
}

#[tokio::test]
async fn group_behind_a_dropped_event_moves_past_it() {
    let bus = MemoryEventBus::with_capacity(2);
    let wf = WorkflowId::generate();
    let mut sub = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    for n in 0..4 {
        bus.publish(&job(&wf, n)).await.unwrap();
    }
    assert_eq!(recv(&mut sub).await, Some(2));
    assert_eq!(recv(&mut sub).await, Some(3));
}

#[tokio::test]
async fn released_event_dropped_from_log_is_not_redelivered() {
    let bus = MemoryEventBus::with_capacity(1);
    let wf = WorkflowId::generate();
    let mut sub = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    bus.publish(&job(&wf, 0)).await.unwrap();
    let first = next(&mut sub).await;
    bus.publish(&job(&wf, 1)).await.unwrap();
    drop(first);
    assert_eq!(recv(&mut sub).await, Some(1));
    assert_idle(&mut sub).await;
}

#[tokio::test]
async fn released_events_come_back_first_in_offset_order() {
    let bus = MemoryEventBus::new();
    let wf = WorkflowId::generate();
    for n in 0..4 {
        bus.publish(&job(&wf, n)).await.unwrap();
    }
    let mut sub = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    let d0 = next(&mut sub).await;
    let d1 = next(&mut sub).await;
    let d2 = next(&mut sub).await;
    drop(d2);
    d1.ack().await.unwrap();
    drop(d0);
    let got: Vec<_> = [next(&mut sub).await, next(&mut sub).await, next(&mut sub).await].iter().map(attempt).collect();
    assert_eq!(got, [Some(0), Some(2), Some(3)]);
}

#[tokio::test]
async fn acked_delivery_is_not_redelivered() {
    let bus = MemoryEventBus::new();
    let wf = WorkflowId::generate();
    bus.publish(&job(&wf, 0)).await.unwrap();
    let mut sub = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    next(&mut sub).await.ack().await.unwrap();
    assert_idle(&mut sub).await;
    let mut again = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    assert_idle(&mut again).await;
}

#[tokio::test]
async fn several_topics_are_merged_in_publish_order() {
    let bus = MemoryEventBus::new();
    let wf = WorkflowId::generate();
    bus.publish(&Event::workflow(&wf, WorkflowStatus::Running, None)).await.unwrap();
    bus.publish(&job(&wf, 0)).await.unwrap();
    bus.publish(&Event::system("instance_started", serde_json::json!({}))).await.unwrap();
    bus.publish(&Event::workflow(&wf, WorkflowStatus::Completed, None)).await.unwrap();
    let topics = [Topic::SystemEvents, Topic::WorkflowEvents, Topic::JobEvents, Topic::JobEvents];
    let mut sub = bus.subscribe(&topics, "g").await.unwrap();
    let mut types = Vec::new();
    for _ in 0..4 {
        let d = next(&mut sub).await;
        assert_eq!(d.topic, d.event.topic());
        types.push(d.event.event_type.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(types, ["workflow_running", "job_running", "instance_started", "workflow_completed"]);
    assert_idle(&mut sub).await;
}

#[tokio::test]
async fn waiting_subscriber_is_woken_by_publish_and_by_release() {
    let bus = MemoryEventBus::new();
    let wf = WorkflowId::generate();
    let mut a = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    let mut b = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    let publisher = bus.clone();
    let wf2 = wf.clone();
    let waiting = tokio::spawn(async move { recv(&mut b).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    publisher.publish(&job(&wf2, 7)).await.unwrap();
    assert_eq!(waiting.await.unwrap(), Some(7));

    // `b` took the event; `a` waits until a dropped delivery releases it to the group.
    let mut b = bus.subscribe(&[Topic::JobEvents], "g").await.unwrap();
    bus.publish(&job(&wf, 8)).await.unwrap();
    let held = next(&mut b).await;
    let waiting = tokio::spawn(async move { recv(&mut a).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(held);
    assert_eq!(waiting.await.unwrap(), Some(8));
}

#[tokio::test]
async fn empty_group_or_topics_are_invalid_input() {
    let bus = MemoryEventBus::new();
    let err = bus.subscribe(&[Topic::JobEvents], "").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = bus.subscribe(&[], "g").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.operation(), Some("EventBus::subscribe"));
}

#[test]
fn capacity_is_at_least_one() {
    assert_eq!(MemoryEventBus::with_capacity(0).capacity(), 1);
    assert_eq!(MemoryEventBus::new().capacity(), MemoryEventBus::DEFAULT_CAPACITY);
}
