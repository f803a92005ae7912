//! The HTTP side: what each bad request is answered with (and that it stores nothing), the other
//! routes, duplicates, storage failures and the `webhook-*` header names.

use tonic::Code;

use crate::support::{
    Body, Headers, OTHER_SECRET, SECRET, TestBridge, WEBHOOK_PATH, event_body, now_secs, sequences,
    signed_headers, svix_headers,
};

/// Ten minutes, twice the tolerance Svix allows.
const TEN_MINUTES: i64 = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_webhooks_get_401_and_are_not_stored() {
    let bridge = TestBridge::start().await;
    let body = event_body("user.created", "user_1");
    let bytes = body.as_bytes();
    let now = now_secs();
    let without = |name: &str| -> Headers {
        svix_headers("msg_1", bytes)
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect()
    };
    let mut tampered_id = svix_headers("msg_1", bytes);
    tampered_id[0].1 = "msg_2".to_owned();
    let tampered_body = body.replace("user_1", "user_2");
    let cases: Vec<(&str, Headers, &[u8])> = vec![
        (
            "wrong secret",
            signed_headers(OTHER_SECRET, "svix", "msg_1", now, bytes),
            bytes,
        ),
        ("no signature headers", vec![], bytes),
        ("no svix-id", without("svix-id"), bytes),
        ("no svix-timestamp", without("svix-timestamp"), bytes),
        ("no svix-signature", without("svix-signature"), bytes),
        (
            "stale timestamp",
            signed_headers(SECRET, "svix", "msg_1", now - TEN_MINUTES, bytes),
            bytes,
        ),
        (
            "future timestamp",
            signed_headers(SECRET, "svix", "msg_1", now + TEN_MINUTES, bytes),
            bytes,
        ),
        (
            "tampered body",
            svix_headers("msg_1", bytes),
            tampered_body.as_bytes(),
        ),
        ("tampered svix-id", tampered_id, bytes),
    ];
    for (case, headers, body) in cases {
        bridge.post(&headers, body).await.assert_error(401, case);
    }
    bridge.assert_nothing_stored().await;

    // The same event, signed correctly, is the first one stored.
    assert_eq!(bridge.post_new("msg_1", &body).await, 1);
    let mut subscription = bridge.subscribe(0, &[]).await;
    let event = subscription.next_event().await;
    assert_eq!((event.sequence, event.event_id.as_str()), (1, "msg_1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_with_or_without_content_length() {
    const MAX: usize = 1024;
    let bridge = TestBridge::start_with(|c| c.max_body_bytes = MAX).await;
    let big = padded_event("msg_big", 4 * MAX);
    let signed = svix_headers("msg_big", big.as_bytes());
    let framings = [
        ("with content-length", Body::Sized(big.as_bytes())),
        ("chunked", Body::Chunked(big.as_bytes())),
    ];
    for (case, body) in framings {
        let response = bridge.request("POST", WEBHOOK_PATH, &signed, body).await;
        response.assert_error(413, case);
    }
    bridge.assert_nothing_stored().await;

    // A body of exactly the limit is accepted, chunked too.
    let at_limit = padded_event("msg_limit", MAX);
    assert_eq!(at_limit.len(), MAX);
    let signed = svix_headers("msg_limit", at_limit.as_bytes());
    let response = bridge
        .request(
            "POST",
            WEBHOOK_PATH,
            &signed,
            Body::Chunked(at_limit.as_bytes()),
        )
        .await;
    assert_eq!(response.accepted(), (1, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_bodies_that_are_not_events_get_400() {
    let bridge = TestBridge::start().await;
    let cases = [
        ("not JSON", "this is not json"),
        ("no type", r#"{"object":"event","data":{"id":"user_1"}}"#),
        ("type not a string", r#"{"type":5,"data":{"id":"user_1"}}"#),
        ("empty type", r#"{"type":"","data":{"id":"user_1"}}"#),
        (
            "array",
            r#"[{"type":"user.created","data":{"id":"user_1"}}]"#,
        ),
    ];
    for (i, (case, body)) in cases.into_iter().enumerate() {
        let response = bridge.post_signed(&format!("msg_{i}"), body).await;
        response.assert_error(400, case);
    }
    bridge.assert_nothing_stored().await;
}

/// Users write their own `unsafe_metadata` from the browser, so one of them could nest it past
/// serde_json's limit of 128 levels; refusing that body would lose every later event of that user
/// once Clerk gives up retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_event_with_metadata_nested_1000_deep_is_stored_and_delivered() {
    let bridge = TestBridge::start().await;
    let body = format!(
        r#"{{"type":"user.updated","object":"event","data":{{"id":"user_deep","unsafe_metadata":{{"x":{}1{}}}}}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    let sequence = bridge.post_new("msg_deep", &body).await;
    let events = bridge
        .subscribe(0, &[])
        .await
        .events_until_head(sequence)
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].object_id, "user_deep");
    assert_eq!(events[0].payload_json, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_routes_and_methods() {
    let bridge = TestBridge::start().await;
    for method in ["GET", "PUT"] {
        let response = bridge.request(method, WEBHOOK_PATH, &[], Body::Empty).await;
        response.assert_error(405, method);
        let allow = response
            .header("allow")
            .unwrap_or_else(|| panic!("{method}: no Allow"));
        assert!(allow.contains("POST"), "{method}: Allow: {allow}");
    }
    bridge.get("/nope").await.assert_error(404, "unknown path");
    for path in ["/healthz", "/readyz"] {
        let response = bridge.get(path).await;
        assert_eq!(response.status, 200, "{path}: {response:?}");
        assert!(response.json().is_object(), "{path}");
    }
    bridge.assert_nothing_stored().await;
}

/// While another connection holds SQLite's write lock, the append fails: 503 with Retry-After, and
/// Svix's redelivery of the same message is then stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_gets_503_and_the_retry_is_stored_once() {
    let bridge =
        TestBridge::start_embedded_with(|c| c.heartbeat_interval = crate::support::QUICK_HEARTBEAT)
            .await;
    let body = event_body("user.created", "user_1");
    // The bridge has answered, so its log (and the database file) exists.
    assert_eq!(bridge.get("/readyz").await.status, 200);
    let blocker = rusqlite::Connection::open(bridge.data_dir().join("events.sqlite3")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let response = bridge.post_signed("msg_retry", &body).await;
    response.assert_error(503, "write lock held");
    let retry_after = response
        .header("retry-after")
        .expect("a Retry-After header");
    assert!(
        retry_after.parse::<u64>().is_ok(),
        "Retry-After: {retry_after}"
    );
    bridge.assert_nothing_stored().await;

    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert_eq!(bridge.deliver("msg_retry", &body).await, (1, false));
    assert_eq!(bridge.deliver("msg_retry", &body).await, (1, true));
    let events = bridge.subscribe(0, &[]).await.events_until_head(1).await;
    assert_eq!(sequences(&events), [1]);
    assert_eq!(events[0].event_id, "msg_retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_svix_id_is_stored_once() {
    let bridge = TestBridge::start_quick_heartbeat().await;
    let first = event_body("user.created", "user_1");
    let second = event_body("user.updated", "user_1");
    assert_eq!(bridge.deliver("msg_dup", &first).await, (1, false));
    // Same id, a different body signed for real: still the first event.
    assert_eq!(bridge.deliver("msg_dup", &second).await, (1, true));
    assert_eq!(bridge.deliver("msg_dup", &first).await, (1, true));
    let next = bridge.post_new("msg_next", &second).await;

    let events = bridge.subscribe(0, &[]).await.events_until_head(next).await;
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["msg_dup", "msg_next"]);
    assert_eq!(events[0].sequence, 1);
    assert_eq!(events[0].payload_json, first);
}

/// Redeliveries are routine (Svix retries on any timeout), so they must not leave holes in the
/// sequence: a subscriber checking for gaps would otherwise take them for lost events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_use_up_no_sequence_numbers() {
    let bridge = TestBridge::start().await;
    store_and_redeliver(&bridge, "msg_dup").await;
    let body = event_body("user.created", "user_2");
    assert_eq!(bridge.post_new("msg_next", &body).await, 2);
}

/// The head (in heartbeats, and the OUT_OF_RANGE bound) is the highest stored sequence, also after
/// a restart that follows redeliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_after_a_restart_is_the_highest_stored_sequence() {
    let mut bridge = TestBridge::start_quick_heartbeat().await;
    store_and_redeliver(&bridge, "msg_dup").await;
    assert_eq!(bridge.reported_head().await, 1);

    bridge.restart().await;
    assert_eq!(bridge.reported_head().await, 1);
    bridge.assert_refused(2, &[], Code::OutOfRange).await;
}

/// Stores one event at sequence 1, then delivers it twice more.
async fn store_and_redeliver(bridge: &TestBridge, msg_id: &str) {
    let body = event_body("user.created", "user_1");
    assert_eq!(bridge.deliver(msg_id, &body).await, (1, false));
    for _ in 0..2 {
        assert_eq!(bridge.deliver(msg_id, &body).await, (1, true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_header_names_are_accepted() {
    let bridge = TestBridge::start().await;
    let body = event_body("user.created", "user_1");
    let signed = signed_headers(
        SECRET,
        "webhook",
        "msg_unbranded",
        now_secs(),
        body.as_bytes(),
    );
    let bytes = body.as_bytes();
    assert_eq!(bridge.post(&signed, bytes).await.accepted(), (1, false));
    // The idempotency key comes from `webhook-id` too.
    assert_eq!(bridge.post(&signed, bytes).await.accepted(), (1, true));
    let wrong = signed_headers(
        OTHER_SECRET,
        "webhook",
        "msg_other",
        now_secs(),
        body.as_bytes(),
    );
    bridge
        .post(&wrong, body.as_bytes())
        .await
        .assert_error(401, "webhook-* with a wrong secret");

    let event = bridge.subscribe(0, &[]).await.next_event().await;
    assert_eq!(
        (event.sequence, event.event_id.as_str()),
        (1, "msg_unbranded")
    );
    assert_eq!(event.payload_json, body);
}

/// A `user.created` body of exactly `len` bytes.
fn padded_event(id: &str, len: usize) -> String {
    let skeleton =
        serde_json::json!({ "type": "user.created", "data": { "id": id }, "padding": "" })
            .to_string();
    let padding = "x".repeat(len - skeleton.len());
    serde_json::json!({ "type": "user.created", "data": { "id": id }, "padding": padding })
        .to_string()
}
