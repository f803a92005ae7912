//! Conversion of Clerk's organization JSON (`data` of `organization.*`, `organizationDomain.*`,
//! `organizationInvitation.*` and `organizationMembership.*` events) into the typed proto messages.
//!
//! Every proto field is read from the Clerk JSON field of the same name through the lenient
//! accessors in [`super::json`]; `*_at` fields are int64 milliseconds. Two fields are derived:
//! a membership's `user_id` and `organization_id` are copied from `public_user_data.user_id` and
//! `organization.id`, so consumers can key memberships without digging. `organization.deleted` and
//! `organizationDomain.deleted` carry Clerk's `DeletedObject`; `organizationMembership.deleted`
//! carries the full membership as it was. A user's `organization_memberships` (in `user.*` and
//! session events) are converted by the same function, as [`memberships_of_user`].

use super::common::deleted_object_from_json;
use super::json::{
    Object, bool_or_false, known_enum, objects, opt_bool, opt_i64, opt_object, opt_string,
    opt_struct, string_or_empty, strings, timestamp_ms,
};
use super::user::verification_at;
use crate::proto::{
    InvitationStatus, Organization, OrganizationDomain, OrganizationDomainEvent, OrganizationEvent,
    OrganizationInvitation, OrganizationInvitationEvent, OrganizationMembership,
    OrganizationMembershipEvent, PublicOrganizationData, PublicUserData, organization_domain_event,
    organization_event, organization_invitation_event, organization_membership_event,
};

/// The typed change of an `organization.{action}` event, or `None` for an unknown action.
pub(super) fn organization_event(action: &str, data: &Object<'_>) -> Option<OrganizationEvent> {
    use organization_event::Change;
    let change = match action {
        "created" => Change::Created(organization_from_json(data)),
        "updated" => Change::Updated(organization_from_json(data)),
        "deleted" => Change::Deleted(deleted_object_from_json(data)),
        _ => return None,
    };
    Some(OrganizationEvent {
        change: Some(change),
    })
}

/// The typed change of an `organizationDomain.{action}` event, or `None` for an unknown action.
pub(super) fn organization_domain_event(
    action: &str,
    data: &Object<'_>,
) -> Option<OrganizationDomainEvent> {
    use organization_domain_event::Change;
    let change = match action {
        "created" => Change::Created(organization_domain_from_json(data)),
        "updated" => Change::Updated(organization_domain_from_json(data)),
        "deleted" => Change::Deleted(deleted_object_from_json(data)),
        _ => return None,
    };
    Some(OrganizationDomainEvent {
        change: Some(change),
    })
}

/// The typed change of an `organizationInvitation.{action}` event, or `None` for an unknown action.
pub(super) fn organization_invitation_event(
    action: &str,
    data: &Object<'_>,
) -> Option<OrganizationInvitationEvent> {
    use organization_invitation_event::Change;
    let change: fn(OrganizationInvitation) -> Change = match action {
        "created" => Change::Created,
        "accepted" => Change::Accepted,
        "revoked" => Change::Revoked,
        _ => return None,
    };
    Some(OrganizationInvitationEvent {
        change: Some(change(organization_invitation_from_json(data))),
    })
}

/// The typed change of an `organizationMembership.{action}` event, or `None` for an unknown action.
pub(super) fn organization_membership_event(
    action: &str,
    data: &Object<'_>,
) -> Option<OrganizationMembershipEvent> {
    use organization_membership_event::Change;
    let change: fn(OrganizationMembership) -> Change = match action {
        "created" => Change::Created,
        "updated" => Change::Updated,
        "deleted" => Change::Deleted,
        _ => return None,
    };
    Some(OrganizationMembershipEvent {
        change: Some(change(organization_membership_from_json(data))),
    })
}

/// Converts an organization object (`data` of `organization.created`/`updated`, or embedded).
pub(super) fn organization_from_json(data: &Object<'_>) -> Organization {
    Organization {
        id: string_or_empty(data, "id"),
        name: string_or_empty(data, "name"),
        slug: string_or_empty(data, "slug"),
        image_url: opt_string(data, "image_url"),
        has_image: bool_or_false(data, "has_image"),
        members_count: opt_i64(data, "members_count"),
        missing_member_with_elevated_permissions: opt_bool(
            data,
            "missing_member_with_elevated_permissions",
        ),
        pending_invitations_count: opt_i64(data, "pending_invitations_count"),
        max_allowed_memberships: opt_i64(data, "max_allowed_memberships"),
        admin_delete_enabled: bool_or_false(data, "admin_delete_enabled"),
        public_metadata: opt_struct(data, "public_metadata"),
        private_metadata: opt_struct(data, "private_metadata"),
        created_by: opt_string(data, "created_by"),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
        last_active_at: timestamp_ms(data, "last_active_at"),
        role_set_key: opt_string(data, "role_set_key"),
        logo_url: opt_string(data, "logo_url"),
    }
}

/// Converts a `public_organization_data` object.
fn public_organization_data(obj: &Object<'_>) -> PublicOrganizationData {
    PublicOrganizationData {
        id: string_or_empty(obj, "id"),
        name: string_or_empty(obj, "name"),
        slug: string_or_empty(obj, "slug"),
        image_url: opt_string(obj, "image_url"),
        has_image: bool_or_false(obj, "has_image"),
    }
}

/// Converts the `data` of an `organizationDomain.created` or `updated` event.
pub(super) fn organization_domain_from_json(data: &Object<'_>) -> OrganizationDomain {
    OrganizationDomain {
        id: string_or_empty(data, "id"),
        organization_id: string_or_empty(data, "organization_id"),
        name: string_or_empty(data, "name"),
        enrollment_mode: string_or_empty(data, "enrollment_mode"),
        affiliation_email_address: opt_string(data, "affiliation_email_address"),
        verification: verification_at(data, "verification"),
        affiliation_verification: verification_at(data, "affiliation_verification"),
        ownership_verification: verification_at(data, "ownership_verification"),
        total_pending_invitations: opt_i64(data, "total_pending_invitations"),
        total_pending_suggestions: opt_i64(data, "total_pending_suggestions"),
        public_organization_data: opt_object(data, "public_organization_data")
            .map(public_organization_data),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
    }
}

/// Converts the `data` of an `organizationInvitation.*` event.
///
/// An accepted invitation nests the organization's public data one level down, in
/// `data.data.public_organization_data`; a top-level `public_organization_data` is read as well.
pub(super) fn organization_invitation_from_json(data: &Object<'_>) -> OrganizationInvitation {
    let organization = opt_object(data, "data")
        .and_then(|nested| opt_object(nested, "public_organization_data"))
        .or_else(|| opt_object(data, "public_organization_data"));
    OrganizationInvitation {
        id: string_or_empty(data, "id"),
        email_address: string_or_empty(data, "email_address"),
        role: string_or_empty(data, "role"),
        role_name: opt_string(data, "role_name"),
        organization_id: string_or_empty(data, "organization_id"),
        status: string_or_empty(data, "status"),
        known_status: invitation_status(data),
        public_metadata: opt_struct(data, "public_metadata"),
        private_metadata: opt_struct(data, "private_metadata"),
        url: opt_string(data, "url"),
        user_id: opt_string(data, "user_id"),
        expires_at: timestamp_ms(data, "expires_at"),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
        inviter_id: opt_string(data, "inviter_id"),
        public_inviter_data: opt_object(data, "public_inviter_data").map(public_user_data),
        public_organization_data: organization.map(public_organization_data),
    }
}

/// The `status` of an invitation object as an [`InvitationStatus`] number.
pub(super) fn invitation_status(obj: &Object<'_>) -> i32 {
    known_enum(
        obj,
        "status",
        "INVITATION_STATUS_",
        InvitationStatus::from_str_name,
    )
}

/// Converts a `public_user_data` or `public_inviter_data` object.
fn public_user_data(obj: &Object<'_>) -> PublicUserData {
    PublicUserData {
        user_id: string_or_empty(obj, "user_id"),
        first_name: opt_string(obj, "first_name"),
        last_name: opt_string(obj, "last_name"),
        image_url: opt_string(obj, "image_url"),
        has_image: bool_or_false(obj, "has_image"),
        identifier: opt_string(obj, "identifier"),
        profile_image_url: opt_string(obj, "profile_image_url"),
        username: opt_string(obj, "username"),
        banned: opt_bool(obj, "banned"),
        deprovisioned: opt_bool(obj, "deprovisioned"),
    }
}

/// The memberships a user object lists in `organization_memberships`, converted as the `data` of
/// `organizationMembership.*` events is. `User` cannot hold them (see `UserEvent`'s proto), so the
/// message holding the user types them beside it.
pub(super) fn memberships_of_user(user: &Object<'_>) -> Vec<OrganizationMembership> {
    objects(
        user,
        "organization_memberships",
        organization_membership_from_json,
    )
}

/// Converts the `data` of an `organizationMembership.*` event, deriving the user and organization
/// ids from the embedded objects.
pub(super) fn organization_membership_from_json(data: &Object<'_>) -> OrganizationMembership {
    let organization = opt_object(data, "organization").map(organization_from_json);
    let user = opt_object(data, "public_user_data").map(public_user_data);
    OrganizationMembership {
        id: string_or_empty(data, "id"),
        user_id: user.as_ref().map(|u| u.user_id.clone()).unwrap_or_default(),
        organization_id: organization
            .as_ref()
            .map(|o| o.id.clone())
            .unwrap_or_default(),
        role: string_or_empty(data, "role"),
        role_name: opt_string(data, "role_name"),
        permissions: strings(data, "permissions"),
        public_metadata: opt_struct(data, "public_metadata"),
        private_metadata: opt_struct(data, "private_metadata"),
        organization,
        public_user_data: user,
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clerk::json::object;
    use serde_json::json;

    #[test]
    fn unknown_actions_have_no_change() {
        let data = object(json!({"id": "x"}));
        assert_eq!(organization_event("archived", &data), None);
        assert_eq!(organization_domain_event("verified", &data), None);
        assert_eq!(organization_invitation_event("expired", &data), None);
        assert_eq!(organization_membership_event("suspended", &data), None);
    }

    #[test]
    fn accepted_invitation_reads_nested_organization_data() {
        let data = object(json!({
            "id": "orginv_1", "status": "accepted", "user_id": "user_1", "inviter_id": null,
            "data": {"public_organization_data": {"id": "org_1", "name": "Acme", "slug": "acme",
                                                  "has_image": true}},
            "public_inviter_data": {"user_id": "user_0", "first_name": null, "banned": false}
        }));
        let invitation = organization_invitation_from_json(&data);
        assert_eq!(invitation.known_status(), InvitationStatus::Accepted);
        assert_eq!(invitation.user_id.as_deref(), Some("user_1"));
        assert_eq!(invitation.inviter_id, None);
        let organization = invitation.public_organization_data.expect("nested data");
        assert_eq!(
            (organization.id.as_str(), organization.has_image),
            ("org_1", true)
        );
        let inviter = invitation.public_inviter_data.expect("inviter data");
        assert_eq!(
            (inviter.user_id.as_str(), inviter.first_name),
            ("user_0", None)
        );
        assert_eq!(inviter.banned, Some(false));
    }

    #[test]
    fn membership_ids_come_from_embedded_objects() {
        let data = object(json!({
            "id": "orgmem_1", "permissions": ["org:a", 3, "org:b"],
            "organization": {"id": "org_1"}, "public_user_data": {"user_id": "user_1"}
        }));
        let membership = organization_membership_from_json(&data);
        assert_eq!(membership.user_id, "user_1");
        assert_eq!(membership.organization_id, "org_1");
        assert_eq!(membership.permissions, ["org:a", "org:b"]);
        let bare = organization_membership_from_json(&object(json!({"organization": "org_1"})));
        assert_eq!(bare, OrganizationMembership::default());
    }

    #[test]
    fn domain_verifications_are_separate() {
        let data = object(json!({
            "verification": {"status": "verified"}, "affiliation_verification": null,
            "ownership_verification": {"status": "failed", "verified_at": null}
        }));
        let domain = organization_domain_from_json(&data);
        assert_eq!(
            domain.verification.map(|v| v.status),
            Some("verified".into())
        );
        assert_eq!(domain.affiliation_verification, None);
        assert_eq!(
            domain.ownership_verification.map(|v| v.status),
            Some("failed".into())
        );
    }
}
