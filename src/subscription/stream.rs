//! One subscription stream: a task that reads the log forward from the subscriber's position into
//! the stream's own bounded buffer.
//!
//! The task reads from disk whenever it is behind the head and waits on the head watch when caught
//! up, so a slow subscriber only ever delays itself: it never blocks ingest or other subscribers, and
//! since its position is a sequence, it never misses an event however far behind it falls.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::filter::TypeFilter;
use crate::{
    log::{Log, LogReader, StoredEvent},
    proto::{Heartbeat, SubscribeResponse, subscribe_response::Message},
    record,
};

/// Events read from disk per query while catching up.
const READ_BATCH: usize = 128;
/// How long the stream task may try to tell a stalled client that the bridge is shutting down.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a stream task sends: a message, or the status that ends the stream.
pub(super) type Item = Result<SubscribeResponse, Status>;

/// Everything a stream task needs.
#[derive(Debug)]
pub(super) struct StreamTask {
    /// The log, for its head.
    pub(super) log: Arc<Log>,
    /// This stream's own read connection, moved into blocking reads.
    pub(super) reader: Arc<Mutex<LogReader>>,
    /// The last sequence passed to the subscriber (or skipped by the filter).
    pub(super) cursor: u64,
    /// Which types to send.
    pub(super) filter: TypeFilter,
    /// The stream's bounded buffer.
    pub(super) tx: mpsc::Sender<Item>,
    /// Cancelled when the bridge shuts down.
    pub(super) shutdown: CancellationToken,
    /// Idle time after which a heartbeat is sent.
    pub(super) heartbeat: Duration,
}

/// Why the task stopped.
enum Stop {
    /// The client went away.
    ClientGone,
    /// The bridge is shutting down.
    Shutdown,
    /// The log could not be read; the status to end the stream with.
    Failed(Status),
}

// === impl StreamTask ===

impl StreamTask {
    /// Streams until the client leaves, the bridge shuts down, or the log fails.
    pub(super) async fn run(mut self) {
        let stop = self.pump().await;
        match stop {
            Stop::ClientGone => tracing::debug!(cursor = self.cursor, "Subscriber left"),
            Stop::Shutdown => {
                let status =
                    Status::unavailable("clerk-bridge is shutting down; reconnect to resume");
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.tx.send(Err(status))).await;
            }
            Stop::Failed(status) => {
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.tx.send(Err(status))).await;
            }
        }
    }

    async fn pump(&mut self) -> Stop {
        let mut head = self.log.watch_head();
        let mut last_sent = Instant::now();
        loop {
            // Mark the current head as seen before reading, so a commit after the read wakes us.
            let head_now = *head.borrow_and_update();
            if self.cursor < head_now {
                match self.send_batch().await {
                    Ok(true) => last_sent = Instant::now(),
                    Ok(false) => {}
                    Err(stop) => return stop,
                }
                continue;
            }
            tokio::select! {
                changed = head.changed() => {
                    // The log is gone only at shutdown.
                    if changed.is_err() { return Stop::Shutdown; }
                }
                () = tokio::time::sleep_until(last_sent + self.heartbeat) => {
                    if let Err(stop) = self.send(heartbeat(head_now)).await { return stop; }
                    last_sent = Instant::now();
                }
                () = self.shutdown.cancelled() => return Stop::Shutdown,
                () = self.tx.closed() => return Stop::ClientGone,
            }
        }
    }

    /// Reads the next batch after the cursor and sends the events that pass the filter.
    /// Returns whether anything was sent.
    async fn send_batch(&mut self) -> Result<bool, Stop> {
        let batch = self.read_batch().await?;
        let mut sent = false;
        for stored in batch {
            let sequence = stored.sequence;
            if self.filter.matches(&stored.event_type) {
                let event = record::decode(&stored).map_err(|e| {
                    tracing::error!(sequence, "Stored event is corrupt; ending the stream");
                    Stop::Failed(Status::data_loss(e.to_string()))
                })?;
                self.send(SubscribeResponse {
                    message: Some(Message::Event(event)),
                })
                .await?;
                sent = true;
            }
            self.cursor = sequence;
        }
        Ok(sent)
    }

    /// Reads up to [`READ_BATCH`] events after the cursor, off the async workers.
    async fn read_batch(&self) -> Result<Vec<StoredEvent>, Stop> {
        let cursor = self.cursor;
        let reader = self.reader.clone();
        let result = tokio::task::spawn_blocking(move || {
            // Only this stream's task uses the reader, one read at a time; a panic inside a read
            // leaves no state behind in the connection that a later read could trip over.
            let reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
            reader.read_after(cursor, READ_BATCH)
        })
        .await
        .map_err(|_| Stop::Failed(Status::internal("log read task failed")))?;
        result.map_err(|error| {
            tracing::error!(%error, "Log read failed; ending the stream");
            Stop::Failed(Status::internal("could not read the log"))
        })
    }

    /// Sends one message, giving up if the client leaves or the bridge shuts down meanwhile.
    async fn send(&self, message: SubscribeResponse) -> Result<(), Stop> {
        tokio::select! {
            sent = self.tx.send(Ok(message)) => sent.map_err(|_| Stop::ClientGone),
            () = self.shutdown.cancelled() => Err(Stop::Shutdown),
        }
    }
}

/// A heartbeat carrying the head.
fn heartbeat(head: u64) -> SubscribeResponse {
    SubscribeResponse {
        message: Some(Message::Heartbeat(Heartbeat {
            head_sequence: head,
            sent_at: Some(std::time::SystemTime::now().into()),
        })),
    }
}
