//! The durable, ordered event log.
//!
//! # On-disk format
//! One SQLite database, `events.sqlite3`, in the data directory, in WAL mode with
//! `synchronous=FULL`: a commit returns only once the WAL is fsynced, so an acknowledged append
//! survives a crash or power loss. Table `events`:
//!
//! | column | meaning |
//! |---|---|
//! | `sequence` | `INTEGER PRIMARY KEY AUTOINCREMENT`: starts at 1, only grows, never reused (see Sequences) |
//! | `event_id` | the webhook message id (`svix-id`), `UNIQUE`: the idempotency key |
//! | `event_type` | Clerk's event type, for filtering without decoding |
//! | `received_at_ms` | when the bridge accepted the webhook |
//! | `codec_version` | version of the encoding of `event` (see [`crate::record`]) |
//! | `event` | the encoded `clerk.bridge.v1.Event` (without its sequence), verbatim body included |
//!
//! Table `objects` is the current state: the latest event of every object under the version rule,
//! written in the same transaction as the append; retention never touches it (see the `state` module).
//!
//! Tables `sync_pass` and `sync_seen` keep a backfill or reconciliation pass's progress across
//! restarts (see the `passes` module).
//!
//! Table `consumers` holds each named consumer's committed sequence (`name` primary key,
//! `committed`, `created_at_ms`, `updated_at_ms`). Consumer writes go through the same writer and
//! the same fsynced transactions as appends.
//!
//! # Concurrency
//! One writer thread owns the only write connection. Writes (appends, consumer changes, retention
//! steps) reach it through a bounded queue and are committed together (group commit): one
//! transaction and one fsync for every write waiting when the previous commit finished. Each request
//! learns its outcome (an append its sequence) only after its batch is durable. Readers open their
//! own read-only connections and never block the writer (WAL). A checkpointer thread copies the WAL
//! back into the database on its own connection, outside the commits. The newest committed events
//! also stay in memory for a while ([`Log::recent_after`]), so subscribers at the head need no
//! reads at all.
//!
//! # Sequences
//! `WATERMARK`, beside the database, reserves sequences ahead and records the acknowledged head
//! (see the `watermark` and `reservation` modules): no sequence is committed above the persisted
//! reservation, and after an open new sequences go above the higher of it and the database's
//! head. So a sequence is never assigned twice, even when the database lost its newest
//! transactions; after an unclean stop, sequences may skip numbers (never after a clean close).
//!
//! # Recovery
//! SQLite replays or discards a torn WAL tail on open, so the log is always a prefix of the
//! acknowledged appends plus, at most, a batch that was durable but not yet acknowledged. That
//! holds as long as the WAL is intact: an open that finds a database head below the acknowledged
//! head the watermark recorded (a damaged or deleted WAL) logs at ERROR how many acknowledged
//! events are missing ([`Log::events_missing_at_open`]). A `LOCK` file held for the process
//! lifetime keeps a second bridge off the same directory.
//!
//! # A removed data directory
//! The log remembers what the data directory, its lock file and its database were at open, and
//! checks them after every commit, before anyone is told (see the `identity` module). Once one was
//! removed or replaced, the log is failed for good: every write gets [`WriteError::DataDirChanged`]
//! and [`Log::is_usable`] is false, until the process restarts.

mod checkpoint;
mod identity;
mod paced;
mod passes;
mod pool;
mod reader;
mod recent;
mod reservation;
pub mod retention;
mod schema;
mod state;
mod watermark;
mod writer;

use std::{
    fs::File,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tokio::sync::{mpsc, oneshot, watch};

use identity::DataDirIdentity;
pub use passes::PassUpdate;
use pool::ReaderPool;
pub use pool::{POOL_SIZE as READER_POOL_SIZE, ReadError};
pub use reader::{LogReader, ObjectCursor, StoredConsumer, StoredEvent, StoredObject};
pub(crate) use recent::RecentEvents;
use reservation::Reservation;
pub use state::ObjectRef;
pub use watermark::WatermarkError;
use writer::{Companions, Request, Writer};

/// Name of the database file inside the data directory.
const DB_FILE: &str = "events.sqlite3";
/// Mode of the directories the log creates: the owner's alone.
const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the files the log creates: the owner's alone.
const PRIVATE_FILE_MODE: u32 = 0o600;
/// Name of the lock file inside the data directory.
const LOCK_FILE: &str = "LOCK";
/// Writes (appends, consumer changes, retention steps) that may wait for the writer; beyond this,
/// a write is refused at once with [`WriteError::Busy`].
const WRITE_QUEUE_CAPACITY: usize = 4096;

/// An event ready to be appended.
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// The webhook message id, the idempotency key: while an event with this id is retained, an
    /// append of it is answered with [`Appended::Duplicate`] and stores nothing.
    pub event_id: String,
    /// Clerk's event type.
    pub event_type: String,
    /// When the bridge accepted the webhook, in unix milliseconds.
    pub received_at_ms: i64,
    /// Version of the encoding of `event`.
    pub codec_version: u32,
    /// The encoded `clerk.bridge.v1.Event` (without its sequence), stored as given.
    pub event: Vec<u8>,
    /// The object the event is about, for the state (`None`: it names none).
    pub object: Option<ObjectRef>,
    /// Store it only if its object's version supersedes the one the state holds (backfill and
    /// reconciliation, which must never undo a newer webhook); else [`Appended::Superseded`].
    pub only_if_newer: bool,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored now, at this sequence.
    Stored(u64),
    /// The event id was already stored, at this sequence; nothing was written.
    Duplicate(u64),
    /// Stored only if newer, and the state holds its object in this version or a newer one (its
    /// latest event is at this sequence; 0 for an object without an event); nothing was written.
    Superseded(u64),
}

impl Appended {
    /// The sequence of the stored event.
    pub fn sequence(self) -> u64 {
        match self {
            Appended::Stored(seq) | Appended::Duplicate(seq) | Appended::Superseded(seq) => seq,
        }
    }
}

/// Why a write did not happen: an append, a consumer save or delete, or a retention step. In every
/// case that write changed nothing (that anyone will see).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The writer's queue is full: the caller should retry later.
    #[error("the log's write queue is full")]
    Busy,
    /// The log is closed (shutting down).
    #[error("the log is closed")]
    Closed,
    /// SQLite failed to write or fsync (disk full, I/O error); shared by every write of the batch,
    /// which was rolled back as a whole.
    #[error("the log could not store the write: {0}")]
    Storage(#[source] std::sync::Arc<rusqlite::Error>),
    /// The sequences the write needed could not be reserved: the watermark file could not be
    /// written (disk full, I/O error).
    #[error("the log could not reserve sequences: {0}")]
    Watermark(#[source] std::sync::Arc<std::io::Error>),
    /// The data directory was removed or replaced while the log was open: nothing is stored or
    /// acknowledged any more, until the bridge restarts.
    #[error("the log's data directory was removed or replaced; restart the bridge")]
    DataDirChanged,
    /// The JetStream stream did not acknowledge the write (no server reachable, no quorum, a
    /// timeout); it may be stored all the same, and a retry is then answered as a duplicate.
    #[error("the JetStream stream did not acknowledge the write: {0}")]
    Remote(std::sync::Arc<str>),
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created or written.
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        /// The data directory as configured.
        path: PathBuf,
        /// The failed create, open or lock of the directory or its lock file.
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error("data directory {0} is in use by another clerk-bridge process")]
    Locked(PathBuf),
    /// SQLite could not open or set up the database.
    #[error("cannot open the log database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The sequence watermark file is damaged: guessing would risk reusing sequences.
    #[error(
        "damaged sequence watermark {0} (restore it, or delete it to continue from the database's head)"
    )]
    Watermark(#[from] WatermarkError),
    /// The writer or checkpointer thread could not be started.
    #[error("cannot start a log thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Options of [`Log::open`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOptions {
    /// Caps the database at this many pages, so writes fail as on a full disk. For tests.
    pub max_pages: Option<u32>,
}

/// The log's bounds, published after every commit that moves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    /// The highest sequence ever stored (0 for a new log).
    pub head: u64,
    /// The lowest stored sequence; `head + 1` while no event is stored.
    pub first_retained: u64,
}

/// Handle to the log: writes go to the writer thread, reads to [`LogReader`]s.
#[derive(Debug)]
pub struct Log {
    /// Queue to the writer; `None` once closed.
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    /// Head and first retained sequence, updated after each durable commit.
    positions: watch::Receiver<Positions>,
    /// The most recently committed events, shared with the writer, which adds them.
    recent: Arc<RecentEvents>,
    /// The writer thread, then the checkpointer thread (which stops when the writer has), joined
    /// on close in that order.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Path of the database file, for opening readers.
    db_path: PathBuf,
    /// What the data directory was at open; whether it still is.
    identity: Arc<DataDirIdentity>,
    /// The reserved sequences, lowered to the head at a clean close.
    reservation: Arc<Reservation>,
    /// Acknowledged events the database no longer held at open.
    events_missing_at_open: u64,
    /// The read connections subscription streams share (see the `pool` module).
    readers: Arc<ReaderPool>,
    /// Held (locked) for as long as the log is open.
    _lock: File,
}

// === impl Log ===

impl Log {
    /// Opens (creating if needed) the log in `data_dir` and starts its writer thread.
    ///
    /// # Errors
    /// [`OpenError`] when the directory is unusable or locked, or SQLite fails.
    pub fn open(data_dir: &Path, options: LogOptions) -> Result<Self, OpenError> {
        let dir_error = |source| OpenError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        };
        let lock = lock_data_dir(data_dir)?;
        let db_path = data_dir.join(DB_FILE);
        create_private(&db_path).map_err(dir_error)?;
        let identity = DataDirIdentity::remember(data_dir, &data_dir.join(LOCK_FILE), &db_path)
            .map_err(dir_error)?;
        let identity = Arc::new(identity);
        let conn = schema::open_writer(&db_path, options.max_pages)?;
        state::complete_if_empty(&conn)?;
        let recovered = reservation::recover(data_dir, &conn, identity.clone())?;
        let reservation = Arc::new(recovered.reservation);
        let positions = Positions {
            head: schema::head_sequence(&conn)?,
            first_retained: retention::first_retained(&conn)?,
        };
        let (positions_tx, positions_rx) = watch::channel(positions);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let recent = Arc::new(RecentEvents::default());
        let (checkpoint, checkpointer) = checkpoint::spawn(&db_path)?;
        let kept = reservation.clone();
        let (keeper, keeper_thread) =
            paced::spawn("log-watermark", reservation::KEEP_INTERVAL, move || {
                kept.keep();
            })
            .map_err(OpenError::Thread)?;
        let companions = Companions {
            positions: positions_tx,
            recent: recent.clone(),
            checkpoint,
            reservation: reservation.clone(),
            keeper,
            identity: identity.clone(),
            floor: recovered.floor,
        };
        let writer = Writer::new(conn, rx, companions);
        let writer = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run())
            .map_err(OpenError::Thread)?;
        Ok(Log {
            requests: Mutex::new(Some(tx)),
            positions: positions_rx,
            recent,
            threads: Mutex::new(vec![writer, checkpointer, keeper_thread]),
            readers: Arc::new(ReaderPool::new(db_path.clone())),
            db_path,
            identity,
            reservation,
            events_missing_at_open: recovered.missing,
            _lock: lock,
        })
    }

    /// Appends `record` and waits until it is durable (or known to be a duplicate).
    ///
    /// # Errors
    /// [`WriteError`]; in every case nothing was stored.
    pub async fn append(&self, record: NewRecord) -> Result<Appended, WriteError> {
        self.request(|reply| Request::Append { record, reply })
            .await
    }

    /// Creates a named consumer or sets its committed sequence, durably.
    ///
    /// # Errors
    /// [`WriteError`]; nothing was written.
    pub async fn save_consumer(
        &self,
        name: &str,
        committed: u64,
        now_ms: i64,
    ) -> Result<(), WriteError> {
        let name = name.to_owned();
        self.request(|reply| Request::SaveConsumer {
            name,
            committed,
            now_ms,
            reply,
        })
        .await
    }

    /// Moves an existing named consumer to `committed`, durably; false (and nothing written) when
    /// there is no consumer of that name, e.g. one deleted while this move waited in the queue.
    ///
    /// # Errors
    /// [`WriteError`]; nothing was written.
    pub async fn move_consumer(
        &self,
        name: &str,
        committed: u64,
        now_ms: i64,
    ) -> Result<bool, WriteError> {
        let name = name.to_owned();
        self.request(|reply| Request::MoveConsumer {
            name,
            committed,
            now_ms,
            reply,
        })
        .await
    }

    /// Deletes a named consumer, durably.
    ///
    /// # Errors
    /// [`WriteError`]; nothing was written.
    pub async fn delete_consumer(&self, name: &str) -> Result<(), WriteError> {
        let name = name.to_owned();
        self.request(|reply| Request::DeleteConsumer { name, reply })
            .await
    }

    /// Records a backfill or reconciliation pass's progress durably (see the `passes` module).
    ///
    /// # Errors
    /// [`WriteError`]; nothing was written.
    pub async fn save_pass(&self, update: PassUpdate) -> Result<(), WriteError> {
        self.request(|reply| Request::SavePass { update, reply })
            .await
    }

    /// Rebuilds the current state from every stored event: the migration of a log written before
    /// the state existed (see [`LogReader::state_complete`]). `object_of` tells which object a
    /// stored event is about. Returns the number of objects.
    ///
    /// # Errors
    /// [`WriteError`]; the state stays as it was.
    pub async fn rebuild_state(
        &self,
        object_of: fn(&StoredEvent) -> Option<ObjectRef>,
    ) -> Result<u64, WriteError> {
        self.request(|reply| Request::RebuildState { object_of, reply })
            .await
    }

    /// Deletes the oldest events past the caps of `policy`, in bounded steps until none is due.
    /// Returns how many were deleted.
    ///
    /// # Errors
    /// [`WriteError`] from the step that failed; earlier steps stay done.
    pub async fn retain(&self, policy: retention::Policy, now_ms: i64) -> Result<u64, WriteError> {
        let mut deleted = 0;
        loop {
            let step = self
                .request(|reply| Request::Retain {
                    policy,
                    now_ms,
                    reply,
                })
                .await?;
            deleted += step.deleted;
            if !step.more {
                return Ok(deleted);
            }
        }
    }

    /// Queues a request for the writer and waits for its outcome.
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, WriteError>>) -> Request,
    ) -> Result<T, WriteError> {
        if self.identity.changed().is_some() {
            return Err(WriteError::DataDirChanged);
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        self.sender()?
            .try_send(make(reply_tx))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WriteError::Busy,
                mpsc::error::TrySendError::Closed(_) => WriteError::Closed,
            })?;
        reply_rx.await.map_err(|_| WriteError::Closed)?
    }

    /// The highest stored sequence (0 while the log is empty).
    pub fn head(&self) -> u64 {
        self.positions.borrow().head
    }

    /// The head and the first retained sequence.
    pub fn positions(&self) -> Positions {
        *self.positions.borrow()
    }

    /// A receiver that is notified after every commit that moves the head or the first retained
    /// sequence.
    pub fn watch_positions(&self) -> watch::Receiver<Positions> {
        self.positions.clone()
    }

    /// Up to `limit` events after `after`, from memory, when the log's cache of recent events holds
    /// every stored event after `after` (a subscriber at or near the head); `None` when some are
    /// only on disk, to be read with a [`LogReader`]. Never blocks on I/O.
    pub fn recent_after(&self, after: u64, limit: usize) -> Option<Vec<Arc<StoredEvent>>> {
        self.recent.read_after(after, limit)
    }

    /// Runs `read` on one of the log's shared read connections, off the async workers, waiting
    /// for one to be free: for short reads by many callers (a subscription's next batch), whose
    /// connections, memory and file descriptors then stay few (see the `pool` module).
    ///
    /// # Errors
    /// [`ReadError`] when SQLite fails or the read panics.
    pub async fn read_pooled<T: Send + 'static>(
        &self,
        read: impl FnOnce(&LogReader) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ReadError> {
        self.readers.read(read).await
    }

    /// Opens a reader on its own read-only connection.
    ///
    /// # Errors
    /// When SQLite cannot open the database.
    pub fn reader(&self) -> Result<LogReader, rusqlite::Error> {
        if self.identity.changed().is_some() {
            // The path may name another bridge's database now.
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some("the log's data directory was removed or replaced".to_owned()),
            ));
        }
        LogReader::open(&self.db_path)
    }

    /// Whether the log can store anything: false for good once its data directory, lock file or
    /// database file was removed or replaced (checked now: three `stat` calls; the first time it
    /// is seen, it is logged at ERROR).
    pub fn is_usable(&self) -> bool {
        self.identity.check().is_ok()
    }

    /// How many acknowledged events the database no longer held when this log was opened (its
    /// head was below the head the sequence watermark recorded); 0 normally.
    pub fn events_missing_at_open(&self) -> u64 {
        self.events_missing_at_open
    }

    /// Stops taking writes, lets the writer commit everything already queued, waits for it, the
    /// checkpointer and the watermark keeper, then lowers the sequence reservation to the head.
    /// Blocking: call from a blocking context.
    pub fn close(&self) {
        drop(self.lock_unpoisoned(&self.requests).take());
        let threads = std::mem::take(&mut *self.lock_unpoisoned(&self.threads));
        if threads.is_empty() {
            return;
        }
        let mut panicked = false;
        for handle in threads {
            let name = handle.thread().name().unwrap_or("log").to_owned();
            if handle.join().is_err() {
                tracing::error!(thread = %name, "Log thread panicked");
                panicked = true;
            }
        }
        if !panicked {
            self.reservation.close(self.head());
        }
    }

    /// A sender to the writer's queue, or [`WriteError::Closed`] once [`Log::close`] has begun.
    fn sender(&self) -> Result<mpsc::Sender<Request>, WriteError> {
        self.lock_unpoisoned(&self.requests)
            .clone()
            .ok_or(WriteError::Closed)
    }

    /// Locks a mutex whose data stays valid even if a holder panicked (an `Option` we only take).
    fn lock_unpoisoned<'a, T>(&self, m: &'a Mutex<T>) -> std::sync::MutexGuard<'a, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Creates the database file, owner-only, before SQLite opens it: SQLite gives the files it adds
/// beside it (`-wal`, `-shm`) the same mode. An existing file is left as it is.
fn create_private(db_path: &Path) -> std::io::Result<()> {
    File::options()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE_MODE)
        .open(db_path)
        .map(drop)
}

/// Creates `data_dir` if needed and takes its lock file.
fn lock_data_dir(data_dir: &Path) -> Result<File, OpenError> {
    let dir_error = |source| OpenError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    // The log holds personal data: directories it creates and files it writes are the owner's
    // alone (an existing directory keeps the mode its owner gave it).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(data_dir)
        .map_err(dir_error)?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(PRIVATE_FILE_MODE)
        .open(data_dir.join(LOCK_FILE))
        .map_err(dir_error)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(dir_error(e)),
    }
}

#[cfg(test)]
mod tests;
