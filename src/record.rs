//! How an [`Event`] is encoded in the log, and decoded back for subscribers.
//!
//! The log stores the protobuf encoding of the typed event (so catch-up reads need no JSON parsing)
//! tagged with [`CODEC_VERSION`]. Its sequence is 0, so the record holds no field 1: a subscriber
//! receives the record's bytes as they are, behind the sequence ([`fields`]). When a newer bridge
//! reads a record written with an older version, it decodes the verbatim body again, so typed
//! payloads added later also reach old events.

use bytes::{Buf, Bytes};
use prost::{
    Message,
    encoding::{DecodeContext, decode_key, skip_field},
};

use crate::{
    clerk,
    log::{NewRecord, ObjectRef, StoredEvent},
    proto::Event,
};

/// Field number of `Event.sequence`, which records leave out.
const SEQUENCE_FIELD: u32 = 1;

/// Version of the typed decoding. Bump it whenever `clerk::decode_event` produces more or different
/// typed fields, so that stored events are decoded again on read.
///
/// History: 1 typed users only; 2 typed every Clerk event family and added `object_version` and
/// `deleted`; 3 typed every property of Clerk's published schemas, the legacy and mixed Google
/// account shapes, times in seconds inside `data`, and bounded the event's size
/// (`omitted_fields`); 4 typed a user's `organization_memberships` beside the user
/// (`UserEvent.organization_memberships`, `Session.user_organization_memberships`).
pub const CODEC_VERSION: u32 = 4;

/// Why a stored record could not be turned back into an event.
#[derive(Debug, thiserror::Error)]
#[error("stored event {sequence} is corrupt")]
pub struct CorruptRecord {
    /// The record's sequence.
    pub sequence: u64,
}

/// Encodes `event` for the log. Its `sequence` is assigned by the log, so it is not stored.
pub fn encode(event: &Event) -> Vec<u8> {
    event.encode_to_vec()
}

/// The log row of `event`, received at `received_at_ms`: keyed by its `event_id`, encoded with
/// this [`CODEC_VERSION`], with the object it changes for the log's state.
pub fn new_record(event: &Event, received_at_ms: i64) -> NewRecord {
    NewRecord {
        event_id: event.event_id.clone(),
        event_type: event.r#type.clone(),
        received_at_ms,
        codec_version: CODEC_VERSION,
        event: encode(event),
        object: object_of_event(event),
        only_if_newer: false,
    }
}

/// The object `event` changes, and its version after it.
pub fn object_of_event(event: &Event) -> Option<ObjectRef> {
    ObjectRef::of_event(
        &event.r#type,
        &event.object_id,
        event.object_version,
        event.deleted,
    )
}

/// The object a stored record changes (decoding it, older codecs included); for rebuilding the
/// log's state from its events. A corrupt record changes nothing.
pub fn object_of_stored(stored: &StoredEvent) -> Option<ObjectRef> {
    decode(stored).ok().as_ref().and_then(object_of_event)
}

/// Decodes a stored record into the event a subscriber receives.
///
/// # Errors
/// [`CorruptRecord`] when the bytes are not an encoded event.
pub fn decode(stored: &StoredEvent) -> Result<Event, CorruptRecord> {
    let corrupt = || CorruptRecord {
        sequence: stored.sequence,
    };
    let mut event = Event::decode(&stored.event[..]).map_err(|_| corrupt())?;
    if stored.codec_version != CODEC_VERSION {
        event = upgrade(event).ok_or_else(corrupt)?;
    }
    event.sequence = stored.sequence;
    Ok(event)
}

/// The encoded fields of a stored event as a subscriber receives them, all but the sequence: the
/// stored bytes themselves when this codec version wrote them (their top-level framing checked,
/// not decoded), else the event decoded again (see [`decode`]) and encoded.
///
/// # Errors
/// [`CorruptRecord`] when the bytes are not an encoded event.
pub fn fields(stored: &StoredEvent) -> Result<Bytes, CorruptRecord> {
    if stored.codec_version != CODEC_VERSION {
        let event = decode(stored)?;
        return Ok(Bytes::from(
            Event {
                sequence: 0,
                ..event
            }
            .encode_to_vec(),
        ));
    }
    if !well_framed(&stored.event) {
        return Err(CorruptRecord {
            sequence: stored.sequence,
        });
    }
    Ok(stored.event.clone())
}

/// Whether `bytes` is a sequence of whole top-level fields (keys, varints, lengths within the
/// bytes) without field 1. The fields' contents are not decoded.
fn well_framed(mut bytes: &[u8]) -> bool {
    while bytes.has_remaining() {
        let Ok((tag, wire_type)) = decode_key(&mut bytes) else {
            return false;
        };
        let skipped = skip_field(wire_type, tag, &mut bytes, DecodeContext::default());
        if tag == SEQUENCE_FIELD || skipped.is_err() {
            return false;
        }
    }
    true
}

/// Decodes the verbatim body of an event written by an older codec again, keeping what the log
/// assigned (id, receive time).
fn upgrade(old: Event) -> Option<Event> {
    let mut event = clerk::decode_event(&old.payload_json).ok()?;
    event.event_id = old.event_id;
    event.received_at = old.received_at;
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(codec_version: u32, event: Vec<u8>) -> StoredEvent {
        StoredEvent {
            sequence: 9,
            event_type: "user.created".to_owned(),
            codec_version,
            event: Bytes::from(event),
        }
    }

    fn event() -> Event {
        let body = r#"{"type":"user.created","object":"event","data":{"id":"user_1"}}"#;
        let mut event = clerk::decode_event(body).unwrap();
        event.event_id = "msg_1".to_owned();
        event
    }

    #[test]
    fn a_current_record_is_passed_through_as_stored() {
        let bytes = encode(&event());
        assert_eq!(
            fields(&stored(CODEC_VERSION, bytes.clone())).unwrap(),
            bytes
        );
    }

    #[test]
    fn an_older_record_is_decoded_again() {
        let old = Event {
            payload: None,
            ..event()
        };
        let fields = fields(&stored(CODEC_VERSION - 1, encode(&old))).unwrap();
        assert_eq!(Event::decode(fields).unwrap(), event());
    }

    #[test]
    fn a_user_stored_before_memberships_were_typed_gets_them() {
        use crate::proto::event::Payload;
        let body = r#"{"type":"user.updated","data":{"id":"user_1",
            "organization_memberships":[{"id":"orgmem_1","organization":{"id":"org_1"}}]}}"#;
        let mut old = clerk::decode_event(body).unwrap();
        if let Some(Payload::User(user)) = &mut old.payload {
            user.organization_memberships.clear();
        }
        let fields = fields(&stored(3, encode(&old))).unwrap();
        let Some(Payload::User(user)) = Event::decode(fields).unwrap().payload else {
            panic!("a user event");
        };
        let typed: Vec<_> = user
            .organization_memberships
            .iter()
            .map(|m| &m.id)
            .collect();
        assert_eq!(typed, ["orgmem_1"]);
    }

    #[test]
    fn broken_framing_or_a_stored_sequence_is_corrupt() {
        let mut truncated = encode(&event());
        truncated.truncate(truncated.len() - 3);
        let with_sequence = encode(&Event {
            sequence: 5,
            ..event()
        });
        for bytes in [truncated, with_sequence, vec![0xff]] {
            let error = fields(&stored(CODEC_VERSION, bytes)).unwrap_err();
            assert_eq!(error.sequence, 9);
        }
    }
}
