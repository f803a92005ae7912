//! A JSON tree that borrows from the body it was parsed from.
//!
//! Decoding a webhook reads each field it knows once, so the tree is built for that rather than
//! for editing: an object keeps its fields in body order in a `Vec` (a lookup scans them, and of
//! a key sent twice the last wins, as in `serde_json::Map`), and keys and strings without escapes
//! point into the body instead of being copied. Parsing a Clerk body into `serde_json::Value`
//! (a `BTreeMap` per object, a `String` per key) cost about half of the whole decode.
//!
//! [`parse`] reads containers nested deeper than [`MAX_PARSE_DEPTH`] as `null` (still checking
//! that they are valid JSON) instead of refusing the body: Clerk's users can nest their own
//! metadata, and a refused body is an event lost.

use std::{borrow::Cow, fmt};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// Containers nested deeper than this in a webhook body are parsed as `null`. Well above what any
/// accessor reads (the deepest `Struct`, an embedded user's account metadata, starts 5 levels down
/// and is converted [`MAX_STRUCT_DEPTH`](super::json::MAX_STRUCT_DEPTH) levels further), and below
/// serde_json's own limit of 128, past which it would refuse the whole body.
pub(crate) const MAX_PARSE_DEPTH: usize = 64;

/// A JSON value whose strings may borrow from the parsed text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object: its fields in the order of the text, duplicates included.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Object<'a> {
    fields: Vec<(Cow<'a, str>, Json<'a>)>,
}

/// Parses a webhook body like `serde_json::from_str`, except that containers more than
/// [`MAX_PARSE_DEPTH`] levels down become `null`. They are still checked to be well-formed JSON,
/// without recursion (serde_json skips ignored values with a loop), so no nesting can refuse the
/// body or exhaust the stack.
///
/// # Errors
/// When `body` is not valid JSON.
pub(crate) fn parse(body: &str) -> serde_json::Result<Json<'_>> {
    let mut deserializer = serde_json::Deserializer::from_str(body);
    let value = Bounded { depth: 0 }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

// === impl Json ===

impl<'a> Json<'a> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number if it is an integer within `i64` (floats are not, even whole ones).
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(object) => Some(object),
            _ => None,
        }
    }
}

/// Converts a `json!` literal (test fixtures).
#[cfg(test)]
impl From<serde_json::Value> for Json<'static> {
    fn from(value: serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => Json::Number(n),
            Value::String(s) => Json::String(s.into()),
            Value::Array(items) => Json::Array(items.into_iter().map(Json::from).collect()),
            Value::Object(map) => Json::Object(Object {
                fields: map.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            }),
        }
    }
}

// === impl Object ===

impl<'a> Object<'a> {
    /// The value of `key`; of a key sent more than once, the last.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Every field in the order of the text, a key sent twice twice.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.fields
            .iter()
            .map(|(name, value)| (name.as_ref(), value))
    }
}

/// Builds a [`Json`] found `depth` container levels below the top of the body.
#[derive(Clone, Copy)]
struct Bounded {
    depth: usize,
}

impl Bounded {
    /// The seed for this container's children, or `None` when the container itself lies more than
    /// [`MAX_PARSE_DEPTH`] levels down.
    fn children(self) -> Option<Bounded> {
        (self.depth <= MAX_PARSE_DEPTH).then_some(Bounded {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Bounded {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let Some(child) = self.children() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Json::Null);
        };
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let Some(child) = self.children() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Json::Null);
        };
        let mut fields = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            fields.push((key, map.next_value_seed(child)?));
        }
        Ok(Json::Object(Object { fields }))
    }
}

/// Reads an object's key, borrowing it from the text unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_keys_without_escapes_borrow_from_the_body() {
        let body = r#"{"plain": "text", "esc\"aped": "a\nb"}"#;
        let Json::Object(object) = parse(body).unwrap() else {
            panic!("not an object")
        };
        let (names, values): (Vec<_>, Vec<_>) = object.fields.iter().cloned().unzip();
        assert!(matches!(names[0], Cow::Borrowed("plain")));
        assert!(matches!(names[1], Cow::Owned(ref s) if s == "esc\"aped"));
        assert!(matches!(values[0], Json::String(Cow::Borrowed("text"))));
        assert!(matches!(values[1], Json::String(Cow::Owned(ref s)) if s == "a\nb"));
    }

    #[test]
    fn the_last_of_a_duplicate_key_wins_as_in_serde_json() {
        let body = r#"{"id": "first", "n": 1, "id": "second"}"#;
        let ours = parse(body).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(body).unwrap();
        let id = ours.as_object().and_then(|o| o.get("id"));
        assert_eq!(id.and_then(Json::as_str), theirs["id"].as_str());
        assert_eq!(id.and_then(Json::as_str), Some("second"));
    }

    #[test]
    fn parses_every_json_kind_as_serde_json_does() {
        let body =
            r#"{"a": [1, -2, 2.5, 18446744073709551615, true, null, "s", {}], "o": {"k": []}}"#;
        let theirs: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parse(body).unwrap(), Json::from(theirs));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in ["", "{", r#"{"a": }"#, r#"{"a": 1} x"#, "[1,]", r#"{"a" 1}"#] {
            assert!(parse(body).is_err(), "{body:?} parsed");
        }
    }
}
