//! Values of the state bucket.
//!
//! # Object values
//! The latest event of one object under the version rule, as the embedded log's `objects` table
//! holds it, in a small binary header followed by the event:
//!
//! | bytes | field |
//! |-------|-------|
//! | 1 | format, [`FORMAT`] (1) |
//! | 8 | the event's sequence in the stream, big-endian |
//! | 8 | the object's version after the event (`object_version`), big-endian |
//! | 1 | flags: bit 0 set when the event deleted the object (a tombstone) |
//! | 4 | codec version of the encoded event, big-endian |
//! | 2 | length of the event type in bytes, big-endian |
//! | n | the event type, UTF-8 |
//! | rest | the encoded event, as the stream stores it |
//!
//! # The meta value
//! JSON: `{"applied": <sequence>, "paused_for": [<hold keys>]}`: every event up to `applied` is
//! in the object values (written before it), and the builder has seen the snapshot holds listed
//! and writes nothing until they are gone.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::log::{StoredEvent, StoredObject};

/// The format byte of object values written by this version.
const FORMAT: u8 = 1;
/// Bytes before the event type.
const HEADER_LEN: usize = 1 + 8 + 8 + 1 + 4 + 2;
/// The flag of a deletion.
const DELETED: u8 = 1;

/// An object's latest event, as stored in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ObjectValue {
    /// The event's sequence.
    pub(super) sequence: u64,
    /// The object's version after it.
    pub(super) version: u64,
    /// Whether it deleted the object.
    pub(super) deleted: bool,
    /// Version of the encoding of `event`.
    pub(super) codec_version: u32,
    /// Clerk's event type.
    pub(super) event_type: String,
    /// The encoded event.
    pub(super) event: Bytes,
}

/// Why a stored value could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable state value: {0}")]
pub(super) struct BadValue(&'static str);

/// The builder's progress, in the meta key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Meta {
    /// Every event up to this sequence is applied.
    pub(super) applied: u64,
    /// The snapshot holds the builder has seen, and pauses for (sorted).
    #[serde(default)]
    pub(super) paused_for: Vec<String>,
}

// === impl ObjectValue ===

impl ObjectValue {
    /// The bytes stored for this value.
    pub(super) fn encode(&self) -> Bytes {
        let event_type = self.event_type.as_bytes();
        let type_len = u16::try_from(event_type.len()).unwrap_or(u16::MAX);
        let event_type = &event_type[..usize::from(type_len)];
        let mut out = BytesMut::with_capacity(HEADER_LEN + event_type.len() + self.event.len());
        out.put_u8(FORMAT);
        out.put_u64(self.sequence);
        out.put_u64(self.version);
        out.put_u8(if self.deleted { DELETED } else { 0 });
        out.put_u32(self.codec_version);
        out.put_u16(type_len);
        out.put_slice(event_type);
        out.put_slice(&self.event);
        out.freeze()
    }

    /// Reads stored bytes.
    pub(super) fn decode(bytes: &Bytes) -> Result<Self, BadValue> {
        let header = bytes.get(..HEADER_LEN).ok_or(BadValue("too short"))?;
        if header[0] != FORMAT {
            return Err(BadValue("unknown format"));
        }
        let u64_at = |at: usize| {
            let mut word = [0; 8];
            word.copy_from_slice(&header[at..at + 8]);
            u64::from_be_bytes(word)
        };
        let mut codec = [0; 4];
        codec.copy_from_slice(&header[18..22]);
        let type_len = usize::from(u16::from_be_bytes([header[22], header[23]]));
        let type_end = HEADER_LEN + type_len;
        let event_type = bytes
            .get(HEADER_LEN..type_end)
            .ok_or(BadValue("event type cut short"))?;
        Ok(ObjectValue {
            sequence: u64_at(1),
            version: u64_at(9),
            deleted: header[17] & DELETED != 0,
            codec_version: u32::from_be_bytes(codec),
            event_type: String::from_utf8(event_type.to_vec())
                .map_err(|_| BadValue("event type not UTF-8"))?,
            event: bytes.slice(type_end..),
        })
    }

    /// The value of `stored`, the event that makes an object's version `version`.
    pub(super) fn of_event(stored: &StoredEvent, version: u64, deleted: bool) -> Self {
        ObjectValue {
            sequence: stored.sequence,
            version,
            deleted,
            codec_version: stored.codec_version,
            event_type: stored.event_type.clone(),
            event: stored.event.clone(),
        }
    }

    /// The object (`kind`, `id`) holding this value, as a snapshot sends it.
    pub(super) fn into_object(self, kind: String, id: String) -> StoredObject {
        StoredObject {
            kind,
            id,
            deleted: self.deleted,
            event: StoredEvent {
                sequence: self.sequence,
                event_type: self.event_type,
                codec_version: self.codec_version,
                event: self.event,
            },
        }
    }
}

// === impl Meta ===

impl Meta {
    /// The stored bytes.
    pub(super) fn encode(&self) -> Bytes {
        // Serializing a number and strings cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads stored bytes.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, BadValue> {
        serde_json::from_slice(bytes).map_err(|_| BadValue("meta is not JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(deleted: bool) -> ObjectValue {
        ObjectValue {
            sequence: 42,
            version: 1_700_000_000_123,
            deleted,
            codec_version: 3,
            event_type: "user.updated".to_owned(),
            event: Bytes::from_static(b"\x0a\x03abc"),
        }
    }

    #[test]
    fn object_values_round_trip() {
        for deleted in [false, true] {
            let original = value(deleted);
            let bytes = original.encode();
            assert_eq!(ObjectValue::decode(&bytes).unwrap(), original);
        }
    }

    #[test]
    fn the_header_is_laid_out_as_documented() {
        let bytes = value(true).encode();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(&bytes[1..9], &42_u64.to_be_bytes());
        assert_eq!(&bytes[9..17], &1_700_000_000_123_u64.to_be_bytes());
        assert_eq!(bytes[17], 1);
        assert_eq!(&bytes[18..22], &3_u32.to_be_bytes());
        assert_eq!(&bytes[22..24], &12_u16.to_be_bytes());
        assert_eq!(&bytes[24..36], b"user.updated");
        assert_eq!(&bytes[36..], b"\x0a\x03abc");
    }

    #[test]
    fn damaged_values_are_refused() {
        let bytes = value(false).encode();
        assert!(ObjectValue::decode(&bytes.slice(..10)).is_err());
        assert!(ObjectValue::decode(&bytes.slice(..30)).is_err());
        let mut other_format = bytes.to_vec();
        other_format[0] = 9;
        assert!(ObjectValue::decode(&Bytes::from(other_format)).is_err());
    }

    #[test]
    fn meta_round_trips_and_defaults_its_holds() {
        let meta = Meta {
            applied: 7,
            paused_for: vec!["state.hold.a".to_owned()],
        };
        assert_eq!(Meta::decode(&meta.encode()).unwrap(), meta);
        assert_eq!(
            Meta::decode(br#"{"applied":3}"#).unwrap(),
            Meta {
                applied: 3,
                paused_for: Vec::new()
            }
        );
    }
}
