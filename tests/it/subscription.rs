//! The gRPC `Subscribe` stream: resume positions, live delivery, slow subscribers, type filters,
//! out-of-range positions and heartbeats.

use std::collections::HashSet;

use clerk_bridge::proto::Event;
use futures_util::{StreamExt, stream};
use tonic::Code;

use crate::support::{
    QUICK_HEARTBEAT, TestBridge, event_body, fixtures, now_secs, sequences, within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_k_delivers_exactly_the_rest() {
    let bridge = TestBridge::start_quick_heartbeat().await;
    assert_eq!(bridge.post_events(1, 6).await, [1, 2, 3, 4, 5, 6]);
    for k in [0, 3, 5, 6] {
        let events = bridge.subscribe(k, &[]).await.events_until_head(6).await;
        let expected: Vec<u64> = (k + 1..=6).collect();
        assert_eq!(sequences(&events), expected, "after {k}");
        let ids: Vec<String> = (k + 1..=6).map(|i| format!("msg_{i}")).collect();
        assert_eq!(
            events.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
            ids.iter().collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_subscription_receives_new_events_live() {
    let bridge = TestBridge::start().await;
    bridge.post_events(1, 1).await;
    let mut subscription = bridge.subscribe(0, &[]).await;
    assert_eq!(subscription.next_event().await.sequence, 1);
    // Caught up; the next events are stored after the stream opened.
    for i in 2..=3 {
        let body = event_body("user.created", &format!("user_{i}"));
        bridge.post_new(&format!("msg_{i}"), &body).await;
        let event = subscription.next_event().await;
        assert_eq!(
            (event.sequence, event.payload_json.as_str()),
            (i, body.as_str())
        );
    }
}

/// A subscriber that reads nothing while 320 events (about 400 KiB, more than its channel and HTTP/2
/// windows hold) are posted neither blocks ingest nor another subscriber, and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_blocks_nobody_and_misses_nothing() {
    const EVENTS: usize = 320;
    let bridge = TestBridge::start().await;
    let mut stalled = bridge.subscribe(0, &[]).await;
    let mut reader = bridge.subscribe(0, &[]).await;
    let reading = tokio::spawn(async move { positions(&reader.next_events(EVENTS).await) });

    let padding = "p".repeat(1200);
    let posted: Vec<u64> = stream::iter(1..=EVENTS)
        .map(|i| {
            let body = serde_json::json!({
                "type": "user.updated",
                "data": { "id": format!("user_{i}") },
                "padding": padding,
            });
            let bridge = &bridge;
            async move {
                bridge
                    .post_new(&format!("msg_{i}"), &body.to_string())
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(posted.len(), EVENTS);

    let live = within("the live reader", reading).await.unwrap();
    let all: Vec<u64> = (1..=EVENTS as u64).collect();
    assert_eq!(live.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), all);
    let ids: HashSet<&String> = live.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), EVENTS, "every posted event, once");
    let late = positions(&stalled.next_events(EVENTS).await);
    assert_eq!(late, live, "the stalled reader gets what the live one got");
}

/// `(sequence, event_id)` of each event.
fn positions(events: &[Event]) -> Vec<(u64, String)> {
    events
        .iter()
        .map(|e| (e.sequence, e.event_id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_types_filter_exact_names_and_prefix_globs() {
    let bridge = TestBridge::start_quick_heartbeat().await;
    let fixtures = fixtures();
    for (i, fixture) in fixtures.iter().enumerate() {
        bridge.post_new(&format!("msg_{i}"), &fixture.body).await;
    }
    let head = fixtures.len() as u64;
    let cases: [&[&str]; 3] = [&["user.*"], &["session.ended", "organization*"], &["*"]];
    for patterns in cases {
        let expected: Vec<&str> = fixtures
            .iter()
            .map(|f| f.event_type())
            .filter(|t| patterns.iter().any(|p| matches(p, t)))
            .collect();
        let events = bridge
            .subscribe(0, patterns)
            .await
            .events_until_head(head)
            .await;
        let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
        assert_eq!(types, expected, "{patterns:?}");
        assert!(
            events.windows(2).all(|w| w[0].sequence < w[1].sequence),
            "{patterns:?}"
        );
    }
    let user_only = bridge
        .subscribe(0, &["user.*"])
        .await
        .events_until_head(head)
        .await;
    assert_eq!(user_only.len(), 3);
    let mixed = bridge
        .subscribe(0, &["session.ended", "organization*"])
        .await
        .events_until_head(head)
        .await;
    assert!(
        mixed
            .iter()
            .any(|e| e.r#type == "organizationMembership.created")
    );
    assert_eq!(
        mixed
            .iter()
            .filter(|e| e.r#type.starts_with("session."))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_event_type_patterns_are_refused() {
    let bridge = TestBridge::start().await;
    let invalid: [&[&str]; 4] = [&["user.*.x"], &[""], &["**"], &["user.*", "*.created"]];
    for patterns in invalid {
        bridge
            .assert_refused(0, patterns, Code::InvalidArgument)
            .await;
    }
    let too_many = vec!["user.created"; 65];
    bridge
        .assert_refused(0, &too_many, Code::InvalidArgument)
        .await;
    // Valid ones are accepted on the same bridge.
    bridge.subscribe(0, &["user.*", "session.ended", "*"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_ahead_of_the_head_is_out_of_range() {
    let bridge = TestBridge::start().await;
    bridge.assert_refused(1, &[], Code::OutOfRange).await;
    bridge.post_events(1, 2).await;
    for ahead in [3, 4, u64::MAX] {
        bridge.assert_refused(ahead, &[], Code::OutOfRange).await;
    }
    // At the head is fine: nothing to catch up on, live from there.
    let mut subscription = bridge.subscribe(2, &[]).await;
    bridge.post_events(3, 1).await;
    assert_eq!(subscription.next_event().await.sequence, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_heartbeats_with_the_head() {
    let bridge = TestBridge::start_quick_heartbeat().await;
    bridge.post_events(1, 3).await;
    let mut idle = bridge.subscribe(3, &[]).await;
    let first = idle.next_heartbeat().await;
    assert_eq!(first.head_sequence, 3);
    let first_sent = first.sent_at.expect("sent_at is set");
    assert!(
        (first_sent.seconds - now_secs()).abs() < 300,
        "{first_sent:?}"
    );
    // A filtered stream is idle too; its heartbeat still counts the events it skipped.
    let mut filtered = bridge.subscribe(0, &["user.*"]).await;
    assert_eq!(filtered.next_heartbeat().await.head_sequence, 3);
    let second = idle.next_heartbeat().await;
    assert_eq!(second.head_sequence, 3);
    let second_sent = second.sent_at.expect("sent_at is set");
    let gap_ms = (second_sent.seconds - first_sent.seconds) * 1000
        + i64::from(second_sent.nanos - first_sent.nanos) / 1_000_000;
    assert!(
        gap_ms >= 150,
        "heartbeats {gap_ms} ms apart, interval {QUICK_HEARTBEAT:?}"
    );
}

/// A subscription pattern as documented: exact, or a prefix ending in `*`.
fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}
