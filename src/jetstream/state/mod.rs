//! The current state on JetStream: the latest event of every object under the version rule (see
//! `crate::log::ObjectRef`), in a key-value bucket that every bridge shares, `<stream>_STATE`, so
//! that a subscriber can start from a snapshot on any bridge, as on the embedded log.
//!
//! # The bucket
//! One key per object (`o.<kind>.<id>`, see the `key` module), whose value is the winning event
//! with its sequence, version and deletion flag (see the `value` module); deletions stay as
//! tombstone values, never KV deletes. One more key, `meta`, holds the builder's applied sequence.
//! History 1, the stream's replicas, values up to the largest event.
//!
//! # The builder
//! Exactly one bridge at a time builds the state (see the `builder` module): it holds the lease
//! `state.builder` in `<stream>_LEASES` and reads the stream in order from the applied sequence,
//! applying each event with compare-and-set on its key's revision, then records the new applied
//! sequence in `meta`, also by compare-and-set. Any bridge takes over within the lease's TTL when
//! the holder dies; a holder that cannot refresh its lease stops writing before it could expire.
//!
//! # Snapshots, and why they pause the builder
//! A snapshot must be exactly the result of applying events 1..=S, and its start marker names S
//! before the first object is sent. The brief's idea was to read every value as of one point of
//! the bucket's stream (a consumer delivering the last message per subject) and take S = max(the
//! applied marker, the largest sequence read). Two things break it with history 1:
//! - S is only known once every value has been read, but it must be sent first; reading twice
//!   means two points of the bucket, which differ while the builder writes.
//! - Such a consumer lists the last message of each key when it is created and delivers them one
//!   by one; with history 1 a key written again meanwhile loses that message, so the key is then
//!   delivered only with its newer value (after S) or not at all, however slowly the client reads.
//!
//! So a snapshot holds the builder still instead (see the `snapshot` module): it waits (a few
//! seconds at most) for the builder to apply the head it saw, creates a hold (a lease
//! `state.hold.<id>` in `<stream>_LEASES`, refreshed while the snapshot runs and gone within the
//! TTL if its bridge dies), and waits until `meta` lists the hold: the builder checks for holds
//! before each batch and writes that acknowledgement after the batch before it, so from then on
//! nothing writes to the bucket. S is then `meta.applied`: every event up to it was applied (the
//! marker is written after the objects it covers), and none after it was (the builder applies in
//! order and writes the marker after each batch; a new holder first applies again the batch its
//! predecessor may have left unrecorded). The values are then streamed in batches, and
//! any value whose sequence exceeds S (a stale former holder's write) ends the snapshot with an
//! error rather than a wrong state. Snapshots at once share the pause; the state lags the stream
//! while any runs, and catches up when the last one ends.

mod builder;
mod key;
mod passes;
mod seen;
mod snapshot;
mod value;
mod values;

use std::time::Duration;

use async_nats::jetstream::{
    self,
    kv::{self, CreateErrorKind, Operation, UpdateErrorKind},
    stream::StorageType,
};
use bytes::Bytes;
use futures_util::StreamExt;

pub(super) use builder::{Source, build};
pub use snapshot::StateSnapshot;
use value::{Meta, ObjectValue};

use super::{ConsumerBucket, OpenError, ReadError, connect::MIN_MAX_PAYLOAD, consumers};

/// The lease of the builder, in the leases bucket (consumer names have no dots, so no consumer
/// can take it).
const BUILDER_LEASE: &str = "state.builder";
/// How long a seen object is remembered: longer than any pass, so that an abandoned pass's
/// bookkeeping does not stay for good.
const SEEN_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The prefix of snapshot holds in the leases bucket.
const HOLD_PREFIX: &str = "state.hold.";

/// The state bucket of one stream, with the leases it shares with the named consumers.
#[derive(Debug, Clone)]
pub(super) struct StateBucket {
    /// The bucket (and its stream, which snapshots read with a consumer).
    store: kv::Store,
    /// The objects the running reconciliation pass saw in Clerk (see the `seen` module).
    seen: kv::Store,
    /// The leases bucket: the builder's lease and snapshot holds.
    leases: ConsumerBucket,
    /// This bridge's name in leases.
    holder: String,
}

// === impl StateBucket ===

impl StateBucket {
    /// Opens (creating if needed) the state bucket of `stream`, with its replicas.
    pub(super) async fn open(
        context: &jetstream::Context,
        stream: &str,
        replicas: usize,
        (leases, holder): (ConsumerBucket, String),
    ) -> Result<Self, OpenError> {
        let store = consumers::create_or_open(
            context,
            kv::Config {
                bucket: format!("{stream}_STATE"),
                description: "Latest event of every object, by clerk-bridge".to_owned(),
                history: 1,
                max_value_size: i32::try_from(MIN_MAX_PAYLOAD).unwrap_or(i32::MAX),
                storage: StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        let seen = consumers::create_or_open(
            context,
            kv::Config {
                bucket: format!("{stream}_SEEN"),
                description: "Objects a reconciliation pass saw in Clerk, by clerk-bridge"
                    .to_owned(),
                history: 1,
                max_age: SEEN_MAX_AGE,
                storage: StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        Ok(StateBucket {
            store,
            seen,
            leases,
            holder,
        })
    }

    /// The entry under `key`, unless it has no value (never written, or deleted).
    async fn live_entry(&self, key: &str) -> Result<Option<kv::Entry>, ReadError> {
        let entry = self.store.entry(key).await.map_err(remote)?;
        Ok(entry.filter(|e| e.operation == Operation::Put))
    }

    /// The value under the object key `key` and its revision, if it has one.
    async fn object_value(&self, key: &str) -> Result<Option<(ObjectValue, u64)>, ReadError> {
        let Some(entry) = self.live_entry(key).await? else {
            return Ok(None);
        };
        let value = ObjectValue::decode(&entry.value).map_err(remote)?;
        Ok(Some((value, entry.revision)))
    }

    /// The builder's progress and the revision of `meta` (`None` before the first write).
    async fn meta(&self) -> Result<(Meta, Option<u64>), ReadError> {
        match self.live_entry(key::META).await? {
            Some(entry) => Ok((
                Meta::decode(&entry.value).map_err(remote)?,
                Some(entry.revision),
            )),
            None => Ok((Meta::default(), None)),
        }
    }

    /// Polls `meta` every `poll` until `done` holds (returning it) or `patience` passed
    /// (returning `None`).
    async fn wait_for_meta(
        &self,
        patience: Duration,
        poll: Duration,
        done: impl Fn(&Meta) -> bool,
    ) -> Result<Option<Meta>, ReadError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let (meta, _) = self.meta().await?;
            if done(&meta) {
                return Ok(Some(meta));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Writes `meta` if it is still at `revision`; the new revision, or `None` when another
    /// bridge wrote it meanwhile.
    async fn write_meta(
        &self,
        meta: &Meta,
        revision: Option<u64>,
    ) -> Result<Option<u64>, ReadError> {
        self.compare_and_set(key::META, meta.encode(), revision)
            .await
    }

    /// Writes `value` under `key` if the key is still at `revision` (`None`: if it has no value);
    /// the new revision, or `None` when it was written meanwhile.
    async fn compare_and_set(
        &self,
        key: &str,
        value: Bytes,
        revision: Option<u64>,
    ) -> Result<Option<u64>, ReadError> {
        let written = match revision {
            Some(revision) => self.store.update(key, value, revision).await.map_err(|e| {
                (
                    e.kind() == UpdateErrorKind::WrongLastRevision,
                    e.to_string(),
                )
            }),
            None => self
                .store
                .create(key, value)
                .await
                .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string())),
        };
        match written {
            Ok(revision) => Ok(Some(revision)),
            Err((true, _)) => Ok(None),
            Err((false, error)) => Err(ReadError::Remote(error)),
        }
    }

    /// The snapshot holds alive now, sorted.
    async fn holds(&self) -> Result<Vec<String>, ReadError> {
        let mut keys = self.leases.leases().keys().await.map_err(remote)?;
        let mut holds = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(remote)?;
            if key.starts_with(HOLD_PREFIX) {
                holds.push(key);
            }
        }
        holds.sort();
        Ok(holds)
    }
}

fn remote(error: impl std::fmt::Display) -> ReadError {
    ReadError::Remote(error.to_string())
}

fn unavailable(error: impl std::fmt::Display) -> crate::log::WriteError {
    crate::log::WriteError::Remote(error.to_string().into())
}
