//! Conversion of Clerk's role and permission JSON (`data` of `role.*` and `permission.*` events)
//! into [`Role`] and [`Permission`].
//!
//! Every proto field is read from the Clerk JSON field of the same name through the lenient
//! accessors in [`super::json`]; `*_at` fields are int64 milliseconds. Deletions carry Clerk's
//! `DeletedObject`.

use super::common::deleted_object_from_json;
use super::json::{Object, objects, opt_bool, opt_string, string_or_empty, timestamp_ms};
use crate::proto::{Permission, PermissionEvent, Role, RoleEvent, permission_event, role_event};

/// The typed change of a `role.{action}` event, or `None` for an unknown action.
pub(super) fn role_event(action: &str, data: &Object<'_>) -> Option<RoleEvent> {
    use role_event::Change;
    let change = match action {
        "created" => Change::Created(role_from_json(data)),
        "updated" => Change::Updated(role_from_json(data)),
        "deleted" => Change::Deleted(deleted_object_from_json(data)),
        _ => return None,
    };
    Some(RoleEvent {
        change: Some(change),
    })
}

/// The typed change of a `permission.{action}` event, or `None` for an unknown action.
pub(super) fn permission_event(action: &str, data: &Object<'_>) -> Option<PermissionEvent> {
    use permission_event::Change;
    let change = match action {
        "created" => Change::Created(permission_from_json(data)),
        "updated" => Change::Updated(permission_from_json(data)),
        "deleted" => Change::Deleted(deleted_object_from_json(data)),
        _ => return None,
    };
    Some(PermissionEvent {
        change: Some(change),
    })
}

/// Converts the `data` of a `role.created` or `role.updated` event.
pub(super) fn role_from_json(data: &Object<'_>) -> Role {
    Role {
        id: string_or_empty(data, "id"),
        name: string_or_empty(data, "name"),
        key: string_or_empty(data, "key"),
        description: opt_string(data, "description"),
        is_creator_eligible: opt_bool(data, "is_creator_eligible"),
        permissions: objects(data, "permissions", permission_from_json),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
    }
}

/// Converts a permission object (`data` of `permission.created`/`updated`, or inside a role).
pub(super) fn permission_from_json(data: &Object<'_>) -> Permission {
    Permission {
        id: string_or_empty(data, "id"),
        name: string_or_empty(data, "name"),
        key: string_or_empty(data, "key"),
        description: opt_string(data, "description"),
        r#type: string_or_empty(data, "type"),
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
        assert_eq!(role_event("renamed", &data), None);
        assert_eq!(permission_event("granted", &data), None);
    }

    #[test]
    fn role_permissions_skip_non_objects() {
        let data = object(json!({"id": "role_1", "description": null,
                                 "permissions": [{"id": "perm_1", "type": 1}, "perm_2", null]}));
        let role = role_from_json(&data);
        assert_eq!(role.description, None);
        assert_eq!(role.permissions.len(), 1);
        assert_eq!(
            (
                role.permissions[0].id.as_str(),
                role.permissions[0].r#type.as_str()
            ),
            ("perm_1", "")
        );
    }
}
