//! How the client subcommands print an event: one readable line (sequence, time, type, object id,
//! a short summary of the object) or one JSON object, written to stdout so it can be piped.

use std::io::{ErrorKind, Write as _};

use serde_json::{Value, json};

use crate::proto::{Event, EventSource};

/// Longest summary, in characters.
const SUMMARY_CHARS: usize = 80;

/// Writes one line to stdout; false when stdout is closed (`tail | head`).
pub(super) fn emit(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => false,
        // Any other failure to write is as final as a closed pipe.
        Err(_) => false,
    }
}

/// The event as `--json` asks: one JSON object, or one readable line.
pub(super) fn event_line(event: &Event, json: bool) -> String {
    if json {
        json_line(event)
    } else {
        text_line(event)
    }
}

/// `#12     2026-11-27T10:04:05.123Z user.created   user_2x...   Ada Lovelace <ada@example.com>`.
pub(super) fn text_line(event: &Event) -> String {
    let payload = payload(event);
    let line = format!(
        "#{:<6} {} {:<31} {:<34} {}",
        event.sequence,
        when(event),
        event.r#type,
        or_dash(&event.object_id),
        summary(&event.r#type, event.deleted, &payload["data"])
    );
    line.trim_end().to_owned()
}

/// The event as one JSON object.
pub(super) fn json_line(event: &Event) -> String {
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(rfc3339_millis);
    json!({
        "sequence": event.sequence,
        "event_id": event.event_id,
        "type": event.r#type,
        "object_id": event.object_id,
        "object_version": event.object_version,
        "deleted": event.deleted,
        "occurred_at": time(&event.occurred_at),
        "received_at": time(&event.received_at),
        "instance_id": event.instance_id,
        "source": source_name(event.source),
        "payload": payload(event),
    })
    .to_string()
}

/// `webhook`, `backfill` or `reconciliation` (events stored before sources were recorded are
/// webhooks).
fn source_name(source: i32) -> &'static str {
    match EventSource::try_from(source) {
        Ok(EventSource::Backfill) => "backfill",
        Ok(EventSource::Reconciliation) => "reconciliation",
        _ => "webhook",
    }
}

/// The verbatim webhook body, parsed (as a string if it is not JSON).
fn payload(event: &Event) -> Value {
    serde_json::from_str(&event.payload_json)
        .unwrap_or_else(|_| Value::String(event.payload_json.clone()))
}

/// When Clerk says the event happened, else when the bridge received it.
fn when(event: &Event) -> String {
    event
        .occurred_at
        .as_ref()
        .or(event.received_at.as_ref())
        .map_or_else(|| format!("{:<24}", "-"), rfc3339_millis)
}

/// `2026-11-27T10:04:05.123Z`: always with milliseconds, so lines align.
fn rfc3339_millis(t: &prost_types::Timestamp) -> String {
    let millis = prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos - t.nanos.rem_euclid(1_000_000),
    };
    let text = millis.to_string();
    match text.strip_suffix('Z') {
        Some(whole) if !whole.contains('.') => format!("{whole}.000Z"),
        _ => text,
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// A short description of the changed object, from the webhook's `data`.
fn summary(event_type: &str, deleted: bool, data: &Value) -> String {
    if deleted {
        return "deleted".to_owned();
    }
    let family = event_type.split('.').next().unwrap_or_default();
    let s = |key: &str| data[key].as_str().unwrap_or_default();
    let text = match family {
        "user" => user_summary(data),
        "session" => format!("user {} {}", s("user_id"), s("status")),
        "organization" => format!("{} ({})", s("name"), s("slug")),
        "organizationMembership" => format!(
            "{} in {} as {}",
            data["public_user_data"]["user_id"].as_str().unwrap_or("?"),
            data["organization"]["id"].as_str().unwrap_or("?"),
            s("role")
        ),
        "organizationInvitation" => format!(
            "{} to {} as {}, {}",
            s("email_address"),
            s("organization_id"),
            s("role"),
            s("status")
        ),
        "organizationDomain" => format!("{} of {}", s("name"), s("organization_id")),
        "role" | "permission" => format!("{} ({})", s("key"), s("name")),
        "waitlistEntry" => format!("{} {}", s("email_address"), s("status")),
        "email" => format!("to {}: {}", s("to_email_address"), s("subject")),
        "sms" => format!("to {}", s("to_phone_number")),
        _ => s("status").to_owned(),
    };
    shorten(text.trim())
}

/// `First Last <primary email>`, or what of it there is.
fn user_summary(data: &Value) -> String {
    let name = ["first_name", "last_name"]
        .iter()
        .filter_map(|k| data[k].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let name = match (name.trim(), data["username"].as_str()) {
        ("", Some(username)) => format!("@{username}"),
        (name, _) => name.to_owned(),
    };
    let emails = data["email_addresses"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let primary = emails
        .iter()
        .find(|e| e["id"] == data["primary_email_address_id"])
        .or(emails.first())
        .and_then(|e| e["email_address"].as_str());
    match primary {
        Some(email) => format!("{name} <{email}>"),
        None => name,
    }
}

/// At most [`SUMMARY_CHARS`] characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, payload: Value) -> Event {
        Event {
            sequence: 12,
            event_id: "msg_1".to_owned(),
            r#type: event_type.to_owned(),
            object_id: payload["data"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_716_883_200,
                nanos: 0,
            }),
            payload_json: payload.to_string(),
            ..Event::default()
        }
    }

    #[test]
    fn a_user_line_shows_name_and_primary_email() {
        let e = event(
            "user.created",
            json!({"data": {
                "id": "user_1", "first_name": "Ada", "last_name": "Lovelace",
                "primary_email_address_id": "idn_2",
                "email_addresses": [
                    {"id": "idn_1", "email_address": "old@example.com"},
                    {"id": "idn_2", "email_address": "ada@example.com"}
                ]
            }}),
        );
        let line = text_line(&e);
        assert!(
            line.starts_with("#12     2024-05-28T08:00:00.000Z user.created"),
            "{line}"
        );
        assert!(line.contains(" user_1 "), "{line}");
        assert!(line.ends_with("Ada Lovelace <ada@example.com>"), "{line}");
    }

    #[test]
    fn summaries_cover_the_families() {
        let data = json!({
            "name": "Acme", "slug": "acme", "role": "org:admin", "status": "active",
            "user_id": "user_1", "organization": {"id": "org_1"},
            "public_user_data": {"user_id": "user_2"}
        });
        assert_eq!(summary("organization.updated", false, &data), "Acme (acme)");
        assert_eq!(
            summary("organizationMembership.created", false, &data),
            "user_2 in org_1 as org:admin"
        );
        assert_eq!(
            summary("session.created", false, &data),
            "user user_1 active"
        );
        assert_eq!(summary("user.deleted", true, &data), "deleted");
        assert_eq!(summary("future.thing", false, &data), "active");
        assert_eq!(
            summary("user.updated", false, &json!({"username": "ada"})),
            "@ada"
        );
        let long = "x".repeat(200);
        assert_eq!(
            summary("organization.created", false, &json!({"name": long}))
                .chars()
                .count(),
            SUMMARY_CHARS + 1
        );
    }

    #[test]
    fn json_lines_carry_the_fields_and_the_verbatim_body() {
        let e = event(
            "user.deleted",
            json!({"data": {"id": "user_1", "deleted": true}}),
        );
        let line: Value = serde_json::from_str(&json_line(&e)).unwrap();
        assert_eq!(line["sequence"], 12);
        assert_eq!(line["type"], "user.deleted");
        assert_eq!(line["occurred_at"], "2024-05-28T08:00:00.000Z");
        assert_eq!(line["payload"]["data"]["deleted"], true);
        assert_eq!(line["received_at"], Value::Null);
        assert_eq!(line["source"], "webhook");
        let backfilled = Event {
            source: EventSource::Backfill.into(),
            ..e
        };
        let line: Value = serde_json::from_str(&json_line(&backfilled)).unwrap();
        assert_eq!(line["source"], "backfill");
    }

    #[test]
    fn times_always_have_milliseconds() {
        let t = |seconds, nanos| rfc3339_millis(&prost_types::Timestamp { seconds, nanos });
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(t(1_716_883_200, 123_456_789), "2024-05-28T08:00:00.123Z");
        assert_eq!(t(1_716_883_200, 999), "2024-05-28T08:00:00.000Z");
    }
}
