//! `SubscribeResponse` as the server sends it: an event goes out as the bytes the log stored, with
//! its sequence in front, instead of being decoded into [`crate::proto::Event`] and encoded again
//! for every subscriber (which cost more than everything else a delivery does).
//!
//! The bytes on the wire are exactly those of `clerk.bridge.v1.SubscribeResponse`: clients decode
//! them with the generated types, and only the server's in-memory form differs. The field numbers
//! below must match `service.proto` and `events.proto`; the tests decode these messages with the
//! generated types to check.

use bytes::{Buf, BufMut, Bytes};
use prost::{
    DecodeError, Message,
    encoding::{DecodeContext, WireType, skip_field, uint64},
};

use crate::proto::{CaughtUp, Heartbeat, SnapshotEnd, StreamStart};

/// Field number of `Event.sequence`.
const SEQUENCE_FIELD: u32 = 1;

/// `clerk.bridge.v1.SubscribeResponse`, with the event already encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscribeResponse {
    /// What this message carries.
    #[prost(oneof = "Content", tags = "1, 2, 3, 4, 6")]
    pub message: Option<Content>,
    /// For an event sent to a named consumer: how many times it has been sent, counting this time.
    #[prost(uint32, tag = "5")]
    pub delivery_attempt: u32,
}

/// `SubscribeResponse.message`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Content {
    /// The next event.
    #[prost(message, tag = "1")]
    Event(EncodedEvent),
    /// Keep-alive on an idle stream.
    #[prost(message, tag = "2")]
    Heartbeat(Heartbeat),
    /// Where the stream starts.
    #[prost(message, tag = "3")]
    Start(StreamStart),
    /// The stream has delivered everything up to the head it saw.
    #[prost(message, tag = "4")]
    CaughtUp(CaughtUp),
    /// The snapshot is complete; the events after its sequence follow.
    #[prost(message, tag = "6")]
    SnapshotEnd(SnapshotEnd),
}

/// A `clerk.bridge.v1.Event`, encoded: its sequence, then every other field as the log stored it.
///
/// Only ever encoded; decoding one (which the bridge never does) skips its contents.
#[derive(Clone, Default, PartialEq)]
pub struct EncodedEvent {
    /// The sequence the log assigned (not part of the stored bytes).
    sequence: u64,
    /// The event's other fields, encoded: a stored record (see [`crate::record`]).
    fields: Bytes,
}

// === impl EncodedEvent ===

impl EncodedEvent {
    /// The event at `sequence` whose other fields are `fields` (an encoded `Event` whose sequence
    /// is 0, so that it holds no field 1).
    pub fn new(sequence: u64, fields: Bytes) -> Self {
        EncodedEvent { sequence, fields }
    }
}

impl Message for EncodedEvent {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // Field 1 first, as a generated encoder would put it; the stored fields follow in order.
        if self.sequence != 0 {
            uint64::encode(SEQUENCE_FIELD, &self.sequence, buf);
        }
        buf.put_slice(&self.fields);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let sequence = if self.sequence != 0 {
            uint64::encoded_len(SEQUENCE_FIELD, &self.sequence)
        } else {
            0
        };
        sequence + self.fields.len()
    }

    fn clear(&mut self) {
        *self = EncodedEvent::default();
    }
}

/// Shows the sequence and size only: the fields hold personal data.
impl std::fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedEvent")
            .field("sequence", &self.sequence)
            .field("bytes", &self.fields.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::{self, Event, subscribe_response::Message as Typed};

    fn event() -> Event {
        Event {
            event_id: "msg_1".to_owned(),
            r#type: "user.created".to_owned(),
            object_id: "user_1".to_owned(),
            payload_json: r#"{"type":"user.created"}"#.to_owned(),
            object_version: 7,
            ..Event::default()
        }
    }

    /// What a client decodes from the bytes of `response`.
    fn as_client_sees(response: &SubscribeResponse) -> proto::SubscribeResponse {
        proto::SubscribeResponse::decode(response.encode_to_vec().as_slice()).unwrap()
    }

    #[test]
    fn an_encoded_event_decodes_as_the_typed_event_with_its_sequence() {
        let stored = Bytes::from(event().encode_to_vec());
        let response = SubscribeResponse {
            message: Some(Content::Event(EncodedEvent::new(42, stored))),
            delivery_attempt: 3,
        };
        let typed = as_client_sees(&response);
        let expected = Event {
            sequence: 42,
            ..event()
        };
        assert_eq!(typed.message, Some(Typed::Event(expected)));
        assert_eq!(typed.delivery_attempt, 3);
    }

    #[test]
    fn the_bytes_are_those_of_the_typed_response() {
        let typed = proto::SubscribeResponse {
            message: Some(Typed::Event(Event {
                sequence: 300,
                ..event()
            })),
            delivery_attempt: 0,
        };
        let stored = Bytes::from(event().encode_to_vec());
        let response = SubscribeResponse {
            message: Some(Content::Event(EncodedEvent::new(300, stored))),
            delivery_attempt: 0,
        };
        assert_eq!(response.encode_to_vec(), typed.encode_to_vec());
        assert_eq!(response.encoded_len(), typed.encoded_len());
    }

    #[test]
    fn markers_keep_their_field_numbers() {
        let markers = [
            Content::Heartbeat(Heartbeat {
                head_sequence: 5,
                sent_at: None,
            }),
            Content::Start(StreamStart {
                after_sequence: 1,
                first_retained_sequence: 2,
                head_sequence: 3,
            }),
            Content::CaughtUp(CaughtUp { head_sequence: 4 }),
        ];
        let typed: Vec<_> = markers
            .into_iter()
            .map(|content| {
                as_client_sees(&SubscribeResponse {
                    message: Some(content),
                    delivery_attempt: 0,
                })
                .message
            })
            .collect();
        assert!(matches!(
            typed[0],
            Some(Typed::Heartbeat(Heartbeat {
                head_sequence: 5,
                ..
            }))
        ));
        assert!(matches!(
            typed[1],
            Some(Typed::Start(StreamStart {
                after_sequence: 1,
                first_retained_sequence: 2,
                head_sequence: 3
            }))
        ));
        assert!(matches!(
            typed[2],
            Some(Typed::CaughtUp(CaughtUp { head_sequence: 4 }))
        ));
    }
}
