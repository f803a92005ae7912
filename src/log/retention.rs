//! Retention: deleting the oldest events beyond the configured caps on age and size.
//!
//! Caps are hard limits that protect the disk: once an event is past one, it is deleted even if a
//! consumer has not read it yet, and that consumer then gets OUT_OF_RANGE naming the first retained
//! sequence. Without caps the log keeps everything. Deletion runs in bounded steps on the writer
//! thread, each in the transaction of a normal batch, so it never stalls appends for long.

use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction};

use super::schema;

/// Most events deleted in one step.
const STEP_ROWS: i64 = 2000;

/// The retention caps; `None` = no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Delete events received longer ago than this.
    pub max_age: Option<Duration>,
    /// Delete the oldest events while the database uses more than this many bytes.
    pub max_bytes: Option<u64>,
}

// === impl Policy ===

impl Policy {
    /// Whether any cap is set.
    pub fn is_active(&self) -> bool {
        self.max_age.is_some() || self.max_bytes.is_some()
    }
}

/// What one retention step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// How many events this step deleted.
    pub deleted: u64,
    /// The lowest sequence left (head + 1 when the log is now empty).
    pub first_retained: u64,
    /// Whether another step is due right away.
    pub more: bool,
}

/// Deletes up to [`STEP_ROWS`] of the oldest events that are past a cap.
pub(super) fn step(tx: &Transaction<'_>, policy: &Policy, now_ms: i64) -> rusqlite::Result<Step> {
    let by_age = match policy.max_age {
        Some(age) => last_older_than(tx, now_ms.saturating_sub(millis(age)))?,
        None => None,
    };
    let by_size = match policy.max_bytes {
        Some(cap) if used_bytes(tx)? > cap => oldest_chunk_end(tx)?,
        _ => None,
    };
    let Some(through) = by_age.max(by_size) else {
        return Ok(Step {
            deleted: 0,
            first_retained: first_retained(tx)?,
            more: false,
        });
    };
    let deleted = tx.execute("DELETE FROM events WHERE sequence <= ?1", [through])?;
    Ok(Step {
        deleted: deleted as u64,
        first_retained: first_retained(tx)?,
        more: deleted as i64 >= STEP_ROWS,
    })
}

/// The highest sequence among the oldest [`STEP_ROWS`] events that was received before `cutoff_ms`.
fn last_older_than(tx: &Transaction<'_>, cutoff_ms: i64) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT max(sequence) FROM (SELECT sequence, received_at_ms FROM events ORDER BY sequence LIMIT ?1)
         WHERE received_at_ms < ?2",
        [STEP_ROWS, cutoff_ms],
        |row| row.get(0),
    )
}

/// The last sequence of the oldest chunk: a tenth of the log, at most [`STEP_ROWS`], at least one.
fn oldest_chunk_end(tx: &Transaction<'_>) -> rusqlite::Result<Option<i64>> {
    let count: i64 = tx.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?;
    let chunk = (count / 10).clamp(1, STEP_ROWS);
    tx.query_row(
        "SELECT max(sequence) FROM (SELECT sequence FROM events ORDER BY sequence LIMIT ?1)",
        [chunk],
        |row| row.get(0),
    )
}

/// Bytes of the database in use: pages not on the free list.
fn used_bytes(tx: &Transaction<'_>) -> rusqlite::Result<u64> {
    let pragma =
        |name: &str| tx.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0));
    let used_pages = pragma("page_count")? - pragma("freelist_count")?;
    Ok(u64::try_from(used_pages.saturating_mul(pragma("page_size")?)).unwrap_or(0))
}

/// The lowest stored sequence, or head + 1 when no event is stored.
pub(super) fn first_retained(tx: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let first: Option<i64> = tx
        .query_row("SELECT min(sequence) FROM events", [], |row| row.get(0))
        .optional()?
        .flatten();
    match first {
        Some(seq) => Ok(schema::to_sequence(seq)),
        None => Ok(schema::head_sequence(tx)? + 1),
    }
}

/// `d` in milliseconds, saturating at `i64::MAX` (an age cap longer than any history).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
