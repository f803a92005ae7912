//! The gRPC `clerk.bridge.v1.EventStream` service: validates a subscription request and starts a
//! stream task ([`stream`]) that feeds the response through its own bounded buffer.

mod filter;
mod stream;

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

pub use filter::{InvalidFilter, TypeFilter};
use stream::{Item, StreamTask};

use crate::{
    log::Log,
    proto::{SubscribeRequest, event_stream_server::EventStream},
};

/// Messages buffered per stream between its reader task and the network.
const STREAM_BUFFER: usize = 32;

/// The EventStream service.
#[derive(Debug)]
pub struct EventStreamService {
    /// The log streams read from.
    log: Arc<Log>,
    /// Cancelled at shutdown: every stream then ends with UNAVAILABLE.
    shutdown: CancellationToken,
    /// Idle time after which a stream sends a heartbeat.
    heartbeat: Duration,
}

// === impl EventStreamService ===

impl EventStreamService {
    /// A service streaming from `log` until `shutdown`.
    pub fn new(log: Arc<Log>, shutdown: CancellationToken, heartbeat: Duration) -> Self {
        EventStreamService {
            log,
            shutdown,
            heartbeat,
        }
    }

    /// Checks the request and builds the task that serves it.
    fn start(&self, req: SubscribeRequest) -> Result<(StreamTask, mpsc::Receiver<Item>), Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable("clerk-bridge is shutting down"));
        }
        let filter = TypeFilter::try_new(&req.event_types)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let head = self.log.head();
        if req.after_sequence > head {
            return Err(Status::out_of_range(format!(
                "after_sequence {} is ahead of the log head {head}",
                req.after_sequence
            )));
        }
        let reader = self.log.reader().map_err(|error| {
            tracing::error!(%error, "Cannot open a log reader");
            Status::internal("could not open the log")
        })?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let task = StreamTask {
            log: self.log.clone(),
            reader: Arc::new(Mutex::new(reader)),
            cursor: req.after_sequence,
            filter,
            tx,
            shutdown: self.shutdown.clone(),
            heartbeat: self.heartbeat,
        };
        Ok((task, rx))
    }
}

#[tonic::async_trait]
impl EventStream for EventStreamService {
    type SubscribeStream = Pin<Box<dyn Stream<Item = Item> + Send + 'static>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!("subscription", after = req.after_sequence);
        let (task, rx) = self.start(req)?;
        tokio::spawn(task.run().instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
