//! The gRPC `clerk.bridge.v1.EventStream` service: subscriptions (each served by a stream task, see
//! the `stream` module) and the administration of named consumers (commit, list, reset, delete).
//!
//! At most `max_streams` streams are open at once (`--max-streams`); Subscribe past them is refused
//! with RESOURCE_EXHAUSTED, and a stream's slot is given back when its task ends (the client left,
//! the stream failed, or the bridge shut down).

mod buffer;
pub mod consumers;
mod filter;
mod position;
mod stream;
pub mod wire;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use buffer::Outgoing;
pub use consumers::Consumers;
use consumers::{ConsumerError, ConsumerSummary};
pub use filter::{InvalidFilter, TypeFilter};
use position::Consumer;
use stream::{Snapshot, StreamTask, Window};

use crate::{
    clock::timestamp_from_millis,
    ingest_first::IngestActivity,
    proto::{
        CommitRequest, CommitResponse, ConsumerInfo, DeleteConsumerRequest, DeleteConsumerResponse,
        ListConsumersRequest, ListConsumersResponse, ResetConsumerRequest, ResetConsumerResponse,
        StartPosition, SubscribeRequest, event_stream_server::EventStream,
    },
    store::Store,
    telemetry::metrics::Metrics,
};

/// Default number of subscription streams open at once (`--max-streams`): with what each stalled
/// stream may hold (measured at 0.3 to 0.4 MiB with its connection; see the `stream` and `buffer`
/// modules and the HTTP/2 send buffer) they take about 100 MiB at most, within the 256 MiB the
/// Kubernetes manifest allows.
pub const DEFAULT_MAX_STREAMS: usize = 256;
/// Default cap on a named consumer's delivered-but-uncommitted events.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;

/// The EventStream service.
#[derive(Debug)]
pub struct EventStreamService {
    /// Where streams read from.
    store: Store,
    /// Named consumers: positions and one-stream leases (`None`: a service without them).
    consumers: Option<Arc<Consumers>>,
    /// Cancelled at shutdown: every stream then ends with UNAVAILABLE.
    shutdown: CancellationToken,
    /// Idle time after which a stream sends a heartbeat.
    heartbeat: Duration,
    /// Where streams count what they deliver.
    metrics: Arc<Metrics>,
    /// The stream tasks, so that shutdown can wait for each to say goodbye.
    tasks: TaskTracker,
    /// One permit per stream that may be open; Subscribe past them is refused.
    slots: Arc<Semaphore>,
    /// Whether a webhook burst is under way, during which deliveries yield
    /// ([`crate::ingest_first`]).
    activity: Arc<IngestActivity>,
}

// === impl EventStreamService ===

impl EventStreamService {
    /// A service streaming from `store` until `shutdown`, its stream tasks spawned on `tasks`, with
    /// at most `max_streams` streams open at once.
    pub fn new(
        store: Store,
        consumers: Option<Arc<Consumers>>,
        shutdown: CancellationToken,
        heartbeat: Duration,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
        max_streams: usize,
    ) -> Self {
        EventStreamService {
            store,
            consumers,
            shutdown,
            heartbeat,
            metrics,
            tasks,
            slots: Arc::new(Semaphore::new(max_streams)),
            activity: Arc::default(),
        }
    }

    /// Lets live deliveries yield to webhook bursts counted in `activity`.
    #[must_use]
    pub fn with_activity(mut self, activity: Arc<IngestActivity>) -> Self {
        self.activity = activity;
        self
    }

    /// A place for one more stream, or RESOURCE_EXHAUSTED when every one is taken.
    fn take_slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            self.metrics.subscription_refused();
            Status::resource_exhausted(
                "too many open subscription streams (--max-streams); retry later",
            )
        })
    }

    /// Checks the request, takes a stream slot and the consumer's lease, and builds the task that
    /// serves it.
    async fn start(&self, req: SubscribeRequest) -> Result<(StreamTask, Outgoing), Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable("clerk-bridge is shutting down"));
        }
        let slot = self.take_slot()?;
        let filter = TypeFilter::try_new(&req.event_types)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let start = StartPosition::try_from(req.start)
            .map_err(|_| Status::invalid_argument("unknown start position"))?;
        let named = !req.consumer.is_empty();
        let consumer = if named {
            self.consumer(&req.consumer)?
        } else {
            Consumer::Anonymous
        };
        let cursor =
            position::resolve(start, req.after_sequence, consumer, self.store.positions())?;
        // A consumer that starts from a snapshot has applied nothing yet: created at 0, it commits
        // the snapshot's sequence once it has applied it.
        let committed_if_new = match start {
            StartPosition::Snapshot => 0,
            _ => cursor,
        };
        let window = if named {
            Some(
                self.window(&req.consumer, committed_if_new, req.max_in_flight)
                    .await?,
            )
        } else {
            None
        };
        let (tx, outgoing) = buffer::channel();
        let task = StreamTask {
            store: self.store.clone(),
            reader: Arc::new(Mutex::new(None)),
            cursor,
            filter,
            tx,
            shutdown: self.shutdown.clone(),
            heartbeat: self.heartbeat,
            window,
            snapshot: (start == StartPosition::Snapshot).then_some(Snapshot {
                include_tombstones: req.include_tombstones,
            }),
            metrics: self.metrics.clone(),
            activity: self.activity.clone(),
            _slot: slot,
        };
        Ok((task, outgoing))
    }

    /// What the registry knows of a named consumer.
    fn consumer(&self, name: &str) -> Result<Consumer, Status> {
        match self.consumers()?.committed(name) {
            Ok(committed) => Ok(Consumer::Committed(committed)),
            Err(ConsumerError::NotFound(_)) => Ok(Consumer::New),
            Err(e) => Err(e.into()),
        }
    }

    async fn window(
        &self,
        name: &str,
        committed_if_new: u64,
        max_in_flight: u32,
    ) -> Result<Window, Status> {
        let lease = self.consumers()?.lease(name, committed_if_new).await?;
        let max_in_flight = match max_in_flight {
            0 => DEFAULT_MAX_IN_FLIGHT,
            n => n as usize,
        };
        Ok(Window {
            committed: lease.committed(),
            lease,
            max_in_flight,
            in_flight: VecDeque::new(),
        })
    }

    /// The named consumers, or FAILED_PRECONDITION for a service built without them.
    fn consumers(&self) -> Result<&Arc<Consumers>, Status> {
        self.consumers
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this server has no named consumers"))
    }

    fn consumer_info(&self, summary: ConsumerSummary) -> ConsumerInfo {
        let stored = summary.stored;
        ConsumerInfo {
            lag: self.store.head().saturating_sub(stored.committed),
            name: stored.name,
            committed_sequence: stored.committed,
            active: summary.active,
            created_at: timestamp_from_millis(stored.created_at_ms),
            updated_at: timestamp_from_millis(stored.updated_at_ms),
        }
    }
}

#[tonic::async_trait]
impl EventStream for EventStreamService {
    type SubscribeStream = Outgoing;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!("subscription", consumer = %req.consumer);
        let (task, outgoing) = self.start(req).instrument(span.clone()).await?;
        tracing::debug!(parent: &span, after = task.cursor, "Subscription started");
        self.tasks.spawn(task.run().instrument(span));
        Ok(Response::new(outgoing))
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let req = request.into_inner();
        let head = self.store.head();
        if req.sequence > head {
            return Err(Status::out_of_range(format!(
                "sequence {} is ahead of the log head {head}",
                req.sequence
            )));
        }
        let committed_sequence = self
            .consumers()?
            .commit(&req.consumer, req.sequence)
            .await?;
        Ok(Response::new(CommitResponse { committed_sequence }))
    }

    async fn list_consumers(
        &self,
        _request: Request<ListConsumersRequest>,
    ) -> Result<Response<ListConsumersResponse>, Status> {
        let consumers = self
            .consumers()?
            .list_everywhere()
            .await?
            .into_iter()
            .map(|summary| self.consumer_info(summary))
            .collect();
        Ok(Response::new(ListConsumersResponse { consumers }))
    }

    async fn reset_consumer(
        &self,
        request: Request<ResetConsumerRequest>,
    ) -> Result<Response<ResetConsumerResponse>, Status> {
        let req = request.into_inner();
        let target = match StartPosition::try_from(req.position) {
            Ok(StartPosition::Earliest) => 0,
            Ok(StartPosition::Latest) => self.store.head(),
            Ok(StartPosition::AfterSequence) => req.after_sequence,
            _ => {
                return Err(Status::invalid_argument(
                    "position must be EARLIEST, LATEST or AFTER_SEQUENCE",
                ));
            }
        };
        let target = position::check_bounds(target, self.store.positions())?;
        let committed_sequence = self.consumers()?.reset(&req.consumer, target).await?;
        Ok(Response::new(ResetConsumerResponse { committed_sequence }))
    }

    async fn delete_consumer(
        &self,
        request: Request<DeleteConsumerRequest>,
    ) -> Result<Response<DeleteConsumerResponse>, Status> {
        self.consumers()?
            .delete(&request.into_inner().consumer)
            .await?;
        Ok(Response::new(DeleteConsumerResponse {}))
    }
}

impl From<ConsumerError> for Status {
    fn from(e: ConsumerError) -> Self {
        let message = e.to_string();
        match e {
            ConsumerError::InvalidName => Status::invalid_argument(message),
            ConsumerError::NotFound(_) => Status::not_found(message),
            ConsumerError::Busy(_) => Status::aborted(message),
            ConsumerError::Active(_) => Status::failed_precondition(message),
            ConsumerError::Unstored(error) => {
                tracing::warn!(%error, "Consumer position not stored");
                Status::unavailable(message)
            }
        }
    }
}
