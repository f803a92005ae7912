//! `object_version` and `deleted` on every event: where each version comes from, and the edge cases
//! of the envelope timestamp.

use super::*;
use serde_json::{Value, json};

/// The `(object_version, deleted)` of the body `json`.
fn version_of(body: &Value) -> (u64, bool) {
    let event = decode_json(body);
    (event.object_version, event.deleted)
}

#[test]
fn fixtures_take_updated_at_or_the_envelope_time() {
    for (event_type, body) in all_fixtures() {
        let event = decode_event(body).unwrap();
        let raw: Value = serde_json::from_str(body).unwrap();
        let envelope_ms = raw["timestamp"].as_u64().unwrap() * 1000;
        let expected = if event_type.ends_with(".deleted") {
            envelope_ms + 999
        } else {
            raw["data"]["updated_at"].as_u64().unwrap_or(envelope_ms)
        };
        assert_eq!(event.object_version, expected, "{event_type}");
    }
}

#[test]
fn versions_of_the_user_examples() {
    let updated = decode_event(&fixture("user.updated.json")).unwrap();
    assert_eq!(
        (updated.object_version, updated.deleted),
        (1_716_883_500_000, false)
    );
    let deleted = decode_event(&fixture("user.deleted.json")).unwrap();
    // The example's envelope says 1716883200 seconds: the deletion may have happened as late as
    // the last millisecond of that second.
    assert_eq!(
        (deleted.object_version, deleted.deleted),
        (1_716_883_200_999, true)
    );
}

#[test]
fn membership_deletion_ignores_its_stale_updated_at() {
    let body = json!({
        "type": "organizationMembership.deleted", "timestamp": 1_716_900_000_123_i64,
        "data": {"id": "orgmem_1", "updated_at": 1_716_800_000_000_i64}
    });
    assert_eq!(version_of(&body), (1_716_900_000_123, true));
}

#[test]
fn objects_without_updated_at_take_the_envelope_time() {
    let email = json!({"type": "email.created", "timestamp": 1_716_883_200, "data": {"id": "e"}});
    assert_eq!(version_of(&email), (1_716_883_200_000, false));
    let millis = json!({"type": "sms.created", "timestamp": 1_716_883_200_555_i64, "data": {}});
    assert_eq!(version_of(&millis), (1_716_883_200_555, false));
}

#[test]
fn unusable_times_fall_back() {
    let cases = [
        // A wrong-typed or negative `updated_at` falls back to the envelope.
        (
            json!({"type": "user.updated", "timestamp": 5, "data": {"updated_at": "x"}}),
            5_000,
        ),
        (
            json!({"type": "user.updated", "timestamp": 5, "data": {"updated_at": -1}}),
            5_000,
        ),
        // Nothing usable: 0.
        (
            json!({"type": "user.updated", "data": {"updated_at": 1.5}}),
            0,
        ),
        (
            json!({"type": "user.updated", "timestamp": -5, "data": []}),
            0,
        ),
        (json!({"type": "user.updated", "timestamp": "now"}), 0),
    ];
    for (body, expected) in cases {
        assert_eq!(version_of(&body), (expected, false), "{body}");
    }
}

#[test]
fn a_deletion_without_a_usable_time_is_final() {
    for timestamp in [json!(null), json!("now"), json!(-5), json!(1.5e12)] {
        let body = json!({"type": "role.deleted", "timestamp": timestamp, "data": {"id": "r"}});
        assert_eq!(version_of(&body), (FINAL_VERSION, true), "{body}");
    }
    assert_eq!(FINAL_VERSION, 9_223_372_036_854_775_807);
    assert_eq!(
        version_of(&json!({"type": "user.deleted", "timestamp": i64::MAX})),
        (FINAL_VERSION, true)
    );
}

#[test]
fn every_deleted_type_is_a_tombstone_known_or_not() {
    let deleted = json!({"type": "widget.deleted", "timestamp": 7, "data": {"id": "w_1"}});
    let event = decode_json(&deleted);
    assert_eq!((event.object_version, event.deleted), (7_999, true));
    assert_eq!((event.object_id.as_str(), event.payload), ("w_1", None));
    let updated = json!({"type": "widget.updated",
                         "data": {"id": "w_1", "updated_at": 1_716_883_200_009_i64}});
    assert_eq!(version_of(&updated), (1_716_883_200_009, false));
    // An `updated_at` that can only be seconds is read as seconds, like the envelope's timestamp.
    let in_seconds = json!({"type": "widget.updated", "data": {"id": "w_1", "updated_at": 9}});
    assert_eq!(version_of(&in_seconds), (9_000, false));
    for not_deleted in [
        "user.deletedish",
        "deleted",
        "user.undeleted.x",
        "user.created",
    ] {
        assert!(
            !version_of(&json!({"type": not_deleted})).1,
            "{not_deleted}"
        );
    }
}
