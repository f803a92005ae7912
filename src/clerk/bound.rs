//! The size bound on an event: every stored event must reach every subscriber in one gRPC message
//! of at most [`MAX_MESSAGE_BYTES`], the default limit of gRPC clients in every language. Above it
//! a client fails on the event at every reconnect, forever.
//!
//! What can grow an event past the bound is the `google.protobuf.Struct` form of metadata: JSON
//! such as an array of small numbers takes five to six times its size as a `Struct`. So when an
//! event is too large, [`fit`] leaves out its largest `Struct`s, just enough of them, and lists
//! their paths in `Event.omitted_fields`; if that is not enough (typed fields of megabytes), it
//! leaves out the whole typed payload instead. `payload_json` always stays complete, and so do
//! the envelope fields, which is why the webhook body is capped at [`MAX_BODY_BYTES`]: the body and
//! the envelope fields copied from it then fit together.
//!
//! The `Struct`s are found in the encoded event through the compiled descriptors, so a `Struct`
//! field added to the proto later is bounded too, with no list to keep up to date.

use std::{collections::HashMap, ops::Range, sync::OnceLock};

use bytes::Buf;
use prost::{
    Message,
    encoding::{
        DecodeContext, WireType, decode_key, decode_varint, encode_key, encode_varint, skip_field,
    },
};
use prost_types::{
    FileDescriptorSet,
    field_descriptor_proto::{Label, Type},
};

use crate::proto::{Event, FILE_DESCRIPTOR_SET};

/// The largest gRPC message default clients accept (4 MiB), which every event must fit in.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes kept free for what the log and the stream add to a decoded event: its id (a webhook id
/// is at most 256 bytes), sequence, receive time and source, the `SubscribeResponse` around it
/// and its delivery attempt (together under 320 bytes).
const RESERVED_BYTES: usize = 1024;

/// The largest webhook body the bridge may be configured to accept: 2 MB. An event carries its
/// body in `payload_json` and at worst as much again in envelope fields copied from it (type, ids,
/// user agent), so twice this, plus the 1 KiB reserved for the log's and the stream's fields and
/// framing, fits [`MAX_MESSAGE_BYTES`].
pub const MAX_BODY_BYTES: u64 = 2_000_000;

/// The type name of `google.protobuf.Struct` in descriptors.
const STRUCT_TYPE: &str = ".google.protobuf.Struct";

/// The type name of `Event` in descriptors, where paths start.
const EVENT_TYPE: &str = ".clerk.bridge.v1.Event";

/// What [`fit`] needs to know of one field of a message.
#[derive(Debug)]
struct FieldInfo {
    /// The field's proto name.
    name: String,
    /// Whether it is `repeated` (paths then carry an index).
    repeated: bool,
    /// The message type, for message fields.
    message: Option<String>,
}

/// The fields of every message of the compiled protos: type name → field number → field.
type Schema = HashMap<String, HashMap<u32, FieldInfo>>;

/// A `Struct` found in an encoded event.
#[derive(Debug)]
struct FoundStruct {
    /// Its path of field names below `Event`, e.g. `user.updated.public_metadata`.
    path: String,
    /// The bytes of the whole field (key, length and value) in the encoded event.
    span: Range<usize>,
}

/// `event`, with `Struct`s or its typed payload left out if that is what it takes to fit in
/// [`MAX_MESSAGE_BYTES`] once the log and the stream add their fields (see the module docs).
pub(crate) fn fit(event: Event) -> Event {
    let budget = MAX_MESSAGE_BYTES - RESERVED_BYTES;
    let size = event.encoded_len();
    if size <= budget {
        return event;
    }
    let bytes = event.encode_to_vec();
    let mut structs = Vec::new();
    find_structs(
        schema(),
        &bytes,
        0..bytes.len(),
        EVENT_TYPE,
        "",
        &mut structs,
    );
    match without_structs(&bytes, structs, size - budget) {
        Some(fitted) if fitted.encoded_len() <= budget => fitted,
        _ => without_payload(event),
    }
}

/// The event of `bytes` without the largest of `structs` that together save at least `excess`
/// bytes, and with their paths in `omitted_fields`; `None` when all of them save less.
fn without_structs(bytes: &[u8], mut structs: Vec<FoundStruct>, excess: usize) -> Option<Event> {
    structs.sort_by_key(|found| std::cmp::Reverse(saving(found)));
    let mut saved = 0;
    let count = structs.iter().position(|found| {
        saved += saving(found);
        saved >= excess
    })? + 1;
    let mut dropped: Vec<FoundStruct> = structs.into_iter().take(count).collect();
    dropped.sort_by_key(|found| found.span.start);
    let spans: Vec<Range<usize>> = dropped.iter().map(|found| found.span.clone()).collect();
    let kept = strip(schema(), bytes, 0..bytes.len(), EVENT_TYPE, &spans);
    let mut event = Event::decode(&kept[..]).ok()?;
    event.omitted_fields = dropped.into_iter().map(|found| found.path).collect();
    Some(event)
}

/// The bytes leaving out `found` saves: the field, less its entry in `omitted_fields` (a key, a
/// length of at most 3 bytes below 2 MiB, and the path).
fn saving(found: &FoundStruct) -> usize {
    found.span.len().saturating_sub(found.path.len() + 4)
}

/// `event` without its typed payload, which `omitted_fields` then names (e.g. `user`).
fn without_payload(event: Event) -> Event {
    let name = event.payload.as_ref().and_then(|payload| {
        let mut encoded = Vec::new();
        payload.encode(&mut encoded);
        let (number, _) = decode_key(&mut &encoded[..]).ok()?;
        Some(schema()[EVENT_TYPE].get(&number)?.name.clone())
    });
    Event {
        payload: None,
        omitted_fields: name.into_iter().collect(),
        ..event
    }
}

/// The fields of every compiled message, read once from the embedded descriptor set.
fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The set is compiled into the binary by build.rs from the same protos as `Event`.
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("embedded descriptor set");
        let mut schema = Schema::new();
        for file in set.file {
            for message in &file.message_type {
                let name = format!(".{}.{}", file.package(), message.name());
                let fields = message.field.iter().map(|field| {
                    let info = FieldInfo {
                        name: field.name().to_owned(),
                        repeated: field.label() == Label::Repeated,
                        message: (field.r#type() == Type::Message)
                            .then(|| field.type_name().to_owned()),
                    };
                    (u32::try_from(field.number()).unwrap_or(0), info)
                });
                schema.insert(name, fields.collect());
            }
        }
        schema
    })
}

/// One field of an encoded message.
struct RawField<'a> {
    /// Its number.
    number: u32,
    /// The whole field (key, length, value) in the buffer.
    span: Range<usize>,
    /// The value of a length-delimited field, in the buffer.
    value: Option<Range<usize>>,
    /// What the descriptors say of it, when it is known.
    info: Option<&'a FieldInfo>,
}

/// The fields of the message of type `message` at `range` of `bytes`, in order. Stops at the first
/// malformed field (the bytes come from prost's own encoder, so there is none).
fn fields<'a>(
    schema: &'a Schema,
    bytes: &[u8],
    range: Range<usize>,
    message: &str,
) -> Vec<RawField<'a>> {
    let known = schema.get(message);
    let mut buf = &bytes[range.clone()];
    let mut fields = Vec::new();
    while buf.has_remaining() {
        let start = range.end - buf.remaining();
        let Ok((number, wire_type)) = decode_key(&mut buf) else {
            break;
        };
        let value = if wire_type == WireType::LengthDelimited {
            let Ok(len) = decode_varint(&mut buf) else {
                break;
            };
            let value_start = range.end - buf.remaining();
            let Some(len) = usize::try_from(len)
                .ok()
                .filter(|len| *len <= buf.remaining())
            else {
                break;
            };
            buf.advance(len);
            Some(value_start..value_start + len)
        } else {
            if skip_field(wire_type, number, &mut buf, DecodeContext::default()).is_err() {
                break;
            }
            None
        };
        let span = start..range.end - buf.remaining();
        let info = known.and_then(|fields| fields.get(&number));
        fields.push(RawField {
            number,
            span,
            value,
            info,
        });
    }
    fields
}

/// Adds every `Struct` inside the message of type `message` at `range` of `bytes` to `found`,
/// with its path below `path`.
fn find_structs(
    schema: &Schema,
    bytes: &[u8],
    range: Range<usize>,
    message: &str,
    path: &str,
    found: &mut Vec<FoundStruct>,
) {
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for field in fields(schema, bytes, range, message) {
        let (Some(info), Some(value)) = (field.info, field.value) else {
            continue;
        };
        let Some(nested) = &info.message else {
            continue;
        };
        let index = seen.entry(field.number).or_default();
        let mut field_path = join(path, &info.name);
        if info.repeated {
            field_path = format!("{field_path}[{index}]");
        }
        *index += 1;
        if nested == STRUCT_TYPE {
            found.push(FoundStruct {
                path: field_path,
                span: field.span,
            });
        } else if !nested.starts_with(".google.protobuf.") {
            find_structs(schema, bytes, value, nested, &field_path, found);
        }
    }
}

/// `parent.name`, or `name` at the top.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The message of type `message` at `range` of `bytes`, encoded again without the fields whose
/// spans are in `drop` (sorted), at any depth.
fn strip(
    schema: &Schema,
    bytes: &[u8],
    range: Range<usize>,
    message: &str,
    drop: &[Range<usize>],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(range.len());
    for field in fields(schema, bytes, range, message) {
        if drop
            .binary_search_by_key(&field.span.start, |span| span.start)
            .is_ok()
        {
            continue;
        }
        let nested = field.info.and_then(|info| info.message.as_deref());
        match (field.value, nested) {
            (Some(value), Some(nested)) if contains_any(drop, &value) => {
                let inner = strip(schema, bytes, value, nested, drop);
                encode_key(field.number, WireType::LengthDelimited, &mut out);
                encode_varint(inner.len() as u64, &mut out);
                out.extend_from_slice(&inner);
            }
            _ => out.extend_from_slice(&bytes[field.span]),
        }
    }
    out
}

/// Whether a span of `drop` (sorted by start) starts inside `range`.
fn contains_any(drop: &[Range<usize>], range: &Range<usize>) -> bool {
    let first = drop.partition_point(|span| span.start < range.start);
    drop.get(first).is_some_and(|span| span.start < range.end)
}
