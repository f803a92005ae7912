//! A small, fixed set of read connections shared by every subscription stream that reads from disk.
//!
//! Why shared: a read connection costs a page cache and, on Linux, two file descriptors (the
//! database and its write-ahead log). Worse, SQLite cannot close the database descriptor of a
//! connection while other connections of the process hold locks on the file (the writer always
//! does, in WAL mode): closing it would drop their POSIX locks, so SQLite parks the descriptor
//! until a later connection reuses it. One connection per stream therefore kept a descriptor for
//! every stream that had ever read at the same time. Streams borrow a pooled reader for one
//! bounded batch and give it back before they send, so a stalled stream holds no reader, and the
//! readers, their memory and their descriptors stay at [`POOL_SIZE`] however many streams come
//! and go.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::Semaphore;

use super::LogReader;

/// Readers in the pool: more than the cores that run the blocking reads, so a slow disk read does
/// not hold the others up.
pub const POOL_SIZE: usize = 8;

/// Why a pooled read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// SQLite failed to open a reader or to read.
    #[error("cannot read the log: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The read panicked.
    #[error("a log read panicked")]
    Panicked,
}

/// The shared readers.
#[derive(Debug)]
pub(super) struct ReaderPool {
    /// Path of the database file, for opening readers.
    db_path: PathBuf,
    /// Readers not in use; opened on demand, at most [`POOL_SIZE`].
    pub(super) idle: Mutex<Vec<LogReader>>,
    /// One permit per reader: a read waits for one before it takes or opens a reader.
    permits: Semaphore,
}

// === impl ReaderPool ===

impl ReaderPool {
    /// An empty pool for the database at `db_path`.
    pub(super) fn new(db_path: PathBuf) -> Self {
        ReaderPool {
            db_path,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(POOL_SIZE),
        }
    }

    /// Runs `read` on a pooled reader, off the async workers, once one is free.
    pub(super) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&LogReader) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ReadError> {
        // The semaphore lives as long as the pool and is never closed.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ReadError::Panicked)?;
        let pool = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let reader = match pool.take_idle() {
                Some(reader) => reader,
                None => LogReader::open(&pool.db_path)?,
            };
            let result = read(&reader);
            pool.give_back(reader);
            result
        })
        .await
        .map_err(|_| ReadError::Panicked)?;
        Ok(result?)
    }

    fn take_idle(&self) -> Option<LogReader> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn give_back(&self, reader: LogReader) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reader);
    }
}
