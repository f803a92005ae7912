//! The boundary between the bridge and where its events live: the embedded SQLite log (the
//! default, one bridge per data directory) or a NATS JetStream stream that any number of
//! bridges share. Both keep the same promises: an append returns once the event is durable (or
//! known to be a duplicate of its webhook id), sequences only grow, and readers see every event
//! in sequence order.
//!
//! Both keep the current state behind snapshots: the embedded log in the append's transaction,
//! JetStream in a bucket its builder fills (see [`Store::jetstream`]). What each does its own way
//! (its files, snapshots, backfill and reconciliation) is reached through [`Store::embedded`] and
//! [`Store::jetstream`].

use std::sync::Arc;

use tokio::sync::watch;

use crate::{
    jetstream::{self, JetStreamLog},
    log::{self, Appended, Log, NewRecord, Positions, StoredEvent, WriteError},
};

/// Where the events are stored; cheap to clone.
#[derive(Debug, Clone)]
pub enum Store {
    /// The SQLite log in the data directory.
    Embedded(Arc<Log>),
    /// A JetStream stream.
    JetStream(Arc<JetStreamLog>),
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The embedded log could not be read.
    #[error(transparent)]
    Embedded(#[from] log::ReadError),
    /// The JetStream stream could not be read.
    #[error(transparent)]
    JetStream(#[from] jetstream::ReadError),
}

// === impl Store ===

impl Store {
    /// Appends `record` and waits until it is durable (or known to be a duplicate).
    ///
    /// # Errors
    /// [`WriteError`]: the event was not stored (on JetStream, perhaps it was: a retry then finds
    /// it as a duplicate).
    pub async fn append(&self, record: NewRecord) -> Result<Appended, WriteError> {
        match self {
            Store::Embedded(log) => log.append(record).await,
            Store::JetStream(stream) => stream.append(record).await,
        }
    }

    /// The head and the first retained sequence.
    pub fn positions(&self) -> Positions {
        match self {
            Store::Embedded(log) => log.positions(),
            Store::JetStream(stream) => stream.positions(),
        }
    }

    /// The highest sequence stored.
    pub fn head(&self) -> u64 {
        self.positions().head
    }

    /// Watches the positions, which move after every durable append and retention step.
    pub fn watch_positions(&self) -> watch::Receiver<Positions> {
        match self {
            Store::Embedded(log) => log.watch_positions(),
            Store::JetStream(stream) => stream.watch_positions(),
        }
    }

    /// Up to `limit` events after `after` from memory, if the newest events held there cover them.
    pub fn recent_after(&self, after: u64, limit: usize) -> Option<Vec<Arc<StoredEvent>>> {
        match self {
            Store::Embedded(log) => log.recent_after(after, limit),
            Store::JetStream(stream) => stream.recent_after(after, limit),
        }
    }

    /// Up to `limit` events after `after`, in sequence order, stopping after the one that brings
    /// their size to `max_bytes`.
    ///
    /// # Errors
    /// [`ReadError`] when the storage cannot be read.
    pub async fn read_after(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, ReadError> {
        match self {
            Store::Embedded(log) => Ok(log
                .read_pooled(move |reader| reader.read_after_within(after, limit, max_bytes))
                .await?),
            Store::JetStream(stream) => Ok(stream.read_after(after, limit, max_bytes).await?),
        }
    }

    /// Whether appends can succeed now: the embedded log is usable until its data directory is
    /// removed (for good); JetStream while the bridge is connected to a server.
    pub fn is_usable(&self) -> bool {
        match self {
            Store::Embedded(log) => log.is_usable(),
            Store::JetStream(stream) => stream.is_usable(),
        }
    }

    /// The embedded log, for what only it offers yet.
    pub fn embedded(&self) -> Option<&Arc<Log>> {
        match self {
            Store::Embedded(log) => Some(log),
            Store::JetStream(_) => None,
        }
    }

    /// The JetStream stream, for its state snapshots.
    pub fn jetstream(&self) -> Option<&Arc<JetStreamLog>> {
        match self {
            Store::Embedded(_) => None,
            Store::JetStream(stream) => Some(stream),
        }
    }

    /// The highest sequence the current state holds the effect of (and every one before): the
    /// head on the embedded log, whose state is written with each append; the builder's applied
    /// sequence on JetStream.
    pub fn state_applied(&self) -> u64 {
        match self {
            Store::Embedded(log) => log.positions().head,
            Store::JetStream(stream) => stream.state_applied(),
        }
    }

    /// Closes the store once nothing writes to it any more: the embedded log commits what is
    /// queued and stops its threads.
    pub async fn close(self) {
        match self {
            Store::Embedded(log) => {
                let _ = tokio::task::spawn_blocking(move || log.close()).await;
            }
            Store::JetStream(stream) => stream.close().await,
        }
    }
}
