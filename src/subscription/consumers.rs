//! Named durable consumers: committed positions, one active stream per name, in-flight accounting.
//!
//! On the embedded log the registry is the in-memory authority, loaded from the log's `consumers`
//! table at start; every change to a committed position is written through the log (fsynced)
//! before it takes effect, so a commit acknowledged to a client survives a crash. On JetStream the
//! shared bucket is the authority (see [`crate::jetstream::ConsumerBucket`]): the registry mirrors
//! it, writes go to it first, and a stream also takes the consumer's lease there, so one stream per
//! consumer holds across every bridge. A consumer is created by its first subscription. Delivery
//! attempts are counted in memory for events delivered but not yet committed.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    clock::now_ms,
    jetstream::{Change, ConsumerBucket, SharedLease},
    log::{Log, StoredConsumer, WriteError},
};

/// Longest consumer name.
const MAX_NAME_LEN: usize = 64;

/// Why a consumer operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The name is not `[A-Za-z0-9_-]{1,64}`.
    #[error("consumer name must match [A-Za-z0-9_-]{{1,64}}")]
    InvalidName,
    /// No consumer of that name.
    #[error("no consumer named {0:?}")]
    NotFound(String),
    /// The consumer already has an active stream.
    #[error("consumer {0:?} already has an active stream; one stream per consumer at a time")]
    Busy(String),
    /// The operation needs the consumer's stream to be closed.
    #[error("consumer {0:?} has an active stream; close it first")]
    Active(String),
    /// The log could not store the change.
    #[error("the consumer's position could not be stored")]
    Unstored(#[from] WriteError),
}

/// One consumer's state.
#[derive(Debug)]
struct Entry {
    /// The committed sequence; streams watch it for flow control.
    committed: watch::Sender<u64>,
    /// Whether a stream holds the lease.
    active: bool,
    /// Deliveries of events not yet committed: sequence → times sent.
    attempts: BTreeMap<u64, u32>,
    /// Creation time, unix milliseconds.
    created_at_ms: i64,
    /// Last position change, unix milliseconds.
    updated_at_ms: i64,
}

/// What [`Consumers::list`] reports per consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSummary {
    /// As stored.
    pub stored: StoredConsumer,
    /// Whether a stream is open for it.
    pub active: bool,
}

/// Where consumer positions are persisted.
#[derive(Debug)]
enum Positions {
    /// The embedded log's `consumers` table.
    Log(Arc<Log>),
    /// JetStream's shared buckets, and the name this bridge holds leases under.
    Bucket(Arc<ConsumerBucket>, String),
}

/// The registry of named consumers: positions and leases.
#[derive(Debug)]
pub struct Consumers {
    /// Where positions are persisted.
    positions: Positions,
    /// Consumers by name. Held only for short, await-free sections.
    entries: Mutex<HashMap<String, Entry>>,
}

/// The right to stream for one consumer; released on drop.
#[derive(Debug)]
pub struct Lease {
    /// The registry that granted the lease and takes it back on drop.
    consumers: Arc<Consumers>,
    /// The consumer whose stream holds the lease.
    name: String,
    /// Its committed sequence, for flow control.
    committed: watch::Receiver<u64>,
    /// On JetStream, the lease in the shared bucket.
    shared: Option<SharedLease>,
}

// === impl Consumers ===

impl Consumers {
    /// The registry of the embedded log, holding its `stored` consumers.
    pub fn new(log: Arc<Log>, stored: Vec<StoredConsumer>) -> Self {
        Self::with(Positions::Log(log), stored)
    }

    /// The registry mirroring JetStream's shared `bucket` (whose consumers are `stored` now),
    /// taking leases there as `holder`. Keep it current with [`Consumers::apply`].
    pub fn shared(bucket: ConsumerBucket, holder: String, stored: Vec<StoredConsumer>) -> Self {
        Self::with(Positions::Bucket(Arc::new(bucket), holder), stored)
    }

    fn with(positions: Positions, stored: Vec<StoredConsumer>) -> Self {
        let entries = stored
            .into_iter()
            .map(|c| {
                let entry = Entry {
                    committed: watch::Sender::new(c.committed),
                    active: false,
                    attempts: BTreeMap::new(),
                    created_at_ms: c.created_at_ms,
                    updated_at_ms: c.updated_at_ms,
                };
                (c.name, entry)
            })
            .collect();
        Consumers {
            positions,
            entries: Mutex::new(entries),
        }
    }

    /// Takes the stream lease of `name`, creating the consumer at `committed_if_new` if unknown.
    ///
    /// # Errors
    /// [`ConsumerError::Busy`] when another stream holds it; `Unstored` when creating it failed.
    pub async fn lease(
        self: &Arc<Self>,
        name: &str,
        committed_if_new: u64,
    ) -> Result<Lease, ConsumerError> {
        validate_name(name)?;
        let created = {
            let mut entries = self.entries();
            match entries.get_mut(name) {
                Some(entry) if entry.active => return Err(ConsumerError::Busy(name.to_owned())),
                Some(entry) => {
                    entry.active = true;
                    false
                }
                None => {
                    entries.insert(name.to_owned(), new_entry(committed_if_new));
                    true
                }
            }
        };
        // The lease exists before the await below: if the caller goes away meanwhile (a client
        // killed mid-Subscribe), dropping it releases the name instead of leaving it active forever.
        let mut lease = self.lease_for(name);
        let stored = match &self.positions {
            Positions::Log(log) if created => {
                log.save_consumer(name, committed_if_new, now_ms()).await
            }
            Positions::Log(_) => Ok(()),
            Positions::Bucket(bucket, holder) => {
                match self
                    .lease_shared(bucket, holder, name, committed_if_new)
                    .await
                {
                    Ok(shared) => {
                        lease.shared = Some(shared);
                        Ok(())
                    }
                    Err(e) => {
                        drop(lease);
                        if created {
                            self.entries().remove(name);
                        }
                        return Err(e);
                    }
                }
            }
        };
        if let Err(e) = stored {
            drop(lease);
            self.entries().remove(name);
            return Err(e.into());
        }
        Ok(lease)
    }

    /// Takes the shared lease of `name`, creates it in the bucket if new, and mirrors its stored
    /// position (which another bridge may have moved).
    async fn lease_shared(
        &self,
        bucket: &ConsumerBucket,
        holder: &str,
        name: &str,
        committed_if_new: u64,
    ) -> Result<SharedLease, ConsumerError> {
        let Some(shared) = bucket.lease(name, holder).await? else {
            return Err(ConsumerError::Busy(name.to_owned()));
        };
        bucket.create(name, committed_if_new, now_ms()).await?;
        if let Some(stored) = bucket.get(name).await? {
            self.apply(Change::Stored(stored));
        }
        Ok(shared)
    }

    /// Applies a change the shared bucket reports (made through this bridge or another).
    pub fn apply(&self, change: Change) {
        let mut entries = self.entries();
        match change {
            Change::Stored(stored) => {
                let entry = entries.entry(stored.name).or_insert_with(|| Entry {
                    committed: watch::Sender::new(stored.committed),
                    active: false,
                    attempts: BTreeMap::new(),
                    created_at_ms: stored.created_at_ms,
                    updated_at_ms: stored.updated_at_ms,
                });
                entry.committed.send_if_modified(|c| {
                    let moved = *c != stored.committed;
                    *c = stored.committed;
                    moved
                });
                entry.attempts = entry.attempts.split_off(&(stored.committed + 1));
                entry.updated_at_ms = stored.updated_at_ms;
            }
            Change::Deleted(name) => {
                if entries.get(&name).is_some_and(|e| !e.active) {
                    entries.remove(&name);
                }
            }
        }
    }

    fn lease_for(self: &Arc<Self>, name: &str) -> Lease {
        let committed = self.entries().get(name).map_or_else(
            || watch::Sender::new(0).subscribe(),
            |e| e.committed.subscribe(),
        );
        Lease {
            consumers: self.clone(),
            name: name.to_owned(),
            committed,
            shared: None,
        }
    }

    /// Moves `name` forward to `sequence` (never backwards). Returns the committed sequence.
    ///
    /// # Errors
    /// `NotFound`, or `Unstored` when the log could not store it.
    pub async fn commit(&self, name: &str, sequence: u64) -> Result<u64, ConsumerError> {
        let current = self.committed(name)?;
        if sequence <= current {
            return Ok(current);
        }
        self.move_stored(name, sequence, true).await?;
        Ok(self.update(name, |committed| committed.max(sequence)))
    }

    /// Sets `name` to `sequence`, forwards or backwards.
    ///
    /// # Errors
    /// `NotFound`, `Active` while it streams, `Unstored`.
    pub async fn reset(&self, name: &str, sequence: u64) -> Result<u64, ConsumerError> {
        self.ensure_idle(name).await?;
        self.move_stored(name, sequence, false).await?;
        Ok(self.update(name, |_| sequence))
    }

    /// Moves the stored position of `name`. A commit or reset queued behind a delete finds no row
    /// and writes none, so a deleted consumer never comes back after a restart.
    async fn move_stored(
        &self,
        name: &str,
        sequence: u64,
        forward_only: bool,
    ) -> Result<(), ConsumerError> {
        let moved = match &self.positions {
            Positions::Log(log) => log.move_consumer(name, sequence, now_ms()).await?,
            Positions::Bucket(bucket, _) => {
                bucket
                    .move_to(name, sequence, forward_only, now_ms())
                    .await?
            }
        };
        if moved {
            Ok(())
        } else {
            Err(ConsumerError::NotFound(name.to_owned()))
        }
    }

    /// Forgets `name`.
    ///
    /// # Errors
    /// `NotFound`, `Active` while it streams, `Unstored`.
    pub async fn delete(&self, name: &str) -> Result<(), ConsumerError> {
        self.ensure_idle(name).await?;
        match &self.positions {
            Positions::Log(log) => log.delete_consumer(name).await?,
            Positions::Bucket(bucket, _) => bucket.delete(name).await?,
        }
        self.entries().remove(name);
        Ok(())
    }

    /// Every consumer, by name; active when a stream holds it here or (on JetStream) on any bridge.
    ///
    /// # Errors
    /// `Unstored` when the leases of other bridges cannot be read.
    pub async fn list_everywhere(&self) -> Result<Vec<ConsumerSummary>, ConsumerError> {
        let leased = match &self.positions {
            Positions::Log(_) => HashSet::new(),
            Positions::Bucket(bucket, _) => bucket.leased().await?,
        };
        Ok(self.list_with(&leased))
    }

    /// Every consumer, by name; active when a stream holds it on this bridge.
    pub fn list(&self) -> Vec<ConsumerSummary> {
        self.list_with(&HashSet::new())
    }

    /// Every consumer, by name; also active when `leased` names it.
    fn list_with(&self, leased: &HashSet<String>) -> Vec<ConsumerSummary> {
        let mut list: Vec<_> = self
            .entries()
            .iter()
            .map(|(name, e)| ConsumerSummary {
                stored: StoredConsumer {
                    name: name.clone(),
                    committed: *e.committed.borrow(),
                    created_at_ms: e.created_at_ms,
                    updated_at_ms: e.updated_at_ms,
                },
                active: e.active || leased.contains(name),
            })
            .collect();
        list.sort_by(|a, b| a.stored.name.cmp(&b.stored.name));
        list
    }

    /// The committed sequence of `name`.
    ///
    /// # Errors
    /// `InvalidName` or `NotFound`.
    pub fn committed(&self, name: &str) -> Result<u64, ConsumerError> {
        validate_name(name)?;
        self.entries()
            .get(name)
            .map(|e| *e.committed.borrow())
            .ok_or_else(|| ConsumerError::NotFound(name.to_owned()))
    }

    /// Checks that `name` exists and no stream holds it, here or (on JetStream) on any bridge.
    async fn ensure_idle(&self, name: &str) -> Result<(), ConsumerError> {
        validate_name(name)?;
        match self.entries().get(name) {
            None => return Err(ConsumerError::NotFound(name.to_owned())),
            Some(e) if e.active => return Err(ConsumerError::Active(name.to_owned())),
            Some(_) => {}
        }
        if let Positions::Bucket(bucket, _) = &self.positions
            && bucket.is_leased(name).await?
        {
            return Err(ConsumerError::Active(name.to_owned()));
        }
        Ok(())
    }

    /// Applies a stored position change in memory; returns the new committed sequence.
    fn update(&self, name: &str, update: impl FnOnce(u64) -> u64) -> u64 {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(name) else {
            // Deleted meanwhile: its stored row is gone, and moves do not recreate it.
            return 0;
        };
        let committed = update(*entry.committed.borrow());
        entry.committed.send_replace(committed);
        entry.updated_at_ms = now_ms();
        entry.attempts = entry.attempts.split_off(&(committed + 1));
        committed
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Every critical section leaves the map consistent, so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Lease ===

impl Lease {
    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A receiver of the committed sequence.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// On JetStream, cancelled if the shared lease was lost (the stream must then end); never on
    /// the embedded log.
    pub fn lost(&self) -> Option<CancellationToken> {
        self.shared.as_ref().map(SharedLease::lost)
    }

    /// Records one more delivery of `sequence`; returns how many times it has now been sent.
    pub fn record_delivery(&self, sequence: u64) -> u32 {
        let mut entries = self.consumers.entries();
        let Some(entry) = entries.get_mut(&self.name) else {
            return 1;
        };
        let attempts = entry.attempts.entry(sequence).or_insert(0);
        *attempts = attempts.saturating_add(1);
        *attempts
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(entry) = self.consumers.entries().get_mut(&self.name) {
            entry.active = false;
        }
    }
}

fn new_entry(committed: u64) -> Entry {
    let now = now_ms();
    Entry {
        committed: watch::Sender::new(committed),
        active: true,
        attempts: BTreeMap::new(),
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// Checks `[A-Za-z0-9_-]{1,64}`.
///
/// # Errors
/// [`ConsumerError::InvalidName`].
pub fn validate_name(name: &str) -> Result<(), ConsumerError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(valid_char) {
        return Err(ConsumerError::InvalidName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogOptions;
    use std::future::Future;

    #[tokio::test]
    async fn a_lease_abandoned_while_the_consumer_is_created_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
        let consumers = Arc::new(Consumers::new(log.clone(), Vec::new()));
        // Poll the creating lease once (it then waits for the writer) and drop it, as tonic drops a
        // handler whose client went away.
        let mut creating = Box::pin(consumers.lease("app", 0));
        let waker = std::task::Waker::noop();
        let pending = creating
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        assert!(pending.is_pending());
        drop(creating);
        let lease = consumers
            .lease("app", 0)
            .await
            .expect("the name is free again");
        assert_eq!(lease.name(), "app");
        drop(lease);
        tokio::task::spawn_blocking(move || log.close())
            .await
            .unwrap();
    }
}
