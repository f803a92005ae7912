//! The log's SQLite schema and connection settings.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// Creates the tables if they are missing. Idempotent.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    sequence       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    received_at_ms INTEGER NOT NULL,
    codec_version  INTEGER NOT NULL,
    event          BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    kind          TEXT    NOT NULL,
    object_id     TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    deleted       INTEGER NOT NULL,
    sequence      INTEGER NOT NULL,
    event_type    TEXT    NOT NULL,
    codec_version INTEGER NOT NULL,
    event         BLOB    NOT NULL,
    PRIMARY KEY (kind, object_id)
);
CREATE TABLE IF NOT EXISTS sync_pass (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_seen (
    kind      TEXT NOT NULL,
    object_id TEXT NOT NULL,
    PRIMARY KEY (kind, object_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumers (
    name          TEXT    PRIMARY KEY,
    committed     INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
";

/// WAL pages at which the writer checkpoints inside its commit anyway (SQLite's default is 1,000):
/// about 40 MiB with 4 KiB pages. The checkpointer thread does the regular checkpoints; this only
/// bounds the WAL when they cannot finish under sustained load.
pub(super) const WRITER_FALLBACK_PAGES: u32 = 10_000;
/// Page cache of each reader connection, in KiB (negative = KiB in SQLite): readers stream forward,
/// so a small cache is enough and keeps memory flat with many subscribers.
const READER_CACHE_KIB: i64 = 512;

/// Opens the single write connection: WAL, fsync on every commit, schema in place, automatic
/// checkpoints only at [`WRITER_FALLBACK_PAGES`] (the checkpointer thread does the regular ones).
/// `max_pages` caps the database size (SQLITE_FULL past it), to test a full disk.
pub(super) fn open_writer(path: &Path, max_pages: Option<u32>) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_FALLBACK_PAGES)?;
    conn.execute_batch(SCHEMA)?;
    if let Some(pages) = max_pages {
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    }
    Ok(conn)
}

/// Opens the checkpointer's connection (after the writer's, which sets up WAL mode). It writes
/// nothing but checkpoints, which fsync the WAL and then the database file.
pub(super) fn open_checkpointer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Opens a read-only connection for a reader.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    Ok(conn)
}

/// The highest sequence ever assigned (0 for a new log). Read from `sqlite_sequence`, which
/// remembers it even if the newest rows were removed.
pub(super) fn head_sequence(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(seq.map_or(0, to_sequence))
}

/// Converts a value of the `sequence` column. SQLite assigns them from 1 upwards, so none is
/// negative; one that were (a damaged database) would read as 0, which no event has.
pub(super) fn to_sequence(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

/// `PRAGMA user_version` of a log whose `objects` table (the state) is complete.
const STATE_COMPLETE: i64 = 1;

/// Whether the state is known to be complete: a new log, or one migrated since.
pub(super) fn state_complete(conn: &Connection) -> rusqlite::Result<bool> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(version >= STATE_COMPLETE)
}

/// Records that the state is complete (inside the transaction that completed it).
pub(super) fn mark_state_complete(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "user_version", STATE_COMPLETE)
}

/// Makes the next sequence `head + 1` or more: raises `events` in `sqlite_sequence`, which
/// `AUTOINCREMENT` continues from (it never lowers it). Either statement alone is a complete
/// change (the row exists or it does not), so no transaction of its own is needed.
pub(super) fn raise_head(conn: &Connection, head: u64) -> rusqlite::Result<()> {
    let head = i64::try_from(head).unwrap_or(i64::MAX);
    conn.prepare_cached("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'events' AND seq < ?1")?
        .execute([head])?;
    conn.prepare_cached(
        "INSERT INTO sqlite_sequence (name, seq)
         SELECT 'events', ?1 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')",
    )?
    .execute([head])?;
    Ok(())
}

/// `PRAGMA application_id` of a log that has had a sequence watermark file ("CBwm"), so that a
/// missing file is told apart from a log older than watermarks.
const WATERMARKED: i64 = 0x4342_776d;

/// Whether this log has had a sequence watermark file.
pub(super) fn is_watermarked(conn: &Connection) -> rusqlite::Result<bool> {
    let id: i64 = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    Ok(id == WATERMARKED)
}

/// Records that this log has a sequence watermark file (a write only the first time).
pub(super) fn mark_watermarked(conn: &Connection) -> rusqlite::Result<()> {
    if !is_watermarked(conn)? {
        conn.pragma_update(None, "application_id", WATERMARKED)?;
    }
    Ok(())
}
