//! Property tests: random Clerk-shaped JSON (Clerk's examples with fields removed, nulled, given
//! the wrong type, unknown fields added, huge strings and deep nesting), and random envelopes.
//!
//! For every such verified body, `decode_event` must not panic, must not reject it, must carry the
//! body verbatim in `payload_json`, must type every known event type, and must produce an event
//! that survives the protobuf wire (prost refuses more than 100 nested messages).

use super::*;
use crate::proto::{SubscribeResponse, subscribe_response::Message};
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Deepest nesting a generated body may reach (deeper bodies are covered by
/// `envelope::a_body_nested_past_serde_jsons_limit_is_still_an_event`).
const MAX_BODY_DEPTH: usize = 120;

/// Containers deeper than this in a fixture are not mutated, so that nested insertions stay
/// under [`MAX_BODY_DEPTH`].
const MAX_MUTATION_DEPTH: usize = 10;

/// Every key that appears anywhere in Clerk's examples, so random objects look like Clerk's.
fn clerk_keys() -> Vec<String> {
    fn collect(value: &Value, keys: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => map.iter().for_each(|(key, value)| {
                keys.insert(key.clone());
                collect(value, keys);
            }),
            Value::Array(items) => items.iter().for_each(|item| collect(item, keys)),
            _ => {}
        }
    }
    let mut keys = BTreeSet::new();
    for (_, body) in all_fixtures() {
        collect(&serde_json::from_str(body).unwrap(), &mut keys);
    }
    keys.into_iter().collect()
}

/// A key: one of Clerk's, or anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(clerk_keys()), 1 => "\\PC{0,12}"]
}

/// A scalar JSON value: nulls, booleans, integers of any size and sign, times, floats, strings
/// (now and then a huge one).
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::from),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        2 => (1_600_000_000_000_i64..1_800_000_000_000).prop_map(Value::from),
        2 => any::<f64>().prop_map(Value::from),
        4 => "\\PC{0,24}".prop_map(Value::from),
        2 => prop::sample::select(vec!["active", "verified", "pending", "past_due", "user_1", ""])
            .prop_map(Value::from),
        1 => (0..300_000_usize, any::<char>()).prop_map(|(n, c)| Value::from(c.to_string().repeat(n))),
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// `levels` nested objects (or arrays) around a string.
fn nested(levels: usize, arrays: bool) -> Value {
    (0..levels).fold(Value::from("leaf"), |inner, _| {
        if arrays {
            Value::Array(vec![inner])
        } else {
            Value::Object(Map::from_iter([("a".to_owned(), inner)]))
        }
    })
}

/// One change to a body.
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove a field or element.
    Remove,
    /// Replace a field or element by any value (often of the wrong type).
    Replace(Value),
    /// Add a field (often unknown) or element.
    Insert(String, Value),
    /// Replace a field or element by a deeply nested value.
    Nest(usize, bool),
}

/// A mutation and the numbers that pick where it applies.
fn mutation() -> impl Strategy<Value = (usize, usize, Mutation)> {
    let mutation = prop_oneof![
        2 => Just(Mutation::Remove),
        4 => any_json().prop_map(Mutation::Replace),
        2 => (key(), any_json()).prop_map(|(k, v)| Mutation::Insert(k, v)),
        1 => (1..=100_usize, any::<bool>()).prop_map(|(n, arrays)| Mutation::Nest(n, arrays)),
    ];
    (any::<usize>(), any::<usize>(), mutation)
}

/// The containers in `value` down to [`MAX_MUTATION_DEPTH`], as JSON pointers.
fn containers(value: &Value, pointer: String, depth: usize, out: &mut Vec<String>) {
    if depth > MAX_MUTATION_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                containers(child, format!("{pointer}/{escaped}"), depth + 1, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                containers(child, format!("{pointer}/{i}"), depth + 1, out);
            }
        }
        _ => return,
    }
    out.push(pointer);
}

/// Applies `mutation` to the container `container` picks in `root`, at the child `child` picks.
fn apply(root: &mut Value, container: usize, child: usize, mutation: Mutation) {
    let mut pointers = Vec::new();
    containers(root, String::new(), 0, &mut pointers);
    let pointer = &pointers[container % pointers.len()];
    let Some(target) = root.pointer_mut(pointer) else {
        return;
    };
    match (target, mutation) {
        (Value::Object(map), Mutation::Insert(key, value)) => {
            map.insert(key, value);
        }
        (Value::Array(items), Mutation::Insert(_, value)) => items.push(value),
        (Value::Object(map), mutation) if !map.is_empty() => {
            let key = map.keys().nth(child % map.len()).cloned().unwrap();
            match mutation {
                Mutation::Remove => drop(map.remove(&key)),
                Mutation::Replace(value) => drop(map.insert(key, value)),
                Mutation::Nest(levels, arrays) => drop(map.insert(key, nested(levels, arrays))),
                Mutation::Insert(..) => unreachable!("matched above"),
            }
        }
        (Value::Array(items), mutation) if !items.is_empty() => {
            let i = child % items.len();
            match mutation {
                Mutation::Remove => drop(items.remove(i)),
                Mutation::Replace(value) => items[i] = value,
                Mutation::Nest(levels, arrays) => items[i] = nested(levels, arrays),
                Mutation::Insert(..) => unreachable!("matched above"),
            }
        }
        _ => {}
    }
}

/// One of Clerk's examples with up to eight mutations; keeps its (valid) event type.
fn clerk_shaped_body() -> impl Strategy<Value = (String, String)> {
    let fixtures = all_fixtures();
    let count = fixtures.len();
    (0..count, prop::collection::vec(mutation(), 0..8)).prop_map(move |(i, mutations)| {
        let (event_type, body) = &fixtures[i];
        let mut root: Value = serde_json::from_str(body).unwrap();
        for (container, child, mutation) in mutations {
            apply(&mut root, container, child, mutation);
        }
        root["type"] = Value::from(event_type.as_str());
        (event_type.clone(), root.to_string())
    })
}

/// Any event type: one Clerk sends, a near miss, or anything non-empty.
fn event_type() -> impl Strategy<Value = String> {
    let known: Vec<String> = all_fixtures().iter().map(|(t, _)| t.clone()).collect();
    prop_oneof![
        3 => prop::sample::select(known),
        1 => "[a-zA-Z]{1,12}\\.[a-zA-Z]{0,12}",
        1 => "\\PC{1,16}",
    ]
}

/// A random envelope around random `data` (sometimes not an object, sometimes missing).
fn random_body() -> impl Strategy<Value = (String, String)> {
    let fields = prop::collection::vec((key(), any_json()), 0..6);
    let data = prop::option::of(any_json());
    (event_type(), fields, data).prop_map(|(event_type, fields, data)| {
        let mut root: Map<String, Value> = fields.into_iter().collect();
        if let Some(data) = data {
            root.insert("data".to_owned(), data);
        }
        root.insert("type".to_owned(), Value::from(event_type.as_str()));
        (event_type, Value::Object(root).to_string())
    })
}

/// How many containers deep `value` nests.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether this version has a typed payload for `event_type`.
fn is_known(event_type: &str) -> bool {
    all_fixtures().iter().any(|(known, _)| known == event_type)
}

/// The properties every verified body of type `event_type` must have.
fn check(event_type: &str, body: &str) -> Result<(), TestCaseError> {
    let raw: Value = serde_json::from_str(body).unwrap();
    prop_assert!(depth(&raw) <= MAX_BODY_DEPTH);
    let event = decode_event(body);
    prop_assert!(event.is_ok(), "rejected: {:?}", event);
    let event = event.unwrap();
    prop_assert_eq!(&event.payload_json, body);
    prop_assert_eq!(&event.r#type, event_type);
    let data = raw.get("data").and_then(Value::as_object);
    let id = data.and_then(|d| d.get("id")).and_then(Value::as_str);
    prop_assert_eq!(event.object_id.as_str(), id.unwrap_or(""));
    prop_assert_eq!(event.deleted, event_type.ends_with(".deleted"));
    prop_assert_eq!(
        event.payload.is_some(),
        data.is_some() && is_known(event_type)
    );
    let response = SubscribeResponse {
        message: Some(Message::Event(event.clone())),
        ..SubscribeResponse::default()
    };
    let decoded = SubscribeResponse::decode(response.encode_to_vec().as_slice());
    prop_assert_eq!(
        decoded.ok().and_then(|r| r.message),
        Some(Message::Event(event))
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn clerk_shaped_bodies_decode_leniently((event_type, body) in clerk_shaped_body()) {
        check(&event_type, &body)?;
    }

    #[test]
    fn random_envelopes_decode_leniently((event_type, body) in random_body()) {
        check(&event_type, &body)?;
    }
}
