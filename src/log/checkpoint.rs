//! The checkpointer thread: copies the WAL back into the database file on a connection of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past its threshold, so
//! that one batch waits for the copy and a database fsync on top of its own: the slowest webhooks
//! and deliveries were those batches. Here the writer only pokes this thread after a commit; it
//! runs a `PASSIVE` checkpoint (which never blocks the writer or readers) at most every
//! [`MIN_INTERVAL`]. The writer keeps an automatic checkpoint at
//! [`WRITER_FALLBACK_PAGES`](schema::WRITER_FALLBACK_PAGES) as a bound on the WAL: under sustained
//! load a background checkpoint rarely finds the WAL fully copied (so SQLite cannot start it over),
//! and the writer's own checkpoint, seldom and mostly already done, lets it.

use std::{path::Path, thread::JoinHandle, time::Duration};

use rusqlite::Connection;

use super::{
    paced::{self, Poke},
    schema,
};

/// Least time between two background checkpoints: one database fsync covers every commit of the
/// interval.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Starts the checkpointer on its own connection to the database at `path`; poke it after each
/// commit, drop the poke to stop it.
///
/// # Errors
/// When the connection cannot be opened or the thread cannot be started.
pub(super) fn spawn(path: &Path) -> Result<(Poke, JoinHandle<()>), super::OpenError> {
    let conn = schema::open_checkpointer(path)?;
    paced::spawn("log-checkpoint", MIN_INTERVAL, move || {
        checkpoint_and_trace(&conn);
    })
    .map_err(super::OpenError::Thread)
}

/// Runs [`checkpoint`] and traces what it did.
fn checkpoint_and_trace(conn: &Connection) {
    match checkpoint(conn) {
        Ok(Progress::Busy) => tracing::debug!("Checkpoint skipped: another one is running"),
        Ok(Progress::Copied { wal, copied }) => {
            tracing::trace!(wal, copied, "Checkpoint done");
        }
        Err(error) => tracing::warn!(%error, "Checkpoint failed; will retry"),
    }
}

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Another checkpoint (the writer's fallback) held the lock.
    Busy,
    /// Of `wal` frames in the WAL, `copied` are now in the database file.
    Copied {
        /// Frames in the WAL.
        wal: i64,
        /// Frames copied back, by this or an earlier checkpoint.
        copied: i64,
    },
}

/// One `PASSIVE` checkpoint: copies what it can without waiting for any lock.
fn checkpoint(conn: &Connection) -> rusqlite::Result<Progress> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let busy: i64 = row.get(0)?;
        Ok(if busy != 0 {
            Progress::Busy
        } else {
            Progress::Copied {
                wal: row.get(1)?,
                copied: row.get(2)?,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_checkpoint_copies_every_committed_frame_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = schema::open_writer(&path, None).unwrap();
        writer
            .execute_batch("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (zeroblob(100000));")
            .unwrap();
        let checkpointer = schema::open_checkpointer(&path).unwrap();
        let Progress::Copied { wal, copied } = checkpoint(&checkpointer).unwrap() else {
            panic!("no other checkpoint runs");
        };
        assert!(wal > 20, "the insert wrote frames: {wal}");
        assert_eq!(copied, wal);
    }

    #[test]
    fn the_checkpointer_stops_when_its_poke_is_dropped_without_waiting_out_its_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = schema::open_writer(&path, None).unwrap();
        // Nothing left to copy, so the checkpointer's checkpoints have no fsync to wait for.
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let (poke, handle) = spawn(&path).unwrap();
        poke.poke();
        poke.poke();
        let dropped = Instant::now();
        drop(poke);
        handle.join().unwrap();
        // `Log::close` joins the checkpointer: it must not sleep out the interval first.
        let waited = dropped.elapsed();
        assert!(waited < MIN_INTERVAL, "the join took {waited:?}");
    }
}
