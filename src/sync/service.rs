//! The gRPC `clerk.bridge.v1.SyncService`: starts (or follows) a pass and streams its progress
//! until it ends.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::{Mode, SyncError, Syncer};
use crate::proto::{
    BackfillRequest, BackfillResponse, ReconcileRequest, ReconcileResponse, SyncProgress,
    SyncState, sync_service_server::SyncService,
};

/// A stream of progress messages.
type ProgressStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The SyncService, over a [`Syncer`].
#[derive(Debug, Clone)]
pub struct SyncServiceImpl {
    /// Starts and tracks passes.
    syncer: Syncer,
}

// === impl SyncServiceImpl ===

impl SyncServiceImpl {
    /// The service for `syncer`.
    pub fn new(syncer: Syncer) -> Self {
        SyncServiceImpl { syncer }
    }

    fn follow<T: Send + 'static>(
        &self,
        mode: Mode,
        wrap: fn(SyncProgress) -> T,
    ) -> Result<Response<ProgressStream<T>>, Status> {
        let progress = self.syncer.start(mode).map_err(refusal)?;
        Ok(Response::new(Box::pin(
            progress_until_end(progress).map(move |p| Ok(wrap(p))),
        )))
    }
}

#[tonic::async_trait]
impl SyncService for SyncServiceImpl {
    type BackfillStream = ProgressStream<BackfillResponse>;
    type ReconcileStream = ProgressStream<ReconcileResponse>;

    async fn backfill(
        &self,
        _request: Request<BackfillRequest>,
    ) -> Result<Response<Self::BackfillStream>, Status> {
        self.follow(Mode::Backfill, |progress| BackfillResponse {
            progress: Some(progress),
        })
    }

    async fn reconcile(
        &self,
        _request: Request<ReconcileRequest>,
    ) -> Result<Response<Self::ReconcileStream>, Status> {
        self.follow(Mode::Reconciliation, |progress| ReconcileResponse {
            progress: Some(progress),
        })
    }
}

/// Every progress message from now on, ending with the first one whose state is final.
fn progress_until_end(
    progress: watch::Receiver<SyncProgress>,
) -> impl Stream<Item = SyncProgress> + Send + 'static {
    futures_util::stream::unfold(Some(progress), |receiver| async move {
        let mut receiver = receiver?;
        let current = receiver.borrow_and_update().clone();
        if current.state() != SyncState::Running {
            return Some((current, None));
        }
        // The pass drops its sender only after publishing its final state.
        let next = match receiver.changed().await {
            Ok(()) => Some(receiver),
            Err(_) => None,
        };
        Some((current, next))
    })
}

fn refusal(error: SyncError) -> Status {
    Status::failed_precondition(error.to_string())
}
