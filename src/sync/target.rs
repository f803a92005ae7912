//! Where a pass stores what it finds and reads what reconciliation suspects gone: the embedded
//! log, in its transactions; or a JetStream stream shared by every bridge, with appends checked
//! against the shared state and the objects a pass saw in a bucket of their own (see
//! `crate::jetstream`).

use std::sync::Arc;

use super::pass::PassError;
use crate::{
    jetstream::{JetStreamLog, SharedLease},
    log::{Appended, Log, LogReader, NewRecord, PassUpdate, StoredObject, WriteError},
    store::Store,
};

/// The store a pass appends to and saves itself in.
#[derive(Debug, Clone)]
pub enum Target {
    /// The embedded log: appends and bookkeeping in its transactions.
    Embedded(Arc<Log>),
    /// A JetStream stream shared by every bridge.
    JetStream(Arc<JetStreamLog>),
}

/// Deletion candidates read at once, and whether they are all that are left.
pub(super) struct Candidates {
    pub(super) objects: Vec<StoredObject>,
    /// No candidate follows the last of `objects`, so the pass need not read again.
    pub(super) complete: bool,
}

/// Why a saved pass could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the saved pass: {0}")]
pub struct SavedPassError(String);

// === impl Target ===

impl Target {
    /// The target of `store`.
    pub fn of(store: &Store) -> Self {
        match store {
            Store::Embedded(log) => Target::Embedded(log.clone()),
            Store::JetStream(stream) => Target::JetStream(stream.clone()),
        }
    }

    /// The highest stored sequence, as this bridge knows it.
    pub(super) fn head(&self) -> u64 {
        match self {
            Target::Embedded(log) => log.head(),
            Target::JetStream(stream) => stream.positions().head,
        }
    }

    /// How many objects of `kind` the state holds as live, and how many of those the pass has not
    /// seen with their latest event at most `through`.
    pub(super) async fn live_and_unseen(
        &self,
        kind: &'static str,
        through: u64,
    ) -> Result<(u64, u64), PassError> {
        match self {
            Target::Embedded(log) => {
                read(log, move |reader| reader.live_and_unseen(kind, through)).await
            }
            Target::JetStream(stream) => stream
                .live_and_unseen(kind, through)
                .await
                .map_err(|e| PassError::State(e.to_string())),
        }
    }

    /// Live objects of `kind` with ids after `after_id`, in id order, whose latest event is at
    /// most `through` and that the pass has not seen: `limit` of them from the embedded log, all of
    /// them from JetStream (whose reads go over every object of the kind).
    pub(super) async fn unseen_live_objects(
        &self,
        kind: &'static str,
        through: u64,
        after_id: String,
        limit: usize,
    ) -> Result<Candidates, PassError> {
        match self {
            Target::Embedded(log) => {
                let objects = read(log, move |reader| {
                    reader.unseen_live_objects(kind, through, &after_id, limit)
                })
                .await?;
                let complete = objects.len() < limit;
                Ok(Candidates { objects, complete })
            }
            Target::JetStream(stream) => {
                let objects = stream
                    .unseen_live_objects(kind, through, &after_id)
                    .await
                    .map_err(|e| PassError::State(e.to_string()))?;
                Ok(Candidates {
                    objects,
                    complete: true,
                })
            }
        }
    }

    /// Appends `records` (the embedded log's writer batches them), each only if newer than the
    /// state when it says so.
    pub(super) async fn append_all(
        &self,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Appended>, WriteError> {
        match self {
            Target::Embedded(log) => {
                let appends = records.into_iter().map(|record| log.append(record));
                futures_util::future::join_all(appends)
                    .await
                    .into_iter()
                    .collect()
            }
            Target::JetStream(stream) => stream.append_if_newer(records).await,
        }
    }

    /// Appends one record, only if newer than the state when it says so.
    pub(super) async fn append(&self, record: NewRecord) -> Result<Appended, WriteError> {
        let mut appended = self.append_all(vec![record]).await?;
        appended
            .pop()
            .ok_or_else(|| WriteError::Remote("an append answered nothing".into()))
    }

    /// Saves where the pass stands (see [`PassUpdate`]). On JetStream the objects it saw first,
    /// so that a saved pass never lacks those of the pages it counts as done.
    pub(super) async fn save(&self, update: PassUpdate) -> Result<(), WriteError> {
        match self {
            Target::Embedded(log) => log.save_pass(update).await,
            Target::JetStream(stream) => {
                stream.save_seen(update.fresh, &update.seen).await?;
                stream.save_pass(update.state).await
            }
        }
    }

    /// The saved pass (its JSON), if any.
    pub(super) async fn saved(&self) -> Result<Option<String>, SavedPassError> {
        match self {
            Target::Embedded(log) => read(log, LogReader::saved_pass)
                .await
                .map_err(|e| SavedPassError(e.to_string())),
            Target::JetStream(stream) => stream
                .saved_pass()
                .await
                .map_err(|e| SavedPassError(e.to_string())),
        }
    }

    /// When the last reconciliation pass that completed began (unix ms), on any bridge sharing
    /// the store (JetStream); `None` on the embedded log, whose one bridge keeps its own schedule.
    pub(super) async fn reconciled_at(&self) -> Option<i64> {
        match self {
            Target::Embedded(_) => None,
            Target::JetStream(stream) => match stream.reconciled_at().await {
                Ok(at) => at,
                Err(error) => {
                    tracing::warn!(%error, "Could not read when the last reconciliation ended");
                    None
                }
            },
        }
    }

    /// Records that a reconciliation pass begun at `began_ms` completed, for the schedules of
    /// every bridge.
    pub(super) async fn record_reconciled(&self, began_ms: i64) -> Result<(), WriteError> {
        match self {
            Target::Embedded(_) => Ok(()),
            Target::JetStream(stream) => stream.record_reconciled(began_ms).await,
        }
    }

    /// The right to run the one pass of all bridges: `Some(None)` on the embedded log (one bridge
    /// owns it), `Some(lease)` on JetStream, `None` while another bridge runs a pass.
    pub(super) async fn claim(&self) -> Result<Option<Option<SharedLease>>, WriteError> {
        match self {
            Target::Embedded(_) => Ok(Some(None)),
            Target::JetStream(stream) => Ok(stream.lease_pass().await?.map(Some)),
        }
    }
}

/// Runs `read` on a reader of `log`, off the async workers.
async fn read<T: Send + 'static>(
    log: &Arc<Log>,
    read: impl FnOnce(&LogReader) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, PassError> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || read(&log.reader()?))
        .await
        .map_err(|_| PassError::Read(rusqlite::Error::InvalidQuery))?
        .map_err(PassError::Read)
}
