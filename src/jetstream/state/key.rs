//! Keys of the state bucket: one per object, `o.<kind>.<id>`, and the builder's meta key.
//!
//! KV keys take only `A-Z a-z 0-9 - _ = / .`, with `.` separating tokens, so each of kind and id
//! is encoded: ASCII letters, digits, `-` and `_` stay as they are; every other byte of its UTF-8
//! form becomes `=` and two uppercase hex digits (`.` is `=2E`); an empty string is a lone `=`.
//! `=` only ever starts an escape, so the encoding is reversible, and equal objects always get the
//! same key (which the compare-and-set of the builder relies on).

/// The builder's applied position and pause acknowledgements (see the `value` module).
pub(super) const META: &str = "meta";
/// Where a backfill or reconciliation pass stands (see the `passes` module).
pub(super) const PASS: &str = "pass";
/// When the last completed reconciliation pass began (see the `passes` module).
pub(super) const RECONCILED: &str = "reconciled";
/// The prefix of object keys, before the kind.
const OBJECT_PREFIX: &str = "o.";
/// The subject filter, under the bucket's `$KV.<bucket>.`, of every object key.
pub(super) const OBJECTS_FILTER: &str = "o.>";

/// The key of the object (`kind`, `id`).
pub(super) fn object(kind: &str, id: &str) -> String {
    format!("{OBJECT_PREFIX}{}.{}", encode(kind), encode(id))
}

/// The key of the object (`kind`, `id`) in the bucket of objects a pass saw.
pub(super) fn seen(kind: &str, id: &str) -> String {
    format!("s.{}.{}", encode(kind), encode(id))
}

/// The pattern of every object key of `kind`.
pub(super) fn objects_of(kind: &str) -> String {
    format!("{OBJECT_PREFIX}{}.>", encode(kind))
}

/// The (kind, id) an object key names; `None` for any other key.
pub(super) fn parse_object(key: &str) -> Option<(String, String)> {
    let (kind, id) = key.strip_prefix(OBJECT_PREFIX)?.split_once('.')?;
    Some((decode(kind)?, decode(id)?))
}

/// One token: see the module doc.
fn encode(text: &str) -> String {
    if text.is_empty() {
        return "=".to_owned();
    }
    let mut token = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            token.push(char::from(byte));
        } else {
            token.push_str(&format!("={byte:02X}"));
        }
    }
    token
}

/// The text of one token; `None` when it is not one [`encode`] makes.
fn decode(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'=' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else if first.is_ascii_alphanumeric() || first == b'-' || first == b'_' {
            bytes.push(first);
            rest = tail;
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The characters a KV key may hold.
    fn is_valid_key(key: &str) -> bool {
        !key.is_empty()
            && !key.starts_with('.')
            && !key.ends_with('.')
            && !key.contains("..")
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=/.".contains(c))
    }

    #[test]
    fn plain_ids_stay_readable() {
        assert_eq!(object("user", "user_2abc-X"), "o.user.user_2abc-X");
        assert_eq!(
            object("organizationMembership", "orgmem_1"),
            "o.organizationMembership.orgmem_1"
        );
    }

    #[test]
    fn every_object_round_trips_through_a_valid_key() {
        let cases = [
            ("user", "user_1"),
            ("user", "with.dots.and/slashes"),
            ("user", "a=b =3D"),
            ("", ""),
            ("kind*>", "ünïcødé ✓"),
            ("user", "="),
        ];
        for (kind, id) in cases {
            let key = object(kind, id);
            assert!(is_valid_key(&key), "{key}");
            assert_eq!(
                parse_object(&key),
                Some((kind.to_owned(), id.to_owned())),
                "{key}"
            );
        }
    }

    #[test]
    fn distinct_objects_get_distinct_keys() {
        assert_ne!(object("a.b", "c"), object("a", "b.c"));
        assert_ne!(object("user", "="), object("user", ""));
        assert_ne!(object("user", "=2E"), object("user", "."));
    }

    #[test]
    fn other_keys_are_not_objects() {
        assert_eq!(parse_object(META), None);
        assert_eq!(parse_object("o.user"), None);
        assert_eq!(parse_object("o.user.bad*"), None);
        assert_eq!(parse_object("o.user.=4"), None);
    }
}
