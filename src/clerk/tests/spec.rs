//! The contract held to Clerk's published schemas: a walk over the OpenAPI specs (copies in
//! `tests/fixtures/clerk-openapi/`) checks that every property of every webhook's `data` schema,
//! and of the Backend API objects backfill reads or that carry more than the webhook shapes, has a
//! proto field of its name in the compiled descriptors, of a matching kind (an object is a message,
//! an array is repeated), down through nested objects. The next property Clerk adds to its schemas
//! fails this test instead of being lost silently. Deliberate exceptions are the short lists below.
//!
//! The walk knows how it reached each message (the holding message and its field), so that a
//! property typed beside its object, on the holder, is matched there ([`TYPED_BESIDE`]).

use super::coverage::{field_type, messages, snake_case};
use prost_types::{
    DescriptorProto, FieldDescriptorProto,
    field_descriptor_proto::{Label, Type},
};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

/// The directory of the copies of Clerk's OpenAPI specs, beside this crate.
const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clerk-openapi");

/// The webhook spec: every event type and the schema of its `data`.
const WEBHOOK_SPEC: &str = "webhooks-2025-04-15.yml";

/// The Backend API spec.
const BACKEND_API_SPEC: &str = "bapi-2026-05-12.yml";

/// Backend API schemas walked, and the proto message each is typed as: the objects backfill reads
/// (users, organizations with the deprecated `logo_url`, memberships), and the objects whose
/// Backend API shape has more than their webhook shape. `Holder.field` names the message of that
/// field, reached through it: backfill delivers a user as the `updated` of a `user.updated` event.
const BACKEND_API_OBJECTS: &[(&str, &str)] = &[
    ("User", "UserEvent.updated"),
    ("OrganizationWithLogo", "Organization"),
    ("OrganizationMembership", "OrganizationMembership"),
    ("Session", "Session"),
    ("CommerceSubscription", "Subscription"),
    ("CommerceSubscriptionItem", "SubscriptionItem"),
];

/// Properties typed by no proto field, on purpose: (message, property, why). Clerk's type tag
/// `object` is left out everywhere too: the message type says it.
const EXCLUDED: &[(&str, &str, &str)] = &[
    (
        "DeletedUser",
        "deleted",
        "always true: `Event.deleted` says it for every `*.deleted` event",
    ),
    (
        "DeletedObject",
        "deleted",
        "always true: `Event.deleted` says it for every `*.deleted` event",
    ),
    (
        "DeletedUser",
        "slug",
        "the spec's DeletedObject serves every kind, and users have no slug",
    ),
];

/// Properties typed on the message that holds their object, beside it, because the object's own
/// message cannot hold them: (message, property, holder, the holder's field of the object, the
/// holder's field of the property). A message reached through any other field has no place for
/// the property, and the walk reports it.
///
/// A user's `organization_memberships`: `OrganizationMembership` lives in organization.proto,
/// which imports user.proto, so `User` cannot hold one (protobuf allows no import cycle, and
/// moving messages between files breaks generated code). They are typed on the event beside the
/// user: on `UserEvent` for `user.*` events (and backfilled users), on `Session` for its `user`.
const TYPED_BESIDE: &[(&str, &str, &str, &str, &str)] = &[
    (
        "User",
        "organization_memberships",
        "UserEvent",
        "created",
        "organization_memberships",
    ),
    (
        "User",
        "organization_memberships",
        "UserEvent",
        "updated",
        "organization_memberships",
    ),
    (
        "User",
        "organization_memberships",
        "Session",
        "user",
        "user_organization_memberships",
    ),
];

/// Properties typed under another name: (message, property, proto field, why).
const RENAMED: &[(&str, &str, &str, &str)] = &[
    (
        "SmsMessage",
        "created_at_ms",
        "created_at",
        "the spec's name; payloads send `created_at`, and both are read",
    ),
    (
        "Subscription",
        "subscription_items",
        "items",
        "the Backend API's name of the webhooks' `items`; both are read",
    ),
    (
        "SubscriptionItem",
        "lifetime_paid",
        "lifetime_paid_money",
        "the Backend API's money object; webhooks' number goes to `lifetime_paid`, which both fill",
    ),
];

/// Object properties whose own properties are typed on the enclosing message: (message, property,
/// why).
const FLATTENED: &[(&str, &str, &str)] = &[(
    "OrganizationInvitation",
    "data",
    "its only property, `public_organization_data`, is typed on the invitation",
)];

/// A schema with its `$ref`s, `allOf`, `oneOf` and `anyOf` resolved into one shape.
#[derive(Debug, Default)]
struct Shape {
    /// Properties of every alternative and part, by name (the first one seen wins).
    properties: Map<String, Value>,
    /// The item schema, for arrays.
    items: Option<Value>,
    /// Whether the schema says `type: object` or has properties.
    object: bool,
}

/// One OpenAPI spec, parsed.
struct Spec {
    /// The whole document.
    root: Value,
}

// === impl Spec ===

impl Spec {
    /// Reads and parses the spec `name` from [`SPECS`].
    fn read(name: &str) -> Spec {
        let path = format!("{SPECS}/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let root = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        Spec { root }
    }

    /// The component schema `name`.
    fn schema(&self, name: &str) -> &Value {
        let schema = &self.root["components"]["schemas"][name];
        assert!(schema.is_object(), "no schema {name}");
        schema
    }

    /// `schema` resolved into a [`Shape`].
    fn shape(&self, schema: &Value) -> Shape {
        let mut shape = Shape::default();
        self.merge(schema, &mut shape);
        shape
    }

    /// Adds what `schema` says to `shape`, following references and compositions.
    fn merge(&self, schema: &Value, shape: &mut Shape) {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or_default();
            return self.merge(self.schema(name), shape);
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for part in schema[key].as_array().into_iter().flatten() {
                self.merge(part, shape);
            }
        }
        shape.object |= schema["type"] == "object" || schema["properties"].is_object();
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            shape
                .properties
                .entry(name.clone())
                .or_insert_with(|| property.clone());
        }
        if schema["type"] == "array" {
            shape.items = Some(schema["items"].clone());
        }
    }
}

/// How the walk reached a message: the fully qualified name of the message holding it, and the
/// holder's field of it. `None` for the messages a walk starts at without a holder.
type Via<'a> = Option<(&'a str, &'a str)>;

/// Walks schemas against the compiled proto messages and collects what has no field.
struct Walk {
    /// The compiled messages, by fully qualified name.
    messages: HashMap<String, DescriptorProto>,
    /// `Message.property` of every property without a matching field, with where it was met.
    missing: BTreeSet<String>,
}

// === impl Walk ===

impl Walk {
    /// Checks every property of `schema` (of `spec`) against the message `message`, reached
    /// through `via`, at `path`.
    fn check(&mut self, spec: &Spec, schema: &Value, message: &str, via: Via<'_>, path: &str) {
        let shape = spec.shape(schema);
        for (property, schema) in &shape.properties {
            let at = format!("{path}.{property}");
            self.property(spec, message, via, property, schema, &at);
        }
    }

    /// Checks one property of `message`, reached through `via`.
    fn property(
        &mut self,
        spec: &Spec,
        message: &str,
        via: Via<'_>,
        property: &str,
        schema: &Value,
        at: &str,
    ) {
        let short = short_name(message);
        if property == "object" || EXCLUDED.iter().any(|e| (e.0, e.1) == (short, property)) {
            return;
        }
        if FLATTENED.iter().any(|f| (f.0, f.1) == (short, property)) {
            return self.check(spec, schema, message, via, at);
        }
        let (holder, name) = place(message, via, property);
        let Some(field) = self.field(holder, name) else {
            self.missing.insert(format!("{short}.{property} (at {at})"));
            return;
        };
        let shape = spec.shape(schema);
        let repeated = field.label() == Label::Repeated;
        let nested = (field.r#type() == Type::Message).then(|| field.type_name().to_owned());
        let via = Some((holder, name));
        match (&shape.items, nested) {
            (Some(_), _) if !repeated => self.mismatch(short, property, at, "an array"),
            (Some(items), Some(nested)) => self.nested(spec, items, &nested, via, at),
            (None, _) if repeated => self.mismatch(short, property, at, "not an array"),
            (None, None) if shape.object => self.mismatch(short, property, at, "an object"),
            (None, Some(nested)) if shape.object => self.nested(spec, schema, &nested, via, at),
            _ => {}
        }
    }

    /// Walks into the message `nested`, reached through `via`, unless it is a well-known type
    /// (`Struct` holds anything).
    fn nested(&mut self, spec: &Spec, schema: &Value, nested: &str, via: Via<'_>, at: &str) {
        if !nested.starts_with(".google.protobuf.") {
            self.check(spec, schema, nested, via, at);
        }
    }

    /// Records a property whose proto field has the wrong kind.
    fn mismatch(&mut self, message: &str, property: &str, at: &str, what: &str) {
        let problem = format!("{message}.{property} (at {at}): the spec has {what}");
        self.missing.insert(problem);
    }

    /// The field `name` of `message`, if it exists.
    fn field(&self, message: &str, name: &str) -> Option<&FieldDescriptorProto> {
        let descriptor = &self.messages[message];
        descriptor.field.iter().find(|f| f.name() == name)
    }
}

/// The message's name without its package: `User` for `.clerk.bridge.v1.User`.
fn short_name(message: &str) -> &str {
    message.rsplit('.').next().unwrap_or_default()
}

/// Where `property` of `message`, reached through `via`, is typed: the message holding the field,
/// and the field's name. The holder's field for a property typed beside its object
/// ([`TYPED_BESIDE`]), the renamed field ([`RENAMED`]), or else `message`'s field of its name.
fn place<'a>(message: &'a str, via: Via<'a>, property: &'a str) -> (&'a str, &'a str) {
    let short = short_name(message);
    let beside = via.and_then(|(holder, field)| {
        let holder_short = short_name(holder);
        TYPED_BESIDE
            .iter()
            .find(|b| (b.0, b.1, b.2, b.3) == (short, property, holder_short, field))
            .map(|b| (holder, b.4))
    });
    let renamed = || {
        let rename = RENAMED.iter().find(|r| (r.0, r.1) == (short, property));
        (message, rename.map_or(property, |r| r.2))
    };
    beside.unwrap_or_else(renamed)
}

/// The proto message of `data` for the webhook `event_type`, through the `Event` oneof, with the
/// family's event message and its field of it.
fn message_of_event_type(
    messages: &HashMap<String, DescriptorProto>,
    event_type: &str,
) -> (String, String, String) {
    let (family, action) = event_type.split_once('.').expect("family.action");
    let family_event = field_type(messages, ".clerk.bridge.v1.Event", &snake_case(family));
    let field = snake_case(action);
    (
        field_type(messages, &family_event, &field),
        family_event,
        field,
    )
}

/// The message a Backend API object is typed as (see [`BACKEND_API_OBJECTS`]), and how it is
/// reached: `Holder.field`, or a message reached through nothing.
fn message_of_backend_object(
    messages: &HashMap<String, DescriptorProto>,
    typed_as: &str,
) -> (String, Option<(String, String)>) {
    let qualified = |name: &str| format!(".clerk.bridge.v1.{name}");
    match typed_as.split_once('.') {
        Some((holder, field)) => {
            let holder = qualified(holder);
            let message = field_type(messages, &holder, field);
            (message, Some((holder, field.to_owned())))
        }
        None => (qualified(typed_as), None),
    }
}

#[test]
fn every_spec_property_has_a_proto_field() {
    let mut walk = Walk {
        messages: messages(),
        missing: BTreeSet::new(),
    };
    let webhooks = Spec::read(WEBHOOK_SPEC);
    let events = webhooks.root["x-webhooks"].as_object().expect("x-webhooks");
    assert!(events.len() > 40, "the spec lists every event type");
    for (event_type, operation) in events {
        let body = &operation["post"]["requestBody"]["content"]["application/json"]["schema"];
        let data = webhooks.shape(body).properties.remove("data");
        let data = data.unwrap_or_else(|| panic!("{event_type} has no data schema"));
        let (message, holder, field) = message_of_event_type(&walk.messages, event_type);
        let via = Some((holder.as_str(), field.as_str()));
        walk.check(&webhooks, &data, &message, via, event_type);
    }
    let backend_api = Spec::read(BACKEND_API_SPEC);
    for (name, typed_as) in BACKEND_API_OBJECTS {
        let schema = backend_api.schema(name).clone();
        let (message, via) = message_of_backend_object(&walk.messages, typed_as);
        let via = via
            .as_ref()
            .map(|(holder, field)| (holder.as_str(), field.as_str()));
        walk.check(&backend_api, &schema, &message, via, &format!("api:{name}"));
    }
    assert!(
        walk.missing.is_empty(),
        "spec properties without a proto field (type them, add them to TYPED_BESIDE or EXCLUDED \
         with a reason):\n{}",
        walk.missing.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_exception_names_a_real_message_and_field() {
    let messages = messages();
    let message = |name: &str| &messages[&format!(".clerk.bridge.v1.{name}")];
    let has = |name: &str, field: &str| message(name).field.iter().any(|f| f.name() == field);
    for (name, _, _) in EXCLUDED.iter().chain(FLATTENED) {
        assert!(!message(name).field.is_empty(), "{name}");
    }
    for (name, property, field, _) in RENAMED {
        assert!(has(name, field), "{name}.{field} (for {property})");
    }
    for (name, property, holder, object, field) in TYPED_BESIDE {
        assert!(
            !has(name, property),
            "{name}.{property} is typed on {name} itself"
        );
        assert!(has(holder, object), "{holder}.{object} (holding a {name})");
        assert!(
            has(holder, field),
            "{holder}.{field} (for {name}.{property})"
        );
    }
    for (_, typed_as) in BACKEND_API_OBJECTS {
        message_of_backend_object(&messages, typed_as);
    }
}
