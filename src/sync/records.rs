//! Turning objects read from Clerk's Backend API into events the log stores, exactly as if a webhook
//! had carried them: the same envelope, the same typed decoding, the same version rule.
//!
//! An object becomes a `<kind>.updated` event (never `*.created`: consumers hang side effects on
//! creations), with `object_version` = its `updated_at`, stored only if newer than the state. Its id
//! is derived from the object and its version (`bapi_<id>_<updated_at>`), so a second pass over an
//! unchanged object stores nothing. An object Clerk no longer has becomes `<kind>.deleted`, versioned
//! by the time of the pass.

use serde_json::{Value, json};

use crate::{
    clerk,
    clerk_api::Kind,
    clock::{now_ms, timestamp_from_millis},
    log::NewRecord,
    proto::EventSource,
    record,
};

/// Prefix of the event ids of events made from the Backend API.
const ID_PREFIX: &str = "bapi";

/// The resource kind's name in event types (`user`, `organization`, `organizationMembership`).
pub(super) fn type_prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "user",
        Kind::Organization => "organization",
        Kind::OrganizationMembership => "organizationMembership",
    }
}

/// The record of `object` as Clerk's API returned it, stored only if newer; `None` when the object
/// has no id (nothing to key it by).
pub(super) fn updated(kind: Kind, object: &Value, source: EventSource) -> Option<NewRecord> {
    let id = object.get("id")?.as_str()?;
    let version = object
        .get("updated_at")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let event_type = format!("{}.updated", type_prefix(kind));
    build(
        &event_type,
        object.clone(),
        format!("{ID_PREFIX}_{id}_{version}"),
        source,
    )
}

/// The deletion of an object Clerk no longer has. `last` is the `data` of the latest event the log
/// holds for it: a membership's deletion carries the whole membership, as Clerk's own does.
pub(super) fn deleted(kind: Kind, id: &str, last: Option<&Value>) -> Option<NewRecord> {
    let data = match (kind, last) {
        (Kind::OrganizationMembership, Some(Value::Object(membership))) => {
            let mut data = membership.clone();
            data.insert("deleted".to_owned(), Value::Bool(true));
            Value::Object(data)
        }
        _ => json!({ "object": kind.as_str(), "id": id, "deleted": true }),
    };
    let event_type = format!("{}.deleted", type_prefix(kind));
    build(
        &event_type,
        data,
        format!("{ID_PREFIX}_{id}_deleted"),
        EventSource::Reconciliation,
    )
}

/// Wraps `data` in a webhook's envelope, decodes it like a webhook, and makes its record.
fn build(
    event_type: &str,
    data: Value,
    event_id: String,
    source: EventSource,
) -> Option<NewRecord> {
    let now = now_ms();
    let envelope = json!({
        "data": data,
        "object": "event",
        "type": event_type,
        "timestamp": now,
    });
    let mut event = clerk::decode_event(&envelope.to_string()).ok()?;
    event.event_id = event_id;
    event.received_at = timestamp_from_millis(now);
    event.source = source.into();
    let mut record = record::new_record(&event, now);
    record.only_if_newer = true;
    Some(record)
}

/// The `data` of an event's verbatim body.
pub(super) fn data_of(payload_json: &str) -> Option<Value> {
    let mut body: Value = serde_json::from_str(payload_json).ok()?;
    Some(body.get_mut("data")?.take())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Event;
    use prost::Message;

    fn decoded(record: &NewRecord) -> Event {
        Event::decode(&record.event[..]).unwrap()
    }

    #[test]
    fn an_object_becomes_an_update_keyed_by_its_version() {
        let user = json!({"object": "user", "id": "user_1", "first_name": "Ada",
                          "created_at": 1_716_883_200_000_i64,
                          "updated_at": 1_716_883_200_002_i64});
        let record = updated(Kind::User, &user, EventSource::Backfill).unwrap();
        assert_eq!(record.event_type, "user.updated");
        assert_eq!(record.event_id, "bapi_user_1_1716883200002");
        assert!(record.only_if_newer);
        let object = record.object.as_ref().unwrap();
        assert_eq!(
            (object.kind.as_str(), object.id.as_str()),
            ("user", "user_1")
        );
        assert_eq!((object.version, object.deleted), (1_716_883_200_002, false));
        let event = decoded(&record);
        assert_eq!(event.source, i32::from(EventSource::Backfill));
        assert!(event.payload.is_some(), "typed like a webhook");
        assert_eq!(data_of(&event.payload_json).unwrap(), user);
        assert!(
            updated(
                Kind::User,
                &json!({"object": "user"}),
                EventSource::Backfill
            )
            .is_none()
        );
    }

    #[test]
    fn a_deletion_is_versioned_now_and_keeps_a_membership_whole() {
        let before = now_ms();
        let record = deleted(Kind::Organization, "org_1", None).unwrap();
        assert_eq!(record.event_type, "organization.deleted");
        let object = record.object.as_ref().unwrap();
        assert!(object.deleted && object.version >= u64::try_from(before).unwrap());
        assert_eq!(
            decoded(&record).source,
            i32::from(EventSource::Reconciliation)
        );

        let membership = json!({"object": "organization_membership", "id": "orgmem_1",
                                "organization": {"id": "org_1"}, "role": "org:member"});
        let record = deleted(Kind::OrganizationMembership, "orgmem_1", Some(&membership)).unwrap();
        let data = data_of(&decoded(&record).payload_json).unwrap();
        assert_eq!(data["organization"]["id"], "org_1");
        assert_eq!(data["deleted"], true);
        assert_eq!(record.event_type, "organizationMembership.deleted");
    }
}
