//! Lenient accessors over Clerk's JSON.
//!
//! Clerk's published examples drift from its schemas, and a verified webhook must never be rejected
//! for the shape of one field. So every accessor here is total: a missing field, a `null` and a value
//! of the wrong type all give the same "absent" answer (`None`, `false`, an empty string or an empty
//! list, depending on whether the proto field can say "unknown"). Nothing here panics.
//!
//! Invariants:
//! - `opt_*` accessors never turn "unknown" into an empty string or zero: absent means `None`.
//! - Timestamps are Clerk's int64 milliseconds; values outside protobuf's `Timestamp` range
//!   (years 1 to 9999) are absent rather than wrapped, and `nanos` is always in `0..1_000_000_000`.
//! - JSON nested deeper than [`MAX_STRUCT_DEPTH`] is cut off (replaced by `null`) when converted to
//!   a `google.protobuf.Struct`, so the converter's recursion is bounded and the resulting message
//!   stays decodable under protobuf's usual recursion limit of 100. The verbatim body keeps it all.
//! - A body is parsed into a [`Json`] tree by [`tree::parse`](super::tree::parse), which bounds its
//!   depth.

use prost_types::{ListValue, Struct, Timestamp, value::Kind};

use super::tree::Json;
pub(crate) use super::tree::Object;
use crate::clock::timestamp_from_millis;

/// How many levels of objects and arrays below a top-level `Struct` (or `Value`) are converted.
///
/// Each JSON object level costs three protobuf message levels (map entry, `Value`, `Struct`), and
/// the deepest `Struct` field sits six messages below the wire message (`SubscribeResponse` →
/// `Event` → `SessionEvent` → `Session` → `User` → account → `Struct`). Decoders such as prost and
/// protobuf-C++ refuse more than 100 nested messages; 6 + 3 × 24 + 2 = 80 leaves room for wrappers.
/// A test in the parent module round-trips the deepest case through prost.
pub(crate) const MAX_STRUCT_DEPTH: usize = 24;

/// The string at `key`, or `None` when it is missing, `null` or not a string.
pub(crate) fn opt_string(obj: &Object<'_>, key: &str) -> Option<String> {
    obj.get(key).and_then(Json::as_str).map(str::to_owned)
}

/// The string at `key`, or an empty string when it is missing, `null` or not a string.
///
/// Only for proto fields that are plain `string` (where empty already means "unset").
pub(crate) fn string_or_empty(obj: &Object<'_>, key: &str) -> String {
    opt_string(obj, key).unwrap_or_default()
}

/// The first string among `keys` that is not empty, else the first that is a string at all (so
/// `""` stays `""`), else `None`: for a value Clerk has sent under several names over time.
pub(crate) fn first_string(obj: &Object<'_>, keys: &[&str]) -> Option<String> {
    let strings = || keys.iter().filter_map(|key| obj.get(key)?.as_str());
    strings()
        .find(|s| !s.is_empty())
        .or_else(|| strings().next())
        .map(str::to_owned)
}

/// The bool at `key`, or `None` when it is missing, `null` or not a bool.
pub(crate) fn opt_bool(obj: &Object<'_>, key: &str) -> Option<bool> {
    obj.get(key).and_then(Json::as_bool)
}

/// The bool at `key`, or `false` when it is missing, `null` or not a bool.
pub(crate) fn bool_or_false(obj: &Object<'_>, key: &str) -> bool {
    opt_bool(obj, key).unwrap_or(false)
}

/// Times in `data` below this (10^11) are Unix seconds: as milliseconds they would fall in 1973,
/// before any Clerk object existed; as seconds they reach the year 5138.
pub(crate) const DATA_SECONDS_BELOW: i64 = 100_000_000_000;

/// The integer at `key`, or `None` when it is missing, `null`, not an integer, or outside `i64`.
///
/// Floats are refused even when they have no fraction: Clerk sends integers as integers.
pub(crate) fn opt_i64(obj: &Object<'_>, key: &str) -> Option<i64> {
    obj.get(key).and_then(Json::as_i64)
}

/// The time at `key` as a `Timestamp`, or `None` when it is absent or unusable.
///
/// Clerk sends milliseconds; a value that can only be seconds is read as seconds (see
/// [`millis_at`]). See [`timestamp_from_millis`] for the range rules.
pub(crate) fn timestamp_ms(obj: &Object<'_>, key: &str) -> Option<Timestamp> {
    millis_at(obj, key).and_then(timestamp_from_millis)
}

/// The time at `key` in milliseconds: Clerk's milliseconds as sent, except that a non-negative
/// value below [`DATA_SECONDS_BELOW`] (which as milliseconds would fall before March 1973, before Clerk
/// existed) is taken as seconds, as the envelope's `timestamp` is. `None` when absent or not an
/// integer.
pub(crate) fn millis_at(obj: &Object<'_>, key: &str) -> Option<i64> {
    let raw = opt_i64(obj, key)?;
    if (0..DATA_SECONDS_BELOW).contains(&raw) {
        Some(raw * 1000)
    } else {
        Some(raw)
    }
}

/// The number at `key` as an `f64`, or `None` when it is missing, `null` or not a number.
///
/// Integers are accepted too (Clerk sends `0` and `1` for fractions that happen to be whole).
pub(crate) fn opt_f64(obj: &Object<'_>, key: &str) -> Option<f64> {
    obj.get(key).and_then(Json::as_f64)
}

/// The strings in the array at `key`, in order.
///
/// Elements that are not strings are skipped; a missing or non-array field gives an empty list.
pub(crate) fn strings(obj: &Object<'_>, key: &str) -> Vec<String> {
    let Some(items) = obj.get(key).and_then(Json::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Json::as_str)
        .map(str::to_owned)
        .collect()
}

/// The closed-set string at `key` as the number of a proto enum value, or 0 (`…_UNSPECIFIED`).
///
/// Clerk's value `past_due` matches the enum value named `{prefix}PAST_DUE`, looked up with the
/// enum's generated `from_str_name`. A missing, `null` or non-string field, a value with other
/// characters than lowercase ASCII letters and `_`, and a value the enum does not have all give 0;
/// the raw string stays in the proto field beside the enum.
pub(crate) fn known_enum<E: Into<i32>>(
    obj: &Object<'_>,
    key: &str,
    prefix: &str,
    from_str_name: impl Fn(&str) -> Option<E>,
) -> i32 {
    let Some(raw) = obj.get(key).and_then(Json::as_str) else {
        return 0;
    };
    if !raw.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return 0;
    }
    from_str_name(&format!("{prefix}{}", raw.to_ascii_uppercase())).map_or(0, Into::into)
}

/// The object at `key`, or `None` when it is missing, `null` or not an object.
pub(crate) fn opt_object<'a, 'b>(obj: &'a Object<'b>, key: &str) -> Option<&'a Object<'b>> {
    obj.get(key).and_then(Json::as_object)
}

/// The object at `key` as a `Struct`, or `None` when it is missing, `null` or not an object.
pub(crate) fn opt_struct(obj: &Object<'_>, key: &str) -> Option<Struct> {
    let value = obj.get(key).filter(|value| value.as_object().is_some())?;
    match proto_value(value).kind {
        Some(Kind::StructValue(fields)) => Some(fields),
        _ => None,
    }
}

/// Maps every object in the array at `key` with `convert`, in order.
///
/// Elements that are not objects are skipped; a missing or non-array field gives an empty list.
pub(crate) fn objects<T>(
    obj: &Object<'_>,
    key: &str,
    convert: impl Fn(&Object<'_>) -> T,
) -> Vec<T> {
    let Some(items) = obj.get(key).and_then(Json::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Json::as_object)
        .map(convert)
        .collect()
}

/// Converts any JSON value into a `google.protobuf.Value`.
///
/// Numbers become `f64` (as `Struct` requires). Objects and arrays nested more than
/// [`MAX_STRUCT_DEPTH`] levels below `value` become `null`, which bounds the recursion.
pub(crate) fn proto_value(value: &Json<'_>) -> prost_types::Value {
    value_at_depth(value, 0)
}

/// Converts `map` into a `Struct` whose fields sit `depth` levels below the top.
fn struct_at_depth(map: &Object<'_>, depth: usize) -> Struct {
    // Collecting into the map keeps the last of a key sent twice, as `Object::get` does.
    let fields = map
        .iter()
        .map(|(key, value)| (key.to_owned(), value_at_depth(value, depth)))
        .collect();
    Struct { fields }
}

/// Converts `value`, found `depth` container levels below the top, into a `google.protobuf.Value`.
fn value_at_depth(value: &Json<'_>, depth: usize) -> prost_types::Value {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        // Without serde_json's `arbitrary_precision`, `as_f64` is always `Some`; null is a fallback.
        Json::Number(n) => n.as_f64().map_or(Kind::NullValue(0), Kind::NumberValue),
        Json::String(s) => Kind::StringValue(s.as_ref().to_owned()),
        Json::Array(_) | Json::Object(_) if depth > MAX_STRUCT_DEPTH => Kind::NullValue(0),
        Json::Array(items) => Kind::ListValue(list_at_depth(items, depth + 1)),
        Json::Object(map) => Kind::StructValue(struct_at_depth(map, depth + 1)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Converts `items` into a `ListValue` whose elements sit `depth` levels below the top.
fn list_at_depth(items: &[Json<'_>], depth: usize) -> ListValue {
    let values = items
        .iter()
        .map(|item| value_at_depth(item, depth))
        .collect();
    ListValue { values }
}

/// Converts a `json!` literal that is known to be an object (test fixtures).
#[cfg(test)]
pub(crate) fn object(value: serde_json::Value) -> Object<'static> {
    match Json::from(value) {
        Json::Object(object) => object,
        other => panic!("not an object: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_absent_unless_strings() {
        let obj = object(json!({"s": "x", "empty": "", "n": 5, "null": null, "o": {}}));
        assert_eq!(opt_string(&obj, "s").as_deref(), Some("x"));
        assert_eq!(opt_string(&obj, "empty").as_deref(), Some(""));
        for key in ["n", "null", "o", "missing"] {
            assert_eq!(opt_string(&obj, key), None, "{key}");
            assert_eq!(string_or_empty(&obj, key), "", "{key}");
        }
        assert_eq!(string_or_empty(&obj, "s"), "x");
    }

    #[test]
    fn bools_are_false_unless_bools() {
        let obj = object(json!({"t": true, "f": false, "s": "true", "n": 1, "null": null}));
        assert!(bool_or_false(&obj, "t"));
        assert_eq!(opt_bool(&obj, "f"), Some(false));
        for key in ["s", "n", "null", "missing"] {
            assert!(!bool_or_false(&obj, key), "{key}");
            assert_eq!(opt_bool(&obj, key), None, "{key}");
        }
    }

    #[test]
    fn integers_must_fit_i64() {
        let obj = object(json!({
            "i": -7, "max": i64::MAX, "big": u64::MAX, "f": 1.5, "whole": 2.0, "s": "3", "null": null
        }));
        assert_eq!(opt_i64(&obj, "i"), Some(-7));
        assert_eq!(opt_i64(&obj, "max"), Some(i64::MAX));
        for key in ["big", "f", "whole", "s", "null", "missing"] {
            assert_eq!(opt_i64(&obj, key), None, "{key}");
        }
    }

    #[test]
    fn timestamp_fields_are_lenient() {
        let obj = object(
            json!({"ms": 1_716_883_200_500_i64, "s": "yesterday", "f": 1.5e12,
                                "null": null}),
        );
        assert_eq!(
            timestamp_ms(&obj, "ms"),
            Some(Timestamp {
                seconds: 1_716_883_200,
                nanos: 500_000_000
            })
        );
        for key in ["s", "f", "null", "missing"] {
            assert_eq!(timestamp_ms(&obj, key), None, "{key}");
        }
    }

    #[test]
    fn times_that_can_only_be_seconds_are_seconds() {
        let obj = object(json!({
            "seconds": 1_716_883_200, "last_second": DATA_SECONDS_BELOW - 1, "zero": 0,
            "ms": DATA_SECONDS_BELOW, "negative": -1_500
        }));
        let at = |seconds, nanos| Some(Timestamp { seconds, nanos });
        assert_eq!(timestamp_ms(&obj, "seconds"), at(1_716_883_200, 0));
        assert_eq!(
            millis_at(&obj, "last_second"),
            Some((DATA_SECONDS_BELOW - 1) * 1000)
        );
        assert_eq!(timestamp_ms(&obj, "zero"), at(0, 0));
        assert_eq!(millis_at(&obj, "ms"), Some(DATA_SECONDS_BELOW));
        assert_eq!(timestamp_ms(&obj, "negative"), at(-2, 500_000_000));
    }

    #[test]
    fn first_string_prefers_a_non_empty_one() {
        let obj = object(json!({"empty": "", "a": "x", "b": "y", "n": 1}));
        assert_eq!(
            first_string(&obj, &["n", "empty", "a", "b"]).as_deref(),
            Some("x")
        );
        assert_eq!(
            first_string(&obj, &["missing", "empty"]).as_deref(),
            Some("")
        );
        assert_eq!(first_string(&obj, &["missing", "n"]), None);
    }

    #[test]
    fn structs_convert_every_json_kind() {
        let obj = object(
            json!({"m": {"n": 1, "f": 2.5, "s": "x", "b": true, "z": null,
                                       "l": [1, "a", {"k": false}], "o": {"deep": "yes"}}}),
        );
        let s = opt_struct(&obj, "m").expect("m is an object");
        let kind = |key: &str| s.fields[key].kind.clone();
        assert_eq!(kind("n"), Some(Kind::NumberValue(1.0)));
        assert_eq!(kind("f"), Some(Kind::NumberValue(2.5)));
        assert_eq!(kind("s"), Some(Kind::StringValue("x".into())));
        assert_eq!(kind("b"), Some(Kind::BoolValue(true)));
        assert_eq!(kind("z"), Some(Kind::NullValue(0)));
        let Some(Kind::ListValue(list)) = kind("l") else {
            panic!("l is not a list")
        };
        assert_eq!(list.values.len(), 3);
        assert_eq!(list.values[1].kind, Some(Kind::StringValue("a".into())));
        let Some(Kind::StructValue(inner)) = &list.values[2].kind else {
            panic!("not a struct")
        };
        assert_eq!(inner.fields["k"].kind, Some(Kind::BoolValue(false)));
        let Some(Kind::StructValue(o)) = kind("o") else {
            panic!("o is not a struct")
        };
        assert_eq!(o.fields["deep"].kind, Some(Kind::StringValue("yes".into())));
    }

    #[test]
    fn of_a_key_sent_twice_the_last_counts_in_fields_and_structs() {
        let body = r#"{"s": "first", "m": {"k": 1, "k": 2}, "s": "last"}"#;
        let Ok(Json::Object(obj)) = crate::clerk::tree::parse(body) else {
            panic!("not an object")
        };
        assert_eq!(opt_string(&obj, "s").as_deref(), Some("last"));
        let fields = opt_struct(&obj, "m").expect("a struct").fields;
        assert_eq!(fields.len(), 1);
        assert_eq!(fields["k"].kind, Some(Kind::NumberValue(2.0)));
    }

    #[test]
    fn structs_are_absent_unless_objects() {
        let obj = object(json!({"s": "x", "l": [], "null": null, "e": {}}));
        for key in ["s", "l", "null", "missing"] {
            assert_eq!(opt_struct(&obj, key), None, "{key}");
        }
        assert_eq!(opt_struct(&obj, "e"), Some(Struct::default()));
    }

    /// Builds `{"a": {"a": ... {"a": "leaf"}}}` with `levels` objects.
    fn nested(levels: usize) -> Json<'static> {
        Json::from((0..levels).fold(json!("leaf"), |inner, _| json!({ "a": inner })))
    }

    /// How many `Struct` levels the converted value has before it stops.
    fn struct_levels(mut value: &prost_types::Value) -> usize {
        let mut levels = 0;
        while let Some(Kind::StructValue(s)) = &value.kind {
            levels += 1;
            value = &s.fields["a"];
        }
        levels
    }

    /// The value under the innermost `Struct`'s `a` field.
    fn innermost(mut value: &prost_types::Value) -> &prost_types::Value {
        while let Some(Kind::StructValue(s)) = &value.kind {
            value = &s.fields["a"];
        }
        value
    }

    #[test]
    fn deep_nesting_is_cut_at_the_limit() {
        let fits = proto_value(&nested(MAX_STRUCT_DEPTH + 1));
        assert_eq!(struct_levels(&fits), MAX_STRUCT_DEPTH + 1);
        let Some(Kind::StringValue(leaf)) = innermost(&fits).kind.clone() else {
            panic!("the leaf was cut although it fits")
        };
        assert_eq!(leaf, "leaf");
        // Far past serde_json's own parse limit of 128, as a hand-built value could be.
        let deep = proto_value(&nested(1_000));
        assert_eq!(struct_levels(&deep), MAX_STRUCT_DEPTH + 1);
        assert_eq!(innermost(&deep).kind, Some(Kind::NullValue(0)));
    }

    #[test]
    fn floats_accept_any_number() {
        let obj = object(json!({"f": 0.5, "i": 1, "s": "0.5", "null": null}));
        assert_eq!(opt_f64(&obj, "f"), Some(0.5));
        assert_eq!(opt_f64(&obj, "i"), Some(1.0));
        for key in ["s", "null", "missing"] {
            assert_eq!(opt_f64(&obj, key), None, "{key}");
        }
    }

    #[test]
    fn string_lists_skip_other_elements() {
        let obj = object(json!({"l": ["a", 1, null, {}, "b"], "s": "a", "n": null}));
        assert_eq!(strings(&obj, "l"), ["a", "b"]);
        for key in ["s", "n", "missing"] {
            assert!(strings(&obj, key).is_empty(), "{key}");
        }
    }

    #[test]
    fn closed_sets_map_known_lowercase_values() {
        use crate::proto::SessionStatus;
        let obj = object(json!({
            "active": "active", "replaced": "replaced", "upper": "ACTIVE", "unknown": "dormant",
            "unspecified": "unspecified", "n": 3, "null": null, "spaced": " active", "empty": ""
        }));
        let status = |key| known_enum(&obj, key, "SESSION_STATUS_", SessionStatus::from_str_name);
        assert_eq!(status("active"), SessionStatus::Active as i32);
        assert_eq!(status("replaced"), SessionStatus::Replaced as i32);
        for key in [
            "upper",
            "unknown",
            "unspecified",
            "n",
            "null",
            "spaced",
            "empty",
            "missing",
        ] {
            assert_eq!(status(key), 0, "{key}");
        }
    }

    #[test]
    fn arrays_of_objects_skip_other_elements() {
        let obj =
            object(json!({"l": [{"id": "a"}, 1, null, "x", [], {"id": "b"}], "o": {"id": "c"}}));
        let ids = |key| objects(&obj, key, |o| string_or_empty(o, "id"));
        assert_eq!(ids("l"), ["a", "b"]);
        assert!(ids("o").is_empty());
        assert!(ids("missing").is_empty());
    }
}
