//! The envelope and the user family: what `decode_event` reads from every body, what it rejects,
//! and how `user.*` payloads come out.

use super::*;
use crate::proto::{
    DeletedUser, SessionEvent, SubscribeResponse, User, UserEvent, session_event,
    subscribe_response::Message, user_event::Change,
};
use prost::Message as _;
use prost_types::{Struct, Timestamp, value::Kind};
use serde_json::json;

/// The user of a `user.created` or `user.updated` event.
fn user_of(event: &Event) -> &User {
    match &event.payload {
        Some(Payload::User(UserEvent {
            change: Some(Change::Created(user) | Change::Updated(user)),
            ..
        })) => user,
        other => panic!("not a created or updated user: {other:?}"),
    }
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
            change: Some(Change::Created(_)),
            ..
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
            change: Some(Change::Updated(_)),
            ..
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
    let expected = UserEvent {
        change,
        ..UserEvent::default()
    };
    assert_eq!(event.payload, Some(Payload::User(expected)));
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
        ..UserEvent::default()
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
        assert!(event.payload.is_some(), "{name} has no typed payload");
        assert_eq!(event.deleted, expected_type.ends_with(".deleted"), "{name}");
        assert!(event.object_version > 0, "{name}");
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
        ..SubscribeResponse::default()
    };
    let decoded = SubscribeResponse::decode(response.encode_to_vec().as_slice())
        .expect("prost's recursion limit of 100 is respected");
    assert_eq!(decoded.message, Some(Message::Event(event)));
}

#[test]
fn a_body_nested_past_serde_jsons_limit_is_still_an_event() {
    // serde_json alone refuses more than 128 levels: Clerk would then retry a webhook the bridge
    // can never take, and the event would be lost. 100,000 levels also check the stack.
    for levels in [200, 100_000] {
        let body = format!(
            r#"{{"type":"user.updated","data":{{"id":"user_1","unsafe_metadata":{}"leaf"{}}}}}"#,
            r#"{"a":"#.repeat(levels),
            "}".repeat(levels)
        );
        let event = decode_event(&body).unwrap_or_else(|e| panic!("{levels} levels: {e}"));
        assert_eq!(event.r#type, "user.updated");
        assert_eq!(event.object_id, "user_1");
        assert_eq!(event.payload_json, body, "the body travels verbatim");
        let Some(Payload::User(UserEvent {
            change: Some(Change::Updated(user)),
            ..
        })) = &event.payload
        else {
            panic!("not an updated user: {:?}", event.payload)
        };
        assert!(user.unsafe_metadata.is_some());
        let response = SubscribeResponse {
            message: Some(Message::Event(event.clone())),
            ..SubscribeResponse::default()
        };
        let decoded = SubscribeResponse::decode(response.encode_to_vec().as_slice())
            .expect("prost's recursion limit of 100 is respected");
        assert_eq!(decoded.message, Some(Message::Event(event)));
    }
}

#[test]
fn deep_containers_are_cut_off_but_shallower_ones_kept() {
    let body = json!({"type": "x.y", "data": {"id": "x_1"}, "deep": deep_array(200)}).to_string();
    let parsed = tree::parse(&body).unwrap();
    fn field<'a>(value: &tree::Json<'a>, key: &str) -> tree::Json<'a> {
        let object = value.as_object().expect("an object");
        object.get(key).cloned().expect("the field")
    }
    // The body's top level is 0, `deep` is level 1, its n-th nested array level 1 + n.
    let mut value = field(&parsed, "deep");
    for level in 1..=tree::MAX_PARSE_DEPTH {
        let items = value
            .as_array()
            .unwrap_or_else(|| panic!("level {level} is kept"));
        value = items[0].clone();
    }
    assert_eq!(
        value,
        tree::Json::Null,
        "level {} is cut off",
        tree::MAX_PARSE_DEPTH + 1
    );
    assert_eq!(field(&field(&parsed, "data"), "id").as_str(), Some("x_1"));
}

#[test]
fn malformed_json_is_refused_at_any_depth() {
    for levels in [3, 100, 10_000] {
        let unbalanced = format!(r#"{{"type":"user.updated","data":{}}}"#, "[".repeat(levels));
        assert_eq!(
            decode_event(&unbalanced),
            Err(DecodeError::NotJson),
            "{levels}"
        );
        let bad_scalar = format!(
            r#"{{"type":"user.updated","data":{}nul{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        );
        assert_eq!(
            decode_event(&bad_scalar),
            Err(DecodeError::NotJson),
            "{levels}"
        );
    }
    assert_eq!(
        decode_event(r#"{"type":"user.updated"} trailing"#),
        Err(DecodeError::NotJson)
    );
}

/// `levels` arrays nested in one another around a string.
fn deep_array(levels: usize) -> serde_json::Value {
    (0..levels).fold(json!("leaf"), |inner, _| json!([inner]))
}

#[test]
fn deep_metadata_of_a_session_user_stays_decodable_on_the_wire() {
    // The deepest `Struct` of the contract: Event → SessionEvent → Session → User → account.
    let user: serde_json::Value = serde_json::from_str(&deeply_nested_user(118)).unwrap();
    let data = json!({"id": "sess_1", "user": user["data"]});
    let body = json!({"type": "session.created", "data": data}).to_string();
    let event = decode_event(&body).unwrap();
    let Some(Payload::Session(SessionEvent {
        change: Some(session_event::Change::Created(session)),
    })) = &event.payload
    else {
        panic!("not a created session: {:?}", event.payload)
    };
    let user = session.user.as_ref().expect("the embedded user");
    assert!(user.external_accounts[0].public_metadata.is_some());
    let response = SubscribeResponse {
        message: Some(Message::Event(event.clone())),
        ..SubscribeResponse::default()
    };
    let decoded = SubscribeResponse::decode(response.encode_to_vec().as_slice())
        .expect("prost's recursion limit of 100 is respected");
    assert_eq!(decoded.message, Some(Message::Event(event)));
}
