//! The gRPC port's connections: a cap, a handshake deadline, and HTTP/2 with bounded buffers.
//!
//! - **Cap.** At most `max_connections` are open at once (handshakes included). One past the cap is
//!   accepted and closed at once, so its client learns straight away and retries with backoff,
//!   instead of waiting unseen in the listen backlog behind connections that may never speak.
//! - **Handshake deadline.** Each accepted connection gets a task that must see the TLS handshake
//!   (with `--grpc-tls-cert`) and the HTTP/2 client preface within `handshake_timeout`; a silent or
//!   slow client is dropped then, so silent connections cannot hold the cap (or file descriptors)
//!   for long. A slow client never blocks `accept`.
//! - **HTTP/2.** Connections that pass are served by hyper with keepalive pings (a peer that stops
//!   answering is dropped) and a small send buffer per stream, so a client that stops reading lets
//!   the bridge buffer at most [`STREAM_SEND_BUFFER`] per stream beyond what its flow-control window
//!   has already taken. A connection that completed its handshake and answers pings may stay open
//!   idle, holding one place under the cap, until it closes.
//!
//! Connections are served here rather than by `tonic::transport::Server`, which offers neither the
//! preface deadline nor the send buffer size. Requests carry tonic's connection info
//! (`Request::remote_addr`, and `peer_certs` with TLS). The client's `grpc-timeout` is not enforced
//! by the server (clients enforce their own deadlines).

mod preface;

use std::{sync::Arc, time::Duration};

use hyper::{body::Incoming, server::conn::http2, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{codegen::Service, service::Routes, transport::server::Connected};
use tracing::Instrument as _;

use crate::telemetry::metrics::{ConnectionRejected, Metrics};
use preface::Prefaced;

/// Default of `--grpc-max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default of `--grpc-handshake-timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keepalive pings on gRPC connections, so dead clients are noticed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keepalive ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Most bytes HTTP/2 buffers per stream for a client whose window is open but that does not read
/// (h2's default is 400 KiB): events wait in the stream's own bounded buffer instead.
pub const STREAM_SEND_BUFFER: usize = 64 * 1024;
/// What a client may send on one stream before the bridge reads it: requests are at most 64 KiB.
const STREAM_WINDOW: u32 = 64 * 1024;
/// What a client may send on one connection before the bridge reads it.
const CONNECTION_WINDOW: u32 = 256 * 1024;
/// Shortest and longest pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// Connection-level limits of the gRPC port.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Most connections open at once, handshakes included; more are closed at once.
    pub max_connections: usize,
    /// Time a client has for the TLS handshake and the HTTP/2 preface.
    pub handshake_timeout: Duration,
}

/// What every connection task shares.
#[derive(Debug, Clone)]
struct Shared {
    /// The gRPC services.
    routes: Routes,
    /// TLS, when configured.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The HTTP/2 settings.
    http2: Arc<http2::Builder<TokioExecutor>>,
    /// Time a client has for its handshake.
    handshake_timeout: Duration,
    /// Where connections are counted.
    metrics: Arc<Metrics>,
    /// Cancelled at shutdown: handshakes stop, connections close once their streams end.
    shutdown: CancellationToken,
}

/// Serves `routes` on `listener` until `shutdown`; then stops accepting and returns once every
/// connection has closed (streams end at shutdown; see `server::run`).
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: GrpcLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let shared = Shared {
        routes,
        tls,
        http2: Arc::new(http2_builder()),
        handshake_timeout: limits.handshake_timeout,
        metrics,
        shutdown,
    };
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    while let Some(stream) = accept(&listener, &shared.shutdown).await {
        let Ok(place) = places.clone().try_acquire_owned() else {
            shared
                .metrics
                .grpc_connection_rejected(ConnectionRejected::OverCap);
            tracing::debug!("gRPC connection over the cap; closed");
            continue;
        };
        connections.spawn(shared.clone().connection(stream, place).in_current_span());
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The next connection; `None` at shutdown. A failed `accept` (such as EMFILE: out of file
/// descriptors) is tried again after a pause that doubles each time.
async fn accept(listener: &TcpListener, shutdown: &CancellationToken) -> Option<TcpStream> {
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return None,
        };
        match accepted {
            Ok((stream, _peer)) => return Some(stream),
            Err(error) => tracing::warn!(%error, "gRPC accept failed; backing off"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return None,
        }
        backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
    }
}

/// The HTTP/2 settings of every connection.
fn http2_builder() -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .max_send_buf_size(STREAM_SEND_BUFFER)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    builder
}

// === impl Shared ===

impl Shared {
    /// One connection: its handshake within the deadline, then HTTP/2 until it closes. Holds its
    /// `place` under the cap throughout.
    async fn connection(self, stream: TcpStream, place: OwnedSemaphorePermit) {
        let _place = place;
        let _counted = self.metrics.grpc_connection_opened();
        // Without it, Nagle's algorithm and the client's delayed ACK hold small events back.
        let _ = stream.set_nodelay(true);
        match self.tls.clone() {
            Some(tls) => {
                let tls = TlsAcceptor::from(tls);
                let handshake = async move { preface::read(tls.accept(stream).await?).await };
                if let Some(io) = self.handshake(handshake).await {
                    self.serve_http2(io).await;
                }
            }
            None => {
                if let Some(io) = self.handshake(preface::read(stream)).await {
                    self.serve_http2(io).await;
                }
            }
        }
    }

    /// Waits for `handshake` for at most the handshake timeout; `None` (counted) when it fails,
    /// takes too long, or the bridge shuts down meanwhile.
    async fn handshake<IO>(
        &self,
        handshake: impl Future<Output = std::io::Result<Prefaced<IO>>>,
    ) -> Option<Prefaced<IO>> {
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(self.handshake_timeout, handshake) => outcome,
            () = self.shutdown.cancelled() => return None,
        };
        let rejected = match outcome {
            Ok(Ok(io)) => return Some(io),
            Ok(Err(error)) => {
                tracing::debug!(%error, "gRPC handshake failed");
                ConnectionRejected::BadHandshake
            }
            Err(_) => ConnectionRejected::HandshakeTimeout,
        };
        self.metrics.grpc_connection_rejected(rejected);
        None
    }

    /// Serves HTTP/2 on `io` until the client closes or, after shutdown, its last stream ends.
    async fn serve_http2<IO>(self, io: Prefaced<IO>)
    where
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    {
        let info = io.connect_info();
        let routes = self.routes;
        let service = service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(info.clone());
            let mut routes = routes.clone();
            async move {
                std::future::poll_fn(|cx| {
                    Service::<hyper::Request<Incoming>>::poll_ready(&mut routes, cx)
                })
                .await?;
                routes.call(request).await
            }
        });
        let connection = self.http2.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = served {
            tracing::debug!(%error, "gRPC connection ended with an error");
        }
    }
}
