//! Subscribers of the bridge's event stream. Responses are decoded into minimal messages that keep
//! only what the benchmark reads (sequence, event id, markers; prost skips the rest of each event
//! without allocating), so subscribing costs the load generator's CPU little and the figures
//! measure the bridge.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use clerk_bridge::proto::{StartPosition, SubscribeRequest};
use http::uri::PathAndQuery;
use tokio::{sync::watch, time::Instant};
use tonic::{Streaming, transport::Channel};

use crate::{
    BenchError,
    load::{SentAt, lock},
    stats::Latencies,
};

/// gRPC path of `EventStream.Subscribe`, called directly so responses decode as [`LiteResponse`].
const SUBSCRIBE: &str = "/clerk.bridge.v1.EventStream/Subscribe";

/// `clerk.bridge.v1.SubscribeResponse`, reduced to what the benchmark reads.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LiteResponse {
    /// The message; heartbeats (tag 2) are skipped as unknown fields.
    #[prost(oneof = "LiteMessage", tags = "1, 3, 4, 6")]
    message: Option<LiteMessage>,
}

/// `SubscribeResponse.message`, reduced.
#[derive(Clone, PartialEq, prost::Oneof)]
enum LiteMessage {
    /// An event: counted, checked for gaps, timed.
    #[prost(message, tag = "1")]
    Event(LiteEvent),
    /// First on every stream: where it starts, and the head then.
    #[prost(message, tag = "3")]
    Start(LiteStart),
    /// Everything stored when the stream started has been sent; what follows is live.
    #[prost(message, tag = "4")]
    CaughtUp(LiteCaughtUp),
    /// A snapshot stream has sent the state; what follows are the events after it.
    #[prost(message, tag = "6")]
    SnapshotEnd(LiteSnapshotEnd),
}

/// `clerk.bridge.v1.Event`: sequence and event id only.
#[derive(Clone, PartialEq, prost::Message)]
struct LiteEvent {
    /// Its position in the log: one more than the previous event's, unless there is a gap.
    #[prost(uint64, tag = "1")]
    sequence: u64,
    /// The `svix-id` (a string on the wire; read as bytes to skip the UTF-8 check).
    #[prost(bytes = "bytes", tag = "2")]
    event_id: Bytes,
}

/// `clerk.bridge.v1.StreamStart`: where the stream starts, and the head.
#[derive(Clone, PartialEq, prost::Message)]
struct LiteStart {
    /// The stream delivers events after this sequence.
    #[prost(uint64, tag = "1")]
    after_sequence: u64,
    /// The head when the stream started.
    #[prost(uint64, tag = "3")]
    head_sequence: u64,
}

/// `clerk.bridge.v1.CaughtUp`.
#[derive(Clone, PartialEq, prost::Message)]
struct LiteCaughtUp {
    /// The head the stream caught up with.
    #[prost(uint64, tag = "1")]
    head_sequence: u64,
}

/// `clerk.bridge.v1.SnapshotEnd`.
#[derive(Clone, PartialEq, prost::Message)]
struct LiteSnapshotEnd {
    /// The sequence the snapshot is consistent at.
    #[prost(uint64, tag = "1")]
    sequence: u64,
    /// How many objects the snapshot sent, by the bridge's count.
    #[prost(uint64, tag = "2")]
    objects: u64,
}

/// An open subscription.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The server's responses, decoded as [`LiteResponse`].
    stream: Streaming<LiteResponse>,
    /// The sequence of the last event received (from the start marker until the first event).
    newest: u64,
    /// [`Subscription::newest`], readable by other tasks (to sample how far behind the head it is).
    shared_newest: Arc<AtomicU64>,
    /// Events whose sequence was not the one after the previous event's.
    gaps: usize,
    /// Whether the stream is sending a snapshot, whose events come in no particular order (from
    /// the start marker of a snapshot stream until its end marker).
    in_snapshot: bool,
}

/// When a subscriber received how many events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Events read by one call (markers do not count).
    pub(crate) events: usize,
    /// When the last one arrived.
    pub(crate) last_at: Instant,
    /// Events received out of order or after a gap (none when the stream delivered every event
    /// from its start in sequence order).
    pub(crate) gaps: usize,
}

/// What a subscriber read of a snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SnapshotRead {
    /// Events received before the end marker.
    pub(crate) events: usize,
    /// How many objects the end marker says the snapshot sent.
    pub(crate) objects: u64,
    /// When the end marker arrived.
    pub(crate) end_at: Instant,
}

/// Opens a connection to the bridge's gRPC port.
pub(crate) async fn connect(addr: SocketAddr) -> Result<Channel, BenchError> {
    let endpoint = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(endpoint.tcp_nodelay(true).connect().await?)
}

// === impl Subscription ===

impl Subscription {
    /// Subscribes on `channel` to every event after `after`, or from the head when `None`.
    pub(crate) async fn open(channel: Channel, after: Option<u64>) -> Result<Self, BenchError> {
        let start = match after {
            Some(_) => StartPosition::AfterSequence,
            None => StartPosition::Latest,
        };
        let request = SubscribeRequest {
            after_sequence: after.unwrap_or(0),
            start: start.into(),
            ..SubscribeRequest::default()
        };
        Self::subscribe(channel, request).await
    }

    /// Subscribes on `channel` to a snapshot of the state, then the events after it.
    pub(crate) async fn snapshot(channel: Channel) -> Result<Self, BenchError> {
        let request = SubscribeRequest {
            start: StartPosition::Snapshot.into(),
            ..SubscribeRequest::default()
        };
        let mut subscription = Self::subscribe(channel, request).await?;
        subscription.in_snapshot = true;
        Ok(subscription)
    }

    async fn subscribe(channel: Channel, request: SubscribeRequest) -> Result<Self, BenchError> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| BenchError::Setup(format!("gRPC not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<SubscribeRequest, LiteResponse>::default();
        let stream = grpc
            .server_streaming(
                tonic::Request::new(request),
                PathAndQuery::from_static(SUBSCRIBE),
                codec,
            )
            .await?
            .into_inner();
        Ok(Subscription {
            stream,
            newest: 0,
            shared_newest: Arc::default(),
            gaps: 0,
            in_snapshot: false,
        })
    }

    /// The sequence of the last event received, kept up to date while it reads.
    pub(crate) fn newest(&self) -> Arc<AtomicU64> {
        self.shared_newest.clone()
    }

    /// Reads the start marker; returns the head it reports.
    pub(crate) async fn head(&mut self) -> Result<u64, BenchError> {
        match self.next().await? {
            LiteMessage::Start(start) => Ok(start.head_sequence),
            _ => Err(BenchError::Setup(
                "a stream did not begin with its start marker".into(),
            )),
        }
    }

    /// Reads until the caught-up marker; returns the head it reports.
    pub(crate) async fn caught_up(&mut self) -> Result<u64, BenchError> {
        loop {
            if let LiteMessage::CaughtUp(marker) = self.next().await? {
                return Ok(marker.head_sequence);
            }
        }
    }

    /// Reads a snapshot stream from its start marker to its end marker, counting the events.
    pub(crate) async fn read_snapshot(&mut self) -> Result<SnapshotRead, BenchError> {
        self.head().await?;
        let mut events = 0;
        loop {
            match self.next().await? {
                LiteMessage::Event(_) => events += 1,
                LiteMessage::SnapshotEnd(end) => {
                    return Ok(SnapshotRead {
                        events,
                        objects: end.objects,
                        end_at: Instant::now(),
                    });
                }
                LiteMessage::Start(_) | LiteMessage::CaughtUp(_) => {
                    return Err(BenchError::Setup(
                        "a snapshot stream sent a marker before its end marker".into(),
                    ));
                }
            }
        }
    }

    /// Reads events until it has one with a sequence of at least `last`, which may be set while
    /// this runs (`u64::MAX` until then).
    pub(crate) async fn count_until(
        &mut self,
        last: watch::Receiver<u64>,
    ) -> Result<Received, BenchError> {
        let (mut events, mut last_at) = (0, Instant::now());
        let gaps_before = self.gaps;
        self.each_event_until(last, |_, arrived| {
            events += 1;
            last_at = arrived;
            Ok(())
        })
        .await?;
        Ok(Received {
            events,
            last_at,
            gaps: self.gaps - gaps_before,
        })
    }

    /// Reads events as [`Subscription::count_until`] does, recording for each how long after its
    /// send (in `sent_at`) it arrived.
    pub(crate) async fn latencies_until(
        &mut self,
        last: watch::Receiver<u64>,
        sent_at: SentAt,
    ) -> Result<Latencies, BenchError> {
        let mut latencies = Latencies::with_capacity(16_384);
        self.each_event_until(last, |event, arrived| {
            let sent = lock(&sent_at).get(&event.event_id).copied();
            let sent = sent.ok_or_else(|| BenchError::Setup("an event nobody sent".into()))?;
            latencies.record(arrived - sent);
            Ok(())
        })
        .await?;
        Ok(latencies)
    }

    /// Hands every event, with when it arrived, to `each` until one has a sequence of at least
    /// `last`, which may be set while this runs.
    async fn each_event_until(
        &mut self,
        mut last: watch::Receiver<u64>,
        mut each: impl FnMut(&LiteEvent, Instant) -> Result<(), BenchError>,
    ) -> Result<(), BenchError> {
        let mut open = true;
        while self.newest < *last.borrow_and_update() {
            tokio::select! {
                message = self.next() => if let LiteMessage::Event(event) = message? {
                    each(&event, Instant::now())?;
                },
                // A dropped sender leaves the target as it is.
                changed = last.changed(), if open => open = changed.is_ok(),
            }
        }
        Ok(())
    }

    /// The next message; an error if the stream ends or stays silent for a minute.
    async fn next(&mut self) -> Result<LiteMessage, BenchError> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.stream.message())
                .await
                .map_err(|_| BenchError::Setup("a subscriber got nothing for 60 s".into()))??
                .ok_or_else(|| BenchError::Setup("a subscription ended".into()))?;
            if let Some(message) = message.message {
                self.track(&message);
                return Ok(message);
            }
        }
    }

    /// Follows the stream's position, counting an event that is not the one after the previous.
    fn track(&mut self, message: &LiteMessage) {
        match message {
            LiteMessage::Start(start) => self.newest = start.after_sequence,
            LiteMessage::Event(_) if self.in_snapshot => {}
            LiteMessage::Event(event) => {
                if event.sequence != self.newest + 1 {
                    self.gaps += 1;
                }
                self.newest = event.sequence;
            }
            LiteMessage::SnapshotEnd(end) => {
                self.newest = end.sequence;
                self.in_snapshot = false;
            }
            LiteMessage::CaughtUp(_) => {}
        }
        self.shared_newest.store(self.newest, Ordering::Relaxed);
    }
}

/// A single-threaded runtime on a thread of its own for subscriber tasks, so decoding their
/// streams never delays the load generator's requests (the OS shares the CPU between the two).
#[derive(Debug)]
pub(crate) struct SubscriberRuntime {
    /// Spawns tasks onto it.
    handle: tokio::runtime::Handle,
    /// Ends the runtime's thread when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

// === impl SubscriberRuntime ===

impl SubscriberRuntime {
    /// Starts the runtime's thread.
    pub(crate) fn start() -> Result<Self, BenchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("subscribers".into())
            .spawn(move || runtime.block_on(async move { drop(stopped.await) }))?;
        Ok(SubscriberRuntime {
            handle,
            _stop: stop,
        })
    }

    /// Runs `task` on the subscriber thread; [`joined`] waits for its result.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.handle.spawn(task)
    }
}

/// The result of a subscriber task spawned with [`SubscriberRuntime::spawn`]; a task that panicked
/// or was cancelled is an error too.
pub(crate) async fn joined<T>(
    task: tokio::task::JoinHandle<Result<T, BenchError>>,
) -> Result<T, BenchError> {
    task.await
        .map_err(|e| BenchError::Setup(format!("subscriber task failed: {e}")))?
}
