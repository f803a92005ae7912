//! Clerk webhook payloads: decoding a verified body into the typed [`Event`] the bridge stores and
//! streams.
//!
//! [`decode_event`] runs after the signature check, on the raw body. It rejects a body for three
//! reasons only (see [`DecodeError`]): it is not JSON, it is not a JSON object, or it has no event
//! `type`. Everything else is read leniently: Clerk's payloads drift from its schemas, new event types
//! appear, and a verified event must still be stored and delivered. A missing, `null`, unknown or
//! wrongly typed field leaves the matching proto field absent; the verbatim body always travels in
//! `payload_json`, so nothing is lost.
//!
//! Typed payloads exist for `user.created`, `user.updated` and `user.deleted`; other types carry
//! `payload: None` and are read from `payload_json`. The envelope `timestamp` is accepted in seconds
//! (what Clerk's spec examples carry) or milliseconds (what its docs say): values below 10^12 are
//! seconds. `sequence`, `event_id` and `received_at` are left for the caller to fill.

mod json;
mod user;

pub(crate) use json::timestamp_from_millis;
pub(crate) use user::{deleted_user_from_json, user_from_json};

use serde_json::Value;

use crate::proto::{Event, HttpRequest, UserEvent, event::Payload, user_event::Change};
use json::{Object, opt_i64, opt_object, opt_string, string_or_empty};

/// Envelope timestamps below this are Unix seconds; from it on, milliseconds (10^12 ms is 2001-09-09,
/// 10^12 s is year 33658).
const SECONDS_BELOW: i64 = 1_000_000_000_000;

/// Why a verified webhook body cannot become an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not valid JSON.
    #[error("webhook body is not valid JSON")]
    NotJson,
    /// The body is JSON, but its top level is not an object.
    #[error("webhook body is not a JSON object")]
    NotAnObject,
    /// The body has no `type` field, or it is not a non-empty string.
    #[error("webhook body has no event type")]
    MissingType,
}

/// Decodes a verified Clerk webhook body into an [`Event`].
///
/// Fills `type`, `object_id` (`data.id`), `occurred_at` (envelope `timestamp`), `instance_id`,
/// `http_request` (`event_attributes.http_request`), the typed `payload` for user events, and
/// `payload_json` (the body, verbatim). Leaves `sequence`, `event_id` and `received_at` at their
/// defaults for the caller.
///
/// # Errors
///
/// [`DecodeError::NotJson`] when `body` is not JSON, [`DecodeError::NotAnObject`] when its top level
/// is not an object, [`DecodeError::MissingType`] when `type` is missing, empty or not a string. No
/// other field can make decoding fail.
pub fn decode_event(body: &str) -> Result<Event, DecodeError> {
    let root: Value = serde_json::from_str(body).map_err(|_| DecodeError::NotJson)?;
    let Value::Object(envelope) = root else {
        return Err(DecodeError::NotAnObject);
    };
    let event_type = opt_string(&envelope, "type")
        .filter(|t| !t.is_empty())
        .ok_or(DecodeError::MissingType)?;
    let data = opt_object(&envelope, "data");
    Ok(Event {
        object_id: data.map(|d| string_or_empty(d, "id")).unwrap_or_default(),
        occurred_at: occurred_at(&envelope),
        instance_id: string_or_empty(&envelope, "instance_id"),
        http_request: http_request(&envelope),
        payload: data.and_then(|d| payload(&event_type, d)),
        payload_json: body.to_owned(),
        r#type: event_type,
        ..Event::default()
    })
}

/// The envelope `timestamp` as a `Timestamp`: integer seconds below 10^12, else milliseconds.
fn occurred_at(envelope: &Object) -> Option<prost_types::Timestamp> {
    let raw = opt_i64(envelope, "timestamp")?;
    let millis = if raw < SECONDS_BELOW {
        raw.checked_mul(1000)?
    } else {
        raw
    };
    timestamp_from_millis(millis)
}

/// `event_attributes.http_request`, when Clerk sends that object.
fn http_request(envelope: &Object) -> Option<HttpRequest> {
    let request = opt_object(envelope, "event_attributes")
        .and_then(|attributes| opt_object(attributes, "http_request"))?;
    Some(HttpRequest {
        client_ip: string_or_empty(request, "client_ip"),
        user_agent: string_or_empty(request, "user_agent"),
    })
}

/// The typed payload for event types this version knows; `None` for the others.
fn payload(event_type: &str, data: &Object) -> Option<Payload> {
    let change = match event_type {
        "user.created" => Change::Created(user_from_json(data)),
        "user.updated" => Change::Updated(user_from_json(data)),
        "user.deleted" => Change::Deleted(deleted_user_from_json(data)),
        _ => return None,
    };
    Some(Payload::User(UserEvent {
        change: Some(change),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{DeletedUser, SubscribeResponse, User, subscribe_response::Message};
    use prost::Message as _;
    use prost_types::{Struct, Timestamp, value::Kind};
    use serde_json::json;

    /// The directory of Clerk's published example payloads, beside this crate.
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/clerk-events");

    /// The verbatim text of the fixture `name`.
    fn fixture(name: &str) -> String {
        let path = format!("{FIXTURES}/{name}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    /// The `Timestamp` for whole `seconds` since the epoch.
    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    /// The user of a `user.created` or `user.updated` event.
    fn user_of(event: &Event) -> &User {
        match &event.payload {
            Some(Payload::User(UserEvent {
                change: Some(Change::Created(user) | Change::Updated(user)),
            })) => user,
            other => panic!("not a created or updated user: {other:?}"),
        }
    }

    /// Decodes a `json!` value rendered as a body.
    fn decode_json(body: &serde_json::Value) -> Event {
        decode_event(&body.to_string()).expect("the body decodes")
    }

    #[test]
    fn user_created_fixture_is_typed() {
        let body = fixture("user.created.json");
        let event = decode_event(&body).unwrap();
        assert_eq!(event.r#type, "user.created");
        assert_eq!(event.object_id, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
        assert_eq!(event.instance_id, "ins_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
        assert_eq!(event.occurred_at, at(1_716_883_200));
        assert_eq!(event.payload_json, body);
        assert!(matches!(
            &event.payload,
            Some(Payload::User(UserEvent {
                change: Some(Change::Created(_))
            }))
        ));
        let user = user_of(&event);
        assert_eq!(user.id, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
        assert_eq!(user.first_name.as_deref(), Some("John"));
        assert_eq!(user.last_name.as_deref(), Some("Doe"));
        assert_eq!(
            user.image_url.as_deref(),
            Some("https://img.clerk.com/xxxxxx")
        );
        assert_eq!(
            user.profile_image_url.as_deref(),
            Some("https://img.clerk.com/xxxxxx")
        );
        assert_eq!(
            user.primary_email_address_id.as_deref(),
            Some("idn_2g7np7Hrk0SN6kj5EDMLDaKNL0S")
        );
        assert_eq!(
            (
                user.has_image,
                user.password_enabled,
                user.two_factor_enabled
            ),
            (true, true, false)
        );
        assert_eq!(
            (user.delete_self_enabled, user.create_organization_enabled),
            (true, true)
        );
        assert_eq!(user.public_metadata, Some(Struct::default()));
        assert_eq!(user.unsafe_metadata, Some(Struct::default()));
        assert_eq!(user.created_at, at(1_716_883_200));
        assert_eq!(user.updated_at, at(1_716_883_200));
        assert_eq!(user.last_sign_in_at, at(1_716_883_200));
        assert_eq!(user.legal_accepted_at, at(1_716_883_200));
        assert!(user.email_addresses.is_empty() && user.external_accounts.is_empty());
    }

    #[test]
    fn user_created_fixture_nulls_are_absent() {
        let event = decode_event(&fixture("user.created.json")).unwrap();
        let user = user_of(&event);
        assert_eq!(user.external_id, None);
        assert_eq!(user.username, None);
        assert_eq!(user.primary_phone_number_id, None);
        assert_eq!(user.primary_web3_wallet_id, None);
        assert_eq!(user.private_metadata, None);
        assert_eq!((user.mfa_enabled_at, user.mfa_disabled_at), (None, None));
        assert_eq!(user.lockout_expires_in_seconds, None);
        assert_eq!(user.verification_attempts_remaining, None);
        assert_eq!(user.create_organizations_limit, None);
        assert_eq!(user.locale, None);
    }

    #[test]
    fn user_updated_fixture_is_typed() {
        let event = decode_event(&fixture("user.updated.json")).unwrap();
        assert!(matches!(
            &event.payload,
            Some(Payload::User(UserEvent {
                change: Some(Change::Updated(_))
            }))
        ));
        let user = user_of(&event);
        assert_eq!(user.id, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
        assert_eq!(user.username.as_deref(), Some("johndoe"));
        assert_eq!(user.last_name.as_deref(), Some("Doe Updated"));
        assert_eq!(
            user.image_url.as_deref(),
            Some("https://img.clerk.com/yyyyy")
        );
        let department = user
            .public_metadata
            .as_ref()
            .map(|m| m.fields["department"].kind.clone());
        assert_eq!(
            department,
            Some(Some(Kind::StringValue("engineering".into())))
        );
        assert_eq!(
            user.public_metadata.as_ref().map(|m| m.fields.len()),
            Some(1)
        );
        assert_eq!(user.private_metadata, None);
        assert_eq!((user.two_factor_enabled, user.totp_enabled), (true, true));
        assert_eq!(user.mfa_enabled_at, at(1_716_883_200));
        assert_eq!(user.mfa_disabled_at, None);
        assert_eq!(user.last_sign_in_at, at(1_716_883_400));
        assert_eq!(user.created_at, at(1_716_883_200));
        assert_eq!(user.updated_at, at(1_716_883_500));
        assert_eq!(user.last_active_at, at(1_716_883_500));
    }

    #[test]
    fn user_deleted_fixture_is_a_deleted_user() {
        let event = decode_event(&fixture("user.deleted.json")).unwrap();
        assert_eq!(event.object_id, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
        let expected = DeletedUser {
            id: "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S".into(),
            external_id: Some("ex_123456789".into()),
        };
        let change = Some(Change::Deleted(expected));
        assert_eq!(event.payload, Some(Payload::User(UserEvent { change })));
    }

    #[test]
    fn http_request_is_carried_when_sent() {
        let event = decode_event(&fixture("user.created.json")).unwrap();
        let request = event
            .http_request
            .expect("the fixture has event_attributes");
        assert_eq!(request.client_ip, "192.168.1.100");
        assert!(request.user_agent.starts_with("Mozilla/5.0 (Macintosh;"));

        let bare = decode_json(&json!({"type": "user.created", "data": {"id": "user_1"}}));
        assert_eq!(bare.http_request, None);
        let partial = json!({"type": "x", "event_attributes": {"http_request": {"client_ip": 1}}});
        assert_eq!(
            decode_json(&partial).http_request,
            Some(HttpRequest::default())
        );
        let odd = json!({"type": "x", "event_attributes": {"http_request": "nope"}});
        assert_eq!(decode_json(&odd).http_request, None);
    }

    #[test]
    fn envelope_timestamp_accepts_seconds_and_millis() {
        let with = |timestamp: serde_json::Value| {
            decode_json(&json!({"type": "user.created", "timestamp": timestamp})).occurred_at
        };
        assert_eq!(with(json!(1_716_883_200)), at(1_716_883_200));
        let millis = Some(Timestamp {
            seconds: 1_716_883_200,
            nanos: 123_000_000,
        });
        assert_eq!(with(json!(1_716_883_200_123_i64)), millis);
        // Just below 10^12 is still seconds, which is past year 9999: absent, not wrapped.
        assert_eq!(with(json!(999_999_999_999_i64)), None);
        assert_eq!(with(json!(253_402_300_799_i64)), at(253_402_300_799));
        assert_eq!(with(json!(1_000_000_000_000_i64)), at(1_000_000_000));
        assert_eq!(with(json!(0)), at(0));
        for odd in [
            json!(1.7e9),
            json!("1716883200"),
            json!(null),
            json!(i64::MIN),
            json!(u64::MAX),
        ] {
            assert_eq!(with(odd.clone()), None, "{odd}");
        }
        assert_eq!(decode_json(&json!({"type": "x"})).occurred_at, None);
    }

    #[test]
    fn wrong_types_leave_fields_absent_but_decode() {
        let body = json!({
            "type": "user.updated", "timestamp": "yesterday", "instance_id": 3,
            "event_attributes": [],
            "data": {"id": "user_1", "first_name": 5, "public_metadata": "x",
                     "created_at": "yesterday", "email_addresses": {}, "banned": "yes"}
        });
        let event = decode_json(&body);
        assert_eq!(
            (event.r#type.as_str(), event.object_id.as_str()),
            ("user.updated", "user_1")
        );
        assert_eq!((event.occurred_at, event.instance_id.as_str()), (None, ""));
        assert_eq!(event.http_request, None);
        let user = user_of(&event);
        assert_eq!(user.id, "user_1");
        assert_eq!(
            (user.first_name.as_ref(), user.public_metadata.as_ref()),
            (None, None)
        );
        assert_eq!(user.created_at, None);
        assert!(user.email_addresses.is_empty());
        assert!(!user.banned);
    }

    #[test]
    fn user_event_without_object_data_has_no_payload() {
        for data in [json!(null), json!("user_1"), json!([{"id": "user_1"}])] {
            let event = decode_json(&json!({"type": "user.deleted", "data": data}));
            assert_eq!(
                (event.payload.as_ref(), event.object_id.as_str()),
                (None, "")
            );
        }
        let event = decode_json(&json!({"type": "user.created"}));
        assert_eq!(event.payload, None);
        let numeric_id = decode_json(&json!({"type": "user.deleted", "data": {"id": 12}}));
        assert_eq!(numeric_id.object_id, "");
        let expected = Some(Payload::User(UserEvent {
            change: Some(Change::Deleted(DeletedUser::default())),
        }));
        assert_eq!(numeric_id.payload, expected);
    }

    #[test]
    fn rejects_only_the_three_conditions() {
        assert_eq!(decode_event("not json"), Err(DecodeError::NotJson));
        assert_eq!(decode_event(""), Err(DecodeError::NotJson));
        assert_eq!(
            decode_event(r#"{"type": "user.created""#),
            Err(DecodeError::NotJson)
        );
        assert_eq!(
            decode_event(r#"[{"type": "user.created"}]"#),
            Err(DecodeError::NotAnObject)
        );
        assert_eq!(
            decode_event(r#""user.created""#),
            Err(DecodeError::NotAnObject)
        );
        assert_eq!(decode_event("null"), Err(DecodeError::NotAnObject));
        assert_eq!(
            decode_event(r#"{"data": {"id": "user_1"}}"#),
            Err(DecodeError::MissingType)
        );
        assert_eq!(
            decode_event(r#"{"type": 5}"#),
            Err(DecodeError::MissingType)
        );
        assert_eq!(
            decode_event(r#"{"type": null}"#),
            Err(DecodeError::MissingType)
        );
        assert_eq!(
            decode_event(r#"{"type": ""}"#),
            Err(DecodeError::MissingType)
        );
    }

    #[test]
    fn unknown_type_decodes_without_payload() {
        let body = r#"{"type":"foo.bar","data":{"id":"foo_1","x":[1,2]},"object":"event"}"#;
        let event = decode_event(body).unwrap();
        assert_eq!(event.r#type, "foo.bar");
        assert_eq!(event.object_id, "foo_1");
        assert_eq!(event.payload, None);
        assert_eq!(event.payload_json, body);
    }

    #[test]
    fn caller_fields_stay_default() {
        let event = decode_event(&fixture("user.created.json")).unwrap();
        assert_eq!(
            (event.sequence, event.event_id.as_str(), event.received_at),
            (0, "", None)
        );
    }

    #[test]
    fn every_fixture_decodes() {
        let mut seen = 0;
        for entry in std::fs::read_dir(FIXTURES).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(expected_type) = name.strip_suffix(".json") else {
                continue;
            };
            let body = fixture(name);
            let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
            let event = decode_event(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(event.r#type, expected_type, "{name}");
            assert_eq!(
                event.object_id,
                raw["data"]["id"].as_str().unwrap(),
                "{name}"
            );
            assert!(!event.object_id.is_empty(), "{name}");
            assert_eq!(event.payload_json, body, "{name}");
            assert_eq!(
                event.instance_id,
                raw["instance_id"].as_str().unwrap(),
                "{name}"
            );
            assert!(event.occurred_at.is_some(), "{name}");
            let typed = expected_type.starts_with("user.");
            assert_eq!(event.payload.is_some(), typed, "{name}");
            seen += 1;
        }
        assert!(seen >= 45, "only {seen} fixtures found in {FIXTURES}");
    }

    /// A `user.updated` body whose unsafe metadata nests `levels` objects deep (beyond the top one).
    fn deeply_nested_user(levels: usize) -> String {
        let inner = (0..levels).fold(json!("leaf"), |inner, _| json!({ "a": inner }));
        let data = json!({"id": "user_1", "unsafe_metadata": {"a": inner},
                          "external_accounts": [{"id": "eac_1", "public_metadata": {"a": null}}]});
        let mut body = json!({"type": "user.updated", "data": data});
        body["data"]["external_accounts"][0]["public_metadata"]["a"] =
            body["data"]["unsafe_metadata"]["a"].clone();
        body.to_string()
    }

    #[test]
    fn deep_metadata_stays_decodable_on_the_wire() {
        // 120 levels plus the envelope stays under serde_json's parse limit of 128.
        let event = decode_event(&deeply_nested_user(120)).unwrap();
        let response = SubscribeResponse {
            message: Some(Message::Event(event.clone())),
        };
        let decoded = SubscribeResponse::decode(response.encode_to_vec().as_slice())
            .expect("prost's recursion limit of 100 is respected");
        assert_eq!(decoded.message, Some(Message::Event(event)));
    }

    #[test]
    fn body_past_the_parse_depth_is_not_json() {
        assert_eq!(
            decode_event(&deeply_nested_user(200)),
            Err(DecodeError::NotJson)
        );
    }
}
