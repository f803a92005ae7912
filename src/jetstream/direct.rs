//! Reading a batch of events after a sequence with JetStream's batched direct get, which any
//! replica answers from its own copy: no consumer is created, so reads keep no state on the
//! servers and cost one round trip per batch.
//!
//! The request (`$JS.API.DIRECT.GET.<stream>` with `seq`, `batch` and `max_bytes`) is answered
//! with the messages, one reply each, then an empty reply with status 204 (end of batch); a
//! stream with nothing at or after `seq` answers 404 alone.

use std::time::Duration;

use async_nats::{Message, header::HeaderMap};
use futures_util::StreamExt;

use super::{ReadError, headers};
use crate::log::StoredEvent;

/// The status of the reply that ends a batch.
const END_OF_BATCH: u16 = 204;
/// How long a batch may take to arrive in full.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Up to `limit` events with a sequence above `after`, in order, stopping after the one that
/// brings their size to `max_bytes` (so at least one when there is one).
pub(super) async fn read_after(
    client: &async_nats::Client,
    stream: &str,
    after: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<StoredEvent>, ReadError> {
    let deadline = tokio::time::Instant::now() + BATCH_TIMEOUT;
    let read = fetch(client, stream, after, (limit, max_bytes), deadline);
    let read = tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or_else(|_| Err(ReadError::Remote("direct get timed out".into())));
    match &read {
        Ok(events) => tracing::debug!(after, events = events.len(), "Direct get"),
        Err(error) => tracing::warn!(after, %error, "Direct get failed"),
    }
    read
}

/// Sends the direct get and collects its replies until the end of the batch or `deadline`.
async fn fetch(
    client: &async_nats::Client,
    stream: &str,
    after: u64,
    (limit, max_bytes): (usize, usize),
    deadline: tokio::time::Instant,
) -> Result<Vec<StoredEvent>, ReadError> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(remote)?;
    let request = serde_json::json!({ "seq": after + 1, "batch": limit, "max_bytes": max_bytes });
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            request.to_string().into(),
        )
        .await
        .map_err(remote)?;
    let mut events = Vec::new();
    loop {
        let reply = tokio::time::timeout_at(deadline, replies.next())
            .await
            .map_err(|_| ReadError::Remote("direct get timed out".into()))?
            .ok_or_else(|| ReadError::Remote("direct get reply stream closed".into()))?;
        match reply.status.map(|status| status.as_u16()) {
            None | Some(200) => events.push(stored_event(&reply)?),
            // End of the batch, or nothing after `after` yet.
            Some(END_OF_BATCH | 404) => break,
            Some(status) => {
                return Err(ReadError::Remote(format!(
                    "direct get answered {status}: {}",
                    reply.description.as_deref().unwrap_or("")
                )));
            }
        }
        if events.len() >= limit {
            break;
        }
    }
    // Dropping the subscription unsubscribes from the inbox.
    Ok(events)
}

/// The event in one reply of a direct get.
fn stored_event(reply: &Message) -> Result<StoredEvent, ReadError> {
    let empty = HeaderMap::new();
    let map = reply.headers.as_ref().unwrap_or(&empty);
    let sequence = headers::number(map, "Nats-Sequence")
        .ok_or_else(|| ReadError::Remote("direct get reply without Nats-Sequence".into()))?;
    headers::stored_event(map, sequence, reply.payload.clone())
}

fn remote(error: impl std::fmt::Display) -> ReadError {
    ReadError::Remote(error.to_string())
}
