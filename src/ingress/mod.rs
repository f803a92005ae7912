//! The webhook receiver: an HTTP/1.1 server (hyper) with one webhook route and health endpoints.
//!
//! Limits: connections are capped by a semaphore taken before `accept`, headers must arrive within a
//! timeout, and bodies are capped (413 without reading past the cap). Shutdown stops accepting, then
//! lets in-flight requests finish (their appends included) within the grace period.

mod response;
mod routes;
pub mod secrets;
pub mod verify;

use std::{sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

pub use routes::{Ingress, MetricsPage};

/// Longest pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Connection-level limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Most connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
}

/// Serves `ingress` on `listener` until `shutdown`, then drains open connections for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    ingress: Arc<Ingress>,
    limits: HttpLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit,
            () = shutdown.cancelled() => break,
        };
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(%error, "HTTP accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(5);
        let _ = stream.set_nodelay(true);
        let ingress = ingress.clone();
        let service = service_fn(move |req| {
            let ingress = ingress.clone();
            async move { Ok::<_, std::convert::Infallible>(ingress.handle(req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the grace period; closing them");
    }
}

#[cfg(test)]
mod tests;
