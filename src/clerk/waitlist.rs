//! Conversion of Clerk's waitlist JSON (`data` of `waitlistEntry.*` events) into [`WaitlistEntry`].
//!
//! Every proto field is read from the Clerk JSON field of the same name through the lenient
//! accessors in [`super::json`]; `*_at` fields are int64 milliseconds. Statuses are kept as sent
//! and typed beside when they are one of Clerk's documented values.

use super::json::{
    Object, bool_or_false, known_enum, opt_bool, opt_object, opt_string, opt_struct,
    string_or_empty, timestamp_ms,
};
use super::organization::invitation_status;
use crate::proto::{
    Invitation, WaitlistEntry, WaitlistEntryEvent, WaitlistEntryStatus,
    waitlist_entry_event::Change,
};

/// The typed change of a `waitlistEntry.{action}` event, or `None` for an unknown action.
pub(super) fn waitlist_entry_event(action: &str, data: &Object<'_>) -> Option<WaitlistEntryEvent> {
    let change: fn(WaitlistEntry) -> Change = match action {
        "created" => Change::Created,
        "updated" => Change::Updated,
        _ => return None,
    };
    Some(WaitlistEntryEvent {
        change: Some(change(waitlist_entry_from_json(data))),
    })
}

/// Converts the `data` of a `waitlistEntry.*` event.
pub(super) fn waitlist_entry_from_json(data: &Object<'_>) -> WaitlistEntry {
    WaitlistEntry {
        id: string_or_empty(data, "id"),
        email_address: string_or_empty(data, "email_address"),
        status: string_or_empty(data, "status"),
        known_status: known_enum(
            data,
            "status",
            "WAITLIST_ENTRY_STATUS_",
            WaitlistEntryStatus::from_str_name,
        ),
        is_locked: bool_or_false(data, "is_locked"),
        invitation: opt_object(data, "invitation").map(invitation),
        created_at: timestamp_ms(data, "created_at"),
        updated_at: timestamp_ms(data, "updated_at"),
    }
}

/// Converts the `invitation` of a waitlist entry (an invitation to the instance).
fn invitation(obj: &Object<'_>) -> Invitation {
    Invitation {
        id: string_or_empty(obj, "id"),
        email_address: string_or_empty(obj, "email_address"),
        status: string_or_empty(obj, "status"),
        known_status: invitation_status(obj),
        public_metadata: opt_struct(obj, "public_metadata"),
        revoked: opt_bool(obj, "revoked"),
        url: opt_string(obj, "url"),
        expires_at: timestamp_ms(obj, "expires_at"),
        created_at: timestamp_ms(obj, "created_at"),
        updated_at: timestamp_ms(obj, "updated_at"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clerk::json::object;
    use crate::proto::InvitationStatus;
    use serde_json::json;

    #[test]
    fn statuses_are_typed_beside_the_raw_strings() {
        let data = object(json!({"status": "rejected", "invitation": {
            "status": "expired", "revoked": true, "public_metadata": {"a": 1}}}));
        let entry = waitlist_entry_from_json(&data);
        assert_eq!(entry.known_status(), WaitlistEntryStatus::Rejected);
        let invitation = entry.invitation.expect("an object");
        assert_eq!(invitation.known_status(), InvitationStatus::Expired);
        assert_eq!(invitation.revoked, Some(true));
        assert!(invitation.public_metadata.is_some());
        assert_eq!(waitlist_entry_event("deleted", &data), None);
    }
}
