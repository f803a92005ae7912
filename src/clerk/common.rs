//! Conversion of the small messages several families share (`common.proto`): the `DeletedObject`
//! that `*.deleted` events of organizations, organization domains, roles and permissions carry.
//!
//! Read leniently through [`super::json`], like every conversion here: a missing, `null` or wrongly
//! typed field leaves the proto field absent or empty and never fails.

use super::json::{Object, opt_string, string_or_empty};
use crate::proto::DeletedObject;

/// Converts the `data` of a `*.deleted` event that carries Clerk's `DeletedObject`.
pub(super) fn deleted_object_from_json(data: &Object<'_>) -> DeletedObject {
    DeletedObject {
        id: string_or_empty(data, "id"),
        object: string_or_empty(data, "object"),
        slug: opt_string(data, "slug"),
        external_id: opt_string(data, "external_id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::clerk::json::object;

    #[test]
    fn deleted_object_keeps_what_clerk_sends() {
        let data =
            json!({"object": "organization", "id": "org_1", "slug": "acme", "deleted": true});
        let expected = DeletedObject {
            id: "org_1".into(),
            object: "organization".into(),
            slug: Some("acme".into()),
            external_id: None,
        };
        assert_eq!(deleted_object_from_json(&object(data)), expected);
        let odd = json!({"id": 1, "slug": null, "external_id": ["x"]});
        assert_eq!(
            deleted_object_from_json(&object(odd)),
            DeletedObject::default()
        );
    }
}
