//! Where an event is published: one subject per event id, so that the stream itself refuses a
//! second copy (see [`super`]).
//!
//! A subject token may not hold `.`, `*`, `>` or whitespace, so ids made of other characters than
//! letters, digits, `_` and `-` (Svix's `msg_…` ids never are) are hex-encoded under a token of
//! their own: the two forms cannot collide.

use std::fmt::Write;

/// The subject every event of `stream` is published under, as a filter.
pub(super) fn all_events(stream: &str) -> String {
    format!("{stream}.>")
}

/// The subject of the event whose webhook id is `event_id`.
pub(super) fn of_event(stream: &str, event_id: &str) -> String {
    if !event_id.is_empty() && event_id.bytes().all(is_plain) {
        format!("{stream}.id.{event_id}")
    } else {
        // The leading `x` keeps the token non-empty for an empty id.
        let mut hex = String::with_capacity(event_id.len() * 2 + 1);
        hex.push('x');
        for byte in event_id.bytes() {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        format!("{stream}.hex.{hex}")
    }
}

fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svix_ids_are_kept_and_others_are_encoded_apart() {
        assert_eq!(
            of_event("CLERK_EVENTS", "msg_2abcDEF-9"),
            "CLERK_EVENTS.id.msg_2abcDEF-9"
        );
        assert_eq!(of_event("S", "a.b"), "S.hex.x612e62");
        assert_eq!(of_event("S", "*"), "S.hex.x2a");
        assert_eq!(of_event("S", ""), "S.hex.x");
        // A plain id that looks like an encoded one stays under its own token.
        assert_ne!(of_event("S", "612e62"), of_event("S", "a.b"));
    }
}
