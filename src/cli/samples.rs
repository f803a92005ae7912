//! The event bodies `clerk-bridge trigger` sends: built-in samples (Clerk's published examples, one
//! per event type, compiled in from `samples/`), fresh ids and times for each call, and `--set`
//! edits of JSON paths.
//!
//! Refreshing keeps a payload consistent: `data.id` gets a new random part, and so does every other
//! id in `data` that shared its random part (a user's `idn_...` email ids, the membership's
//! organization in Clerk's examples), so references inside the payload still match. The envelope's
//! `instance_id` is kept: it names your Clerk instance, not the object.

use serde_json::Value;

/// `(event type, body)` of every built-in sample.
macro_rules! samples {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../samples/", $name, ".json")))),*]
    };
}

/// Every built-in sample, sorted by event type.
pub const SAMPLES: &[(&str, &str)] = samples![
    "email.created",
    "organization.created",
    "organization.deleted",
    "organization.updated",
    "organizationDomain.created",
    "organizationDomain.deleted",
    "organizationDomain.updated",
    "organizationInvitation.accepted",
    "organizationInvitation.created",
    "organizationInvitation.revoked",
    "organizationMembership.created",
    "organizationMembership.deleted",
    "organizationMembership.updated",
    "paymentAttempt.created",
    "paymentAttempt.updated",
    "permission.created",
    "permission.deleted",
    "permission.updated",
    "role.created",
    "role.deleted",
    "role.updated",
    "session.created",
    "session.ended",
    "session.pending",
    "session.removed",
    "session.revoked",
    "sms.created",
    "subscription.active",
    "subscription.created",
    "subscription.pastDue",
    "subscription.updated",
    "subscriptionItem.abandoned",
    "subscriptionItem.active",
    "subscriptionItem.canceled",
    "subscriptionItem.created",
    "subscriptionItem.ended",
    "subscriptionItem.freeTrialEnding",
    "subscriptionItem.incomplete",
    "subscriptionItem.pastDue",
    "subscriptionItem.upcoming",
    "subscriptionItem.updated",
    "user.created",
    "user.deleted",
    "user.updated",
    "waitlistEntry.created",
    "waitlistEntry.updated",
];

/// The built-in sample body of `event_type`.
pub fn sample(event_type: &str) -> Option<&'static str> {
    SAMPLES
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, body)| *body)
}

/// Length of the random part of the ids made here (Clerk's ids have 27 characters after the prefix).
const RANDOM_PART_LEN: usize = 27;
/// The prefix of ids that name the Clerk instance: never refreshed.
const INSTANCE_PREFIX: &str = "ins";

/// Makes random-looking id parts (not cryptographic: they only need to be unique, and a repeated
/// message id would be stored once and answered as a duplicate).
#[derive(Debug)]
pub struct Ids {
    /// Seeded once; every character of every id comes from it, so a seed fixes them all.
    rng: fastrand::Rng,
}

// === impl Ids ===

impl Ids {
    /// A generator seeded afresh by `fastrand` (from the clock and the thread), so two calls, two
    /// processes and two runs differ.
    pub fn new() -> Self {
        Ids {
            rng: fastrand::Rng::new(),
        }
    }

    /// A generator that repeats: for tests.
    pub fn from_seed(seed: u64) -> Self {
        Ids {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// A new random part: 27 characters of `[0-9A-Za-z]`, like Clerk's.
    pub fn random_part(&mut self) -> String {
        (0..RANDOM_PART_LEN)
            .map(|_| self.rng.alphanumeric())
            .collect()
    }

    /// A new Svix message id, `msg_<random part>`.
    pub fn message_id(&mut self) -> String {
        format!("msg_{}", self.random_part())
    }
}

impl Default for Ids {
    fn default() -> Self {
        Self::new()
    }
}

/// Gives an event fresh ids and times, as if it happened now to a new object: the envelope
/// `timestamp` and `data.created_at` / `data.updated_at` (where present) become `now_ms`, and
/// `data.id` with every id in `data` sharing its random part gets a new random part.
pub fn refresh(event: &mut Value, now_ms: i64, ids: &mut Ids) {
    let Some(envelope) = event.as_object_mut() else {
        return;
    };
    envelope.insert("timestamp".to_owned(), now_ms.into());
    let Some(data) = envelope.get_mut("data").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["created_at", "updated_at"] {
        if let Some(at) = data.get_mut(key) {
            *at = now_ms.into();
        }
    }
    let Some(old) = data
        .get("id")
        .and_then(Value::as_str)
        .and_then(split_id)
        .map(|(_, random)| random.to_owned())
    else {
        return;
    };
    let new = ids.random_part();
    for value in data.values_mut() {
        replace_random_part(value, &old, &new);
    }
}

/// `prefix_random` → `(prefix, random)`, split at the last `_`; `None` for strings that are not
/// shaped like a Clerk id (lowercase prefix, alphanumeric random part).
fn split_id(id: &str) -> Option<(&str, &str)> {
    let (prefix, random) = id.rsplit_once('_')?;
    let prefix_ok = prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let random_ok = !random.is_empty() && random.chars().all(|c| c.is_ascii_alphanumeric());
    (prefix_ok && random_ok).then_some((prefix, random))
}

/// Replaces the random part `old` by `new` in every id inside `value` (instance ids excepted).
fn replace_random_part(value: &mut Value, old: &str, new: &str) {
    match value {
        Value::String(s) => {
            if let Some((prefix, random)) = split_id(s)
                && random == old
                && prefix != INSTANCE_PREFIX
            {
                *s = format!("{prefix}_{new}");
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| replace_random_part(v, old, new)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|v| replace_random_part(v, old, new)),
        _ => {}
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A field of an object.
    Key(String),
    /// An element of an array (or a field named by digits, when the value is an object).
    Index(usize),
}

/// A `--set PATH=VALUE` edit.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// The path as typed, for messages.
    path: String,
    /// The path split at dots and brackets: what [`Edit::apply`] walks.
    steps: Vec<Step>,
    /// What [`Edit::apply`] puts there: the text as JSON when it parses, else as a string.
    value: Value,
}

/// Why a `--set` edit is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    /// No `=` between the path and the value.
    #[error("invalid --set {0:?}: expected PATH=VALUE, e.g. data.first_name=Ada")]
    NoEquals(String),
    /// An empty or malformed path.
    #[error(
        "invalid --set {0:?}: the path must be field names and indexes, e.g. data.email_addresses.0.email_address"
    )]
    BadPath(String),
    /// The path runs into a value that has no fields.
    #[error("cannot --set {path}: {at} is {kind}, not an object or array")]
    NotAContainer {
        /// The path as typed.
        path: String,
        /// The part of the path that exists.
        at: String,
        /// What that part is (`a string`, `null`...), for the message.
        kind: &'static str,
    },
    /// A field name where the path reaches an array.
    #[error("cannot --set {path}: {at} is an array: name an element by its index, e.g. {at}.0")]
    NeedsIndex {
        /// The path as typed.
        path: String,
        /// The array's path.
        at: String,
    },
    /// An index past the end of an array (one past the end appends).
    #[error("cannot --set {path}: {at} has {len} element(s)")]
    OutOfBounds {
        /// The path as typed.
        path: String,
        /// The array's path.
        at: String,
        /// Its length, for the message (an index equal to it appends).
        len: usize,
    },
}

// === impl Edit ===

impl Edit {
    /// Parses `PATH=VALUE`. The path is dot-separated (`data.first_name`); array elements are
    /// `.0` or `[0]`. The value is JSON when it parses as JSON (`42`, `true`, `null`, `{"a":1}`,
    /// `"007"`), otherwise the text as a string.
    ///
    /// # Errors
    /// [`EditError`] when there is no `=` or the path is malformed.
    pub fn parse(text: &str) -> Result<Self, EditError> {
        let (path, raw) = text
            .split_once('=')
            .ok_or_else(|| EditError::NoEquals(text.to_owned()))?;
        let steps = parse_path(path).ok_or_else(|| EditError::BadPath(text.to_owned()))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        Ok(Edit {
            path: path.to_owned(),
            steps,
            value,
        })
    }

    /// Sets the value, creating missing object fields (and replacing `null`s on the way by objects).
    ///
    /// # Errors
    /// [`EditError`] when the path runs into a scalar or past the end of an array.
    pub fn apply(&self, root: &mut Value) -> Result<(), EditError> {
        let mut at = root;
        for (depth, step) in self.steps.iter().enumerate() {
            if at.is_null() {
                *at = Value::Object(serde_json::Map::new());
            }
            let here = || self.prefix(depth);
            at = match (at, step) {
                (Value::Object(fields), Step::Key(key)) => {
                    fields.entry(key.clone()).or_insert(Value::Null)
                }
                (Value::Object(fields), Step::Index(i)) => {
                    fields.entry(i.to_string()).or_insert(Value::Null)
                }
                (Value::Array(items), Step::Index(i)) => {
                    let len = items.len();
                    if *i == len {
                        items.push(Value::Null);
                    }
                    items.get_mut(*i).ok_or_else(|| EditError::OutOfBounds {
                        path: self.path.clone(),
                        at: here(),
                        len,
                    })?
                }
                (Value::Array(_), Step::Key(_)) => {
                    return Err(EditError::NeedsIndex {
                        path: self.path.clone(),
                        at: here(),
                    });
                }
                (other, _) => {
                    return Err(EditError::NotAContainer {
                        path: self.path.clone(),
                        at: here(),
                        kind: kind(other),
                    });
                }
            };
        }
        *at = self.value.clone();
        Ok(())
    }

    /// The first `depth` steps, as a path (`the event` for none).
    fn prefix(&self, depth: usize) -> String {
        if depth == 0 {
            return "the event".to_owned();
        }
        self.steps[..depth]
            .iter()
            .map(|step| match step {
                Step::Key(key) => key.clone(),
                Step::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// `a.b.0.c`, `a.b[0].c` → steps; `None` when a step is empty.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let normalized = path.replace('[', ".").replace(']', "");
    normalized
        .split('.')
        .map(|part| match part {
            "" => None,
            digits if digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().ok().map(Step::Index)
            }
            key => Some(Step::Key(key.to_owned())),
        })
        .collect()
}

/// What a JSON value is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_sample_is_an_event_of_its_type() {
        let mut names: Vec<&str> = SAMPLES.iter().map(|(name, _)| *name).collect();
        for (name, body) in SAMPLES {
            let event: Value = serde_json::from_str(body).unwrap();
            assert_eq!(event["type"], *name, "{name}");
            assert!(event["data"]["id"].is_string(), "{name}");
        }
        let listed = names.clone();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names, listed, "SAMPLES is sorted and has no duplicates");
        assert!(sample("user.created").is_some());
        assert!(sample("user.exploded").is_none());
    }

    #[test]
    fn refresh_gives_new_ids_and_times_and_keeps_references() {
        let mut event: Value = serde_json::from_str(sample("user.created").unwrap()).unwrap();
        let before = event.clone();
        refresh(&mut event, 1_800_000_000_123, &mut Ids::from_seed(7));
        let data = &event["data"];
        assert_eq!(event["timestamp"], 1_800_000_000_123_i64);
        assert_eq!(data["created_at"], 1_800_000_000_123_i64);
        assert_eq!(data["updated_at"], 1_800_000_000_123_i64);
        let id = data["id"].as_str().unwrap();
        assert!(
            id.starts_with("user_") && id.len() == 5 + RANDOM_PART_LEN,
            "{id}"
        );
        assert_ne!(data["id"], before["data"]["id"]);
        // The primary email id still names the email address, under the new random part.
        let email_id = data["email_addresses"][0]["id"].as_str().unwrap();
        assert_eq!(data["primary_email_address_id"], email_id);
        assert_eq!(&email_id[4..], &id[5..]);
        // What is not an id of the object stays.
        assert_eq!(event["instance_id"], before["instance_id"]);
        assert_eq!(data["first_name"], before["data"]["first_name"]);
        assert_eq!(data["last_sign_in_at"], before["data"]["last_sign_in_at"]);
    }

    #[test]
    fn refresh_leaves_other_random_parts_and_the_instance_alone() {
        let mut event = json!({
            "type": "organizationMembership.created",
            "timestamp": 1,
            "data": {
                "id": "orgmem_AAA",
                "organization": {"id": "org_AAA", "instance": "ins_AAA"},
                "public_user_data": {"user_id": "user_BBB"},
                "note": "not_AAA but text",
                "count": 3
            }
        });
        refresh(&mut event, 5, &mut Ids::from_seed(1));
        let data = &event["data"];
        let new = &data["id"].as_str().unwrap()["orgmem_".len()..];
        assert_eq!(data["organization"]["id"], format!("org_{new}"));
        assert_eq!(data["organization"]["instance"], "ins_AAA");
        assert_eq!(data["public_user_data"]["user_id"], "user_BBB");
        assert_eq!(data["note"], "not_AAA but text");
        assert!(data.get("updated_at").is_none(), "absent times stay absent");
    }

    #[test]
    fn ids_differ_between_calls_and_generators() {
        let mut ids = Ids::new();
        let a = ids.random_part();
        let b = ids.random_part();
        assert_ne!(a, b);
        assert_ne!(Ids::new().message_id(), Ids::new().message_id());
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()) && a.len() == RANDOM_PART_LEN);
        assert!(ids.message_id().starts_with("msg_"));
        let seeded = |seed| Ids::from_seed(seed).message_id();
        assert_eq!(seeded(7), seeded(7), "a seed repeats");
        assert_ne!(seeded(7), seeded(8));
    }

    #[test]
    fn set_values_are_json_when_they_parse_and_strings_otherwise() {
        let mut event = json!({"data": {"first_name": "John", "tags": [1, 2]}});
        for edit in [
            "data.first_name=Ada",
            "data.age=36",
            "data.banned=true",
            "data.username=null",
            "data.zip=\"01234\"",
            "data.public_metadata={\"plan\":\"pro\"}",
            "data.note=a=b",
            "data.tags[1]=20",
            "data.tags.2=30",
            "data.new.nested.field=x",
        ] {
            Edit::parse(edit).unwrap().apply(&mut event).unwrap();
        }
        assert_eq!(
            event,
            json!({"data": {
                "first_name": "Ada", "age": 36, "banned": true, "username": null, "zip": "01234",
                "public_metadata": {"plan": "pro"}, "note": "a=b", "tags": [1, 20, 30],
                "new": {"nested": {"field": "x"}}
            }})
        );
    }

    #[test]
    fn set_replaces_null_on_the_way() {
        let mut event = json!({"data": {"private_metadata": null}});
        Edit::parse("data.private_metadata.tier=gold")
            .unwrap()
            .apply(&mut event)
            .unwrap();
        assert_eq!(event["data"]["private_metadata"], json!({"tier": "gold"}));
    }

    #[test]
    fn bad_edits_say_why() {
        assert!(matches!(
            Edit::parse("data.first_name"),
            Err(EditError::NoEquals(_))
        ));
        for path in ["=x", "data..id=x", ".data=x", "data.=x"] {
            assert!(
                matches!(Edit::parse(path), Err(EditError::BadPath(_))),
                "{path}"
            );
        }
        let mut event = json!({"data": {"first_name": "John", "tags": []}});
        let scalar = Edit::parse("data.first_name.x=1")
            .unwrap()
            .apply(&mut event)
            .unwrap_err();
        assert_eq!(
            scalar.to_string(),
            "cannot --set data.first_name.x: data.first_name is a string, not an object or array"
        );
        let past_end = Edit::parse("data.tags.3=1")
            .unwrap()
            .apply(&mut event)
            .unwrap_err();
        assert!(matches!(past_end, EditError::OutOfBounds { len: 0, .. }));
        let key_on_array = Edit::parse("data.tags.name=1")
            .unwrap()
            .apply(&mut event)
            .unwrap_err();
        assert!(matches!(key_on_array, EditError::NeedsIndex { .. }));
    }
}
