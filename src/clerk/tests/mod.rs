//! Tests of [`decode_event`](super::decode_event) on whole webhook bodies: Clerk's published
//! examples for every family, versions and tombstones, property tests over random Clerk-shaped
//! JSON, and the convergence of the consumer rule under any delivery order.
//!
//! Unit tests of single conversions live beside them, in each family module.

use super::*;
use prost_types::Timestamp;
use serde_json::Value;
use std::sync::OnceLock;

mod billing;
mod bound;
mod convergence;
mod coverage;
mod envelope;
mod families;
mod memberships;
mod properties;
mod spec;
mod versions;

/// The directory of Clerk's published example payloads, beside this crate.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clerk-events");

/// The verbatim text of the fixture `name`.
fn fixture(name: &str) -> String {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every fixture, sorted: its event type (the file name without `.json`) and its verbatim body.
/// Read once per test binary.
fn all_fixtures() -> &'static [(String, String)] {
    static FIXTURE_BODIES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    FIXTURE_BODIES.get_or_init(|| {
        let mut fixtures: Vec<_> = std::fs::read_dir(FIXTURES)
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().ok()?;
                let event_type = name.strip_suffix(".json")?.to_owned();
                Some((event_type, fixture(&name)))
            })
            .collect();
        fixtures.sort();
        fixtures
    })
}

/// The `Timestamp` for whole `seconds` since the epoch.
fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// Decodes a `json!` value rendered as a body.
fn decode_json(body: &serde_json::Value) -> Event {
    decode_event(&body.to_string()).expect("the body decodes")
}

/// The event decoded from the fixture of `event_type`, and the fixture's `data`.
fn decoded(event_type: &str) -> (Event, Value) {
    let body = fixture(&format!("{event_type}.json"));
    let event = decode_event(&body).unwrap_or_else(|e| panic!("{event_type}: {e}"));
    let raw: Value = serde_json::from_str(&body).unwrap();
    (event, raw["data"].clone())
}

/// The string at `key` of a fixture object; the fixture must have one.
fn text(json: &Value, key: &str) -> String {
    let value = json[key].as_str();
    value
        .unwrap_or_else(|| panic!("{key} is not a string"))
        .to_owned()
}

/// The string at `key` of a fixture object, `None` for null.
fn opt_text(json: &Value, key: &str) -> Option<String> {
    json[key].as_str().map(str::to_owned)
}

/// The millisecond time at `key` of a fixture object as a `Timestamp`, `None` for null.
fn time(json: &Value, key: &str) -> Option<Timestamp> {
    json[key].as_i64().and_then(timestamp_from_millis)
}

/// The integer at `key` of a fixture object, `None` for null.
fn int(json: &Value, key: &str) -> Option<i64> {
    json[key].as_i64()
}

/// The bool at `key` of a fixture object; the fixture must have one.
fn flag(json: &Value, key: &str) -> bool {
    json[key]
        .as_bool()
        .unwrap_or_else(|| panic!("{key} is not a bool"))
}

/// The number of fields of the metadata object at `key`, `None` for null.
fn metadata_len(json: &Value, key: &str) -> Option<usize> {
    json[key].as_object().map(serde_json::Map::len)
}

/// The action of `event_type` (after the first `.`).
fn action(event_type: &str) -> &str {
    event_type.split_once('.').map_or("", |(_, action)| action)
}
