//! The ceiling: a receiver that does nothing on the bridge's HTTP stack, so the benchmark can say
//! what share of the bare cost of taking an HTTP request the bridge's own work adds. The same
//! binary runs it in a hidden mode (`bench --ceiling-receiver`), as a process of its own pinned to
//! the bridge's CPU and driven by the same load generator with the same signed requests.
//!
//! What it shares with the bridge's webhook port (`src/ingress/mod.rs`): hyper 1's HTTP/1.1 server
//! through hyper-util, `TCP_NODELAY`, the header read timeout and buffer cap, a connection slot
//! from a semaphore, graceful-shutdown tracking, a task per connection, jemalloc, and tokio's
//! multi-threaded runtime (one worker on one pinned CPU). Per request it reads the whole body and
//! answers 200 with a JSON body of the bridge's shape; it verifies, decodes and stores nothing.

use std::{
    net::SocketAddr,
    process::{ExitCode, Stdio},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::{Child, Command},
    sync::Semaphore,
};

use crate::{BenchError, bridge};

/// The hidden option that runs this binary as the ceiling receiver.
pub(crate) const RECEIVER_FLAG: &str = "--ceiling-receiver";
/// The bridge's defaults for the same limits (`--max-connections`, `--header-read-timeout`, and
/// its per-connection buffer cap).
const MAX_CONNECTIONS: usize = 1_024;
/// See [`MAX_CONNECTIONS`].
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`MAX_CONNECTIONS`].
const MAX_CONNECTION_BUFFER: usize = 16 * 1024;
/// The answer, shaped like the bridge's to a newly stored webhook.
const ANSWER: &[u8] = br#"{"sequence":0,"duplicate":false}"#;

/// A ceiling receiver process this benchmark started and owns.
#[derive(Debug)]
pub(crate) struct Ceiling {
    /// The child; killed when dropped.
    child: Child,
    /// Its process id, for its CPU time.
    pid: u32,
    /// Where it listens (loopback, a port the kernel chose).
    pub(crate) http: SocketAddr,
}

// === impl Ceiling ===

impl Ceiling {
    /// Starts this binary in receiver mode, under `taskset -c cpu` when `cpu` is given, and reads
    /// the address it prints.
    pub(crate) async fn start(cpu: Option<usize>) -> Result<Self, BenchError> {
        let exe = std::env::current_exe()?;
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .arg(RECEIVER_FLAG)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Setup("the ceiling receiver exited at once".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Setup("no stdout pipe".into()))?;
        let line = BufReader::new(stdout).lines().next_line().await?;
        let http = line
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| BenchError::Setup("the ceiling receiver printed no address".into()))?;
        Ok(Ceiling { child, pid, http })
    }

    /// CPU time it has used so far, all threads.
    pub(crate) fn cpu_time(&self) -> Result<Duration, BenchError> {
        bridge::process_cpu_time(self.pid)
    }

    /// Stops it and reaps it.
    pub(crate) async fn stop(mut self) -> Result<(), BenchError> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Receiver mode: serves on a loopback port until killed, after printing its address on stdout.
pub(crate) fn run_receiver() -> ExitCode {
    let served = tokio::runtime::Runtime::new()
        .map_err(BenchError::from)
        .and_then(|runtime| runtime.block_on(serve()));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench ceiling receiver: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Accepts connections as the bridge's webhook port does, each served on a task of its own.
async fn serve() -> Result<(), BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _peer) = listener.accept().await?;
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_CONNECTION_BUFFER)
            .serve_connection(TokioIo::new(stream), service_fn(answer));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
}

/// Reads the whole body and answers 200, doing nothing with it.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    request.into_body().collect().await?;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
