//! Clerk's published examples of the identity families (sessions, organizations and their domains,
//! invitations and memberships, roles, permissions, waitlist entries, email and SMS), decoded:
//! each family's typed fields are compared with the fixture's JSON.

use super::*;
use crate::proto::{
    InvitationStatus, Organization, OrganizationInvitation, OrganizationMembership, Permission,
    PublicUserData, Role, Session, SessionStatus, VerificationStatus, WaitlistEntryStatus,
    email_event, organization_domain_event, organization_event, organization_invitation_event,
    organization_membership_event, permission_event, role_event, session_event, sms_event,
    waitlist_entry_event,
};

// === sessions ===

/// The session of a session event, and the name of its change.
fn session_of(event: &Event) -> (&'static str, &Session) {
    use session_event::Change;
    let Some(Payload::Session(crate::proto::SessionEvent {
        change: Some(change),
    })) = &event.payload
    else {
        panic!("not a session event: {:?}", event.payload)
    };
    match change {
        Change::Created(s) => ("created", s),
        Change::Ended(s) => ("ended", s),
        Change::Removed(s) => ("removed", s),
        Change::Revoked(s) => ("revoked", s),
        Change::Pending(s) => ("pending", s),
    }
}

#[test]
fn session_fixtures_are_typed() {
    let statuses = [
        ("session.created", SessionStatus::Active),
        ("session.ended", SessionStatus::Ended),
        ("session.removed", SessionStatus::Removed),
        ("session.revoked", SessionStatus::Revoked),
        ("session.pending", SessionStatus::Pending),
    ];
    for (event_type, status) in statuses {
        let (event, data) = decoded(event_type);
        let (change, session) = session_of(&event);
        assert_eq!(change, action(event_type));
        assert_eq!(session.id, text(&data, "id"));
        assert_eq!(session.user_id, text(&data, "user_id"));
        assert_eq!(session.client_id, text(&data, "client_id"));
        assert_eq!(session.status, text(&data, "status"));
        assert_eq!(session.known_status(), status);
        assert_eq!(session.actor, None);
        assert_eq!(
            session.last_active_organization_id,
            opt_text(&data, "last_active_organization_id")
        );
        for (typed, key) in [
            (session.last_active_at, "last_active_at"),
            (session.expire_at, "expire_at"),
            (session.abandon_at, "abandon_at"),
            (session.created_at, "created_at"),
            (session.updated_at, "updated_at"),
        ] {
            assert_eq!(typed, time(&data, key), "{event_type} {key}");
        }
        let user = session.user.as_ref().expect("the examples embed the user");
        assert_eq!(user.id, text(&data["user"], "id"));
        assert_eq!(user.first_name, opt_text(&data["user"], "first_name"));
        assert_eq!(user.updated_at, time(&data["user"], "updated_at"));
        let activity = &data["latest_activity"];
        match &session.latest_activity {
            None => assert!(activity.is_null(), "{event_type}"),
            Some(typed) => {
                assert_eq!(typed.id, text(activity, "id"));
                assert_eq!(typed.device_type, opt_text(activity, "device_type"));
                assert_eq!(typed.is_mobile, flag(activity, "is_mobile"));
                assert_eq!(typed.browser_name, opt_text(activity, "browser_name"));
                assert_eq!(typed.browser_version, opt_text(activity, "browser_version"));
                assert_eq!(typed.ip_address, opt_text(activity, "ip_address"));
                assert_eq!(typed.city, opt_text(activity, "city"));
                assert_eq!(typed.country, opt_text(activity, "country"));
            }
        }
    }
}

// === organizations, domains, invitations, memberships ===

/// Checks a typed organization against its JSON.
fn assert_organization(typed: &Organization, json: &Value) {
    assert_eq!(typed.id, text(json, "id"));
    assert_eq!(typed.name, text(json, "name"));
    assert_eq!(typed.slug, text(json, "slug"));
    assert_eq!(typed.image_url, opt_text(json, "image_url"));
    assert_eq!(typed.has_image, flag(json, "has_image"));
    assert_eq!(typed.members_count, int(json, "members_count"));
    assert_eq!(
        typed.missing_member_with_elevated_permissions,
        json["missing_member_with_elevated_permissions"].as_bool()
    );
    assert_eq!(
        typed.pending_invitations_count,
        int(json, "pending_invitations_count")
    );
    assert_eq!(
        typed.max_allowed_memberships,
        int(json, "max_allowed_memberships")
    );
    assert_eq!(
        typed.admin_delete_enabled,
        flag(json, "admin_delete_enabled")
    );
    let public = typed.public_metadata.as_ref().map(|m| m.fields.len());
    assert_eq!(public, metadata_len(json, "public_metadata"));
    let private = typed.private_metadata.as_ref().map(|m| m.fields.len());
    assert_eq!(private, metadata_len(json, "private_metadata"));
    assert_eq!(typed.created_by, opt_text(json, "created_by"));
    assert_eq!(typed.created_at, time(json, "created_at"));
    assert_eq!(typed.updated_at, time(json, "updated_at"));
}

#[test]
fn organization_fixtures_are_typed() {
    use organization_event::Change;
    for event_type in ["organization.created", "organization.updated"] {
        let (event, data) = decoded(event_type);
        let Some(Payload::Organization(typed)) = &event.payload else {
            panic!("{event_type}: {:?}", event.payload)
        };
        let organization = match (&typed.change, action(event_type)) {
            (Some(Change::Created(o)), "created") | (Some(Change::Updated(o)), "updated") => o,
            other => panic!("{event_type}: {other:?}"),
        };
        assert_organization(organization, &data);
    }
    let updated = decoded("organization.updated").0;
    let Some(Payload::Organization(typed)) = updated.payload else {
        unreachable!("checked above")
    };
    let Some(Change::Updated(organization)) = typed.change else {
        unreachable!("checked above")
    };
    let department = organization
        .public_metadata
        .map(|m| m.fields["department"].clone());
    assert_eq!(
        department.and_then(|v| v.kind),
        Some(prost_types::value::Kind::StringValue("engineering".into()))
    );

    let (event, data) = decoded("organization.deleted");
    let Some(Payload::Organization(typed)) = &event.payload else {
        panic!("{:?}", event.payload)
    };
    let Some(Change::Deleted(deleted)) = &typed.change else {
        panic!("{typed:?}")
    };
    assert_eq!(deleted.id, text(&data, "id"));
    assert_eq!(deleted.object, text(&data, "object"));
    assert_eq!(deleted.slug, opt_text(&data, "slug"));
    assert_eq!(deleted.external_id, None);
}

#[test]
fn organization_domain_fixtures_are_typed() {
    use organization_domain_event::Change;
    for event_type in ["organizationDomain.created", "organizationDomain.updated"] {
        let (event, data) = decoded(event_type);
        let Some(Payload::OrganizationDomain(typed)) = &event.payload else {
            panic!("{event_type}: {:?}", event.payload)
        };
        let domain = match (&typed.change, action(event_type)) {
            (Some(Change::Created(d)), "created") | (Some(Change::Updated(d)), "updated") => d,
            other => panic!("{event_type}: {other:?}"),
        };
        assert_eq!(domain.id, text(&data, "id"));
        assert_eq!(domain.organization_id, text(&data, "organization_id"));
        assert_eq!(domain.name, text(&data, "name"));
        assert_eq!(domain.enrollment_mode, text(&data, "enrollment_mode"));
        assert_eq!(
            domain.affiliation_email_address,
            opt_text(&data, "affiliation_email_address")
        );
        assert_eq!(
            domain.total_pending_invitations,
            int(&data, "total_pending_invitations")
        );
        assert_eq!(
            domain.total_pending_suggestions,
            int(&data, "total_pending_suggestions")
        );
        assert_eq!(domain.created_at, time(&data, "created_at"));
        assert_eq!(domain.updated_at, time(&data, "updated_at"));
        let verification = &data["verification"];
        match &domain.verification {
            None => assert!(verification.is_null(), "{event_type}"),
            Some(typed) => {
                assert_eq!(typed.status, text(verification, "status"));
                assert_eq!(typed.known_status(), VerificationStatus::Verified);
                assert_eq!(typed.strategy, opt_text(verification, "strategy"));
                assert_eq!(typed.attempts, int(verification, "attempts"));
                assert_eq!(typed.expire_at, time(verification, "expire_at"));
            }
        }
        let organization = &data["public_organization_data"];
        match &domain.public_organization_data {
            None => assert!(organization.is_null(), "{event_type}"),
            Some(typed) => {
                assert_eq!(typed.id, text(organization, "id"));
                assert_eq!(typed.name, text(organization, "name"));
                assert_eq!(typed.slug, text(organization, "slug"));
                assert_eq!(typed.image_url, opt_text(organization, "image_url"));
                assert_eq!(typed.has_image, flag(organization, "has_image"));
            }
        }
    }
    let (event, data) = decoded("organizationDomain.deleted");
    let Some(Payload::OrganizationDomain(typed)) = &event.payload else {
        panic!("{:?}", event.payload)
    };
    let Some(Change::Deleted(deleted)) = &typed.change else {
        panic!("{typed:?}")
    };
    assert_eq!(deleted.id, text(&data, "id"));
}

/// The invitation of an invitation event, and the name of its change.
fn invitation_of(event: &Event) -> (&'static str, &OrganizationInvitation) {
    use organization_invitation_event::Change;
    let Some(Payload::OrganizationInvitation(typed)) = &event.payload else {
        panic!("not an invitation event: {:?}", event.payload)
    };
    match typed.change.as_ref().expect("a change") {
        Change::Created(i) => ("created", i),
        Change::Accepted(i) => ("accepted", i),
        Change::Revoked(i) => ("revoked", i),
    }
}

#[test]
fn organization_invitation_fixtures_are_typed() {
    let statuses = [
        ("organizationInvitation.created", InvitationStatus::Pending),
        (
            "organizationInvitation.accepted",
            InvitationStatus::Accepted,
        ),
        ("organizationInvitation.revoked", InvitationStatus::Revoked),
    ];
    for (event_type, status) in statuses {
        let (event, data) = decoded(event_type);
        let (change, invitation) = invitation_of(&event);
        assert_eq!(change, action(event_type));
        assert_eq!(invitation.id, text(&data, "id"));
        assert_eq!(invitation.email_address, text(&data, "email_address"));
        assert_eq!(invitation.role, text(&data, "role"));
        assert_eq!(invitation.role_name, opt_text(&data, "role_name"));
        assert_eq!(invitation.organization_id, text(&data, "organization_id"));
        assert_eq!(invitation.status, text(&data, "status"));
        assert_eq!(invitation.known_status(), status);
        assert_eq!(invitation.url, opt_text(&data, "url"));
        assert_eq!(invitation.user_id, opt_text(&data, "user_id"));
        assert_eq!(invitation.expires_at, time(&data, "expires_at"));
        assert_eq!(invitation.created_at, time(&data, "created_at"));
        assert_eq!(invitation.updated_at, time(&data, "updated_at"));
        assert!(invitation.public_metadata.is_some() && invitation.private_metadata.is_some());
    }
}

/// The membership of a membership event, and the name of its change.
fn membership_of(event: &Event) -> (&'static str, &OrganizationMembership) {
    use organization_membership_event::Change;
    let Some(Payload::OrganizationMembership(typed)) = &event.payload else {
        panic!("not a membership event: {:?}", event.payload)
    };
    match typed.change.as_ref().expect("a change") {
        Change::Created(m) => ("created", m),
        Change::Updated(m) => ("updated", m),
        Change::Deleted(m) => ("deleted", m),
    }
}

/// Checks typed public user data against its JSON.
fn assert_public_user(typed: &PublicUserData, json: &Value) {
    assert_eq!(typed.user_id, text(json, "user_id"));
    assert_eq!(typed.first_name, opt_text(json, "first_name"));
    assert_eq!(typed.last_name, opt_text(json, "last_name"));
    assert_eq!(typed.image_url, opt_text(json, "image_url"));
    assert_eq!(typed.profile_image_url, opt_text(json, "profile_image_url"));
    assert_eq!(typed.has_image, flag(json, "has_image"));
    assert_eq!(typed.identifier, opt_text(json, "identifier"));
}

#[test]
fn organization_membership_fixtures_are_typed() {
    for event_type in [
        "organizationMembership.created",
        "organizationMembership.updated",
        "organizationMembership.deleted",
    ] {
        let (event, data) = decoded(event_type);
        let (change, membership) = membership_of(&event);
        assert_eq!(change, action(event_type));
        assert_eq!(event.object_id, membership.id, "keyed by the membership id");
        assert_eq!(membership.id, text(&data, "id"));
        assert_eq!(
            membership.user_id,
            text(&data["public_user_data"], "user_id")
        );
        assert_eq!(
            membership.organization_id,
            text(&data["organization"], "id")
        );
        assert_eq!(membership.role, text(&data, "role"));
        assert_eq!(membership.role_name, opt_text(&data, "role_name"));
        let permissions = data["permissions"].as_array().unwrap().iter();
        let permissions: Vec<_> = permissions.map(|p| p.as_str().unwrap()).collect();
        assert_eq!(membership.permissions, permissions);
        assert_eq!(membership.created_at, time(&data, "created_at"));
        assert_eq!(membership.updated_at, time(&data, "updated_at"));
        let organization = membership.organization.as_ref().expect("embedded");
        assert_organization(organization, &data["organization"]);
        let user = membership.public_user_data.as_ref().expect("embedded");
        assert_public_user(user, &data["public_user_data"]);
    }
}

// === roles and permissions ===

/// Checks a typed permission against its JSON.
fn assert_permission(typed: &Permission, json: &Value) {
    assert_eq!(typed.id, text(json, "id"));
    assert_eq!(typed.name, text(json, "name"));
    assert_eq!(typed.key, text(json, "key"));
    assert_eq!(typed.description, opt_text(json, "description"));
    assert_eq!(typed.r#type, text(json, "type"));
    assert_eq!(typed.created_at, time(json, "created_at"));
    assert_eq!(typed.updated_at, time(json, "updated_at"));
}

/// Checks a typed role against its JSON, permissions included.
fn assert_role(typed: &Role, json: &Value) {
    assert_eq!(typed.id, text(json, "id"));
    assert_eq!(typed.name, text(json, "name"));
    assert_eq!(typed.key, text(json, "key"));
    assert_eq!(typed.description, opt_text(json, "description"));
    assert_eq!(
        typed.is_creator_eligible,
        json["is_creator_eligible"].as_bool()
    );
    assert_eq!(typed.created_at, time(json, "created_at"));
    assert_eq!(typed.updated_at, time(json, "updated_at"));
    let permissions = json["permissions"].as_array().unwrap();
    assert_eq!(typed.permissions.len(), permissions.len());
    for (permission, json) in typed.permissions.iter().zip(permissions) {
        assert_permission(permission, json);
    }
}

#[test]
fn role_fixtures_are_typed() {
    use role_event::Change;
    for event_type in ["role.created", "role.updated", "role.deleted"] {
        let (event, data) = decoded(event_type);
        let Some(Payload::Role(typed)) = &event.payload else {
            panic!("{event_type}: {:?}", event.payload)
        };
        match (typed.change.as_ref(), action(event_type)) {
            (Some(Change::Created(role)), "created") | (Some(Change::Updated(role)), "updated") => {
                assert_role(role, &data);
            }
            (Some(Change::Deleted(deleted)), "deleted") => {
                assert_eq!(deleted.id, text(&data, "id"));
                assert_eq!(deleted.slug, None, "the example's slug is null");
            }
            other => panic!("{event_type}: {other:?}"),
        }
    }
}

#[test]
fn permission_fixtures_are_typed() {
    use permission_event::Change;
    for event_type in [
        "permission.created",
        "permission.updated",
        "permission.deleted",
    ] {
        let (event, data) = decoded(event_type);
        let Some(Payload::Permission(typed)) = &event.payload else {
            panic!("{event_type}: {:?}", event.payload)
        };
        match (typed.change.as_ref(), action(event_type)) {
            (Some(Change::Created(p)), "created") | (Some(Change::Updated(p)), "updated") => {
                assert_permission(p, &data);
            }
            (Some(Change::Deleted(deleted)), "deleted") => {
                assert_eq!(deleted.id, text(&data, "id"));
                assert_eq!(deleted.object, "permission");
            }
            other => panic!("{event_type}: {other:?}"),
        }
    }
}

// === waitlist ===

#[test]
fn waitlist_entry_fixtures_are_typed() {
    use waitlist_entry_event::Change;
    let statuses = [
        ("waitlistEntry.created", WaitlistEntryStatus::Pending),
        ("waitlistEntry.updated", WaitlistEntryStatus::Invited),
    ];
    for (event_type, status) in statuses {
        let (event, data) = decoded(event_type);
        let Some(Payload::WaitlistEntry(typed)) = &event.payload else {
            panic!("{event_type}: {:?}", event.payload)
        };
        let entry = match (&typed.change, action(event_type)) {
            (Some(Change::Created(e)), "created") | (Some(Change::Updated(e)), "updated") => e,
            other => panic!("{event_type}: {other:?}"),
        };
        assert_eq!(entry.id, text(&data, "id"));
        assert_eq!(entry.email_address, text(&data, "email_address"));
        assert_eq!(entry.status, text(&data, "status"));
        assert_eq!(entry.known_status(), status);
        assert_eq!(entry.is_locked, flag(&data, "is_locked"));
        assert_eq!(entry.created_at, time(&data, "created_at"));
        assert_eq!(entry.updated_at, time(&data, "updated_at"));
        let invitation = &data["invitation"];
        match &entry.invitation {
            None => assert!(invitation.is_null(), "{event_type}"),
            Some(typed) => {
                assert_eq!(typed.id, text(invitation, "id"));
                assert_eq!(typed.email_address, text(invitation, "email_address"));
                assert_eq!(typed.status, text(invitation, "status"));
                assert_eq!(typed.known_status(), InvitationStatus::Pending);
                assert_eq!(typed.created_at, time(invitation, "created_at"));
                assert_eq!(typed.updated_at, time(invitation, "updated_at"));
            }
        }
    }
}

// === email and SMS ===

#[test]
fn email_fixture_is_typed() {
    let (event, data) = decoded("email.created");
    let Some(Payload::Email(crate::proto::EmailEvent {
        change: Some(email_event::Change::Created(email)),
    })) = &event.payload
    else {
        panic!("{:?}", event.payload)
    };
    assert_eq!(email.id, text(&data, "id"));
    assert_eq!(email.slug, opt_text(&data, "slug"));
    assert_eq!(email.from_email_name, text(&data, "from_email_name"));
    assert_eq!(email.to_email_address, text(&data, "to_email_address"));
    assert_eq!(email.email_address_id, opt_text(&data, "email_address_id"));
    assert_eq!(email.user_id, opt_text(&data, "user_id"));
    assert_eq!(email.subject, text(&data, "subject"));
    assert_eq!(email.body, text(&data, "body"));
    assert_eq!(email.body_plain, opt_text(&data, "body_plain"));
    assert_eq!(email.status, text(&data, "status"));
    assert_eq!(email.delivered_by_clerk, flag(&data, "delivered_by_clerk"));
    assert_eq!(email.reply_to_email_name, None);
    let fields = email.data.as_ref().map(|d| d.fields.len());
    assert_eq!(fields, metadata_len(&data, "data"));
}

#[test]
fn sms_fixture_is_typed() {
    let (event, data) = decoded("sms.created");
    let Some(Payload::Sms(crate::proto::SmsEvent {
        change: Some(sms_event::Change::Created(sms)),
    })) = &event.payload
    else {
        panic!("{:?}", event.payload)
    };
    assert_eq!(sms.id, text(&data, "id"));
    assert_eq!(sms.slug, opt_text(&data, "slug"));
    assert_eq!(sms.from_phone_number, text(&data, "from_phone_number"));
    assert_eq!(sms.to_phone_number, text(&data, "to_phone_number"));
    assert_eq!(sms.phone_number_id, opt_text(&data, "phone_number_id"));
    assert_eq!(sms.user_id, opt_text(&data, "user_id"));
    assert_eq!(sms.message, text(&data, "message"));
    assert_eq!(sms.status, text(&data, "status"));
    assert_eq!(sms.delivered_by_clerk, flag(&data, "delivered_by_clerk"));
    assert_eq!(sms.created_at, time(&data, "created_at"));
    assert_eq!(sms.data.as_ref().map(|d| d.fields.len()), Some(0));
}
