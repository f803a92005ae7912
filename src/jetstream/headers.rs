//! What an event carries in its message headers besides the encoded event (the payload): the
//! fields the log keeps beside it, so that reads need not decode the event.

use async_nats::header::HeaderMap;
use bytes::Bytes;

use super::ReadError;
use crate::log::{NewRecord, StoredEvent};

/// Clerk's event type.
const EVENT_TYPE: &str = "Clerk-Bridge-Event-Type";
/// Version of the encoding of the payload.
const CODEC_VERSION: &str = "Clerk-Bridge-Codec-Version";
/// When the bridge accepted the webhook, in unix milliseconds.
const RECEIVED_AT: &str = "Clerk-Bridge-Received-At-Ms";

/// The headers of a record's message.
pub(super) fn of_record(record: &NewRecord) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(EVENT_TYPE, record.event_type.as_str());
    map.insert(CODEC_VERSION, record.codec_version.to_string().as_str());
    map.insert(RECEIVED_AT, record.received_at_ms.to_string().as_str());
    map
}

/// The event a message at `sequence` holds.
pub(super) fn stored_event(
    map: &HeaderMap,
    sequence: u64,
    payload: Bytes,
) -> Result<StoredEvent, ReadError> {
    let event_type = map
        .get(EVENT_TYPE)
        .ok_or_else(|| ReadError::Remote(format!("message {sequence} has no {EVENT_TYPE}")))?;
    let codec_version = number(map, CODEC_VERSION)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| ReadError::Remote(format!("message {sequence} has no {CODEC_VERSION}")))?;
    Ok(StoredEvent {
        sequence,
        event_type: event_type.as_str().to_owned(),
        codec_version,
        event: payload,
    })
}

/// A header holding an unsigned number.
pub(super) fn number(map: &HeaderMap, name: &str) -> Option<u64> {
    map.get(name)?.as_str().parse().ok()
}
