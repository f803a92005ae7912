//! Reading the log forward from a sequence, on a connection of the reader's own.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::schema;

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
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
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
        rows.collect()
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
