//! How an [`Event`] is encoded in the log, and decoded back for subscribers.
//!
//! The log stores the protobuf encoding of the typed event (so catch-up reads need no JSON parsing)
//! tagged with [`CODEC_VERSION`]. When a newer bridge reads a record written with an older version,
//! it decodes the verbatim body again, so typed payloads added later also reach old events.

use prost::Message;

use crate::{clerk, log::StoredEvent, proto::Event};

/// Version of the typed decoding. Bump it whenever `clerk::decode_event` produces more or different
/// typed fields, so that stored events are decoded again on read.
///
/// History: 1 typed users only; 2 typed every Clerk event family and added `object_version` and
/// `deleted`.
pub const CODEC_VERSION: u32 = 2;

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

/// Decodes a stored record into the event a subscriber receives.
///
/// # Errors
/// [`CorruptRecord`] when the bytes are not an encoded event.
pub fn decode(stored: &StoredEvent) -> Result<Event, CorruptRecord> {
    let corrupt = || CorruptRecord {
        sequence: stored.sequence,
    };
    let mut event = Event::decode(stored.event.as_slice()).map_err(|_| corrupt())?;
    if stored.codec_version != CODEC_VERSION {
        event = upgrade(event).ok_or_else(corrupt)?;
    }
    event.sequence = stored.sequence;
    Ok(event)
}

/// Decodes the verbatim body of an event written by an older codec again, keeping what the log
/// assigned (id, receive time).
fn upgrade(old: Event) -> Option<Event> {
    let mut event = clerk::decode_event(&old.payload_json).ok()?;
    event.event_id = old.event_id;
    event.received_at = old.received_at;
    Some(event)
}
