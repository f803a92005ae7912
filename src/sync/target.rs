//! Where a pass stores what it finds: the embedded log, where both passes run, or a JetStream
//! stream, where backfill runs (its appends checked against the shared state, see
//! `crate::jetstream`) and reconciliation does not yet (it needs the set of objects a pass saw,
//! which only the embedded log keeps).

use std::sync::Arc;

use crate::{
    jetstream::{JetStreamLog, SharedLease},
    log::{Appended, Log, NewRecord, PassUpdate, WriteError},
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

    /// The embedded log, which reconciliation needs.
    pub(super) fn embedded(&self) -> Option<&Arc<Log>> {
        match self {
            Target::Embedded(log) => Some(log),
            Target::JetStream(_) => None,
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

    /// Saves where the pass stands (see [`PassUpdate`]); on JetStream, without the ids it saw,
    /// which only reconciliation needs.
    pub(super) async fn save(&self, update: PassUpdate) -> Result<(), WriteError> {
        match self {
            Target::Embedded(log) => log.save_pass(update).await,
            Target::JetStream(stream) => stream.save_pass(update.state).await,
        }
    }

    /// The saved pass (its JSON), if any.
    pub(super) async fn saved(&self) -> Result<Option<String>, SavedPassError> {
        match self {
            Target::Embedded(log) => {
                let log = log.clone();
                tokio::task::spawn_blocking(move || log.reader()?.saved_pass())
                    .await
                    .map_err(|e| SavedPassError(e.to_string()))?
                    .map_err(|e| SavedPassError(e.to_string()))
            }
            Target::JetStream(stream) => stream
                .saved_pass()
                .await
                .map_err(|e| SavedPassError(e.to_string())),
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
