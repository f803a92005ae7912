//! A snapshot of the state bucket, consistent at a sequence S (see the module doc of `state` for
//! why and how): wait for the builder to apply the head, hold it still, read `meta.applied` as S,
//! then stream every object value in batches from a consumer that delivers the last message of
//! each object key, and let the builder go on when the snapshot is dropped.

use std::time::Duration;

use super::{
    HOLD_PREFIX, StateBucket, key, remote,
    values::{BATCH_BYTES, LatestValues},
};
use crate::{
    jetstream::{LEASE_TTL, ReadError, SharedLease},
    log::StoredObject,
};

/// How long a snapshot waits for the builder to apply the head it saw before it proceeds anyway
/// (consistent at an older sequence: the stream then goes on from there).
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(3);
/// How long a snapshot waits for the builder to acknowledge its hold: a builder that died must be
/// replaced first, which the lease's TTL bounds.
const PAUSE_PATIENCE: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 10);
/// Pause between two looks at the builder's progress.
const POLL: Duration = Duration::from_millis(50);
/// Most object values per batch sent to the client.
const BATCH: usize = 128;

/// A snapshot being read; the builder stays paused until it is dropped.
pub struct StateSnapshot {
    /// The sequence the snapshot is consistent at.
    sequence: u64,
    /// Also return tombstones.
    include_tombstones: bool,
    /// The values, last per key.
    values: LatestValues,
    /// Keeps the builder paused.
    _hold: SharedLease,
}

// === impl StateSnapshot ===

impl std::fmt::Debug for StateSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSnapshot")
            .field("sequence", &self.sequence)
            .field("remaining", &self.values.remaining())
            .finish_non_exhaustive()
    }
}

impl StateSnapshot {
    /// Starts a snapshot once the builder applied `head` (or a few seconds passed).
    ///
    /// # Errors
    /// [`ReadError`] when the bucket cannot be read or no builder acknowledged the hold in time.
    pub(in crate::jetstream) async fn open(
        bucket: &StateBucket,
        head: u64,
        include_tombstones: bool,
    ) -> Result<Self, ReadError> {
        bucket
            .wait_for_meta(CATCH_UP_PATIENCE, POLL, |m| m.applied >= head)
            .await?;
        let hold_key = format!("{HOLD_PREFIX}{:016x}", fastrand::u64(..));
        let hold = bucket
            .leases
            .lease(&hold_key, &bucket.holder)
            .await
            .map_err(remote)?
            .ok_or_else(|| ReadError::Remote("snapshot hold taken".into()))?;
        let Some(meta) = bucket
            .wait_for_meta(PAUSE_PATIENCE, POLL, |m| m.paused_for.contains(&hold_key))
            .await?
        else {
            return Err(ReadError::Remote(
                "no state builder paused for the snapshot".into(),
            ));
        };
        let values = LatestValues::open(bucket, key::OBJECTS_FILTER).await?;
        tracing::debug!(
            sequence = meta.applied,
            objects = values.remaining(),
            "State snapshot started"
        );
        Ok(StateSnapshot {
            sequence: meta.applied,
            include_tombstones,
            values,
            _hold: hold,
        })
    }

    /// The sequence the snapshot is consistent at.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The next objects (at most about 128 KiB of events); empty once all were read.
    ///
    /// # Errors
    /// [`ReadError`] when a value cannot be read, or is past the snapshot's sequence.
    pub async fn next_batch(&mut self) -> Result<Vec<StoredObject>, ReadError> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            let Some((kind, id, value)) = self.values.next().await? else {
                break;
            };
            if value.sequence > self.sequence {
                return Err(ReadError::Remote(format!(
                    "state changed during the snapshot at {} (a value of {})",
                    self.sequence, value.sequence
                )));
            }
            if value.deleted && !self.include_tombstones {
                continue;
            }
            bytes += value.event.len();
            batch.push(value.into_object(kind, id));
        }
        Ok(batch)
    }
}
