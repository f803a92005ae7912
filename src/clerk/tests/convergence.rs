//! The consumer rule converges: for random histories of a few users (created, updated, maybe
//! deleted), delivered in any order and with duplicates, a table that applies each decoded event by
//! the rule documented on `Event` ends in the same state as one that applied the events once, in
//! the order they happened.
//!
//! The rule: apply an event if its `object_version` is greater than the stored version, a delete
//! also when equal; on a delete keep a tombstone with the version.

use super::*;
use crate::proto::{User, UserEvent, user_event::Change};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One stored row of the consumer's table.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    /// The `object_version` of the event that wrote the row.
    version: u64,
    /// The user; `None` is a tombstone.
    user: Option<User>,
}

/// The consumer's table, keyed by `object_id`.
type Table = BTreeMap<String, Row>;

/// The user a user event leaves behind: `Some` after a creation or update, `None` after a deletion.
fn state_after(event: &Event) -> Option<User> {
    match &event.payload {
        Some(Payload::User(UserEvent {
            change: Some(Change::Created(user) | Change::Updated(user)),
            ..
        })) => Some(user.clone()),
        Some(Payload::User(UserEvent {
            change: Some(Change::Deleted(_)),
            ..
        })) => None,
        other => panic!("not a user event: {other:?}"),
    }
}

/// Applies `event` to `table` by the consumer rule.
fn apply_by_rule(table: &mut Table, event: &Event) {
    let newer = table.get(&event.object_id).is_none_or(|row| {
        event.object_version > row.version || (event.deleted && event.object_version == row.version)
    });
    if newer {
        let row = Row {
            version: event.object_version,
            user: state_after(event),
        };
        table.insert(event.object_id.clone(), row);
    }
}

/// The state after applying `events` once each, in order, without looking at versions.
fn in_true_order(events: &[Event]) -> BTreeMap<String, Option<User>> {
    events
        .iter()
        .map(|event| (event.object_id.clone(), state_after(event)))
        .collect()
}

/// The objects of `table`, without versions.
fn states(table: &Table) -> BTreeMap<String, Option<User>> {
    table
        .iter()
        .map(|(id, row)| (id.clone(), row.user.clone()))
        .collect()
}

/// What happens to one user: created at `created_at` (ms), updated after each gap (ms, at least
/// 1 so `updated_at` grows), and maybe deleted some milliseconds (0 or more) after the last change.
#[derive(Debug, Clone)]
struct History {
    /// When the user was created, in ms.
    created_at: i64,
    /// Milliseconds between consecutive changes.
    gaps: Vec<i64>,
    /// Milliseconds from the last change to the deletion, if the user is deleted.
    deleted_after: Option<i64>,
    /// Whether envelopes carry seconds (as Clerk's spec examples) rather than milliseconds.
    envelope_in_seconds: bool,
    /// Whether the deletion payload also carries a stale `updated_at` (as memberships do).
    stale_updated_at: bool,
}

/// A random [`History`]. Gaps are short so that changes often share a second.
fn history() -> impl Strategy<Value = History> {
    (
        1_700_000_000_000_i64..1_700_000_100_000,
        prop::collection::vec(1_i64..2_500, 0..5),
        prop::option::of(0_i64..2_500),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(created_at, gaps, deleted_after, seconds, stale)| History {
                created_at,
                gaps,
                deleted_after,
                envelope_in_seconds: seconds,
                stale_updated_at: stale,
            },
        )
}

/// The envelope timestamp of something that happened at `millis`, as `history` sends it.
fn envelope_time(history: &History, millis: i64) -> i64 {
    if history.envelope_in_seconds {
        millis / 1000
    } else {
        millis
    }
}

/// The webhook bodies of the user `id`'s history, in the order the changes happened.
fn bodies(id: &str, history: &History) -> Vec<String> {
    let mut at = history.created_at;
    let mut bodies = vec![user_body("user.created", id, history, at, 0)];
    for (n, gap) in history.gaps.iter().enumerate() {
        at += gap;
        bodies.push(user_body("user.updated", id, history, at, n + 1));
    }
    if let Some(after) = history.deleted_after {
        let mut data = json!({"object": "user", "id": id, "deleted": true});
        if history.stale_updated_at {
            data["updated_at"] = Value::from(at);
        }
        let timestamp = envelope_time(history, at + after);
        let body = json!({"type": "user.deleted", "timestamp": timestamp, "data": data});
        bodies.push(body.to_string());
    }
    bodies
}

/// A `user.created` or `user.updated` body for change number `n`, made at `at` (ms).
fn user_body(event_type: &str, id: &str, history: &History, at: i64, n: usize) -> String {
    let data = json!({
        "object": "user", "id": id, "first_name": format!("v{n}"),
        "created_at": history.created_at, "updated_at": at,
        "public_metadata": {"change": n}, "email_addresses": []
    });
    let timestamp = envelope_time(history, at);
    json!({"type": event_type, "timestamp": timestamp, "data": data}).to_string()
}

/// Histories of up to four users, the events in true order, and a delivery order: every event at
/// least once, some several times, shuffled.
fn scenario() -> impl Strategy<Value = (Vec<History>, Vec<Event>, Vec<usize>)> {
    prop::collection::vec(history(), 1..=4).prop_flat_map(|histories| {
        let events: Vec<Event> = histories
            .iter()
            .enumerate()
            .flat_map(|(i, history)| bodies(&format!("user_{i}"), history))
            .map(|body| decode_event(&body).expect("generated bodies decode"))
            .collect();
        let count = events.len();
        let duplicates = prop::collection::vec(0..count, 0..=count);
        (Just(histories), Just(events), duplicates).prop_flat_map(|(h, events, duplicates)| {
            let delivery: Vec<usize> = (0..events.len()).chain(duplicates).collect();
            (Just(h), Just(events), Just(delivery).prop_shuffle())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_delivery_order_converges((_histories, events, delivery) in scenario()) {
        let mut table = Table::new();
        for &i in &delivery {
            apply_by_rule(&mut table, &events[i]);
        }
        prop_assert_eq!(states(&table), in_true_order(&events));

        let mut in_order = Table::new();
        for event in &events {
            apply_by_rule(&mut in_order, event);
        }
        prop_assert_eq!(&table, &in_order, "versions converge too");
    }
}

#[test]
fn a_late_update_does_not_resurrect_a_deleted_user() {
    let history = History {
        created_at: 1_700_000_000_400,
        gaps: vec![300],
        deleted_after: Some(0),
        envelope_in_seconds: true,
        stale_updated_at: true,
    };
    let events: Vec<Event> = bodies("user_1", &history)
        .iter()
        .map(|body| decode_event(body).unwrap())
        .collect();
    // The update at ...700 ms and the deletion in the same second (envelope ...000 s): the
    // deletion's version is the end of that second, so the late update loses.
    assert_eq!(events[2].object_version, 1_700_000_000_999);
    let mut table = Table::new();
    for i in [2, 0, 1, 1] {
        apply_by_rule(&mut table, &events[i]);
    }
    let row = &table["user_1"];
    assert_eq!((row.version, row.user.as_ref()), (1_700_000_000_999, None));
}
