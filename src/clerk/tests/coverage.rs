//! Coverage of Clerk's examples by the contract: a walk over the compiled proto descriptors checks
//! that every field of every example has a proto field of the same name (and that the `Event`
//! oneof and each family's change oneof are named after the event types), and the README's event
//! type table lists every type.

use super::*;
use crate::proto::FILE_DESCRIPTOR_SET;
use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorSet, field_descriptor_proto::Type};
use std::collections::HashMap;

/// The messages of the compiled proto files, by fully qualified name (`.clerk.bridge.v1.User`).
pub(super) fn messages() -> HashMap<String, DescriptorProto> {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("the embedded descriptor set");
    let mut messages = HashMap::new();
    for file in set.file {
        let package = file.package().to_owned();
        for message in file.message_type {
            let name = format!(".{package}.{}", message.name());
            messages.insert(name, message);
        }
    }
    messages
}

/// `camelCase` → `snake_case`, as an event type's family and action name their oneof fields.
pub(super) fn snake_case(name: &str) -> String {
    let mut snake = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

/// The type name of field `name` of `message`.
pub(super) fn field_type(
    messages: &HashMap<String, DescriptorProto>,
    message: &str,
    name: &str,
) -> String {
    let descriptor = &messages[message];
    let field = descriptor.field.iter().find(|f| f.name() == name);
    let field = field.unwrap_or_else(|| panic!("{message} has no field {name}"));
    field.type_name().to_owned()
}

/// Adds to `missing` every key of `json` (recursively) that `message` has no field for.
///
/// `object` (Clerk's type tag) and `deleted` (in the event's `deleted` flag) are not fields.
fn uncovered(
    messages: &HashMap<String, DescriptorProto>,
    message: &str,
    json: &Value,
    missing: &mut Vec<String>,
) {
    let Some(object) = json.as_object() else {
        return;
    };
    for (key, value) in object {
        if key == "object" || key == "deleted" {
            continue;
        }
        let field = messages[message].field.iter().find(|f| f.name() == key);
        let Some(field) = field else {
            missing.push(format!("{message}.{key}"));
            continue;
        };
        let nested = field.type_name();
        if field.r#type() != Type::Message || nested.starts_with(".google.protobuf.") {
            continue;
        }
        match value {
            Value::Array(items) => items
                .iter()
                .for_each(|item| uncovered(messages, nested, item, missing)),
            other => uncovered(messages, nested, other, missing),
        }
    }
}

#[test]
fn every_field_of_every_example_has_a_proto_field() {
    let messages = messages();
    let mut missing = Vec::new();
    for (event_type, body) in all_fixtures() {
        let (family, action) = event_type.split_once('.').unwrap();
        let family_event = field_type(&messages, ".clerk.bridge.v1.Event", &snake_case(family));
        let resource = field_type(&messages, &family_event, &snake_case(action));
        let raw: Value = serde_json::from_str(body).unwrap();
        uncovered(&messages, &resource, &raw["data"], &mut missing);
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "fields without a proto field: {missing:?}"
    );
}

#[test]
fn readme_lists_every_event_type() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let readme = readme.expect("README.md beside Cargo.toml");
    let table = readme
        .split_once("## Event types")
        .map(|(_, rest)| rest)
        .expect("an Event types section");
    for (event_type, _) in all_fixtures() {
        assert!(
            table.contains(&format!("`{event_type}`")),
            "README's event type table lacks {event_type}"
        );
    }
}
