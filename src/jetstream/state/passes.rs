//! Backfill and reconciliation on JetStream: appends that must never undo a newer event, and
//! where a pass stands.
//!
//! The embedded log checks a backfilled object against the state and appends it in one
//! transaction. JetStream has no such transaction, so a page of records is checked against the
//! state once the builder has applied the stream's head, and those that win are published as a
//! chain: the first only if the stream's last sequence is still that head
//! (`Nats-Expected-Last-Sequence`), each next one only if the stream's last event is the one
//! before it (`Nats-Expected-Last-Msg-Id`). If a webhook was stored in between, the servers refuse
//! the chain from there on, and the rest is checked again on a state that holds the webhook. (A
//! chain of expected sequences would not do: after a refused link, the next one's expected
//! sequence may be the webhook's.) Backfilled objects thus never overtake a newer event, without
//! a lock.
//!
//! One pass runs at a time across bridges, on the bridge holding the lease `sync.pass`; where it
//! stands is saved under the key `pass` of the state bucket.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;

use super::{StateBucket, key, unavailable};
use crate::{
    jetstream::{Expect, JetStreamLog, ReadError, SharedLease, appended, headers},
    log::{Appended, NewRecord, WriteError},
};

/// The lease of the running pass, in the leases bucket.
const PASS_LEASE: &str = "sync.pass";
/// How long a pass waits for the builder to apply the head before it gives up (a snapshot holds
/// the builder still while it runs).
const STATE_PATIENCE: Duration = Duration::from_secs(60);
/// Pause between two looks at the builder's progress.
const POLL: Duration = Duration::from_millis(20);

/// What a conditional publish did: appended, or refused since the head moved.
enum Published {
    /// Stored or found a duplicate.
    Done(Appended),
    /// The stream did not hold the expected last event: another was stored in between.
    HeadMoved,
}

// === impl JetStreamLog ===

impl JetStreamLog {
    /// Appends each of `records` in order, those marked `only_if_newer` only if they win over the
    /// state under the version rule (see the module doc).
    ///
    /// # Errors
    /// [`WriteError`] when the servers cannot be asked, or the state builder does not reach the
    /// head in time.
    pub async fn append_if_newer(
        &self,
        records: Vec<NewRecord>,
    ) -> Result<Vec<Appended>, WriteError> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut pending = &records[..];
        while !pending.is_empty() {
            let head = self.last_sequence().await?;
            self.state.wait_for_head(head).await?;
            let lookups = pending.iter().map(|record| self.state.superseding(record));
            let superseding = futures_util::future::try_join_all(lookups).await?;
            let mut acks = self
                .send_chained(pending, &superseding, head)
                .await?
                .into_iter();
            let mut done = 0;
            for superseded in superseding {
                let appended = match superseded {
                    Some(sequence) => Appended::Superseded(sequence),
                    None => match acks.next() {
                        Some(Published::Done(appended)) => appended,
                        // A webhook was stored since the lookups: look again.
                        Some(Published::HeadMoved) | None => break,
                    },
                };
                outcomes.push(appended);
                done += 1;
            }
            pending = &pending[done..];
        }
        Ok(outcomes)
    }

    /// Publishes the records not superseded, at once, as a chain: the first only if the stream's
    /// last sequence is `head`, each next one only if the last event is the one before it. Once a
    /// link fails (an event was stored in between), so does every later one. Their outcomes, in
    /// order.
    async fn send_chained(
        &self,
        records: &[NewRecord],
        superseding: &[Option<u64>],
        head: u64,
    ) -> Result<Vec<Published>, WriteError> {
        let mut sent = Vec::new();
        let mut previous: Option<&str> = None;
        for (record, _) in records.iter().zip(superseding).filter(|(_, s)| s.is_none()) {
            let expect = match previous {
                None => Expect::LastSequence(head),
                Some(id) => Expect::LastMessageId(id),
            };
            let headers = headers::of_record(record);
            let event = Bytes::from(record.event.clone());
            let ack = self.send(&record.event_id, headers, event, expect).await;
            sent.push(ack.map_err(unavailable)?);
            previous = Some(&record.event_id);
        }
        let mut published = Vec::with_capacity(sent.len());
        for ack in sent {
            published.push(match ack.await {
                Ok(ack) => Published::Done(appended(ack)),
                Err(error) if refused_for_order(error.kind()) => Published::HeadMoved,
                Err(error) => return Err(unavailable(error)),
            });
        }
        Ok(published)
    }

    /// Takes the lease of the running pass; `None` while another bridge holds it.
    ///
    /// # Errors
    /// [`WriteError`] when the leases bucket cannot be written.
    pub async fn lease_pass(&self) -> Result<Option<SharedLease>, WriteError> {
        self.state
            .leases
            .lease(PASS_LEASE, &self.state.holder)
            .await
    }

    /// Where the saved pass stands (its JSON), if one is saved.
    ///
    /// # Errors
    /// [`ReadError`] when the state bucket cannot be read.
    pub async fn saved_pass(&self) -> Result<Option<String>, ReadError> {
        self.state.text(key::PASS).await
    }

    /// Saves where the pass stands, or forgets it (`None`).
    ///
    /// # Errors
    /// [`WriteError`] when the state bucket cannot be written.
    pub async fn save_pass(&self, state: Option<String>) -> Result<(), WriteError> {
        self.state.set_text(key::PASS, state).await
    }

    /// When the last reconciliation pass of any bridge that completed began (unix ms): each
    /// bridge's schedule skips a turn that comes sooner than its interval after it.
    ///
    /// # Errors
    /// [`ReadError`] when the state bucket cannot be read.
    pub async fn reconciled_at(&self) -> Result<Option<i64>, ReadError> {
        let text = self.state.text(key::RECONCILED).await?;
        Ok(text.and_then(|text| text.parse().ok()))
    }

    /// Records that a reconciliation pass begun at `began_ms` (unix ms) completed.
    ///
    /// # Errors
    /// [`WriteError`] when the state bucket cannot be written.
    pub async fn record_reconciled(&self, began_ms: i64) -> Result<(), WriteError> {
        self.state
            .set_text(key::RECONCILED, Some(began_ms.to_string()))
            .await
    }

    /// The stream's last sequence, asked of the servers now.
    async fn last_sequence(&self) -> Result<u64, WriteError> {
        let stream = self
            .context
            .get_stream(&self.stream)
            .await
            .map_err(unavailable)?;
        Ok(stream.cached_info().state.last_sequence)
    }
}

// === impl StateBucket ===

impl StateBucket {
    /// The text under `key`, if any.
    async fn text(&self, key: &str) -> Result<Option<String>, ReadError> {
        let entry = self.live_entry(key).await?;
        Ok(entry.map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }

    /// Writes `text` under `key`, or deletes the key (`None`).
    async fn set_text(&self, key: &str, text: Option<String>) -> Result<(), WriteError> {
        match text {
            Some(text) => self
                .store
                .put(key, Bytes::from(text))
                .await
                .map(drop)
                .map_err(unavailable),
            None => self.store.delete(key).await.map_err(unavailable),
        }
    }

    /// Waits for the builder to apply `head`.
    async fn wait_for_head(&self, head: u64) -> Result<(), WriteError> {
        self.wait_for_meta(STATE_PATIENCE, POLL, |m| m.applied >= head)
            .await
            .map_err(unavailable)?
            .map(drop)
            .ok_or_else(|| {
                WriteError::Remote(
                    "the JetStream state did not reach the stream's head within 60 s (a long snapshot holds it still)"
                        .into(),
                )
            })
    }

    /// The sequence of the state's event that `record` does not supersede, if any.
    async fn superseding(&self, record: &NewRecord) -> Result<Option<u64>, WriteError> {
        let Some(object) = record.object.as_ref().filter(|_| record.only_if_newer) else {
            return Ok(None);
        };
        let key = key::object(&object.kind, &object.id);
        let Some((current, _)) = self.object_value(&key).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let wins = object.supersedes(Some((current.version, current.deleted)));
        Ok((!wins).then_some(current.sequence))
    }
}

/// Whether a publish was refused since the stream did not hold what it expected last.
fn refused_for_order(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
    )
}
