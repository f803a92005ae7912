//! The webhook receiver: an HTTP/1.1 server (hyper) with one webhook route and health endpoints.
//!
//! Bounds, so that a client without a signature and with little bandwidth cannot stall the bridge:
//! connections are capped, and at the cap the one that has waited longest on its client is closed
//! to make room (the `connections` module); headers must arrive within a timeout (also between
//! requests on a kept-alive connection); the signature headers are checked before the body is
//! read; bodies have a size cap, a deadline and a shared byte budget (the `body` module). Shutdown
//! stops accepting, then lets in-flight requests finish (their appends included) within the grace
//! period.

mod body;
mod budget;
mod connections;
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
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::sync::CancellationToken;

pub use body::BodyLimits;
pub use connections::{Connection, Connections};
pub use routes::{Ingress, MetricsPage, Port};

/// Longest pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Most bytes hyper buffers per connection (headers, and body bytes read ahead): with the default
/// 1,024 connections at most 16 MiB in all.
const MAX_CONNECTION_BUFFER: usize = 16 * 1024;

/// Connection-level limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Most connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
}

/// Serves `ingress` on `listener` (which is `port`) until `shutdown`, then drains open connections
/// for at most `grace`.
pub async fn serve(
    (listener, port): (TcpListener, Port),
    ingress: Arc<Ingress>,
    limits: HttpLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = Arc::new(Connections::default());
    let graceful = GracefulShutdown::new();
    let mut backoff = Duration::from_millis(5);
    loop {
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
        let slot = tokio::select! {
            slot = make_room(&slots, &connections) => slot,
            () = shutdown.cancelled() => break,
        };
        // The semaphore is never closed, so this does not happen.
        let Some(slot) = slot else { break };
        let connection = connections.open();
        let conn = serve_connection(
            stream,
            (&ingress, port),
            &limits,
            &graceful,
            connection.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                ended = conn => if let Err(error) = ended {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                },
                () = connection.closed() => {
                    tracing::debug!("HTTP connection closed to make room for a new one");
                }
            }
            connection.remove();
            drop(slot);
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

/// A slot for a new connection: a free one, or, at the cap, the one the longest-waiting
/// connection frees when it is closed (or, when all are busy, the first to end).
/// `None` only if the semaphore were closed.
async fn make_room(
    slots: &Arc<Semaphore>,
    connections: &Connections,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    connections.close_longest_waiting();
    slots.clone().acquire_owned().await.ok()
}

/// One HTTP/1.1 connection, drained at shutdown: hyper with the header timeout and buffer cap, each
/// request tagged with its [`Connection`] so the handler can mark it busy.
fn serve_connection(
    stream: TcpStream,
    (ingress, port): (&Arc<Ingress>, Port),
    limits: &HttpLimits,
    graceful: &GracefulShutdown,
    connection: Connection,
) -> impl Future<Output = hyper::Result<()>> + Send + use<> {
    let _ = stream.set_nodelay(true);
    let ingress = ingress.clone();
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let ingress = ingress.clone();
        req.extensions_mut().insert(connection.clone());
        async move { Ok::<_, std::convert::Infallible>(ingress.handle_on(port, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .serve_connection(TokioIo::new(stream), service);
    graceful.watch(conn)
}

#[cfg(test)]
mod tests;
