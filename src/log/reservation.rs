//! Sequences that are never reused, even when the database loses its newest transactions.
//!
//! SQLite's `AUTOINCREMENT` remembers the highest sequence in the database itself, so a damaged
//! or deleted write-ahead log after a crash takes the newest events and that memory with them: the
//! next webhook would get a sequence subscribers have already seen. Sequences are therefore
//! reserved ahead in the [`watermark`] file (hi-lo allocation): the writer never commits a
//! sequence above the persisted reservation; when a batch would need one, it writes a higher
//! reservation first. The keeper thread, poked after each commit and running at most once per
//! [`KEEP_INTERVAL`], records the acknowledged head and tops the reservation up to about
//! [`RESERVE_SECS`] of ingest ahead, so the writer itself seldom has to wait for a write.
//!
//! At open ([`recover`]), a database head below the recorded head means acknowledged events were
//! lost: that is logged at ERROR and counted, and the head is raised back to the recorded one (in
//! `sqlite_sequence`), so subscribers past the surviving events keep valid positions. New
//! sequences start after the higher of the head and the reservation (the floor, which the writer
//! applies with its first append). After a crash, sequences skip what was reserved but not used
//! (up to [`MIN_BLOCK`], or [`RESERVE_SECS`] of ingest when busier); a clean close lowers the reservation to the head (never below the
//! floor), so a clean restart skips nothing.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rusqlite::Connection;

use super::{
    OpenError, WriteError,
    identity::DataDirIdentity,
    schema,
    watermark::{self, WATERMARK_FILE, Watermark},
};

/// Least time between two writes of the keeper.
pub(super) const KEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Fewest sequences reserved at a time: the most a crash skips at low rates.
const MIN_BLOCK: u64 = 4096;
/// Most sequences reserved at a time.
const MAX_BLOCK: u64 = 1 << 20;
/// Seconds of ingest (at the rate since the last write) a reservation covers.
const RESERVE_SECS: u64 = 2;
/// Shortest time a rate is measured over, so a write right after another does not see a huge one.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(50);
/// The highest sequence SQLite can store.
const MAX_SEQUENCE: u64 = i64::MAX as u64;

/// Why sequences could not be reserved.
#[derive(Debug)]
pub(super) enum ReserveError {
    /// The data directory was removed or replaced: writing there could harm another bridge.
    DataDirChanged,
    /// The watermark file could not be written.
    Io(std::io::Error),
}

/// The reservation, shared by the writer (which needs it covered before a commit) and the keeper.
#[derive(Debug)]
pub(super) struct Reservation {
    /// The data directory holding the watermark file.
    data_dir: PathBuf,
    /// Refuses writes once the directory is no longer the one opened.
    identity: Arc<DataDirIdentity>,
    /// The persisted reservation: no sequence above it may be committed. Read without the lock.
    reserved: AtomicU64,
    /// The highest acknowledged sequence, as the writer last told it.
    head: AtomicU64,
    /// Sequences above it only: the reservation found at open, which a close must not go below.
    floor: u64,
    /// What the file holds and when it was written; held across a write, so writes never mix.
    written: Mutex<Written>,
}

/// The last write of the watermark file.
#[derive(Debug, Clone, Copy)]
struct Written {
    /// What it wrote.
    watermark: Watermark,
    /// When.
    at: Instant,
}

/// What [`recover`] found.
#[derive(Debug)]
pub(super) struct Recovered {
    /// The reservation, as now written.
    pub(super) reservation: Reservation,
    /// New sequences go above it (it may be above the head after a crash).
    pub(super) floor: u64,
    /// Acknowledged events the database no longer holds (0 when none is missing).
    pub(super) missing: u64,
}

// === impl Reservation ===

impl Reservation {
    /// Makes sure sequences up to `highest` are reserved, writing a new reservation (with room for
    /// the next couple of seconds) if they are not. Called by the writer before a commit.
    ///
    /// # Errors
    /// [`ReserveError`] when the reservation had to be written and could not be.
    pub(super) fn cover(&self, highest: u64) -> Result<(), ReserveError> {
        if highest <= self.reserved.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut written = self.lock();
        if highest <= written.watermark.reserved {
            return Ok(());
        }
        let head = self.head.load(Ordering::Acquire);
        let block = block(&written, head);
        let watermark = Watermark {
            reserved: highest.saturating_add(block).min(MAX_SEQUENCE),
            head,
        };
        self.write(&mut written, watermark)
    }

    /// Records that everything up to `head` is acknowledged (the keeper writes it down later).
    pub(super) fn acknowledged(&self, head: u64) {
        self.head.fetch_max(head, Ordering::AcqRel);
    }

    /// The keeper's run: writes the acknowledged head and tops the reservation up, if the head
    /// moved since the last write. A failure is logged; the next run tries again.
    pub(super) fn keep(&self) {
        let mut written = self.lock();
        let head = self.head.load(Ordering::Acquire);
        if head == written.watermark.head {
            return;
        }
        let reserved = head.saturating_add(block(&written, head)).min(MAX_SEQUENCE);
        let watermark = Watermark {
            reserved: reserved.max(written.watermark.reserved),
            head,
        };
        match self.write(&mut written, watermark) {
            Ok(()) | Err(ReserveError::DataDirChanged) => {}
            Err(ReserveError::Io(error)) => {
                tracing::warn!(%error, "Sequence watermark not written; will retry");
            }
        }
    }

    /// At a clean close, once nothing can be assigned any more: lowers the reservation to the
    /// head (or the floor, if nothing was appended), so the next start skips no sequence.
    pub(super) fn close(&self, head: u64) {
        let mut written = self.lock();
        let head = head.max(written.watermark.head);
        let watermark = Watermark {
            reserved: head.max(self.floor),
            head,
        };
        if let Err(ReserveError::Io(error)) = self.write(&mut written, watermark) {
            tracing::warn!(%error, "Sequence watermark not written at close");
        }
    }

    /// Writes `watermark` if the data directory is still the one opened.
    fn write(&self, written: &mut Written, watermark: Watermark) -> Result<(), ReserveError> {
        self.identity
            .check()
            .map_err(|_| ReserveError::DataDirChanged)?;
        watermark::write(&self.data_dir, watermark).map_err(ReserveError::Io)?;
        self.reserved.store(watermark.reserved, Ordering::Release);
        *written = Written {
            watermark,
            at: Instant::now(),
        };
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        // `Written` is replaced whole after a successful write, so it is valid even after a panic.
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many sequences to reserve ahead: [`RESERVE_SECS`] at the rate since the last write, within
/// [`MIN_BLOCK`] and [`MAX_BLOCK`].
fn block(written: &Written, head: u64) -> u64 {
    let assigned = head.saturating_sub(written.watermark.head);
    let window = written.at.elapsed().max(MIN_RATE_WINDOW).as_millis();
    let per_window = u128::from(assigned) * u128::from(RESERVE_SECS) * 1000 / window;
    u64::try_from(per_window)
        .unwrap_or(MAX_BLOCK)
        .clamp(MIN_BLOCK, MAX_BLOCK)
}

// === impl ReserveError ===

impl From<ReserveError> for WriteError {
    fn from(error: ReserveError) -> Self {
        match error {
            ReserveError::DataDirChanged => WriteError::DataDirChanged,
            ReserveError::Io(error) => WriteError::Watermark(Arc::new(error)),
        }
    }
}

/// Sets the log's sequences straight at open: reads the watermark in `data_dir`, reports
/// acknowledged events the database (on `conn`, the writer's connection) no longer holds and
/// raises its head back to the acknowledged one, finds the floor new sequences go above, and
/// writes a fresh reservation.
///
/// # Errors
/// [`OpenError::Watermark`] for a damaged watermark file (never guessed around: that could reuse
/// sequences), [`OpenError::Database`] or [`OpenError::DataDir`] when a write fails.
pub(super) fn recover(
    data_dir: &Path,
    conn: &Connection,
    identity: Arc<DataDirIdentity>,
) -> Result<Recovered, OpenError> {
    let recorded = watermark::read(data_dir)?;
    let db_head = schema::head_sequence(conn)?;
    let missing = match recorded {
        Some(recorded) => report(recorded, db_head),
        None => {
            report_missing_file(conn, data_dir, db_head)?;
            0
        }
    };
    let head = recorded.map_or(db_head, |w| w.head.max(db_head));
    if head > db_head {
        schema::raise_head(conn, head)?;
    }
    schema::mark_watermarked(conn)?;
    let floor = recorded.map_or(head, |w| w.reserved.max(head));
    let watermark = Watermark {
        reserved: floor.saturating_add(MIN_BLOCK).min(MAX_SEQUENCE),
        head,
    };
    watermark::write(data_dir, watermark).map_err(|source| OpenError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let reservation = Reservation {
        data_dir: data_dir.to_path_buf(),
        identity,
        reserved: AtomicU64::new(watermark.reserved),
        head: AtomicU64::new(head),
        floor,
        written: Mutex::new(Written {
            watermark,
            at: Instant::now(),
        }),
    };
    Ok(Recovered {
        reservation,
        floor,
        missing,
    })
}

/// Compares the database's head with the watermark; logs what does not match and returns how many
/// acknowledged events are missing.
fn report(recorded: Watermark, db_head: u64) -> u64 {
    let missing = recorded.head.saturating_sub(db_head);
    if missing > 0 {
        tracing::error!(
            missing,
            recorded_head = recorded.head,
            database_head = db_head,
            next_sequence = recorded.reserved.max(db_head) + 1,
            "The log holds fewer events than it had acknowledged: {missing} acknowledged events \
             are missing (damaged or deleted write-ahead log?); their sequences are not reused"
        );
    } else if recorded.reserved > db_head {
        tracing::info!(
            database_head = db_head,
            next_sequence = recorded.reserved + 1,
            "The last run did not stop cleanly: sequences continue after its reservation"
        );
    } else if recorded.reserved < db_head {
        tracing::warn!(
            reserved = recorded.reserved,
            database_head = db_head,
            "The database is ahead of the sequence watermark (an older {WATERMARK_FILE} file?); \
             continuing after the database's head"
        );
    }
    missing
}

/// Explains a missing watermark file: expected for a new log or one from before watermarks, but
/// not for a log that had one (it was deleted, so lost events cannot be detected this time).
fn report_missing_file(conn: &Connection, data_dir: &Path, db_head: u64) -> Result<(), OpenError> {
    let path = data_dir.join(WATERMARK_FILE);
    if schema::is_watermarked(conn)? {
        tracing::warn!(
            path = %path.display(),
            database_head = db_head,
            "The sequence watermark file was missing; written again from the database's head. \
             Events lost since it was deleted cannot be detected, and their sequences may be reused"
        );
    } else if db_head > 0 {
        tracing::info!(path = %path.display(), "Sequence watermark file created");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(head: u64, ago: Duration) -> Written {
        Written {
            watermark: Watermark {
                reserved: head + MIN_BLOCK,
                head,
            },
            at: Instant::now() - ago,
        }
    }

    #[test]
    fn a_reservation_covers_a_couple_of_seconds_at_the_recent_rate() {
        let second = Duration::from_secs(1);
        assert_eq!(block(&written(100, second), 100), MIN_BLOCK);
        assert_eq!(block(&written(0, second), 20_000), 40_000);
        assert_eq!(block(&written(0, Duration::ZERO), 1_000_000), MAX_BLOCK);
        assert_eq!(
            block(&written(0, Duration::from_secs(3600)), 4096),
            MIN_BLOCK
        );
    }
}
