//! The object values of the state bucket under a key filter, read once: a consumer on the
//! bucket's stream that delivers the last message of each key, in batches of bounded size.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures_util::StreamExt;

use super::{StateBucket, key, remote, value::ObjectValue};
use crate::jetstream::ReadError;

/// Most object values per batch the servers send.
const BATCH: usize = 128;
/// Most bytes per batch the servers send.
pub(super) const BATCH_BYTES: usize = 128 * 1024;
/// How long one value may take to arrive.
const VALUE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a pull request for values lasts: the client asks again after it at the latest. With
/// the default 30 s, a pull whose values the client stopped counting (seen under load: a stall
/// with 22,550 of 32,000 values still to come) held the reader for all of it.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long the servers keep the consumer once nobody pulls from it (a stalled reader).
const CONSUMER_IDLE: Duration = Duration::from_secs(600);

/// Object values being read.
pub(super) struct LatestValues {
    /// Messages still to come.
    remaining: u64,
    /// The bucket's subject prefix, `$KV.<bucket>.`.
    prefix: String,
    /// The messages, last per key.
    messages: pull::Stream,
}

// === impl LatestValues ===

impl LatestValues {
    /// Starts reading the values of the keys under `filter` (a key pattern such as `o.>`).
    pub(super) async fn open(bucket: &StateBucket, filter: &str) -> Result<Self, ReadError> {
        let store = &bucket.store;
        let consumer = store
            .stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::LastPerSubject,
                filter_subject: format!("{}{filter}", store.prefix),
                ack_policy: AckPolicy::None,
                inactive_threshold: CONSUMER_IDLE,
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(remote)?;
        let remaining = consumer.cached_info().num_pending;
        let messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .max_bytes_per_batch(BATCH_BYTES)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(remote)?;
        Ok(LatestValues {
            remaining,
            prefix: store.prefix.clone(),
            messages,
        })
    }

    /// How many values are still to come (at most: keys that are not objects are skipped).
    pub(super) fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next object value with its kind and id; `None` once all were read.
    pub(super) async fn next(
        &mut self,
    ) -> Result<Option<(String, String, ObjectValue)>, ReadError> {
        while self.remaining > 0 {
            let message = tokio::time::timeout(VALUE_TIMEOUT, self.messages.next())
                .await
                .map_err(|_| {
                    ReadError::Remote(format!(
                        "state value timed out ({} still to come)",
                        self.remaining
                    ))
                })?
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
            return Ok(Some((kind, id, value)));
        }
        Ok(None)
    }
}
