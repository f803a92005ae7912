//! A stream's buffer between its task and the network, bounded in bytes as well as in messages.
//!
//! A count alone does not bound memory: 32 events of 1 MiB each are 32 MiB for one stalled client.
//! Each message takes its encoded size from a byte budget and gives it back when tonic takes the
//! message to encode it; a message larger than the whole budget waits until the buffer is empty
//! and then goes alone.

use std::{pin::Pin, sync::Arc};

use futures_util::StreamExt as _;
use prost::Message as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};

use super::stream::Item;

/// Most messages buffered per stream.
const MAX_MESSAGES: usize = 32;
/// Most bytes of encoded messages buffered per stream: about 25 typical events of 2.5 KiB.
pub(super) const MAX_BYTES: usize = 64 * 1024;
/// What a status (the stream's last item) counts for.
const STATUS_BYTES: usize = 256;

/// The receiving end, as tonic polls it.
pub(super) type Outgoing = Pin<Box<dyn Stream<Item = Item> + Send + 'static>>;

/// The sending end, owned by the stream task.
#[derive(Debug)]
pub(super) struct Sender {
    /// Messages with the share of the byte budget they hold.
    tx: mpsc::Sender<(Item, OwnedSemaphorePermit)>,
    /// The byte budget, in permits of one byte.
    bytes: Arc<Semaphore>,
}

/// The client left: the receiving end is gone.
#[derive(Debug)]
pub(super) struct Closed;

/// A new buffer.
pub(super) fn channel() -> (Sender, Outgoing) {
    let (tx, rx) = mpsc::channel(MAX_MESSAGES);
    let outgoing = ReceiverStream::new(rx).map(|(item, _bytes)| item);
    let sender = Sender {
        tx,
        bytes: Arc::new(Semaphore::new(MAX_BYTES)),
    };
    (sender, Box::pin(outgoing))
}

// === impl Sender ===

impl Sender {
    /// Buffers `item`, waiting while the buffer is full.
    pub(super) async fn send(&self, item: Item) -> Result<(), Closed> {
        let size = match &item {
            Ok(message) => message.encoded_len(),
            Err(_) => STATUS_BYTES,
        };
        let cost = u32::try_from(size.clamp(1, MAX_BYTES)).unwrap_or(u32::MAX);
        let bytes = tokio::select! {
            // The semaphore is never closed.
            bytes = self.bytes.clone().acquire_many_owned(cost) => bytes.map_err(|_| Closed)?,
            () = self.tx.closed() => return Err(Closed),
        };
        self.tx.send((item, bytes)).await.map_err(|_| Closed)
    }

    /// Resolves when the client has left.
    pub(super) async fn closed(&self) {
        self.tx.closed().await;
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;
    use crate::subscription::wire::{Content, EncodedEvent, SubscribeResponse};

    fn event(sequence: u64, size: usize) -> Item {
        Ok(SubscribeResponse {
            message: Some(Content::Event(EncodedEvent::new(
                sequence,
                bytes::Bytes::from(vec![0; size]),
            ))),
            delivery_attempt: 0,
        })
    }

    #[tokio::test]
    async fn the_buffer_holds_a_bounded_number_of_bytes() {
        let (tx, mut outgoing) = channel();
        // Four events of 20 KiB fit in 64 KiB only three at a time.
        for sequence in 1..=3 {
            tx.send(event(sequence, 20 * 1024)).await.unwrap();
        }
        let fourth = tx.send(event(4, 20 * 1024));
        tokio::pin!(fourth);
        assert!(fourth.as_mut().now_or_never().is_none());
        assert!(outgoing.next().await.is_some());
        fourth.await.unwrap();
        // An event larger than the budget goes alone, once the buffer is empty.
        let (tx, mut outgoing) = channel();
        tx.send(event(1, 10)).await.unwrap();
        let huge = tx.send(event(2, 2 * MAX_BYTES));
        tokio::pin!(huge);
        assert!(huge.as_mut().now_or_never().is_none());
        assert!(outgoing.next().await.is_some());
        huge.await.unwrap();
        drop(outgoing);
        assert!(tx.send(event(3, 10)).await.is_err());
    }
}
