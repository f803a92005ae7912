//! Every published Clerk example payload goes through the whole bridge (signed HTTP in, tonic
//! client out) and arrives with its envelope fields, its verbatim body and, for `user.*`, its typed
//! payload compared field by field against the JSON.

use clerk_bridge::proto::{
    DeletedUser, Event, User, UserEvent, event::Payload, user_event::Change,
};
use prost_types::{Struct, Timestamp, value::Kind};
use serde_json::{Value, json};

use crate::support::{Fixture, TestBridge, fixtures, now_secs};

/// Clerk envelope timestamps below this are seconds, from it on milliseconds (DESIGN: lenient).
const SECONDS_BELOW: i64 = 1_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_delivered_with_its_fields() {
    let bridge = TestBridge::start().await;
    let fixtures = fixtures();
    for (i, fixture) in fixtures.iter().enumerate() {
        let sequence = bridge.post_new(&msg_id(i, fixture), &fixture.body).await;
        assert_eq!(sequence, i as u64 + 1, "{}", fixture.name);
    }

    let mut subscription = bridge.subscribe(0, &[]).await;
    for (i, fixture) in fixtures.iter().enumerate() {
        let event = subscription.next_event().await;
        assert_eq!(event.sequence, i as u64 + 1, "{}", fixture.name);
        assert_eq!(event.event_id, msg_id(i, fixture), "{}", fixture.name);
        assert_envelope(&event, fixture);
        assert_payload(&event, &fixture.json);
    }
    let user_types: Vec<&str> = fixtures
        .iter()
        .map(Fixture::event_type)
        .filter(|t| t.starts_with("user."))
        .collect();
    assert_eq!(user_types, ["user.created", "user.deleted", "user.updated"]);
}

/// The primary email address is found by id, not position: the bridge keeps Clerk's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_with_two_emails_keeps_their_order_and_the_primary_id() {
    let bridge = TestBridge::start().await;
    let data = json!({
        "object": "user",
        "id": "user_two_emails",
        "external_id": "ext-42",
        "username": "ada",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "image_url": "https://img.clerk.com/ada",
        "primary_email_address_id": "idn_second",
        "email_addresses": [
            {
                "object": "email_address", "id": "idn_first", "email_address": "old@example.com",
                "reserved": false, "linked_to": [],
                "verification": { "status": "unverified", "strategy": "email_code", "attempts": 1, "expire_at": null },
            },
            {
                "object": "email_address", "id": "idn_second", "email_address": "ada@example.com",
                "reserved": false, "linked_to": [{ "type": "oauth_google", "id": "idn_google" }],
                "verification": { "status": "verified", "strategy": "from_oauth_google", "attempts": null, "expire_at": null },
            },
        ],
        "public_metadata": { "plan": "pro", "seats": 3, "ratio": 0.5, "beta": true,
                             "tags": ["a", 1, null], "nested": { "deep": { "x": "y" } } },
        "private_metadata": { "stripe": "cus_1" },
        "unsafe_metadata": { "theme": "dark" },
        "created_at": 1_716_883_200_123_i64,
        "updated_at": 1_716_883_500_999_i64,
    });
    let body = json!({ "object": "event", "type": "user.created", "timestamp": 1_716_883_200_123_i64, "data": data })
        .to_string();
    bridge.post_new("msg_two_emails", &body).await;

    let event = bridge.subscribe(0, &[]).await.next_event().await;
    assert_eq!(event.payload_json, body);
    assert_eq!(event.occurred_at, Some(ts(1_716_883_200, 123_000_000)));
    let user = created_user(&event);
    assert_user(user, &data);
    let ids: Vec<&str> = user.email_addresses.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["idn_first", "idn_second"]);
    let addresses: Vec<&str> = user
        .email_addresses
        .iter()
        .map(|e| e.email_address.as_str())
        .collect();
    assert_eq!(addresses, ["old@example.com", "ada@example.com"]);
    let primary = user
        .email_addresses
        .iter()
        .position(|e| Some(&e.id) == user.primary_email_address_id.as_ref());
    assert_eq!(primary, Some(1));
    let second = &user.email_addresses[1];
    assert_eq!(second.verification.as_ref().unwrap().status, "verified");
    assert_eq!(second.linked_to[0].id, "idn_google");
    assert_eq!(user.created_at, Some(ts(1_716_883_200, 123_000_000)));
    assert_eq!(user.updated_at, Some(ts(1_716_883_500, 999_000_000)));
}

fn msg_id(i: usize, fixture: &Fixture) -> String {
    format!("msg_{i}_{}", fixture.name.trim_end_matches(".json"))
}

/// The envelope fields every event carries.
fn assert_envelope(event: &Event, fixture: &Fixture) {
    let (name, json) = (&fixture.name, &fixture.json);
    assert_eq!(event.r#type, fixture.event_type(), "{name}");
    assert_eq!(
        event.object_id,
        json["data"]["id"].as_str().unwrap(),
        "{name}"
    );
    assert_eq!(event.payload_json, fixture.body, "{name}");
    assert_eq!(
        event.instance_id,
        json["instance_id"].as_str().unwrap_or_default(),
        "{name}"
    );
    let raw = json["timestamp"].as_i64().unwrap();
    let millis = if raw < SECONDS_BELOW { raw * 1000 } else { raw };
    assert_eq!(event.occurred_at, Some(ts_ms(millis)), "{name}");
    let received = event
        .received_at
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no received_at"));
    assert!(
        (received.seconds - now_secs()).abs() < 300,
        "{name}: received_at {received:?}"
    );
    let request = &json["event_attributes"]["http_request"];
    if request.is_object() {
        let actual = event
            .http_request
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no http_request"));
        assert_eq!(
            actual.client_ip,
            request["client_ip"].as_str().unwrap_or_default(),
            "{name}"
        );
        assert_eq!(
            actual.user_agent,
            request["user_agent"].as_str().unwrap_or_default(),
            "{name}"
        );
    }
}

/// The typed `user` payload of `user.*` events (other types may carry payloads of their own).
fn assert_payload(event: &Event, json: &Value) {
    let data = &json["data"];
    let change = match &event.payload {
        Some(Payload::User(UserEvent {
            change: Some(change),
            ..
        })) => change,
        other => {
            let event_type = &event.r#type;
            assert!(
                !event_type.starts_with("user."),
                "{event_type}: no user payload: {other:?}"
            );
            return;
        }
    };
    match (event.r#type.as_str(), change) {
        ("user.created", Change::Created(user)) | ("user.updated", Change::Updated(user)) => {
            assert_user(user, data);
        }
        ("user.deleted", Change::Deleted(deleted)) => assert_eq!(
            deleted,
            &DeletedUser {
                id: data["id"].as_str().unwrap().to_owned(),
                external_id: data["external_id"].as_str().map(str::to_owned),
            }
        ),
        (event_type, change) => panic!("{event_type}: wrong payload {change:?}"),
    }
}

/// The `User` of a `user.created` event.
fn created_user(event: &Event) -> &User {
    match &event.payload {
        Some(Payload::User(UserEvent {
            change: Some(Change::Created(user)),
            ..
        })) => user,
        other => panic!("not a user.created payload: {other:?}"),
    }
}

/// Compares a typed user with Clerk's JSON `data`.
fn assert_user(user: &User, data: &Value) {
    let id = data["id"].as_str().unwrap();
    assert_eq!(user.id, id);
    let optional_strings = [
        ("first_name", &user.first_name),
        ("last_name", &user.last_name),
        ("username", &user.username),
        ("external_id", &user.external_id),
        ("primary_email_address_id", &user.primary_email_address_id),
        ("image_url", &user.image_url),
    ];
    for (field, actual) in optional_strings {
        assert_eq!(actual.as_deref(), data[field].as_str(), "{id}.{field}");
    }
    assert_struct(
        &user.public_metadata,
        &data["public_metadata"],
        "public_metadata",
    );
    assert_struct(
        &user.private_metadata,
        &data["private_metadata"],
        "private_metadata",
    );
    assert_struct(
        &user.unsafe_metadata,
        &data["unsafe_metadata"],
        "unsafe_metadata",
    );
    assert_eq!(
        user.created_at,
        data["created_at"].as_i64().map(ts_ms),
        "{id}.created_at"
    );
    assert_eq!(
        user.updated_at,
        data["updated_at"].as_i64().map(ts_ms),
        "{id}.updated_at"
    );
    let email_ids: Vec<&str> = data["email_addresses"]
        .as_array()
        .map(|list| list.iter().filter_map(|e| e["id"].as_str()).collect())
        .unwrap_or_default();
    let actual_ids: Vec<&str> = user.email_addresses.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(actual_ids, email_ids, "{id}.email_addresses");
}

/// A metadata `Struct` equals the JSON object (absent when the JSON is not an object).
fn assert_struct(actual: &Option<Struct>, expected: &Value, field: &str) {
    match expected {
        Value::Object(_) => {
            let actual = actual.as_ref().unwrap_or_else(|| panic!("{field} missing"));
            assert_eq!(struct_to_json(actual), numbers_as_f64(expected), "{field}");
        }
        _ => assert_eq!(actual, &None, "{field}"),
    }
}

fn struct_to_json(s: &Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(value_to_json).collect())
        }
    }
}

/// `value` with every number as a float, as a protobuf `Struct` holds them.
fn numbers_as_f64(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn ts(seconds: i64, nanos: i32) -> Timestamp {
    Timestamp { seconds, nanos }
}

fn ts_ms(millis: i64) -> Timestamp {
    let nanos = i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap();
    ts(millis.div_euclid(1000), nanos)
}
