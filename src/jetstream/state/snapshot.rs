//! A snapshot of the state bucket, consistent at a sequence S (see the module doc of `state` for
//! why and how): wait for the builder to apply the head, hold it still, read `meta.applied` as S,
//! then stream every object value in batches from a consumer that delivers the last message of
//! each object key, and let the builder go on when the snapshot is dropped.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures_util::StreamExt;

use super::{HOLD_PREFIX, StateBucket, key, remote, value::ObjectValue};
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
/// Most object values per batch.
const BATCH: usize = 128;
/// Most bytes of events per batch (with the stream's own bound, a stalled snapshot holds about
/// twice this).
const BATCH_BYTES: usize = 128 * 1024;
/// How long one value may take to arrive.
const VALUE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the servers keep the snapshot's consumer once nobody pulls from it (a stalled client).
const CONSUMER_IDLE: Duration = Duration::from_secs(600);

/// A snapshot being read; the builder stays paused until it is dropped.
pub struct StateSnapshot {
    /// The sequence the snapshot is consistent at.
    sequence: u64,
    /// Object values still to come.
    remaining: u64,
    /// Also return tombstones.
    include_tombstones: bool,
    /// The bucket's subject prefix, `$KV.<bucket>.`.
    prefix: String,
    /// The values, last per key.
    values: pull::Stream,
    /// Keeps the builder paused.
    _hold: SharedLease,
}

// === impl StateSnapshot ===

impl std::fmt::Debug for StateSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSnapshot")
            .field("sequence", &self.sequence)
            .field("remaining", &self.remaining)
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
        wait_for(bucket, CATCH_UP_PATIENCE, |m| m.applied >= head).await?;
        let hold_key = format!("{HOLD_PREFIX}{:016x}", fastrand::u64(..));
        let hold = bucket
            .leases
            .lease(&hold_key, &bucket.holder)
            .await
            .map_err(remote)?
            .ok_or_else(|| ReadError::Remote("snapshot hold taken".into()))?;
        let Some(meta) =
            wait_for(bucket, PAUSE_PATIENCE, |m| m.paused_for.contains(&hold_key)).await?
        else {
            return Err(ReadError::Remote(
                "no state builder paused for the snapshot".into(),
            ));
        };
        let consumer = bucket
            .store
            .stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::LastPerSubject,
                filter_subject: format!("{}{}", bucket.store.prefix, key::OBJECTS_FILTER),
                ack_policy: AckPolicy::None,
                inactive_threshold: CONSUMER_IDLE,
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(remote)?;
        let remaining = consumer.cached_info().num_pending;
        let values = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .max_bytes_per_batch(BATCH_BYTES)
            .messages()
            .await
            .map_err(remote)?;
        tracing::debug!(
            sequence = meta.applied,
            objects = remaining,
            "State snapshot started"
        );
        Ok(StateSnapshot {
            sequence: meta.applied,
            remaining,
            include_tombstones,
            prefix: bucket.store.prefix.clone(),
            values,
            _hold: hold,
        })
    }

    /// The sequence the snapshot is consistent at.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The next objects (at most about [`BATCH_BYTES`] of events); empty once all were read.
    ///
    /// # Errors
    /// [`ReadError`] when a value cannot be read, or is past the snapshot's sequence.
    pub async fn next_batch(&mut self) -> Result<Vec<StoredObject>, ReadError> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while self.remaining > 0 && batch.len() < BATCH && bytes < BATCH_BYTES {
            let message = tokio::time::timeout(VALUE_TIMEOUT, self.values.next())
                .await
                .map_err(|_| ReadError::Remote("state value timed out".into()))?
                .ok_or_else(|| ReadError::Remote("state consumer ended".into()))?
                .map_err(remote)?;
            self.remaining -= 1;
            let parsed = message
                .subject
                .strip_prefix(self.prefix.as_str())
                .and_then(key::parse_object);
            let Some((kind, id)) = parsed else { continue };
            if message.payload.is_empty() {
                continue; // a KV delete or purge marker: the builder writes none
            }
            let value = ObjectValue::decode(&message.payload).map_err(remote)?;
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

/// Polls `meta` until `done` (returning it) or `patience` passed (returning `None`).
async fn wait_for(
    bucket: &StateBucket,
    patience: Duration,
    done: impl Fn(&super::Meta) -> bool,
) -> Result<Option<super::Meta>, ReadError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let (meta, _) = bucket.meta().await?;
        if done(&meta) {
            return Ok(Some(meta));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}
