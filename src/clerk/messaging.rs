//! Conversion of Clerk's email and SMS JSON (`data` of `email.created` and `sms.created`) into
//! [`EmailMessage`] and [`SmsMessage`].
//!
//! Every proto field is read from the Clerk JSON field of the same name through the lenient
//! accessors in [`super::json`]. An SMS's creation time is `created_at` in Clerk's examples and
//! `created_at_ms` in its schema: both are read, `created_at` first. These payloads carry one-time
//! codes: nothing here logs them.

use super::json::{Object, bool_or_false, opt_string, opt_struct, string_or_empty, timestamp_ms};
use crate::proto::{EmailEvent, EmailMessage, SmsEvent, SmsMessage, email_event, sms_event};

/// The typed change of an `email.{action}` event, or `None` for an unknown action.
pub(super) fn email_event(action: &str, data: &Object<'_>) -> Option<EmailEvent> {
    let change = match action {
        "created" => email_event::Change::Created(email_from_json(data)),
        _ => return None,
    };
    Some(EmailEvent {
        change: Some(change),
    })
}

/// The typed change of an `sms.{action}` event, or `None` for an unknown action.
pub(super) fn sms_event(action: &str, data: &Object<'_>) -> Option<SmsEvent> {
    let change = match action {
        "created" => sms_event::Change::Created(sms_from_json(data)),
        _ => return None,
    };
    Some(SmsEvent {
        change: Some(change),
    })
}

/// Converts the `data` of an `email.created` event.
pub(super) fn email_from_json(data: &Object<'_>) -> EmailMessage {
    EmailMessage {
        id: string_or_empty(data, "id"),
        slug: opt_string(data, "slug"),
        from_email_name: string_or_empty(data, "from_email_name"),
        reply_to_email_name: opt_string(data, "reply_to_email_name"),
        to_email_address: string_or_empty(data, "to_email_address"),
        email_address_id: opt_string(data, "email_address_id"),
        user_id: opt_string(data, "user_id"),
        subject: string_or_empty(data, "subject"),
        body: string_or_empty(data, "body"),
        body_plain: opt_string(data, "body_plain"),
        status: string_or_empty(data, "status"),
        data: opt_struct(data, "data"),
        delivered_by_clerk: bool_or_false(data, "delivered_by_clerk"),
    }
}

/// Converts the `data` of an `sms.created` event.
pub(super) fn sms_from_json(data: &Object<'_>) -> SmsMessage {
    SmsMessage {
        id: string_or_empty(data, "id"),
        slug: opt_string(data, "slug"),
        from_phone_number: string_or_empty(data, "from_phone_number"),
        to_phone_number: string_or_empty(data, "to_phone_number"),
        phone_number_id: opt_string(data, "phone_number_id"),
        user_id: opt_string(data, "user_id"),
        message: string_or_empty(data, "message"),
        status: string_or_empty(data, "status"),
        data: opt_struct(data, "data"),
        delivered_by_clerk: bool_or_false(data, "delivered_by_clerk"),
        created_at: timestamp_ms(data, "created_at")
            .or_else(|| timestamp_ms(data, "created_at_ms")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clerk::json::object;
    use prost_types::Timestamp;
    use serde_json::json;

    #[test]
    fn sms_creation_time_has_two_spellings() {
        let at = |seconds| Some(Timestamp { seconds, nanos: 0 });
        let spec = object(json!({"created_at_ms": 1_716_883_202_000_i64}));
        assert_eq!(sms_from_json(&spec).created_at, at(1_716_883_202));
        let both = object(json!({"created_at": 1_716_883_201_000_i64,
                                 "created_at_ms": 1_716_883_202_000_i64}));
        assert_eq!(sms_from_json(&both).created_at, at(1_716_883_201));
        assert_eq!(sms_from_json(&Object::default()), SmsMessage::default());
    }

    #[test]
    fn only_created_is_known() {
        let data = object(json!({"id": "ema_1", "data": "x", "body_plain": null}));
        let email = email_from_json(&data);
        assert_eq!((email.data, email.body_plain), (None, None));
        assert!(email_event("created", &data).is_some());
        assert_eq!(email_event("sent", &data), None);
        assert_eq!(sms_event("delivered", &data), None);
    }
}
