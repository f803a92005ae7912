//! Snapshots: a stream that starts from the current state (the latest event of every object under
//! the version rule), then a `snapshot_end` marker at S, then every event after S. The state
//! survives retention, is rebuilt for a log written before it existed, and is what `clerk-bridge
//! snapshot` prints.

use std::collections::BTreeMap;

use clerk_bridge::proto::{
    CommitRequest, Event, EventSource, ListConsumersRequest, SnapshotEnd, StartPosition,
    SubscribeRequest, event_stream_client::EventStreamClient, subscribe_response::Message,
};
use serde_json::{Value, json};

use crate::{
    process,
    support::{SECRET, Subscription, TestBridge, eventually, within},
};

/// A `user.*` webhook body about `id` at version `updated_at` (a deletion when the type says so).
pub(crate) fn user_body(event_type: &str, id: &str, updated_at: i64, first_name: &str) -> String {
    let data = if event_type == "user.deleted" {
        json!({"object": "user", "id": id, "deleted": true})
    } else {
        json!({"object": "user", "id": id, "first_name": first_name,
               "created_at": 1_700_000_000_000_i64, "updated_at": updated_at})
    };
    json!({"object": "event", "type": event_type, "timestamp": updated_at, "data": data})
        .to_string()
}

fn snapshot_request(event_types: &[&str], include_tombstones: bool) -> SubscribeRequest {
    SubscribeRequest {
        start: StartPosition::Snapshot.into(),
        event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        include_tombstones,
        ..SubscribeRequest::default()
    }
}

/// The snapshot's events and its end marker, after checking that the stream starts at S.
pub(crate) async fn read_snapshot(subscription: &mut Subscription) -> (Vec<Event>, SnapshotEnd) {
    let Ok(Some(Message::Start(start))) = subscription.next_message().await else {
        panic!("a snapshot stream begins with a start marker");
    };
    let mut events = Vec::new();
    loop {
        match subscription.next_message().await {
            Ok(Some(Message::Event(event))) => events.push(event),
            Ok(Some(Message::SnapshotEnd(end))) => {
                assert_eq!(end.sequence, start.after_sequence);
                assert_eq!(end.objects, events.len() as u64);
                assert!(events.iter().all(|e| e.sequence <= end.sequence));
                return (events, end);
            }
            other => panic!("expected snapshot events, then its end; got {other:?}"),
        }
    }
}

/// Subscribes from a snapshot and reads it to its end: the stream (which goes on after S), the
/// snapshot's events and its end marker.
pub(crate) async fn take_snapshot(
    bridge: &TestBridge,
    event_types: &[&str],
    include_tombstones: bool,
) -> (Subscription, Vec<Event>, SnapshotEnd) {
    let request = snapshot_request(event_types, include_tombstones);
    let mut subscription = bridge.subscribe_with(request).await.unwrap();
    let (events, end) = read_snapshot(&mut subscription).await;
    (subscription, events, end)
}

/// (object id, type, first name) of each event, by object id.
pub(crate) fn by_object(events: &[Event]) -> BTreeMap<String, (String, String)> {
    events
        .iter()
        .map(|e| {
            let body: Value = serde_json::from_str(&e.payload_json).unwrap();
            let name = body["data"]["first_name"].as_str().unwrap_or("").to_owned();
            (e.object_id.clone(), (e.r#type.clone(), name))
        })
        .collect()
}

/// Three users (one updated out of order, one deleted) and an organization.
pub(crate) async fn deliver_history(bridge: &TestBridge) {
    let users = [
        ("msg_1", "user.created", "user_a", 1_000, "Ada"),
        ("msg_2", "user.updated", "user_a", 3_000, "Ada L."),
        // Late and stale: an older update arriving after a newer one changes no state.
        ("msg_3", "user.updated", "user_a", 2_000, "stale"),
        ("msg_4", "user.created", "user_b", 1_000, "Bob"),
        ("msg_5", "user.deleted", "user_b", 5_000, ""),
        // Deleted, then a late update: the tombstone stays.
        ("msg_6", "user.updated", "user_b", 4_000, "zombie"),
    ];
    for (msg_id, event_type, id, updated_at, name) in users {
        bridge
            .post_new(msg_id, &user_body(event_type, id, updated_at, name))
            .await;
    }
    let org = json!({"object": "event", "type": "organization.created", "timestamp": 1_000,
                     "data": {"object": "organization", "id": "org_1", "name": "Acme",
                              "created_at": 1_000, "updated_at": 1_000}});
    bridge.post_new("msg_7", &org.to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holds_the_latest_event_of_every_live_object_then_streams_on() {
    let bridge = TestBridge::start().await;
    deliver_history(&bridge).await;

    let (mut subscription, events, end) = take_snapshot(&bridge, &[], false).await;
    assert_eq!(end.sequence, 7);
    let objects = by_object(&events);
    assert_eq!(objects, history_state());
    assert!(
        events
            .iter()
            .all(|e| e.source == i32::from(EventSource::Webhook))
    );

    let after = bridge
        .post_new("msg_8", &user_body("user.created", "user_c", 1_000, "Cy"))
        .await;
    let next = subscription.next_event().await;
    assert_eq!((next.sequence, next.object_id.as_str()), (after, "user_c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_and_filters_shape_a_snapshot() {
    let bridge = TestBridge::start().await;
    deliver_history(&bridge).await;

    let (_, events, _) = take_snapshot(&bridge, &["user.*"], true).await;
    let objects = by_object(&events);
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert_eq!(objects["user_b"].0, "user.deleted");
    assert!(events.iter().any(|e| e.deleted && e.object_id == "user_b"));

    let (_, events, end) = take_snapshot(&bridge, &["organization.*"], false).await;
    assert_eq!(by_object(&events).keys().collect::<Vec<_>>(), ["org_1"]);
    assert_eq!(end.objects, 1);
}

/// Embedded only: on JetStream the stream's own limits delete events, and an event deleted
/// before the state builder applied it never reaches the state (see docs/jetstream.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_outlives_retention() {
    let mut bridge = TestBridge::start_embedded_with(|c| {
        c.retention.max_age = Some(std::time::Duration::from_millis(1));
        c.retention_interval = std::time::Duration::from_millis(50);
    })
    .await;
    deliver_history(&bridge).await;
    eventually("retention to delete every event", || async {
        let (_, first_retained) = bridge.positions().await;
        (first_retained > 7).then_some(())
    })
    .await;
    bridge.restart().await;
    let (_, events, end) = take_snapshot(&bridge, &[], false).await;
    assert_eq!(end.sequence, 7);
    assert_eq!(by_object(&events)["user_a"].1, "Ada L.");
    // A plain stream from the start is out of range; the snapshot is how a newcomer starts.
    bridge.assert_refused(1, &[], tonic::Code::OutOfRange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_consumer_commits_the_snapshot_and_resumes_after_it() {
    let bridge = TestBridge::start().await;
    deliver_history(&bridge).await;
    let request = SubscribeRequest {
        consumer: "search".to_owned(),
        max_in_flight: 1,
        ..snapshot_request(&[], false)
    };
    let mut subscription = bridge.subscribe_with(request).await.unwrap();
    // A window of one does not hold the snapshot back: its events are not in flight.
    let (events, end) = read_snapshot(&mut subscription).await;
    assert_eq!(events.len(), 2);
    let mut client = EventStreamClient::new(bridge.channel().await);
    let listed = client
        .list_consumers(ListConsumersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.consumers[0].committed_sequence, 0,
        "nothing is applied before the snapshot's commit"
    );
    client
        .commit(CommitRequest {
            consumer: "search".to_owned(),
            sequence: end.sequence,
        })
        .await
        .unwrap();
    drop(subscription);

    let next = bridge
        .post_new("msg_9", &user_body("user.created", "user_d", 1_000, "Di"))
        .await;
    let resumed = eventually("the consumer's lease to be released", || async {
        let request = SubscribeRequest {
            consumer: "search".to_owned(),
            ..SubscribeRequest::default()
        };
        bridge.subscribe_with(request).await.ok()
    })
    .await;
    let mut resumed = resumed;
    assert_eq!(resumed.next_event().await.sequence, next);
}

/// The name every user of [`assert_snapshot_while_webhooks_arrive`] ends with.
const LAST_NAME: &str = "v5";

/// (object id, type, first name) of the latest event of each live object after
/// [`deliver_history`].
pub(crate) fn history_state() -> BTreeMap<String, (String, String)> {
    BTreeMap::from([
        (
            "org_1".to_owned(),
            ("organization.created".to_owned(), String::new()),
        ),
        (
            "user_a".to_owned(),
            ("user.updated".to_owned(), "Ada L.".to_owned()),
        ),
    ])
}

/// Creates 50 users through `writes_to`, then updates each four times through it while a snapshot
/// is taken through `snapshots_from`: the snapshot, then the events after its sequence, applied
/// with the version rule, give every user's last version, with no event at or before S sent again.
pub(crate) async fn assert_snapshot_while_webhooks_arrive(
    writes_to: std::sync::Arc<TestBridge>,
    snapshots_from: &TestBridge,
) {
    for i in 0..50 {
        let body = user_body("user.created", &format!("user_{i}"), 1_000, "v1");
        writes_to.post_new(&format!("msg_c{i}"), &body).await;
    }
    let writer = {
        let bridge = writes_to.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for round in 0..4_i64 {
                for i in 0..50 {
                    let body = user_body(
                        "user.updated",
                        &format!("user_{i}"),
                        2_000 + round,
                        &format!("v{}", round + 2),
                    );
                    last = bridge.post_new(&format!("msg_u{round}_{i}"), &body).await;
                }
            }
            last
        })
    };
    let (mut subscription, snapshot, end) = take_snapshot(snapshots_from, &[], false).await;
    let head = within("the writer", writer).await.unwrap();

    // Apply the snapshot, then the events after it, with the version rule.
    let mut applied: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut apply = |event: &Event| {
        let name = by_object(std::slice::from_ref(event))[&event.object_id]
            .1
            .clone();
        let current = applied.entry(event.object_id.clone()).or_default();
        if event.object_version > current.0 {
            *current = (event.object_version, name);
        }
    };
    snapshot.iter().for_each(&mut apply);
    let mut last = end.sequence;
    while last < head {
        let event = subscription.next_event().await;
        assert_eq!(event.sequence, last + 1, "the stream goes on right after S");
        last = event.sequence;
        apply(&event);
    }
    assert_eq!(applied.len(), 50);
    assert!(
        applied.values().all(|(_, name)| name == LAST_NAME),
        "{applied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_while_webhooks_arrive_misses_nothing() {
    let bridge = std::sync::Arc::new(TestBridge::start().await);
    assert_snapshot_while_webhooks_arrive(bridge.clone(), &bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_from_before_the_state_is_migrated_on_open() {
    let mut bridge = TestBridge::start_embedded_with(|_| {}).await;
    deliver_history(&bridge).await;
    bridge.stop().await.unwrap();
    // What a log written by an older bridge looks like: no state, and not marked complete.
    let db = rusqlite::Connection::open(bridge.data_dir().join("events.sqlite3")).unwrap();
    db.execute_batch("DELETE FROM objects; PRAGMA user_version = 0;")
        .unwrap();
    drop(db);

    bridge.start_again().await;
    let (_, events, end) = take_snapshot(&bridge, &[], true).await;
    assert_eq!(end.sequence, 7);
    let objects = by_object(&events);
    assert_eq!(objects.len(), 3);
    assert_eq!(objects["user_a"].1, "Ada L.");
    assert_eq!(objects["user_b"].0, "user.deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_command_prints_one_json_object_per_object() {
    let bridge = TestBridge::start().await;
    deliver_history(&bridge).await;
    let grpc = bridge.grpc.to_string();
    let output = within(
        "clerk-bridge snapshot",
        process::clerk_bridge(
            &[("CLERK_WEBHOOK_SIGNING_SECRET", SECRET)],
            ["snapshot", "--json", "--tombstones", "--grpc-addr", &grpc],
        )
        .output(),
    )
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        for key in ["object_id", "type", "object_version", "deleted", "source"] {
            assert!(!line[key].is_null(), "{key} missing in {line}");
        }
    }
    let deleted: Vec<_> = lines.iter().filter(|l| l["deleted"] == true).collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["object_id"], "user_b");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("3 objects, consistent at #7"), "{stderr}");
}
