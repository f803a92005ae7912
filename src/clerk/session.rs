//! Conversion of Clerk's session JSON (`data` of `session.*` events) into [`Session`].
//!
//! Every proto field is read from the Clerk JSON field of the same name through the lenient
//! accessors in [`super::json`]; `*_at` fields are int64 milliseconds. The embedded `user` (sent
//! since late 2025) is converted exactly as a `user.updated` payload, its `organization_memberships`
//! into `user_organization_memberships` beside it; older payloads leave `user` absent and the
//! memberships empty.
//! `status` is kept as sent, and typed into `known_status` when it is one of Clerk's documented
//! values.

use super::json::{
    Object, bool_or_false, known_enum, objects, opt_object, opt_string, opt_struct,
    string_or_empty, timestamp_ms,
};
use super::organization::memberships_of_user;
use super::user::user_from_json;
use crate::proto::{
    Session, SessionActivity, SessionEvent, SessionStatus, SessionTask, session_event::Change,
};

/// The typed change of a `session.{action}` event, or `None` for an action this version does not
/// know.
pub(super) fn session_event(action: &str, data: &Object<'_>) -> Option<SessionEvent> {
    let change: fn(Session) -> Change = match action {
        "created" => Change::Created,
        "ended" => Change::Ended,
        "removed" => Change::Removed,
        "revoked" => Change::Revoked,
        "pending" => Change::Pending,
        _ => return None,
    };
    Some(SessionEvent {
        change: Some(change(session_from_json(data))),
    })
}

/// Converts the `data` object of a `session.*` event into a [`Session`].
pub(super) fn session_from_json(data: &Object<'_>) -> Session {
    Session {
        id: string_or_empty(data, "id"),
        user_id: string_or_empty(data, "user_id"),
        client_id: string_or_empty(data, "client_id"),
        status: string_or_empty(data, "status"),
        known_status: known_enum(
            data,
            "status",
            "SESSION_STATUS_",
            SessionStatus::from_str_name,
        ),
        actor: opt_struct(data, "actor"),
        last_active_organization_id: opt_string(data, "last_active_organization_id"),
        last_active_at: timestamp_ms(data, "last_active_at"),
        latest_activity: opt_object(data, "latest_activity").map(session_activity),
        expire_at: timestamp_ms(data, "expire_at"),
        abandon_at: timestamp_ms(data, "abandon_at"),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
        user: opt_object(data, "user").map(user_from_json),
        user_organization_memberships: opt_object(data, "user")
            .map(memberships_of_user)
            .unwrap_or_default(),
        tasks: objects(data, "tasks", session_task),
    }
}

/// Converts one entry of a pending session's `tasks`.
fn session_task(obj: &Object<'_>) -> SessionTask {
    SessionTask {
        key: string_or_empty(obj, "key"),
    }
}

/// Converts a `latest_activity` object.
fn session_activity(obj: &Object<'_>) -> SessionActivity {
    SessionActivity {
        id: string_or_empty(obj, "id"),
        device_type: opt_string(obj, "device_type"),
        is_mobile: bool_or_false(obj, "is_mobile"),
        browser_name: opt_string(obj, "browser_name"),
        browser_version: opt_string(obj, "browser_version"),
        ip_address: opt_string(obj, "ip_address"),
        city: opt_string(obj, "city"),
        country: opt_string(obj, "country"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clerk::json::object;
    use serde_json::json;

    #[test]
    fn every_action_has_its_change() {
        let data = object(json!({"id": "sess_1"}));
        let change = |action| session_event(action, &data).and_then(|e| e.change);
        assert!(matches!(change("created"), Some(Change::Created(s)) if s.id == "sess_1"));
        assert!(matches!(change("ended"), Some(Change::Ended(_))));
        assert!(matches!(change("removed"), Some(Change::Removed(_))));
        assert!(matches!(change("revoked"), Some(Change::Revoked(_))));
        assert!(matches!(change("pending"), Some(Change::Pending(_))));
        assert_eq!(session_event("extended", &data), None);
    }

    #[test]
    fn actor_and_activity_are_typed_and_nullable() {
        let data = object(json!({
            "actor": {"sub": "user_admin"}, "status": "replaced",
            "latest_activity": {"id": "act_1", "is_mobile": true, "city": null, "country": "DE"}
        }));
        let session = session_from_json(&data);
        let actor = session.actor.as_ref().map(|a| a.fields.len());
        assert_eq!(actor, Some(1));
        assert_eq!(session.known_status(), SessionStatus::Replaced);
        let activity = session.latest_activity.expect("an object");
        assert_eq!((activity.id.as_str(), activity.is_mobile), ("act_1", true));
        assert_eq!(
            (activity.city, activity.country.as_deref()),
            (None, Some("DE"))
        );

        let odd = object(json!({"actor": "x", "latest_activity": [], "user": 3, "status": 2}));
        assert_eq!(session_from_json(&odd), Session::default());
    }
}
