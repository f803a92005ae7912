//! One subscription stream: a task that reads the log forward from the subscriber's position into
//! the stream's own bounded buffer.
//!
//! The task reads whenever it is behind the head (from the log's in-memory tail when that still
//! holds the events, else from disk) and waits on the log's positions when caught up, so a slow
//! subscriber only ever delays itself: it never blocks ingest or other subscribers, and since its
//! position is a sequence, it never misses an event however far behind it falls (unless retention
//! deletes events it has not read: the stream then ends with OUT_OF_RANGE). Events are sent as
//! stored ([`super::wire`]). For a named consumer the task also stops at `max_in_flight` events
//! delivered but not committed, and resumes when a commit arrives.
//!
//! Memory per stream is bounded for a client that stops reading: disk reads come in batches of at
//! most `READ_BATCH_BYTES` on the log's shared readers (given back before sending), the buffer is
//! bounded in bytes (see the `buffer` module), and HTTP/2 buffers little more (see
//! [`crate::grpc_transport`]). A snapshot keeps a read connection of its own for its transaction,
//! with its page cache freed after every batch, and closes it when the snapshot ends. On JetStream
//! a snapshot reads the shared state bucket instead, a batch at a time, while its builder is
//! paused (see `crate::jetstream::StateSnapshot`).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::{
    buffer,
    consumers::Lease,
    filter::TypeFilter,
    wire::{Content, EncodedEvent, SubscribeResponse},
};
use crate::{
    ingest_first::IngestActivity,
    jetstream::{self, JetStreamLog},
    log::{LogReader, ObjectCursor, Positions, StoredEvent, StoredObject},
    proto::{CaughtUp, Heartbeat, SnapshotEnd, StreamStart},
    record,
    store::Store,
    telemetry::metrics::Metrics,
};

/// Events read from disk per query while catching up.
const READ_BATCH: usize = 128;
/// Most bytes of events a stream holds in one batch (read from disk, waiting to be buffered): with
/// the buffer's own bound, a stalled stream and its connection hold about 450 KiB. Smaller batches
/// cost catch-up speed (bench `--only catch-up`, one host: 64 KiB about 99k events/s, 128 KiB
/// 112k, 256 KiB 130k at 590 KiB per stalled stream, which would no longer fit 256 streams in the
/// manifests' 256 MiB beside the webhook port's bounds).
const READ_BATCH_BYTES: usize = 128 * 1024;
/// Pause before reading again when a read behind the head found nothing.
const LAGGING_REPLICA_PAUSE: Duration = Duration::from_millis(20);
/// How long a JetStream snapshot's client may read nothing: while a snapshot runs, the shared
/// state's builder stays paused for every bridge.
const SHARED_SNAPSHOT_STALL: Duration = Duration::from_secs(60);
/// How long the stream task may try to tell a stalled client why the stream ends.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a stream task sends: a message, or the status that ends the stream.
pub(super) type Item = Result<SubscribeResponse, Status>;

/// Flow control of a named consumer's stream.
#[derive(Debug)]
pub(super) struct Window {
    /// The consumer's lease (released when the task ends).
    pub(super) lease: Lease,
    /// The consumer's committed sequence.
    pub(super) committed: watch::Receiver<u64>,
    /// Most delivered-but-uncommitted events.
    pub(super) max_in_flight: usize,
    /// Sequences delivered and not yet committed, oldest first.
    pub(super) in_flight: VecDeque<u64>,
}

/// A stream that starts from the current state (`START_POSITION_SNAPSHOT`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    /// Also send the latest event of deleted objects.
    pub(super) include_tombstones: bool,
}

/// Everything a stream task needs.
#[derive(Debug)]
pub(super) struct StreamTask {
    /// Where the events are read from.
    pub(super) store: Store,
    /// The read connection of a snapshot (whose reads must share one transaction); opened when
    /// the snapshot starts and closed when it ends. Other reads use the log's shared readers.
    pub(super) reader: Arc<Mutex<Option<LogReader>>>,
    /// The last sequence passed to the subscriber (or skipped by the filter).
    pub(super) cursor: u64,
    /// Which types to send.
    pub(super) filter: TypeFilter,
    /// The stream's bounded buffer.
    pub(super) tx: buffer::Sender,
    /// Cancelled when the bridge shuts down.
    pub(super) shutdown: CancellationToken,
    /// Idle time after which a heartbeat is sent.
    pub(super) heartbeat: Duration,
    /// Flow control, for named consumers.
    pub(super) window: Option<Window>,
    /// Whether the stream starts with a snapshot of the state, and with tombstones in it.
    pub(super) snapshot: Option<Snapshot>,
    /// Where deliveries are counted.
    pub(super) metrics: Arc<Metrics>,
    /// Whether a webhook burst is under way, and the deliveries' allowance during it.
    pub(super) activity: Arc<IngestActivity>,
    /// The stream's place under the cap on open streams, given back when the task ends.
    pub(super) _slot: OwnedSemaphorePermit,
}

/// Why the task stopped.
enum Stop {
    /// The client went away.
    ClientGone,
    /// The bridge is shutting down.
    Shutdown,
    /// The stream cannot go on; the status to end it with.
    Failed(Status),
}

// === impl StreamTask ===

impl StreamTask {
    /// Streams until the client leaves, the bridge shuts down, or the stream fails.
    pub(super) async fn run(mut self) {
        let _open = self.metrics.subscription_opened();
        let status = match self.pump().await {
            Stop::ClientGone => {
                tracing::debug!(cursor = self.cursor, "Subscriber left");
                return;
            }
            Stop::Shutdown => {
                Status::unavailable("clerk-bridge is shutting down; reconnect to resume")
            }
            Stop::Failed(status) => status,
        };
        self.close_reader();
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.tx.send(Err(status))).await;
    }

    async fn pump(&mut self) -> Stop {
        let mut positions = self.store.watch_positions();
        let start = *positions.borrow();
        if let Err(stop) = self.start(start).await {
            return stop;
        }
        let mut last_sent = Instant::now();
        let mut caught_up_sent = false;
        loop {
            // Mark the positions as seen before reading, so a commit after the read wakes us.
            let now = *positions.borrow_and_update();
            if let Err(stop) = self.check_retained(now) {
                return stop;
            }
            if self.cursor < now.head && !self.window_full() {
                let grant = self.activity.allowed(READ_BATCH, now.head - self.cursor);
                if grant.events == 0 {
                    if let Err(stop) = self.yield_to_ingest().await {
                        return stop;
                    }
                    continue;
                }
                let before = self.cursor;
                let sent = self.send_batch(grant.events).await;
                let passed = usize::try_from(self.cursor - before).unwrap_or(usize::MAX);
                self.activity.give_back(grant, passed);
                match sent {
                    Ok(true) => last_sent = Instant::now(),
                    Ok(false) => {}
                    Err(stop) => return stop,
                }
                continue;
            }
            if self.cursor >= now.head && !caught_up_sent {
                if let Err(stop) = self.send(caught_up(now.head)).await {
                    return stop;
                }
                caught_up_sent = true;
                last_sent = Instant::now();
            }
            let lost = self.window.as_ref().and_then(|w| w.lease.lost());
            tokio::select! {
                changed = positions.changed() => {
                    // The log's sender is gone only once the log has closed at shutdown.
                    if changed.is_err() { return Stop::Shutdown; }
                }
                () = committed_changed(self.window.as_mut()) => {}
                () = lease_lost(lost.as_ref()) => {
                    return Stop::Failed(Status::aborted(
                        "the consumer's lease could not be kept (NATS unreachable); subscribe again",
                    ));
                }
                () = tokio::time::sleep_until(last_sent + self.heartbeat) => {
                    if let Err(stop) = self.send(heartbeat(now.head)).await { return stop; }
                    last_sent = Instant::now();
                }
                () = self.shutdown.cancelled() => return Stop::Shutdown,
                () = self.tx.closed() => return Stop::ClientGone,
            }
        }
    }

    /// Sends the start marker; for a snapshot stream, then the state and the `snapshot_end` marker,
    /// and moves the cursor to the sequence the state is consistent at.
    async fn start(&mut self, positions: Positions) -> Result<(), Stop> {
        let Some(snapshot) = self.snapshot else {
            return self.send(start_marker(self.cursor, positions)).await;
        };
        if let Some(stream) = self.store.jetstream().cloned() {
            return self
                .start_from_jetstream_state(&stream, positions, snapshot)
                .await;
        }
        self.cursor = self.blocking_read(LogReader::begin_snapshot).await?;
        self.send_start_of_snapshot().await?;
        let objects = self.send_objects(snapshot).await?;
        self.blocking_read(LogReader::end_snapshot).await?;
        self.close_reader();
        self.send(snapshot_end(self.cursor, objects)).await
    }

    /// Sends the start marker of a snapshot consistent at the cursor, once the published head
    /// has reached it: the reader may see a commit (or the JetStream state an event) before this
    /// bridge publishes its head, and a Commit of the snapshot's sequence must be within the head.
    async fn send_start_of_snapshot(&mut self) -> Result<(), Stop> {
        let snapshot_at = self.cursor;
        let mut published = self.store.watch_positions();
        let positions = tokio::select! {
            now = published.wait_for(|p| p.head >= snapshot_at) => match now {
                Ok(now) => *now,
                Err(_) => return Err(Stop::Shutdown),
            },
            () = self.shutdown.cancelled() => return Err(Stop::Shutdown),
        };
        self.send(start_marker(self.cursor, positions)).await
    }

    /// A snapshot from the JetStream state bucket (see `crate::jetstream::StateSnapshot`): its
    /// builder is paused while the objects are sent.
    async fn start_from_jetstream_state(
        &mut self,
        stream: &JetStreamLog,
        positions: Positions,
        snapshot: Snapshot,
    ) -> Result<(), Stop> {
        let opened = tokio::select! {
            opened = stream.snapshot(positions.head, snapshot.include_tombstones) => opened,
            () = self.shutdown.cancelled() => return Err(Stop::Shutdown),
        };
        let mut state = opened.map_err(snapshot_failed)?;
        self.cursor = state.sequence();
        self.send_start_of_snapshot().await?;
        let mut sent = 0;
        loop {
            let batch = state.next_batch().await.map_err(snapshot_failed)?;
            if batch.is_empty() {
                break;
            }
            let sending =
                tokio::time::timeout(SHARED_SNAPSHOT_STALL, self.send_state_objects(batch));
            sent += sending.await.map_err(|_| {
                Stop::Failed(Status::deadline_exceeded(
                    "the snapshot was not read for a minute while it held the shared state still",
                ))
            })??;
        }
        drop(state);
        self.metrics.delivered(sent);
        self.send(snapshot_end(self.cursor, sent)).await
    }

    /// Sends the latest event of every object that matches the filter, a batch at a time (memory
    /// stays bounded however many objects there are), within the snapshot's read transaction.
    /// Snapshot events take no part in a named consumer's window: it commits the snapshot's
    /// sequence once it has applied them. Returns how many were sent.
    async fn send_objects(&mut self, snapshot: Snapshot) -> Result<u64, Stop> {
        let mut after: Option<ObjectCursor> = None;
        let mut sent = 0;
        loop {
            let from = after.take();
            let tombstones = snapshot.include_tombstones;
            // The batch is held while a slow client takes it; the connection's page cache need not
            // be as well.
            let batch = self
                .blocking_read(move |reader| {
                    let batch = reader.objects_after_within(
                        from.as_ref(),
                        READ_BATCH,
                        tombstones,
                        READ_BATCH_BYTES,
                    );
                    reader.release_memory()?;
                    batch
                })
                .await?;
            let Some(last) = batch.last() else {
                self.metrics.delivered(sent);
                return Ok(sent);
            };
            after = Some((last.kind.clone(), last.id.clone()));
            sent += self.send_state_objects(batch).await?;
        }
    }

    /// Sends the objects of one batch whose latest event type matches the filter; how many.
    async fn send_state_objects(&mut self, batch: Vec<StoredObject>) -> Result<u64, Stop> {
        let mut sent = 0;
        for object in batch {
            if self.filter.matches(&object.event.event_type) {
                let fields = self.fields(&object.event)?;
                let event = EncodedEvent::new(object.event.sequence, fields);
                self.send(message(Content::Event(event))).await?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Waits for the next window of the deliveries' allowance during a webhook burst
    /// ([`crate::ingest_first`]).
    async fn yield_to_ingest(&self) -> Result<(), Stop> {
        self.metrics.delivery_yielded();
        tokio::select! {
            () = tokio::time::sleep_until(self.activity.next_window()) => Ok(()),
            () = self.shutdown.cancelled() => Err(Stop::Shutdown),
            () = self.tx.closed() => Err(Stop::ClientGone),
        }
    }

    /// Ends the stream if retention deleted events it has not delivered yet.
    fn check_retained(&self, positions: Positions) -> Result<(), Stop> {
        if self.cursor + 1 >= positions.first_retained {
            return Ok(());
        }
        Err(Stop::Failed(Status::out_of_range(format!(
            "events after {} were deleted by retention; the first retained sequence is {}",
            self.cursor, positions.first_retained
        ))))
    }

    /// Whether a named consumer has as many uncommitted deliveries as it may have.
    fn window_full(&mut self) -> bool {
        let Some(window) = self.window.as_mut() else {
            return false;
        };
        let committed = *window.committed.borrow_and_update();
        while window
            .in_flight
            .front()
            .is_some_and(|&seq| seq <= committed)
        {
            window.in_flight.pop_front();
        }
        window.in_flight.len() >= window.max_in_flight
    }

    /// Reads the next batch (at most `limit` events) after the cursor and sends the events that
    /// pass the filter, stopping early when the window fills. Returns whether anything was sent.
    async fn send_batch(&mut self, limit: usize) -> Result<bool, Stop> {
        let batch = self.read_batch(limit).await?;
        let mut sent = 0;
        for stored in batch {
            if self.filter.matches(&stored.event_type) {
                if self.window_full() {
                    break;
                }
                if let Err(stop) = self.send_event(&stored).await {
                    self.metrics.delivered(sent);
                    return Err(stop);
                }
                sent += 1;
            }
            self.cursor = stored.sequence;
        }
        self.metrics.delivered(sent);
        Ok(sent > 0)
    }

    async fn send_event(&mut self, stored: &StoredEvent) -> Result<(), Stop> {
        let sequence = stored.sequence;
        let fields = self.fields(stored)?;
        let delivery_attempt = match self.window.as_mut() {
            Some(window) => {
                window.in_flight.push_back(sequence);
                window.lease.record_delivery(sequence)
            }
            None => 0,
        };
        self.send(SubscribeResponse {
            message: Some(Content::Event(EncodedEvent::new(sequence, fields))),
            delivery_attempt,
        })
        .await
    }

    /// The encoded fields of a stored event; a corrupt one ends the stream with DATA_LOSS.
    fn fields(&self, stored: &StoredEvent) -> Result<bytes::Bytes, Stop> {
        record::fields(stored).map_err(|e| {
            tracing::error!(
                sequence = stored.sequence,
                "Stored event is corrupt; ending the stream"
            );
            Stop::Failed(Status::data_loss(e.to_string()))
        })
    }

    /// Up to `limit` events after the cursor: from the log's in-memory tail when it holds
    /// them (a stream at or near the head), else from disk, off the async workers.
    async fn read_batch(&self, limit: usize) -> Result<Vec<Arc<StoredEvent>>, Stop> {
        // The tail may hold nothing after the cursor though the head is past it: on JetStream, the
        // head also moves by the stream's info before the tail has the events.
        if let Some(recent) = self.store.recent_after(self.cursor, limit)
            && !recent.is_empty()
        {
            return Ok(recent);
        }
        let stored = self.read_from_disk(limit).await?;
        if stored.is_empty() {
            // Behind the head yet nothing to read: a JetStream replica that has not caught up
            // with its leader. Ask again shortly rather than at once.
            tokio::time::sleep(LAGGING_REPLICA_PAUSE).await;
        }
        Ok(stored.into_iter().map(Arc::new).collect())
    }

    /// Reads up to `limit` events (at most about [`READ_BATCH_BYTES`]) after the cursor
    /// from the store (the embedded log's shared readers, given back before the events are sent;
    /// or a JetStream replica).
    async fn read_from_disk(&self, limit: usize) -> Result<Vec<StoredEvent>, Stop> {
        let cursor = self.cursor;
        self.store
            .read_after(cursor, limit, READ_BATCH_BYTES)
            .await
            .map_err(|error| {
                tracing::error!(%error, "Log read failed; ending the stream");
                Stop::Failed(Status::internal("could not read the log"))
            })
    }

    /// Closes the snapshot's connection.
    fn close_reader(&self) {
        self.reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Runs `read` on the snapshot's connection (opened on first use), off the async workers.
    async fn blocking_read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut LogReader) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Stop> {
        let Some(log) = self.store.embedded().cloned() else {
            return Err(Stop::Failed(Status::internal(
                "the embedded log's reader was asked for on JetStream",
            )));
        };
        let reader = self.reader.clone();
        let result = tokio::task::spawn_blocking(move || {
            // Only this stream's task uses the reader, one read at a time; a panic inside a read
            // leaves no state behind in the connection that a later read could trip over.
            let mut reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
            if reader.is_none() {
                *reader = Some(log.reader()?);
            }
            match reader.as_mut() {
                Some(reader) => read(reader),
                None => Err(rusqlite::Error::InvalidQuery),
            }
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
            sent = self.tx.send(Ok(message)) => sent.map_err(|buffer::Closed| Stop::ClientGone),
            () = self.shutdown.cancelled() => Err(Stop::Shutdown),
        }
    }
}

/// Resolves when a named consumer's committed sequence changes; never for anonymous streams.
async fn committed_changed(window: Option<&mut Window>) {
    match window {
        Some(window) => {
            if window.committed.changed().await.is_err() {
                // The consumer was deleted: nothing will change any more.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Resolves when a named consumer's shared lease (JetStream) is lost; never otherwise.
async fn lease_lost(lost: Option<&CancellationToken>) {
    match lost {
        Some(lost) => lost.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Ends a JetStream snapshot that could not be read: UNAVAILABLE, since another try may succeed.
fn snapshot_failed(error: jetstream::ReadError) -> Stop {
    tracing::warn!(%error, "State snapshot failed; ending the stream");
    Stop::Failed(Status::unavailable(format!(
        "the snapshot could not be read from JetStream ({error}); subscribe again"
    )))
}

fn message(message: Content) -> SubscribeResponse {
    SubscribeResponse {
        message: Some(message),
        delivery_attempt: 0,
    }
}

fn start_marker(after: u64, positions: Positions) -> SubscribeResponse {
    message(Content::Start(StreamStart {
        after_sequence: after,
        first_retained_sequence: positions.first_retained,
        head_sequence: positions.head,
    }))
}

fn snapshot_end(sequence: u64, objects: u64) -> SubscribeResponse {
    message(Content::SnapshotEnd(SnapshotEnd { sequence, objects }))
}

fn caught_up(head: u64) -> SubscribeResponse {
    message(Content::CaughtUp(CaughtUp {
        head_sequence: head,
    }))
}

fn heartbeat(head: u64) -> SubscribeResponse {
    message(Content::Heartbeat(Heartbeat {
        head_sequence: head,
        sent_at: Some(std::time::SystemTime::now().into()),
    }))
}
