//! Named consumers on JetStream: their committed positions in a key-value bucket that every
//! bridge shares (`<stream>_CONSUMERS`), and the one-stream-per-consumer rule kept across bridges
//! by leases in a second bucket (`<stream>_LEASES`).
//!
//! Positions change by compare-and-set on the key's revision, so a commit never undoes a newer one
//! made on another bridge, and a commit racing a delete finds the key gone and writes nothing.
//! Every bridge mirrors the bucket with a watch, so the stream of a consumer sees commits made
//! through any bridge.
//!
//! A lease is a key created only if absent, naming its holder and refreshed every
//! [`LEASE_REFRESH`]; the bucket forgets entries older than [`LEASE_TTL`], so the lease of a
//! bridge that died frees itself. A holder that cannot refresh in time gives its stream up (see
//! [`SharedLease::lost`]) before another bridge may take it.

use std::{collections::HashSet, time::Duration};

use async_nats::jetstream::{
    self,
    kv::{self, CreateErrorKind, Operation, UpdateErrorKind},
    stream::StorageType,
};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::OpenError;
use crate::log::{StoredConsumer, WriteError};

/// How long a lease outlives its last refresh.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often a held lease is refreshed: three chances before it expires.
const LEASE_REFRESH: Duration = Duration::from_secs(4);

/// A consumer's position as the bucket stores it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Position {
    committed: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
}

/// A change to a consumer that the bucket's watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Created or moved, as stored now.
    Stored(StoredConsumer),
    /// Deleted.
    Deleted(String),
}

/// The shared consumer buckets of one stream.
#[derive(Debug, Clone)]
pub struct ConsumerBucket {
    /// Positions by consumer name.
    positions: kv::Store,
    /// Leases by consumer name.
    leases: kv::Store,
}

/// A lease held by this bridge; given back on drop.
#[derive(Debug)]
pub struct SharedLease {
    /// Cancelled when the lease could not be kept: the stream must end.
    lost: CancellationToken,
    /// Stops the refresher, which then deletes the lease.
    release: CancellationToken,
}

// === impl ConsumerBucket ===

impl ConsumerBucket {
    /// Opens (creating if needed) the buckets of `stream`, with its replicas.
    pub(super) async fn open(
        context: &jetstream::Context,
        stream: &str,
        replicas: usize,
    ) -> Result<Self, OpenError> {
        let bucket = |name: String, max_age: Duration| kv::Config {
            bucket: name,
            history: 1,
            max_age,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let positions = create_or_open(
            context,
            bucket(format!("{stream}_CONSUMERS"), Duration::ZERO),
        )
        .await?;
        let leases = create_or_open(context, bucket(format!("{stream}_LEASES"), LEASE_TTL)).await?;
        Ok(ConsumerBucket { positions, leases })
    }

    /// Every consumer stored now, then each change as it happens, until `stop`.
    pub async fn watch(
        &self,
        mut apply: impl FnMut(Change) + Send,
        stop: CancellationToken,
    ) -> Result<(), WriteError> {
        let mut watch = self
            .positions
            .watch_with_history(">")
            .await
            .map_err(remote)?;
        loop {
            let entry = tokio::select! {
                entry = watch.next() => entry,
                () = stop.cancelled() => return Ok(()),
            };
            let Some(entry) = entry else {
                return Err(WriteError::Remote("the consumer watch ended".into()));
            };
            let entry = entry.map_err(remote)?;
            match entry.operation {
                Operation::Put => {
                    if let Ok(position) = serde_json::from_slice::<Position>(&entry.value) {
                        apply(Change::Stored(stored(entry.key, position)));
                    }
                }
                Operation::Delete | Operation::Purge => apply(Change::Deleted(entry.key)),
            }
        }
    }

    /// Stores a new consumer at `committed`; an existing one is left as it is.
    pub async fn create(&self, name: &str, committed: u64, now_ms: i64) -> Result<(), WriteError> {
        let position = Position {
            committed,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        match self.positions.create(name, encode(&position)).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(remote(error)),
        }
    }

    /// Moves `name` to `committed` (only forward when `forward_only`), unless it was deleted:
    /// then writes nothing and returns false.
    pub async fn move_to(
        &self,
        name: &str,
        committed: u64,
        forward_only: bool,
        now_ms: i64,
    ) -> Result<bool, WriteError> {
        loop {
            let Some(entry) = self.positions.entry(name).await.map_err(remote)? else {
                return Ok(false);
            };
            if entry.operation != Operation::Put {
                return Ok(false);
            }
            let mut position: Position = serde_json::from_slice(&entry.value)
                .map_err(|e| WriteError::Remote(format!("stored consumer {name}: {e}").into()))?;
            if forward_only && position.committed >= committed {
                return Ok(true);
            }
            position.committed = committed;
            position.updated_at_ms = now_ms;
            match self
                .positions
                .update(name, encode(&position), entry.revision)
                .await
            {
                Ok(_) => return Ok(true),
                // Changed meanwhile (through another bridge): read it again.
                Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => {}
                Err(error) => return Err(remote(error)),
            }
        }
    }

    /// Every consumer stored now.
    pub async fn load(&self) -> Result<Vec<StoredConsumer>, WriteError> {
        let mut keys = self.positions.keys().await.map_err(remote)?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(remote)?);
        }
        let mut consumers = Vec::with_capacity(names.len());
        for name in names {
            if let Some(consumer) = self.get(&name).await? {
                consumers.push(consumer);
            }
        }
        Ok(consumers)
    }

    /// The consumer `name` as stored now.
    pub async fn get(&self, name: &str) -> Result<Option<StoredConsumer>, WriteError> {
        let entry = self.positions.entry(name).await.map_err(remote)?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .and_then(|e| serde_json::from_slice(&e.value).ok())
            .map(|position| stored(name.to_owned(), position)))
    }

    /// Deletes `name`.
    pub async fn delete(&self, name: &str) -> Result<(), WriteError> {
        self.positions.delete(name).await.map_err(remote)
    }

    /// The leases bucket, where the state builder's lease and snapshot holds live too.
    pub(super) fn leases(&self) -> &kv::Store {
        &self.leases
    }

    /// Whether a bridge holds the lease of `name` now.
    pub async fn is_leased(&self, name: &str) -> Result<bool, WriteError> {
        let entry = self.leases.entry(name).await.map_err(remote)?;
        Ok(entry.is_some_and(|e| e.operation == Operation::Put))
    }

    /// The names whose lease some bridge holds now, for `ListConsumers`' `active`.
    pub async fn leased(&self) -> Result<HashSet<String>, WriteError> {
        let keys = self.leases.keys().await.map_err(remote)?;
        keys.try_collect().await.map_err(remote)
    }

    /// Takes the lease of `name` for `holder`, or `None` while another holds it.
    pub async fn lease(&self, name: &str, holder: &str) -> Result<Option<SharedLease>, WriteError> {
        let revision = match self
            .leases
            .create(name, Bytes::from(holder.to_owned()))
            .await
        {
            Ok(revision) => revision,
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => return Ok(None),
            Err(error) => return Err(remote(error)),
        };
        let lease = SharedLease {
            lost: CancellationToken::new(),
            release: CancellationToken::new(),
        };
        tokio::spawn(keep(
            self.leases.clone(),
            (name.to_owned(), holder.to_owned(), revision),
            lease.lost.clone(),
            lease.release.clone(),
        ));
        Ok(Some(lease))
    }
}

// === impl SharedLease ===

impl SharedLease {
    /// Cancelled once the lease could not be refreshed in time.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }
}

impl Drop for SharedLease {
    fn drop(&mut self) {
        self.release.cancel();
    }
}

/// Refreshes a lease until `release`, then deletes it; if a refresh fails, or the lease is not
/// refreshed before it would expire, cancels `lost` and stops.
async fn keep(
    leases: kv::Store,
    (name, holder, mut revision): (String, String, u64),
    lost: CancellationToken,
    release: CancellationToken,
) {
    let mut refreshed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(LEASE_REFRESH) => {}
            () = release.cancelled() => {
                let _ = leases.delete_expect_revision(&name, Some(revision)).await;
                return;
            }
        }
        let refresh = leases.update(&name, Bytes::from(holder.clone()), revision);
        let deadline = refreshed + LEASE_TTL - LEASE_REFRESH;
        match tokio::time::timeout_at(deadline, refresh).await {
            Ok(Ok(next)) => {
                revision = next;
                refreshed = tokio::time::Instant::now();
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, consumer = %name, "Consumer lease lost; ending its stream");
                lost.cancel();
                return;
            }
            Err(_) => {
                tracing::warn!(consumer = %name, "Consumer lease not refreshed in time; ending its stream");
                lost.cancel();
                return;
            }
        }
    }
}

/// Opens the key-value bucket of `config`, creating it if needed.
pub(super) async fn create_or_open(
    context: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, OpenError> {
    let name = config.bucket.clone();
    match context.get_key_value(&name).await {
        Ok(store) => Ok(store),
        Err(_) => context
            .create_key_value(config)
            .await
            .map_err(|e| OpenError::Stream(format!("key-value bucket {name}: {e}"))),
    }
}

fn stored(name: String, position: Position) -> StoredConsumer {
    StoredConsumer {
        name,
        committed: position.committed,
        created_at_ms: position.created_at_ms,
        updated_at_ms: position.updated_at_ms,
    }
}

fn encode(position: &Position) -> Bytes {
    // Serializing a struct of numbers cannot fail.
    Bytes::from(serde_json::to_vec(position).unwrap_or_default())
}

fn remote(error: impl std::fmt::Display) -> WriteError {
    WriteError::Remote(error.to_string().into())
}
