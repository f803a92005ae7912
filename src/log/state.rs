//! Current state: the latest event of every object, kept beside the events in the same
//! transaction as each append, under the version rule consumers use (see `Event` in the proto):
//! a higher `object_version` wins; a deletion also wins at an equal version; a deletion stays as a
//! tombstone, so a late update cannot bring the object back.
//!
//! Table `objects`, one row per (kind, object id), holding a copy of the winning event (its
//! sequence, type, codec version and encoded bytes), so retention can delete events without
//! touching the state: like a Kafka compacted topic, the state outlives the events it came from.
//! A snapshot reads it inside one read transaction, so it is consistent at the head of that
//! transaction. Logs written before the table existed are migrated on open: the state is rebuilt
//! from the events they still hold ([`super::Log::rebuild_state`]), and `PRAGMA user_version`
//! records that it is complete.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{NewRecord, StoredEvent, reader, schema};

/// Events read per step while rebuilding the state.
const REBUILD_BATCH: i64 = 1000;

/// The object an event is about, and its version after the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The resource kind: the event type before its first dot (`user`, `organizationMembership`).
    pub kind: String,
    /// Clerk's id of the object (`user_...`).
    pub id: String,
    /// `object_version` of the event: milliseconds, comparable between events of one object.
    pub version: u64,
    /// Whether the event deletes the object.
    pub deleted: bool,
}

// === impl ObjectRef ===

impl ObjectRef {
    /// The object of an event of `event_type` about `id` (`None` when it names no object).
    pub fn of_event(event_type: &str, id: &str, version: u64, deleted: bool) -> Option<Self> {
        if id.is_empty() {
            return None;
        }
        let kind = event_type.split('.').next().unwrap_or(event_type);
        Some(ObjectRef {
            kind: kind.to_owned(),
            id: id.to_owned(),
            version,
            deleted,
        })
    }

    /// Whether this version replaces `current` (version, deleted) under the version rule.
    pub fn supersedes(&self, current: Option<(u64, bool)>) -> bool {
        match current {
            None => true,
            Some((version, _)) => {
                self.version > version || (self.deleted && self.version >= version)
            }
        }
    }

    /// The version as SQLite stores it (object versions fit a signed 64-bit column).
    fn stored_version(&self) -> i64 {
        i64::try_from(self.version).unwrap_or(i64::MAX)
    }
}

/// Records the event stored at `sequence` as its object's latest, when it wins under the version
/// rule. Part of the append's transaction.
pub(super) fn apply(
    tx: &Transaction<'_>,
    record: &NewRecord,
    sequence: i64,
) -> rusqlite::Result<()> {
    let Some(object) = &record.object else {
        return Ok(());
    };
    upsert(
        tx,
        object,
        sequence,
        &record.event_type,
        record.codec_version,
        &record.event,
    )
}

fn upsert(
    conn: &Connection,
    object: &ObjectRef,
    sequence: i64,
    event_type: &str,
    codec_version: u32,
    event: &[u8],
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO objects
             (kind, object_id, version, deleted, sequence, event_type, codec_version, event)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (kind, object_id) DO UPDATE SET
             version = excluded.version, deleted = excluded.deleted,
             sequence = excluded.sequence, event_type = excluded.event_type,
             codec_version = excluded.codec_version, event = excluded.event
         WHERE excluded.version > objects.version
            OR (excluded.deleted AND excluded.version >= objects.version)",
    )?
    .execute(params![
        object.kind,
        object.id,
        object.stored_version(),
        object.deleted,
        sequence,
        event_type,
        codec_version,
        event
    ])?;
    Ok(())
}

/// The version and deletion flag the state holds for `object`, if any.
pub(super) fn current(
    conn: &Connection,
    object: &ObjectRef,
) -> rusqlite::Result<Option<(u64, bool, u64)>> {
    conn.prepare_cached(
        "SELECT version, deleted, sequence FROM objects WHERE kind = ?1 AND object_id = ?2",
    )?
    .query_row(params![object.kind, object.id], |row| {
        let version: i64 = row.get(0)?;
        let sequence: i64 = row.get(2)?;
        Ok((
            u64::try_from(version).unwrap_or(0),
            row.get(1)?,
            u64::try_from(sequence).unwrap_or(0),
        ))
    })
    .optional()
}

/// Marks the state complete when there is nothing to rebuild it from (no events, no objects).
pub(super) fn complete_if_empty(conn: &Connection) -> rusqlite::Result<()> {
    let any: Option<i64> = conn
        .query_row("SELECT 1 FROM events LIMIT 1", [], |row| row.get(0))
        .optional()?;
    if any.is_none() {
        schema::mark_state_complete(conn)?;
    }
    Ok(())
}

/// Rebuilds the state from every stored event, oldest first, in one transaction; `object_of`
/// tells which object each event is about (it decodes the record). Returns the number of objects.
pub(super) fn rebuild(
    tx: &Transaction<'_>,
    object_of: fn(&StoredEvent) -> Option<ObjectRef>,
) -> rusqlite::Result<u64> {
    tx.execute("DELETE FROM objects", [])?;
    let mut after = 0_i64;
    loop {
        let batch = reader::events_after(tx, after, REBUILD_BATCH, usize::MAX)?;
        let Some(last) = batch.last() else { break };
        after = i64::try_from(last.sequence).unwrap_or(i64::MAX);
        for stored in &batch {
            if let Some(object) = object_of(stored) {
                let sequence = i64::try_from(stored.sequence).unwrap_or(i64::MAX);
                upsert(
                    tx,
                    &object,
                    sequence,
                    &stored.event_type,
                    stored.codec_version,
                    &stored.event,
                )?;
            }
        }
    }
    schema::mark_state_complete(tx)?;
    let objects: i64 = tx.query_row("SELECT count(*) FROM objects", [], |row| row.get(0))?;
    Ok(u64::try_from(objects).unwrap_or(0))
}
