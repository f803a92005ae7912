//! The size bound: webhook bodies at the largest body cap, built so that their metadata expands
//! the most as `google.protobuf.Struct`s, still reach subscribers in one message that default
//! gRPC clients accept, with `payload_json` equal to the body.

use super::*;
use crate::proto::{SubscribeResponse, subscribe_response::Message};
use prost::Message as _;
use serde_json::json;

/// The largest body the bridge accepts, as a length.
fn body_cap() -> usize {
    usize::try_from(MAX_BODY_BYTES).unwrap()
}

/// A `user.updated` body of exactly [`body_cap`] bytes: `prefix`, then `item` repeated as long as
/// it fits, then `suffix`, padded with spaces (which JSON allows between tokens).
fn body_at_cap(prefix: &str, item: &str, suffix: &str) -> String {
    let room = body_cap() - prefix.len() - suffix.len();
    let count = room / (item.len() + 1);
    let items = vec![item; count].join(",");
    let mut body = format!("{prefix}{items}{suffix}");
    body.push_str(&" ".repeat(body_cap() - body.len()));
    body
}

/// A `user.updated` body whose `data` ends with `field`, an open JSON value that `items` fill.
fn user_body(field: &str, item: &str, close: &str) -> String {
    let prefix = format!(
        r#"{{"type":"user.updated","object":"event","timestamp":1716883200,"data":{{"id":"user_1","updated_at":1716883200000,{field}"#
    );
    body_at_cap(&prefix, item, &format!("{close}}}}}"))
}

/// The bodies that expand the most, by name.
fn expanding_bodies() -> Vec<(&'static str, String)> {
    let deep = format!("{}0{}", "[".repeat(24), "]".repeat(24));
    let accounts = r#"{"id":"eac_1","provider":"oauth_google","public_metadata":{"a":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}}"#;
    let session = r#"{"type":"session.created","object":"event","timestamp":1716883200,"data":{"id":"sess_1","user":{"id":"user_1","unsafe_metadata":{"a":["#;
    let memberships = r#"{"id":"orgmem_1","public_metadata":{"a":[0,0,0,0,0,0,0,0,0,0]},"organization":{"id":"org_1","private_metadata":{"a":[0,0,0,0,0,0,0,0,0,0]}}}"#;
    vec![
        (
            "an array of small numbers",
            user_body(r#""public_metadata":{"a":["#, "0", "]}"),
        ),
        (
            "many tiny keys",
            body_at_cap_keys(r#""private_metadata":{"#, "}"),
        ),
        (
            "deep nesting",
            user_body(r#""unsafe_metadata":{"a":["#, &deep, "]}"),
        ),
        (
            "metadata spread over many accounts",
            user_body(r#""external_accounts":["#, accounts, "]"),
        ),
        (
            "metadata of an embedded user",
            body_at_cap(session, "0", "]}}}}"),
        ),
        (
            "metadata of memberships beside the user",
            user_body(r#""organization_memberships":["#, memberships, "]"),
        ),
        (
            "typed fields of megabytes",
            // Typed twice: as the account's `avatar_url` and as its `image_url`.
            user_body(
                r#""external_accounts":[{"id":"eac_1","avatar_url":""#,
                "a",
                r#""}]"#,
            ),
        ),
    ]
}

/// A `user.updated` body of exactly [`body_cap`] bytes whose `field` object has as many one-
/// or two-character keys as fit.
fn body_at_cap_keys(field: &str, close: &str) -> String {
    let prefix = format!(
        r#"{{"type":"user.updated","object":"event","timestamp":1716883200,"data":{{"id":"user_1",{field}"#
    );
    let suffix = format!("{close}}}}}");
    let mut keys = Vec::new();
    let mut len = prefix.len() + suffix.len();
    for n in 0usize.. {
        let key = format!(r#""{}":0"#, base62(n));
        if len + key.len() + 1 > body_cap() {
            break;
        }
        len += key.len() + 1;
        keys.push(key);
    }
    let mut body = format!("{prefix}{}{suffix}", keys.join(","));
    body.push_str(&" ".repeat(body_cap() - body.len()));
    body
}

/// `n` in base 62 (`0-9A-Za-z`): short distinct keys.
fn base62(mut n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![DIGITS[n % 62]];
    while n >= 62 {
        n = n / 62 - 1;
        out.push(DIGITS[n % 62]);
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// The message a subscriber receives for `event`, with every field the log and the stream add at
/// its largest.
fn as_delivered(event: Event) -> SubscribeResponse {
    SubscribeResponse {
        message: Some(Message::Event(Event {
            sequence: u64::MAX,
            event_id: "m".repeat(256),
            received_at: Some(Timestamp {
                seconds: 253_402_300_799,
                nanos: 999_999_999,
            }),
            source: i32::MAX,
            ..event
        })),
        delivery_attempt: u32::MAX,
    }
}

#[test]
fn bodies_at_the_cap_fit_in_a_default_grpc_message() {
    for (name, body) in expanding_bodies() {
        assert_eq!(body.len(), body_cap(), "{name}");
        let event = decode_event(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.payload_json, body, "{name}: payload_json is the body");
        let omitted = event.omitted_fields.clone();
        let delivered = as_delivered(event).encoded_len();
        assert!(
            delivered <= MAX_MESSAGE_BYTES,
            "{name}: {delivered} bytes, more than {MAX_MESSAGE_BYTES}"
        );
        assert!(!omitted.is_empty(), "{name}: nothing omitted");
        assert_eq!(MAX_MESSAGE_BYTES, 4_194_304);
    }
}

#[test]
fn only_the_largest_structs_are_left_out() {
    let bodies = expanding_bodies();
    let event = decode_event(&bodies[0].1).unwrap();
    assert_eq!(event.omitted_fields, ["user.updated.public_metadata"]);
    let Some(Payload::User(user)) = &event.payload else {
        panic!("the typed user stays");
    };
    let Some(crate::proto::user_event::Change::Updated(user)) = &user.change else {
        panic!("an update");
    };
    assert_eq!(
        (user.id.as_str(), user.public_metadata.as_ref()),
        ("user_1", None)
    );

    let event = decode_event(&bodies[3].1).unwrap();
    assert!(event.omitted_fields.len() > 1, "{:?}", event.omitted_fields);
    assert!(
        event
            .omitted_fields
            .iter()
            .all(|path| path.starts_with("user.updated.external_accounts[")
                && path.ends_with("].public_metadata")),
        "{:?}",
        event.omitted_fields
    );
    let event = decode_event(&bodies[4].1).unwrap();
    assert_eq!(
        event.omitted_fields,
        ["session.created.user.unsafe_metadata"]
    );
}

#[test]
fn metadata_of_memberships_beside_the_user_is_left_out() {
    let bodies = expanding_bodies();
    let (name, body) = &bodies[5];
    assert_eq!(*name, "metadata of memberships beside the user");
    let event = decode_event(body).unwrap();
    let is_membership_struct = |path: &String| {
        path.starts_with("user.organization_memberships[")
            && (path.ends_with("].public_metadata")
                || path.ends_with("].organization.private_metadata"))
    };
    assert!(event.omitted_fields.len() > 1, "{:?}", event.omitted_fields);
    assert!(
        event.omitted_fields.iter().all(is_membership_struct),
        "{:?}",
        event.omitted_fields
    );
    let Some(Payload::User(user)) = &event.payload else {
        panic!("the typed user and memberships stay");
    };
    let kept = user.organization_memberships.len();
    assert_eq!(
        kept,
        body.matches("orgmem_1").count(),
        "every membership stays"
    );
}

#[test]
fn typed_fields_of_megabytes_leave_the_payload_out() {
    let bodies = expanding_bodies();
    let event = decode_event(&bodies[6].1).unwrap();
    assert_eq!(event.omitted_fields, ["user"]);
    assert_eq!(event.payload, None);
    assert_eq!(
        (event.r#type.as_str(), event.object_id.as_str()),
        ("user.updated", "user_1")
    );
    assert_eq!(event.object_version, 1_716_883_200_000);
}

#[test]
fn events_that_fit_omit_nothing() {
    for (event_type, body) in all_fixtures() {
        let event = decode_event(body).unwrap();
        assert!(event.omitted_fields.is_empty(), "{event_type}");
    }
    let small = json!({"type": "user.updated", "data": {"id": "user_1",
                       "public_metadata": {"a": vec![0; 100_000]}}});
    assert!(decode_json(&small).omitted_fields.is_empty());
}
