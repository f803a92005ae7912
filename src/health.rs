//! gRPC health checks (`grpc.health.v1.Health`) whose `Watch` streams end at shutdown.
//!
//! tonic-health's `Watch` streams follow a status channel that lives as long as the service, so
//! one open `Watch` (a probe, a client's health watcher) would hold the gRPC server's graceful
//! shutdown for the whole grace period. Wrapped here, each stream ends once the bridge starts
//! shutting down (by then the status is NOT_SERVING); a watcher reconnects and finds out.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::{
    pb::{
        HealthCheckRequest, HealthCheckResponse,
        health_server::{Health, HealthServer},
    },
    server::{HealthReporter, HealthService},
};

/// tonic-health's service, with `Watch` streams that end at `shutdown`.
#[derive(Debug)]
pub struct EndingHealth {
    /// The service that answers.
    inner: HealthService,
    /// Ends every `Watch` stream.
    shutdown: CancellationToken,
}

/// The reporter that sets statuses, and the server that serves them until `shutdown`.
pub fn health(shutdown: CancellationToken) -> (HealthReporter, HealthServer<EndingHealth>) {
    let reporter = HealthReporter::new();
    let inner = HealthService::from_health_reporter(reporter.clone());
    (
        reporter,
        HealthServer::new(EndingHealth { inner, shutdown }),
    )
}

#[tonic::async_trait]
impl Health for EndingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let stream = self.inner.watch(request).await?.into_inner();
        let shutdown = self.shutdown.clone().cancelled_owned();
        Ok(Response::new(Box::pin(stream.take_until(shutdown))))
    }
}
