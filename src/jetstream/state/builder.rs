//! The state builder: on the one bridge holding the lease `state.builder`, reads the stream in
//! order from the applied sequence and applies each event to the bucket (see the module doc of
//! `state`). Bounded: one batch of events at a time, read with a direct get.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::jetstream::kv::CreateErrorKind;
use futures_util::{StreamExt, stream::FuturesUnordered};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{BUILDER_LEASE, StateBucket, key, remote, value::ObjectValue};
use crate::{
    jetstream::{ReadError, SharedLease, direct},
    log::{ObjectRef, Positions, StoredEvent},
    record,
};

/// Events read per batch.
const BATCH: usize = 256;
/// Most bytes of events per batch.
const BATCH_BYTES: usize = 1024 * 1024;
/// Objects written at once: each write is a round trip to the servers.
const PARALLEL_WRITES: usize = 32;
/// How often a bridge without the lease tries to take it.
const TAKEOVER_POLL: Duration = Duration::from_secs(1);
/// How often the holder looks for snapshot holds while it has nothing to apply, or is paused.
const HOLD_POLL: Duration = Duration::from_millis(200);
/// Pause after a failed step before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Where the builder reads events and publishes its progress.
#[derive(Debug)]
pub(in crate::jetstream) struct Source {
    /// The connection, for direct gets.
    pub(in crate::jetstream) client: async_nats::Client,
    /// The event stream's name.
    pub(in crate::jetstream) stream: String,
    /// The stream's head, as this bridge sees it.
    pub(in crate::jetstream) positions: watch::Receiver<Positions>,
    /// The applied sequence, for the metric (the holder's, as last seen by this bridge).
    pub(in crate::jetstream) applied: Arc<watch::Sender<u64>>,
}

/// Why the holder stopped building.
enum Yield {
    /// The bridge is closing.
    Stop,
    /// The lease was lost, or another bridge wrote `meta`: another holder builds now.
    Lost,
}

/// Takes the builder lease whenever it is free and builds while holding it, until `stop`.
pub(in crate::jetstream) async fn build(
    bucket: StateBucket,
    mut source: Source,
    stop: CancellationToken,
) {
    loop {
        let lease = match bucket.leases.lease(BUILDER_LEASE, &bucket.holder).await {
            Ok(lease) => lease,
            Err(error) => {
                tracing::debug!(%error, "State builder lease unavailable");
                None
            }
        };
        if let Some(lease) = lease {
            tracing::info!("Building the JetStream state on this bridge");
            match hold_and_build(&bucket, &mut source, &lease, &stop).await {
                Ok(Yield::Stop) => return,
                Ok(Yield::Lost) => tracing::info!("State builder lease given up"),
                Err(error) => tracing::warn!(%error, "State builder stopped; trying again"),
            }
            drop(lease);
        } else if let Ok((meta, _)) = bucket.meta().await {
            source.applied.send_if_modified(|a| raise(a, meta.applied));
        }
        tokio::select! {
            () = tokio::time::sleep(TAKEOVER_POLL) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Builds while `lease` holds: applies batch after batch, pausing while snapshots hold the state.
async fn hold_and_build(
    bucket: &StateBucket,
    source: &mut Source,
    lease: &SharedLease,
    stop: &CancellationToken,
) -> Result<Yield, ReadError> {
    let lost = lease.lost();
    let (mut meta, mut revision) = bucket.meta().await?;
    source.applied.send_if_modified(|a| raise(a, meta.applied));
    // A former holder may have written values past `meta.applied` (the batch it did not record):
    // snapshots wait until this holder has applied that batch again, or there is none.
    let mut settled = false;
    loop {
        if stop.is_cancelled() {
            return Ok(Yield::Stop);
        }
        if lost.is_cancelled() {
            return Ok(Yield::Lost);
        }
        let head = source.positions.borrow_and_update().head;
        settled |= meta.applied >= head;
        let holds = match settled {
            true => bucket.holds().await?,
            false => Vec::new(),
        };
        if holds != meta.paused_for {
            meta.paused_for = holds;
            let Some(next) = bucket.write_meta(&meta, revision).await? else {
                return Ok(Yield::Lost);
            };
            revision = Some(next);
            tracing::debug!(holds = meta.paused_for.len(), "State builder holds changed");
        }
        if !meta.paused_for.is_empty() || meta.applied >= head {
            tokio::select! {
                _ = source.positions.changed(), if meta.paused_for.is_empty() => {}
                () = tokio::time::sleep(HOLD_POLL) => {}
                () = lost.cancelled() => return Ok(Yield::Lost),
                () = stop.cancelled() => return Ok(Yield::Stop),
            }
            continue;
        }
        let batch = direct::read_after(
            &source.client,
            &source.stream,
            meta.applied,
            BATCH,
            BATCH_BYTES,
        )
        .await?;
        let Some(last) = batch.last().map(|e| e.sequence) else {
            // Behind the head yet nothing to read: a replica that has not caught up.
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        if batch[0].sequence > meta.applied + 1 {
            tracing::warn!(
                applied = meta.applied,
                first = batch[0].sequence,
                "Events deleted by retention before the state builder applied them"
            );
        }
        let Some(changed) = apply_batch(bucket, &batch, &lost).await? else {
            return Ok(Yield::Lost);
        };
        meta.applied = last;
        let Some(next) = bucket.write_meta(&meta, revision).await? else {
            return Ok(Yield::Lost);
        };
        revision = Some(next);
        settled = true;
        source.applied.send_if_modified(|a| raise(a, last));
        tracing::debug!(
            applied = last,
            events = batch.len(),
            changed,
            "State builder applied a batch"
        );
    }
}

/// Applies a batch: only the event of each object that wins within the batch, since the version
/// rule picks the same final value when the batch's winner meets the stored one (every event of
/// the batch is newer than it); objects in parallel, each with its own compare-and-set. How many
/// values changed, or `None` once the lease was lost.
async fn apply_batch(
    bucket: &StateBucket,
    batch: &[StoredEvent],
    lost: &CancellationToken,
) -> Result<Option<u32>, ReadError> {
    let mut waiting = winners(batch).into_iter();
    let mut writing = FuturesUnordered::new();
    let mut changed = 0;
    loop {
        while writing.len() < PARALLEL_WRITES
            && let Some((object, stored)) = waiting.next()
        {
            writing.push(apply(bucket, object, stored));
        }
        let Some(applied) = writing.next().await else {
            return Ok(Some(changed));
        };
        if lost.is_cancelled() {
            return Ok(None);
        }
        changed += u32::from(applied?);
    }
}

/// The event of each object that wins under the version rule among the batch's (in order).
fn winners(batch: &[StoredEvent]) -> Vec<(ObjectRef, &StoredEvent)> {
    let mut winners: HashMap<(String, String), (ObjectRef, &StoredEvent)> = HashMap::new();
    for stored in batch {
        let Some(object) = record::object_of_stored(stored) else {
            continue;
        };
        let key = (object.kind.clone(), object.id.clone());
        let current = winners.get(&key).map(|(o, _)| (o.version, o.deleted));
        if object.supersedes(current) {
            winners.insert(key, (object, stored));
        }
    }
    winners.into_values().collect()
}

/// Applies one event under the version rule; whether it changed its object's value.
async fn apply(
    bucket: &StateBucket,
    object: ObjectRef,
    stored: &StoredEvent,
) -> Result<bool, ReadError> {
    let key = key::object(&object.kind, &object.id);
    let value = ObjectValue::of_event(stored, object.version, object.deleted).encode();
    // A `*.created` event's object is usually new: creating its key first takes one round trip
    // instead of two. If it exists, the event is compared as any other.
    if stored.event_type.ends_with(".created") {
        match bucket.store.create(key.as_str(), value.clone()).await {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(remote(e)),
        }
    }
    loop {
        let revision = match bucket.object_value(&key).await? {
            Some((current, revision)) => {
                // Applied already (by a former holder that had not recorded it yet), or loses.
                if current.sequence >= stored.sequence
                    || !object.supersedes(Some((current.version, current.deleted)))
                {
                    return Ok(false);
                }
                Some(revision)
            }
            None => None,
        };
        // Written meanwhile (a former holder): compare with that value again.
        if bucket
            .compare_and_set(&key, value.clone(), revision)
            .await?
            .is_some()
        {
            return Ok(true);
        }
    }
}

fn raise(applied: &mut u64, to: u64) -> bool {
    if to > *applied {
        *applied = to;
        true
    } else {
        false
    }
}
