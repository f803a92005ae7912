//! Clerk webhook payloads: decoding a verified body into the typed [`Event`] the bridge stores and
//! streams.
//!
//! [`decode_event`] runs after the signature check, on the raw body. It rejects a body for three
//! reasons only (see [`DecodeError`]): it is not JSON, it is not a JSON object, or it has no event
//! `type`. No depth of nesting makes a body "not JSON": containers nested deeper than any field
//! the bridge reads are parsed as `null` (the verbatim body keeps them). Everything else is read
//! leniently: Clerk's payloads drift from its schemas, new event types appear, and a verified event
//! must still be stored and delivered. A missing, `null`, unknown or
//! wrongly typed field leaves the matching proto field absent; the verbatim body always travels in
//! `payload_json`, so nothing is lost.
//!
//! Every event family Clerk documents has a typed payload: the type's prefix before the first `.`
//! picks the family module (`user`, `session`, `organization`, `role`, `waitlist`, `messaging`,
//! `billing`), the rest picks the change. An unknown family or change gives `payload: None`.
//! The envelope `timestamp` is accepted in seconds (what Clerk's spec examples carry) or
//! milliseconds (what its docs say): values below 10^12 are seconds. `sequence`, `event_id` and
//! `received_at` are left for the caller to fill.
//!
//! Times inside `data` are Clerk's milliseconds, except that one below 10^11 can only be seconds and
//! is read as seconds.
//!
//! Every event fits in one gRPC message of [`MAX_MESSAGE_BYTES`] (the default limit of gRPC
//! clients): when metadata would take it past that as `google.protobuf.Struct`s, the largest ones
//! are left out and listed in `omitted_fields` (`payload_json` is always complete).
//!
//! Versions and tombstones, for every event type, known or not: `deleted` is true for every
//! `*.deleted` type; `object_version` is `data.updated_at` (ms) for other types, falling back to the
//! envelope timestamp for objects without one (email, SMS), and for deletions is the envelope
//! timestamp rounded up to the end of its second when Clerk sent seconds (so a deletion is never
//! older than an update in the same second), or [`FINAL_VERSION`] without a usable timestamp.
//! A consumer that applies an event only when its version is greater than the stored one (a delete
//! also when equal) and keeps tombstones converges under any delivery order; the property test in
//! `tests/convergence.rs` checks that.

mod billing;
mod bound;
mod common;
mod json;
mod messaging;
mod organization;
mod role;
mod session;
mod tree;
mod user;
mod waitlist;

pub use bound::{MAX_BODY_BYTES, MAX_MESSAGE_BYTES};

use crate::{
    clock::timestamp_from_millis,
    proto::{Event, HttpRequest, event::Payload},
};
use json::{Object, millis_at, opt_i64, opt_object, opt_string, string_or_empty};

/// Envelope timestamps below this are Unix seconds; from it on, milliseconds (10^12 ms is 2001-09-09,
/// 10^12 s is year 33658).
const SECONDS_BELOW: i64 = 1_000_000_000_000;

/// The `object_version` of a deletion whose envelope has no usable timestamp: 2^63 - 1, above any
/// real version, and still within a signed 64-bit column. Clerk never reuses an id, so a deletion
/// is final.
pub const FINAL_VERSION: u64 = i64::MAX.unsigned_abs();

/// Why a verified webhook body cannot become an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body does not parse as JSON (empty, truncated...); deep nesting alone never causes this.
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
/// Fills `type`, `object_id` (`data.id`), `object_version` and `deleted` (see the module docs),
/// `occurred_at` (envelope `timestamp`), `instance_id`, `http_request`
/// (`event_attributes.http_request`), the typed `payload` for the event types this version knows,
/// and `payload_json` (the body, verbatim). Leaves `sequence`, `event_id` and `received_at` at their
/// defaults for the caller. Leaves out metadata `Struct`s, or the whole typed payload, when the
/// event would not fit in [`MAX_MESSAGE_BYTES`] otherwise, and names them in `omitted_fields`.
///
/// # Errors
///
/// [`DecodeError::NotJson`] when `body` is not JSON, [`DecodeError::NotAnObject`] when its top level
/// is not an object, [`DecodeError::MissingType`] when `type` is missing, empty or not a string. No
/// other field can make decoding fail.
pub fn decode_event(body: &str) -> Result<Event, DecodeError> {
    let root = tree::parse(body).map_err(|_| DecodeError::NotJson)?;
    let tree::Json::Object(envelope) = root else {
        return Err(DecodeError::NotAnObject);
    };
    let event_type = opt_string(&envelope, "type")
        .filter(|t| !t.is_empty())
        .ok_or(DecodeError::MissingType)?;
    let data = opt_object(&envelope, "data");
    let deleted = event_type.ends_with(".deleted");
    Ok(bound::fit(Event {
        object_id: data.map(|d| string_or_empty(d, "id")).unwrap_or_default(),
        object_version: object_version(&envelope, data, deleted),
        deleted,
        occurred_at: envelope_millis(&envelope).and_then(timestamp_from_millis),
        instance_id: string_or_empty(&envelope, "instance_id"),
        http_request: http_request(&envelope),
        payload: data.and_then(|d| payload(&event_type, d)),
        payload_json: body.to_owned(),
        r#type: event_type,
        ..Event::default()
    }))
}

/// The envelope `timestamp` in milliseconds: integer seconds below 10^12, else milliseconds.
fn envelope_millis(envelope: &Object<'_>) -> Option<i64> {
    let raw = opt_i64(envelope, "timestamp")?;
    if raw < SECONDS_BELOW {
        raw.checked_mul(1000)
    } else {
        Some(raw)
    }
}

/// The last millisecond the envelope `timestamp` may stand for: the end of its second when Clerk
/// sent seconds, the value itself when it sent milliseconds.
fn envelope_millis_upper(envelope: &Object<'_>) -> Option<i64> {
    let raw = opt_i64(envelope, "timestamp")?;
    if raw < SECONDS_BELOW {
        raw.checked_mul(1000)?.checked_add(999)
    } else {
        Some(raw)
    }
}

/// The event's `object_version` (see the module docs). Negative times count as unusable.
fn object_version(envelope: &Object<'_>, data: Option<&Object<'_>>, deleted: bool) -> u64 {
    let version = |millis: i64| u64::try_from(millis).ok();
    if deleted {
        return envelope_millis_upper(envelope)
            .and_then(version)
            .unwrap_or(FINAL_VERSION);
    }
    data.and_then(|d| millis_at(d, "updated_at"))
        .and_then(version)
        .or_else(|| envelope_millis(envelope).and_then(version))
        .unwrap_or(0)
}

/// `event_attributes.http_request`, when Clerk sends that object.
fn http_request(envelope: &Object<'_>) -> Option<HttpRequest> {
    let request = opt_object(envelope, "event_attributes")
        .and_then(|attributes| opt_object(attributes, "http_request"))?;
    Some(HttpRequest {
        client_ip: string_or_empty(request, "client_ip"),
        user_agent: string_or_empty(request, "user_agent"),
    })
}

/// The typed payload for event types this version knows; `None` for the others.
fn payload(event_type: &str, data: &Object<'_>) -> Option<Payload> {
    let (family, action) = event_type.split_once('.')?;
    match family {
        "user" => user::user_event(action, data).map(Payload::User),
        "session" => session::session_event(action, data).map(Payload::Session),
        "organization" => organization::organization_event(action, data).map(Payload::Organization),
        "organizationDomain" => {
            organization::organization_domain_event(action, data).map(Payload::OrganizationDomain)
        }
        "organizationInvitation" => organization::organization_invitation_event(action, data)
            .map(Payload::OrganizationInvitation),
        "organizationMembership" => organization::organization_membership_event(action, data)
            .map(Payload::OrganizationMembership),
        "role" => role::role_event(action, data).map(Payload::Role),
        "permission" => role::permission_event(action, data).map(Payload::Permission),
        "waitlistEntry" => waitlist::waitlist_entry_event(action, data).map(Payload::WaitlistEntry),
        "email" => messaging::email_event(action, data).map(Payload::Email),
        "sms" => messaging::sms_event(action, data).map(Payload::Sms),
        "subscription" => billing::subscription_event(action, data).map(Payload::Subscription),
        "subscriptionItem" => {
            billing::subscription_item_event(action, data).map(Payload::SubscriptionItem)
        }
        "paymentAttempt" => {
            billing::payment_attempt_event(action, data).map(Payload::PaymentAttempt)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
