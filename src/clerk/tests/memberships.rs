//! A user's `organization_memberships`, typed beside the user (`UserEvent.organization_memberships`,
//! `Session.user_organization_memberships`) by the decoder of `organizationMembership.*` events;
//! the user itself decodes as without them.

use super::*;
use crate::proto::{
    OrganizationMembership, Session, User, organization_membership_event, session_event, user_event,
};
use serde_json::json;

/// Two memberships of one user, written from the webhook spec's `OrganizationMembership` schema
/// (every property, the required ones and the optional ones), in two organizations.
fn two_memberships() -> Value {
    let membership = |id: &str, organization: &str, role: &str, admin: bool| {
        json!({
            "object": "organization_membership",
            "id": id,
            "role": role,
            "role_name": if admin { "Admin" } else { "Member" },
            "permissions": if admin { json!(["org:sys_memberships:manage", "org:posts:read"]) }
                           else { json!(["org:posts:read"]) },
            "public_metadata": {"team": organization},
            "private_metadata": {"seat": 7},
            "organization": {
                "object": "organization", "id": organization, "name": "Acme", "slug": organization,
                "image_url": null, "has_image": false, "max_allowed_memberships": 5,
                "admin_delete_enabled": true, "public_metadata": {}, "private_metadata": {},
                "created_by": "user_1", "created_at": 1_716_883_100_000_i64,
                "updated_at": 1_716_883_150_000_i64
            },
            "public_user_data": {
                "user_id": "user_1", "first_name": "Jane", "last_name": null,
                "image_url": "https://img.clerk.com/y", "has_image": true,
                "identifier": "jane@example.com"
            },
            "created_at": 1_716_883_160_000_i64,
            "updated_at": 1_716_883_170_000_i64
        })
    };
    json!([
        membership("orgmem_1", "org_1", "org:admin", true),
        membership("orgmem_2", "org_2", "org:member", false),
    ])
}

/// A membership as the `data` of an `organizationMembership.created` event decodes.
fn as_membership_event(membership: &Value) -> OrganizationMembership {
    let event = decode_json(&json!({"type": "organizationMembership.created", "data": membership}));
    let Some(Payload::OrganizationMembership(typed)) = event.payload else {
        panic!("not a membership event: {:?}", event.payload)
    };
    let Some(organization_membership_event::Change::Created(membership)) = typed.change else {
        panic!("not a created membership: {:?}", typed.change)
    };
    membership
}

/// The user and the memberships beside it of a `user.created` or `user.updated` event.
fn user_and_memberships(event: Event) -> (User, Vec<OrganizationMembership>) {
    use user_event::Change;
    let Some(Payload::User(typed)) = event.payload else {
        panic!("not a user event: {:?}", event.payload)
    };
    match typed.change {
        Some(Change::Created(user) | Change::Updated(user)) => {
            (user, typed.organization_memberships)
        }
        other => panic!("not a created or updated user: {other:?}"),
    }
}

/// The session of a `session.created` event.
fn created_session(event: Event) -> Session {
    let Some(Payload::Session(typed)) = event.payload else {
        panic!("not a session event: {:?}", event.payload)
    };
    let Some(session_event::Change::Created(session)) = typed.change else {
        panic!("not a created session: {:?}", typed.change)
    };
    session
}

#[test]
fn user_events_type_their_memberships_beside_the_user() {
    let memberships = two_memberships();
    let expected: Vec<_> = memberships
        .as_array()
        .unwrap()
        .iter()
        .map(as_membership_event)
        .collect();
    for event_type in ["user.created", "user.updated"] {
        let (plain_event, _) = decoded(event_type);
        let (plain_user, none) = user_and_memberships(plain_event);
        assert!(
            none.is_empty(),
            "{event_type}: the example has no memberships"
        );

        let mut body: Value =
            serde_json::from_str(&fixture(&format!("{event_type}.json"))).unwrap();
        body["data"]["organization_memberships"] = memberships.clone();
        let (user, typed) = user_and_memberships(decode_json(&body));
        assert_eq!(
            user, plain_user,
            "{event_type}: the user decodes as without them"
        );
        assert_eq!(typed, expected, "{event_type}: as membership events decode");
        let keys: Vec<_> = typed
            .iter()
            .map(|m| {
                (
                    m.id.as_str(),
                    m.organization_id.as_str(),
                    m.user_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("orgmem_1", "org_1", "user_1"),
                ("orgmem_2", "org_2", "user_1")
            ],
            "{event_type}: Clerk's order, with the derived ids"
        );
        assert_eq!(typed[0].permissions.len(), 2);
        assert_eq!(typed[1].role_name.as_deref(), Some("Member"));
        assert!(typed[1].private_metadata.is_some());
        assert_eq!(
            typed[0].updated_at,
            Some(Timestamp {
                seconds: 1_716_883_170,
                nanos: 0
            })
        );
    }
}

#[test]
fn a_session_user_has_its_memberships_beside_it() {
    let (plain_event, _) = decoded("session.created");
    let plain = created_session(plain_event);
    assert!(plain.user_organization_memberships.is_empty());

    let mut body: Value = serde_json::from_str(&fixture("session.created.json")).unwrap();
    body["data"]["user"]["organization_memberships"] = two_memberships();
    let session = created_session(decode_json(&body));
    assert_eq!(session.user, plain.user, "the user decodes as without them");
    let ids: Vec<_> = session
        .user_organization_memberships
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(ids, ["orgmem_1", "orgmem_2"]);
    let expected = as_membership_event(&two_memberships()[0]);
    assert_eq!(session.user_organization_memberships[0], expected);
}

#[test]
fn memberships_that_are_not_objects_are_skipped() {
    let body = json!({"type": "user.updated", "data": {"id": "user_1",
        "organization_memberships": [3, null, {"id": "orgmem_1"}, "orgmem_2"]}});
    let (_, typed) = user_and_memberships(decode_json(&body));
    let ids: Vec<_> = typed.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["orgmem_1"]);
    let not_a_list = json!({"type": "user.updated", "data": {"id": "user_1",
        "organization_memberships": {"id": "orgmem_1"}}});
    assert!(user_and_memberships(decode_json(&not_a_list)).1.is_empty());
}
