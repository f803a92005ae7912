//! Reading the log forward from a sequence, on a connection of the reader's own.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::{passes, schema};

/// An event as read back from the log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its position in the log.
    pub sequence: u64,
    /// Clerk's event type.
    pub event_type: String,
    /// Version of the encoding of `event`.
    pub codec_version: u32,
    /// The encoded event, as appended.
    pub event: Bytes,
}

/// A named consumer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsumer {
    /// The name clients give to subscribe as this consumer; unique in the log.
    pub name: String,
    /// The last sequence it has processed; its stream resumes after it.
    pub committed: u64,
    /// When it was created, in unix milliseconds.
    pub created_at_ms: i64,
    /// When its position last changed, in unix milliseconds.
    pub updated_at_ms: i64,
}

/// An object's latest event, as a snapshot reads it from the state.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The resource kind.
    pub kind: String,
    /// Clerk's id of the object.
    pub id: String,
    /// Whether the latest event deleted it (a tombstone).
    pub deleted: bool,
    /// The latest event itself, with the sequence it was stored at.
    pub event: StoredEvent,
}

/// Where a snapshot read stopped: the last (kind, id) returned, in key order.
pub type ObjectCursor = (String, String);

/// Up to `limit` events with a sequence greater than `after`, in sequence order, stopping after the
/// event that brings their encoded size to `max_bytes` (so at least one).
pub(super) fn events_after(
    conn: &Connection,
    after: i64,
    limit: i64,
    max_bytes: usize,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT sequence, event_type, codec_version, event FROM events
         WHERE sequence > ?1 ORDER BY sequence LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], |row| {
        Ok(StoredEvent {
            sequence: schema::to_sequence(row.get(0)?),
            event_type: row.get(1)?,
            codec_version: row.get(2)?,
            event: Bytes::from(row.get::<_, Vec<u8>>(3)?),
        })
    })?;
    let mut events = Vec::new();
    let mut bytes = 0;
    for event in rows {
        let event = event?;
        bytes += event.event.len();
        events.push(event);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(events)
}

/// A read-only connection to the log. Blocking: use it from `spawn_blocking`.
#[derive(Debug)]
pub struct LogReader {
    /// Its own connection, so readers never contend with each other or the writer.
    conn: Connection,
}

// === impl LogReader ===

impl LogReader {
    pub(super) fn open(path: &Path) -> rusqlite::Result<Self> {
        Ok(LogReader {
            conn: schema::open_reader(path)?,
        })
    }

    /// Up to `limit` events with a sequence greater than `after`, in sequence order.
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn read_after(&self, after: u64, limit: usize) -> rusqlite::Result<Vec<StoredEvent>> {
        self.read_after_within(after, limit, usize::MAX)
    }

    /// As [`LogReader::read_after`], stopping after the event that brings the batch to `max_bytes`
    /// of encoded events (at least one event): what a caller holds in memory stays bounded however
    /// large the events are.
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn read_after_within(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> rusqlite::Result<Vec<StoredEvent>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        events_after(&self.conn, after, limit, max_bytes)
    }

    /// Frees the connection's page cache: for a reader kept open while its stream may wait a long
    /// time for a slow client.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn release_memory(&self) -> rusqlite::Result<()> {
        self.conn.release_memory()
    }

    /// Starts a snapshot: a read transaction, so every read until [`LogReader::end_snapshot`] sees
    /// the log as it is now. Returns the head the snapshot is consistent at.
    ///
    /// # Errors
    /// When SQLite fails to start the transaction or read.
    pub fn begin_snapshot(&mut self) -> rusqlite::Result<u64> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        schema::head_sequence(&self.conn)
    }

    /// Up to `limit` objects of the state after `after`, in key order (see the `state` module).
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn objects_after(
        &self,
        after: Option<&ObjectCursor>,
        limit: usize,
        include_deleted: bool,
    ) -> rusqlite::Result<Vec<StoredObject>> {
        self.objects_after_within(after, limit, include_deleted, usize::MAX)
    }

    /// As [`LogReader::objects_after`], stopping after the object whose event brings the batch to
    /// `max_bytes` (at least one object).
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn objects_after_within(
        &self,
        after: Option<&ObjectCursor>,
        limit: usize,
        include_deleted: bool,
        max_bytes: usize,
    ) -> rusqlite::Result<Vec<StoredObject>> {
        objects_after(&self.conn, after, limit, include_deleted, max_bytes)
    }

    /// Ends a snapshot's read transaction, so the WAL can be checkpointed past it again.
    ///
    /// # Errors
    /// When SQLite fails to end the transaction.
    pub fn end_snapshot(&mut self) -> rusqlite::Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    /// The saved state of a backfill or reconciliation pass that has not ended (see the `passes`
    /// module).
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn saved_pass(&self) -> rusqlite::Result<Option<String>> {
        passes::saved(&self.conn)
    }

    /// Up to `limit` live objects of `kind` (ids after `after_id`, in id order) whose latest event
    /// is at most `through` and that the current pass has not seen in Clerk: what reconciliation
    /// suspects Clerk no longer has.
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn unseen_live_objects(
        &self,
        kind: &str,
        through: u64,
        after_id: &str,
        limit: usize,
    ) -> rusqlite::Result<Vec<StoredObject>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects o
             WHERE kind = ?1 AND NOT deleted AND sequence <= ?2 AND object_id > ?3
               AND NOT EXISTS (SELECT 1 FROM sync_seen s
                               WHERE s.kind = o.kind AND s.object_id = o.object_id)
             ORDER BY object_id LIMIT ?4"
        ))?;
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![kind, through, after_id, limit], stored_object)?;
        rows.collect()
    }

    /// How many objects of `kind` the state holds as live, and how many of those the current pass
    /// has not seen with their latest event at most `through`.
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn live_and_unseen(&self, kind: &str, through: u64) -> rusqlite::Result<(u64, u64)> {
        let through = i64::try_from(through).unwrap_or(i64::MAX);
        let (live, unseen): (i64, i64) = self.conn.query_row(
            "SELECT count(*),
                    count(*) FILTER (WHERE sequence <= ?2 AND NOT EXISTS (
                        SELECT 1 FROM sync_seen s
                        WHERE s.kind = o.kind AND s.object_id = o.object_id))
             FROM objects o WHERE kind = ?1 AND NOT deleted",
            params![kind, through],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok((
            u64::try_from(live).unwrap_or(0),
            u64::try_from(unseen).unwrap_or(0),
        ))
    }

    /// Whether the state is complete (see the `state` module); false only for a log from before the state
    /// existed that has not been migrated yet.
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn state_complete(&self) -> rusqlite::Result<bool> {
        schema::state_complete(&self.conn)
    }

    /// Every stored consumer, by name.
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn consumers(&self) -> rusqlite::Result<Vec<StoredConsumer>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, committed, created_at_ms, updated_at_ms FROM consumers ORDER BY name",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredConsumer {
                name: row.get(0)?,
                committed: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                created_at_ms: row.get(2)?,
                updated_at_ms: row.get(3)?,
            })
        })?;
        rows.collect()
    }
}

/// The columns [`stored_object`] reads.
const OBJECT_COLUMNS: &str = "kind, object_id, deleted, sequence, event_type, codec_version, event";

/// Up to `limit` objects after `after` in (kind, id) order, stopping after the one that brings
/// their events to `max_bytes`; tombstones only with `include_deleted`.
fn objects_after(
    conn: &Connection,
    after: Option<&ObjectCursor>,
    limit: usize,
    include_deleted: bool,
    max_bytes: usize,
) -> rusqlite::Result<Vec<StoredObject>> {
    let (kind, id) = after.map_or(("", ""), |(k, i)| (k.as_str(), i.as_str()));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects
         WHERE (kind, object_id) > (?1, ?2) AND (?3 OR NOT deleted)
         ORDER BY kind, object_id
         LIMIT ?4"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![kind, id, include_deleted, limit], stored_object)?;
    let mut objects = Vec::new();
    let mut bytes = 0;
    for object in rows {
        let object = object?;
        bytes += object.event.event.len();
        objects.push(object);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(objects)
}

/// An object row, read as [`OBJECT_COLUMNS`] lists them.
fn stored_object(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredObject> {
    Ok(StoredObject {
        kind: row.get(0)?,
        id: row.get(1)?,
        deleted: row.get(2)?,
        event: StoredEvent {
            sequence: schema::to_sequence(row.get(3)?),
            event_type: row.get(4)?,
            codec_version: row.get(5)?,
            event: Bytes::from(row.get::<_, Vec<u8>>(6)?),
        },
    })
}
