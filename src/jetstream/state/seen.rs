//! Reconciliation on JetStream: the objects a pass saw in Clerk, one empty key per object
//! (`s.<kind>.<id>`) in the bucket `<stream>_SEEN`, emptied when a pass starts and kept 30 days at
//! most (an abandoned pass leaves nothing for good); and the candidates for deletion, found by
//! reading every object value of a kind from the state bucket: live, not seen, and not changed
//! since the pass began. Each such read goes once over the kind's values and looks each up in the
//! seen bucket, a batch at a time in parallel; the pass's safety bound keeps the candidates few.

use async_nats::jetstream::kv::Operation;
use bytes::Bytes;
use futures_util::future::try_join_all;

use super::{StateBucket, key, remote, unavailable, values::LatestValues};
use crate::{
    jetstream::{JetStreamLog, ReadError},
    log::{StoredObject, WriteError},
};

/// Objects looked up in the seen bucket at once.
const LOOKUPS: usize = 128;

// === impl JetStreamLog ===

impl JetStreamLog {
    /// Records that the running pass saw `seen` (kind, id) in Clerk; `fresh` forgets what an
    /// earlier pass saw first.
    ///
    /// # Errors
    /// [`WriteError`] when the seen bucket cannot be written.
    pub async fn save_seen(
        &self,
        fresh: bool,
        seen: &[(String, String)],
    ) -> Result<(), WriteError> {
        let bucket = &self.state.seen;
        if fresh {
            bucket.stream.purge().await.map_err(unavailable)?;
        }
        let puts = seen
            .iter()
            .map(|(kind, id)| bucket.put(key::seen(kind, id), Bytes::new()));
        try_join_all(puts).await.map_err(unavailable)?;
        Ok(())
    }

    /// How many objects of `kind` the state holds as live, and how many of those the running pass
    /// has not seen with their latest event at most `through`.
    ///
    /// # Errors
    /// [`ReadError`] when a bucket cannot be read.
    pub async fn live_and_unseen(&self, kind: &str, through: u64) -> Result<(u64, u64), ReadError> {
        let mut unseen = 0;
        let live = self
            .state
            .scan_unseen(kind, through, |_| unseen += 1)
            .await?;
        Ok((live, unseen))
    }

    /// Every live object of `kind` with an id after `after_id`, in id order, whose latest event is
    /// at most `through` and that the running pass has not seen.
    ///
    /// # Errors
    /// [`ReadError`] when a bucket cannot be read.
    pub async fn unseen_live_objects(
        &self,
        kind: &str,
        through: u64,
        after_id: &str,
    ) -> Result<Vec<StoredObject>, ReadError> {
        let mut found = Vec::new();
        self.state
            .scan_unseen(kind, through, |object| {
                if object.id.as_str() > after_id {
                    found.push(object);
                }
            })
            .await?;
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }
}

// === impl StateBucket ===

impl StateBucket {
    /// Reads every object value of `kind`, passing each live one whose latest event is at most
    /// `through` and that the seen bucket does not hold to `unseen`; how many are live.
    async fn scan_unseen(
        &self,
        kind: &str,
        through: u64,
        mut unseen: impl FnMut(StoredObject),
    ) -> Result<u64, ReadError> {
        let mut values = LatestValues::open(self, &key::objects_of(kind)).await?;
        let mut live = 0;
        let mut batch = Vec::with_capacity(LOOKUPS);
        loop {
            let next = values.next().await?;
            let end = next.is_none();
            if let Some((kind, id, value)) = next
                && !value.deleted
            {
                live += 1;
                if value.sequence <= through {
                    batch.push(value.into_object(kind, id));
                }
            }
            if batch.len() >= LOOKUPS || end {
                for object in self.not_seen(&mut batch).await? {
                    unseen(object);
                }
            }
            if end {
                return Ok(live);
            }
        }
    }

    /// The objects of `batch` (which it empties) that the seen bucket does not hold.
    async fn not_seen(
        &self,
        batch: &mut Vec<StoredObject>,
    ) -> Result<Vec<StoredObject>, ReadError> {
        let lookups = batch
            .iter()
            .map(|object| self.seen.entry(key::seen(&object.kind, &object.id)));
        let entries = try_join_all(lookups).await.map_err(remote)?;
        Ok(batch
            .drain(..)
            .zip(entries)
            .filter(|(_, entry)| {
                !entry
                    .as_ref()
                    .is_some_and(|e| e.operation == Operation::Put)
            })
            .map(|(object, _)| object)
            .collect())
    }
}
