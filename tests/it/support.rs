//! The harness: a bridge running in-process on port-0 listeners ([`TestBridge`]), a raw HTTP/1.1
//! client (so tests control `Content-Length` and chunking exactly), real Svix signatures, gRPC
//! subscriptions with timeouts ([`Subscription`]), and the shared Clerk fixtures.
//!
//! Nothing here sleeps for a fixed time: reads are bounded by [`patience`], and [`eventually`]
//! polls with a deadline.

use std::{
    fmt::Write as _,
    future::Future,
    io,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clerk_bridge::{
    Config, Listeners, RunError,
    jetstream::NatsConfig,
    log::retention::Policy,
    proto::{
        Event, Heartbeat, StartPosition, SubscribeRequest, SubscribeResponse,
        event_stream_client::EventStreamClient, subscribe_response::Message,
    },
    run,
};
use serde_json::Value;
use svix::webhooks::Webhook;
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::nats::NatsServer;
use tonic::{Code, Status, Streaming, transport::Channel};

/// The signing secret every test bridge is configured with.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A valid secret the bridges do not know.
pub(crate) const OTHER_SECRET: &str = "whsec_YS1kaWZmZXJlbnQtMzItYnl0ZS1zaWduaW5nLWtleSE=";
/// HTTP header names and values, in order.
pub(crate) type Headers = Vec<(String, String)>;
/// The webhook route of [`Config::for_test`].
pub(crate) const WEBHOOK_PATH: &str = "/webhooks/clerk";
/// A heartbeat interval short enough to wait for: a heartbeat carries the head, and is only sent
/// once a stream has passed it (see [`Subscription::events_until_head`]).
pub(crate) const QUICK_HEARTBEAT: Duration = Duration::from_millis(200);
/// Clerk's published example payloads, one file per event type.
const FIXTURES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clerk-events");

/// The longest any single wait may take before the test fails (env `CLERK_BRIDGE_TEST_PATIENCE_SECS`,
/// default 20 s): generous, since it only matters when something is broken.
pub(crate) fn patience() -> Duration {
    let secs = std::env::var("CLERK_BRIDGE_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

/// Polls `probe` until it yields `Some`, failing the test after [`patience`] (a probe that hangs
/// counts against the same deadline).
pub(crate) async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(patience(), what, probe).await
}

/// As [`eventually`], with `limit` in place of [`patience`], for waits that include a known delay
/// (a lease's expiry, a cluster's elections).
pub(crate) async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Some(value)) => return value,
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

/// Awaits `future`, failing the test after [`patience`].
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(patience(), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

// === signing and bodies ===

/// Now, in unix seconds.
pub(crate) fn now_secs() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_secs()).unwrap()
}

/// The three signature headers (`{prefix}-id`, `-timestamp`, `-signature`) for `body`, signed for
/// real with `secret`.
pub(crate) fn signed_headers(
    secret: &str,
    prefix: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Headers {
    let signature = Webhook::new(secret)
        .unwrap()
        .sign(msg_id, timestamp, body)
        .unwrap();
    vec![
        (format!("{prefix}-id"), msg_id.to_owned()),
        (format!("{prefix}-timestamp"), timestamp.to_string()),
        (format!("{prefix}-signature"), signature),
    ]
}

/// `svix-*` headers signing `body` with [`SECRET`] now.
pub(crate) fn svix_headers(msg_id: &str, body: &[u8]) -> Headers {
    signed_headers(SECRET, "svix", msg_id, now_secs(), body)
}

/// A minimal Clerk event of `event_type` about the object `object_id`.
pub(crate) fn event_body(event_type: &str, object_id: &str) -> String {
    serde_json::json!({
        "object": "event",
        "type": event_type,
        "timestamp": 1_716_883_200,
        "instance_id": "ins_test",
        "data": { "object": "test", "id": object_id },
    })
    .to_string()
}

/// One file of `tests/fixtures/clerk-events` (Clerk's published examples).
#[derive(Debug, Clone)]
pub(crate) struct Fixture {
    /// The file name, e.g. `user.created.json`.
    pub(crate) name: String,
    /// The verbatim text.
    pub(crate) body: String,
    /// The parsed text.
    pub(crate) json: Value,
}

impl Fixture {
    /// The event `type` of the fixture.
    pub(crate) fn event_type(&self) -> &str {
        self.json["type"].as_str().unwrap()
    }
}

/// Every fixture, sorted by file name.
pub(crate) fn fixtures() -> Vec<Fixture> {
    let mut fixtures: Vec<Fixture> = std::fs::read_dir(FIXTURES_DIR)
        .unwrap_or_else(|e| panic!("reading {FIXTURES_DIR}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let body = std::fs::read_to_string(&path).unwrap();
            Fixture {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                json: serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path:?}: {e}")),
                body,
            }
        })
        .collect();
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(fixtures.len() >= 3, "too few fixtures in {FIXTURES_DIR}");
    fixtures
}

// === HTTP ===

/// How a request body is framed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// No body, no framing headers.
    Empty,
    /// With `Content-Length`.
    Sized(&'a [u8]),
    /// With `Transfer-Encoding: chunked` and no `Content-Length`.
    Chunked(&'a [u8]),
}

/// A response as read off the wire.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    /// The status code.
    pub(crate) status: u16,
    /// Header names (lowercase) and values, in order.
    pub(crate) headers: Headers,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (fails the test otherwise).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status is `status` and the body a JSON object with a non-empty `error` string.
    pub(crate) fn assert_error(&self, status: u16, case: &str) {
        assert_eq!(self.status, status, "{case}: {self:?}");
        let error = self.json()["error"].clone();
        let text = error
            .as_str()
            .unwrap_or_else(|| panic!("{case}: no error string in {error}"));
        assert!(!text.is_empty(), "{case}: empty error");
    }

    /// Asserts a 200 answer to a webhook and returns its `(sequence, duplicate)`.
    pub(crate) fn accepted(&self) -> (u64, bool) {
        assert_eq!(
            self.status,
            200,
            "{self:?} {}",
            String::from_utf8_lossy(&self.body)
        );
        let json = self.json();
        (
            json["sequence"].as_u64().unwrap(),
            json["duplicate"].as_bool().unwrap(),
        )
    }
}

/// Raises this process's soft limit on open files to at least `wanted` (up to the hard limit), for
/// tests that hold many connections open; machines often start with a soft limit of 1,024.
pub(crate) fn raise_fd_limit(wanted: u64) {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < wanted {
        rlimit::setrlimit(rlimit::Resource::NOFILE, wanted.min(hard), hard).unwrap();
    }
}

/// Waits until the bridge closes `connection` (end of stream or reset).
pub(crate) async fn assert_closed(connection: &mut TcpStream) {
    let mut buf = [0; 256];
    loop {
        match within(
            "the bridge to close the connection",
            connection.read(&mut buf),
        )
        .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Sends one HTTP/1.1 request on a new connection and reads the answer.
///
/// The body is written while the answer is read, so a server that answers before reading the whole
/// body (413) is seen as it answers.
pub(crate) async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Body<'_>,
) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.split();
    let request = encode_request(addr, method, path, headers, body);
    let write = async {
        // A server may close early (e.g. 413); what it answered is what counts.
        let _ = writer.write_all(&request).await;
        // Keep the write side open: a half-closed request may be dropped by the server.
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0; 8192];
        loop {
            let read = reader.read(&mut chunk).await;
            let at_eof = matches!(read, Ok(0) | Err(_));
            if let Ok(n) = read {
                buf.extend_from_slice(&chunk[..n]);
            }
            if let Some(response) = parse_response(&buf, at_eof) {
                return Ok(response);
            }
            if at_eof {
                return Err(read.err().unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete HTTP response")
                }));
            }
        }
    };
    tokio::select! {
        response = read => response,
        () = write => unreachable!("the write future never ends"),
    }
}

/// As [`try_http`], failing the test on an I/O error or after [`patience`].
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Body<'_>,
) -> HttpResponse {
    within(
        "an HTTP response",
        try_http(addr, method, path, headers, body),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn encode_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Body<'_>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        write!(head, "{name}: {value}\r\n").unwrap();
    }
    match body {
        Body::Empty => {}
        Body::Sized(bytes) => write!(head, "content-length: {}\r\n", bytes.len()).unwrap(),
        Body::Chunked(_) => head.push_str("transfer-encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    match body {
        Body::Empty => {}
        Body::Sized(bytes) => request.extend_from_slice(bytes),
        Body::Chunked(bytes) => {
            for chunk in bytes.chunks(1000) {
                request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                request.extend_from_slice(chunk);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
        }
    }
    request
}

/// The response in `buf`, once complete: its `Content-Length` is all there, or the server closed.
fn parse_response(buf: &[u8], at_eof: bool) -> Option<HttpResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = &buf[end + 4..];
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = match length {
        Some(len) if body.len() >= len => body[..len].to_vec(),
        None if at_eof => body.to_vec(),
        _ => return None,
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

// === the bridge ===

/// A bridge running in this process on loopback port-0 listeners, with its own data directory.
#[derive(Debug)]
pub(crate) struct TestBridge {
    /// The configuration it runs with (and restarts with).
    pub(crate) config: Config,
    /// Webhook address.
    pub(crate) http: SocketAddr,
    /// gRPC address.
    pub(crate) grpc: SocketAddr,
    /// Cancels the running bridge.
    shutdown: CancellationToken,
    /// The running `run` call.
    task: Option<JoinHandle<Result<(), RunError>>>,
    /// Owns the data directory.
    _dir: TempDir,
    /// The nats-server of a bridge on JetStream (see [`store_under_test`]).
    _nats: Option<Arc<NatsServer>>,
}

impl TestBridge {
    /// Starts a bridge with [`Config::for_test`] in a new temporary directory.
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a bridge whose idle streams send heartbeats every [`QUICK_HEARTBEAT`].
    pub(crate) async fn start_quick_heartbeat() -> Self {
        Self::start_with(|c| c.heartbeat_interval = QUICK_HEARTBEAT).await
    }

    /// Starts a bridge with [`Config::for_test`] changed by `configure`.
    /// On the store under test ([`store_under_test`]): with JetStream, on a nats-server of its own.
    pub(crate) async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(store_under_test(), configure).await
    }

    /// Starts a bridge on the embedded log whatever the store under test, for tests of what only
    /// it has (its files, its fault injection).
    pub(crate) async fn start_embedded_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(StoreUnderTest::Embedded, configure).await
    }

    async fn start_on(store: StoreUnderTest, configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_test(dir.path().to_path_buf(), SECRET);
        let nats = match store {
            StoreUnderTest::Embedded => None,
            StoreUnderTest::JetStream => {
                let server = Arc::new(NatsServer::start());
                config.nats = Some(nats_config(&[&server.url], 1));
                Some(server)
            }
        };
        configure(&mut config);
        if let (Some(nats), retention) = (&mut config.nats, config.retention) {
            nats.retention = retention;
        }
        let (http, grpc, shutdown, task) = launch(config.clone()).await;
        TestBridge {
            config,
            http,
            grpc,
            shutdown,
            task: Some(task),
            _dir: dir,
            _nats: nats,
        }
    }

    /// Starts a bridge on the JetStream stream `CLERK_EVENTS` of the servers at `urls`, with
    /// `replicas` replicas.
    pub(crate) async fn start_on_jetstream(urls: &[&str], replicas: usize) -> Self {
        Self::start_on_jetstream_with(urls, replicas, |_| {}).await
    }

    /// As [`TestBridge::start_on_jetstream`], with the config changed by `configure`.
    pub(crate) async fn start_on_jetstream_with(
        urls: &[&str],
        replicas: usize,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let nats = nats_config(urls, replicas);
        Self::start_with(|c| {
            c.nats = Some(nats);
            c.heartbeat_interval = QUICK_HEARTBEAT;
            configure(c);
        })
        .await
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Sends a request to the webhook port.
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Body<'_>,
    ) -> HttpResponse {
        http(self.http, method, path, headers, body).await
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], Body::Empty).await
    }

    /// Posts `body` with `headers` to the webhook route.
    pub(crate) async fn post(&self, headers: &[(String, String)], body: &[u8]) -> HttpResponse {
        self.request("POST", WEBHOOK_PATH, headers, Body::Sized(body))
            .await
    }

    /// Posts `body` signed now with [`SECRET`] under `svix-id: msg_id`.
    pub(crate) async fn post_signed(&self, msg_id: &str, body: &str) -> HttpResponse {
        self.post(&svix_headers(msg_id, body.as_bytes()), body.as_bytes())
            .await
    }

    /// Posts `body` signed under `msg_id`, asserts it is accepted, and returns its
    /// `(sequence, duplicate)`.
    pub(crate) async fn deliver(&self, msg_id: &str, body: &str) -> (u64, bool) {
        self.post_signed(msg_id, body).await.accepted()
    }

    /// Posts a signed new event and returns the sequence it was stored at.
    pub(crate) async fn post_new(&self, msg_id: &str, body: &str) -> u64 {
        let (sequence, duplicate) = self.deliver(msg_id, body).await;
        assert!(!duplicate, "{msg_id} was already stored");
        sequence
    }

    /// Posts `count` minimal events `msg_{first}`.. and returns their sequences.
    pub(crate) async fn post_events(&self, first: usize, count: usize) -> Vec<u64> {
        let mut sequences = Vec::with_capacity(count);
        for i in first..first + count {
            let body = event_body("session.created", &format!("sess_{i}"));
            sequences.push(self.post_new(&format!("msg_{i}"), &body).await);
        }
        sequences
    }

    /// A gRPC channel to the bridge.
    pub(crate) async fn channel(&self) -> Channel {
        let endpoint = Channel::from_shared(format!("http://{}", self.grpc)).unwrap();
        within("a gRPC connection", endpoint.connect())
            .await
            .unwrap()
    }

    /// Subscribes; the error status when the bridge refuses.
    pub(crate) async fn try_subscribe(
        &self,
        after_sequence: u64,
        event_types: &[&str],
    ) -> Result<Subscription, Status> {
        let request = SubscribeRequest {
            after_sequence,
            event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
            ..SubscribeRequest::default()
        };
        self.subscribe_with(request).await
    }

    /// Subscribes with `request` as given; the error status when the bridge refuses.
    pub(crate) async fn subscribe_with(
        &self,
        request: SubscribeRequest,
    ) -> Result<Subscription, Status> {
        let mut client = EventStreamClient::new(self.channel().await);
        let response = within("the Subscribe answer", client.subscribe(request)).await?;
        Ok(Subscription {
            stream: response.into_inner(),
        })
    }

    /// Subscribes, failing the test if the bridge refuses.
    pub(crate) async fn subscribe(
        &self,
        after_sequence: u64,
        event_types: &[&str],
    ) -> Subscription {
        self.try_subscribe(after_sequence, event_types)
            .await
            .unwrap_or_else(|status| panic!("Subscribe refused: {status:?}"))
    }

    /// Asserts that Subscribe is refused with `code`.
    pub(crate) async fn assert_refused(
        &self,
        after_sequence: u64,
        event_types: &[&str],
        code: Code,
    ) {
        match self.try_subscribe(after_sequence, event_types).await {
            Ok(_) => panic!("Subscribe({after_sequence}, {event_types:?}) was accepted"),
            Err(status) => assert_eq!(status.code(), code, "{event_types:?}: {status:?}"),
        }
    }

    /// The head as a heartbeat reports it, once a stream that skips every event has read the whole
    /// log (use [`TestBridge::start_quick_heartbeat`]).
    pub(crate) async fn reported_head(&self) -> u64 {
        let mut nothing = self.subscribe(0, &["no.such.type"]).await;
        nothing.next_heartbeat().await.head_sequence
    }

    /// The log's positions as a stream's start marker reports them: `(head, first retained)`.
    pub(crate) async fn positions(&self) -> (u64, u64) {
        let request = SubscribeRequest {
            start: StartPosition::Latest.into(),
            ..SubscribeRequest::default()
        };
        let mut latest = self.subscribe_with(request).await.unwrap();
        match latest.next_message().await {
            Ok(Some(Message::Start(start))) => (start.head_sequence, start.first_retained_sequence),
            other => panic!("expected a start marker, got {other:?}"),
        }
    }

    /// Asserts the log is empty: a subscription after sequence 1 is ahead of its head.
    pub(crate) async fn assert_nothing_stored(&self) {
        self.assert_refused(1, &[], Code::OutOfRange).await;
    }

    /// Starts shutting the bridge down.
    pub(crate) fn cancel(&self) {
        self.shutdown.cancel();
    }

    /// Waits for `run` to return after [`TestBridge::cancel`], failing the test after `limit`.
    pub(crate) async fn stopped_within(&mut self, limit: Duration) -> Result<(), RunError> {
        let task = self.task.take().expect("the bridge is running");
        match tokio::time::timeout(limit, task).await {
            Ok(joined) => joined.expect("run did not panic"),
            Err(_) => panic!("run did not return within {limit:?} of shutdown"),
        }
    }

    /// Stops the bridge and returns what `run` returned.
    pub(crate) async fn stop(&mut self) -> Result<(), RunError> {
        self.cancel();
        self.stopped_within(patience()).await
    }

    /// Stops the bridge cleanly and starts a new one on the same data directory and config (new
    /// ports).
    pub(crate) async fn restart(&mut self) {
        self.stop().await.expect("the bridge stopped cleanly");
        self.start_again().await;
    }

    /// Starts a stopped bridge again on the same data directory and config (new ports).
    pub(crate) async fn start_again(&mut self) {
        assert!(self.task.is_none(), "the bridge is still running");
        let (http, grpc, shutdown, task) = launch(self.config.clone()).await;
        (self.http, self.grpc, self.shutdown, self.task) = (http, grpc, shutdown, Some(task));
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Which store the bridges of [`TestBridge::start_with`] use: the embedded log, or with
/// `CLERK_BRIDGE_TEST_STORE=jetstream` a JetStream stream (CI runs the contract's tests both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreUnderTest {
    /// The SQLite log in the data directory.
    Embedded,
    /// A stream on a nats-server of the bridge's own.
    JetStream,
}

/// The store under test, from `CLERK_BRIDGE_TEST_STORE` (`embedded`, the default, or `jetstream`).
pub(crate) fn store_under_test() -> StoreUnderTest {
    match std::env::var("CLERK_BRIDGE_TEST_STORE").as_deref() {
        Ok("jetstream") => StoreUnderTest::JetStream,
        Ok("embedded") | Err(_) => StoreUnderTest::Embedded,
        Ok(other) => panic!("CLERK_BRIDGE_TEST_STORE={other}: expected embedded or jetstream"),
    }
}

/// The JetStream config of a test bridge on the servers at `urls`.
pub(crate) fn nats_config(urls: &[&str], replicas: usize) -> NatsConfig {
    NatsConfig {
        urls: urls.iter().map(|url| url.parse().unwrap()).collect(),
        stream: "CLERK_EVENTS".to_owned(),
        replicas,
        credentials: None,
        tls_ca: None,
        tls_client: None,
        retention: Policy::default(),
    }
}

/// Binds both listeners, then spawns `run` on them.
async fn launch(
    config: Config,
) -> (
    SocketAddr,
    SocketAddr,
    CancellationToken,
    JoinHandle<Result<(), RunError>>,
) {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = match config.metrics_addr {
        Some(addr) => Some(TcpListener::bind(addr).await.unwrap()),
        None => None,
    };
    let addrs = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let listeners = Listeners {
        http,
        grpc,
        metrics,
    };
    let task = tokio::spawn(run(config, listeners, shutdown.clone()));
    (addrs.0, addrs.1, shutdown, task)
}

// === subscriptions ===

/// An open `Subscribe` stream.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The response stream.
    stream: Streaming<SubscribeResponse>,
}

impl Subscription {
    /// The next message, `Ok(None)` when the stream ended, `Err` for its final status.
    pub(crate) async fn next_message(&mut self) -> Result<Option<Message>, Status> {
        let next = within("a subscription message", self.stream.message()).await?;
        Ok(next.map(|response| response.message.expect("a message is set")))
    }

    /// The next event, skipping heartbeats and other markers.
    pub(crate) async fn next_event(&mut self) -> Event {
        loop {
            match self.next_message().await {
                Ok(Some(Message::Event(event))) => return event,
                Ok(Some(_)) => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next `count` events.
    pub(crate) async fn next_events(&mut self, count: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next_event().await);
        }
        events
    }

    /// The next heartbeat, skipping markers other than events.
    pub(crate) async fn next_heartbeat(&mut self) -> Heartbeat {
        loop {
            match self.next_message().await {
                Ok(Some(Message::Heartbeat(heartbeat))) => return heartbeat,
                Ok(Some(Message::Event(event))) => panic!("expected a heartbeat, got {event:?}"),
                Ok(Some(_)) => {}
                other => panic!("expected a heartbeat, got {other:?}"),
            }
        }
    }

    /// Every event until a heartbeat reports `head` (needs [`QUICK_HEARTBEAT`]). A heartbeat is only
    /// sent once the stream has passed its head, so these are all the events up to `head`.
    pub(crate) async fn events_until_head(&mut self, head: u64) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match self.next_message().await {
                Ok(Some(Message::Event(event))) => events.push(event),
                Ok(Some(Message::Heartbeat(h))) if h.head_sequence >= head => return events,
                Ok(Some(_)) => {}
                other => panic!("expected events then a heartbeat, got {other:?}"),
            }
        }
    }

    /// The status the stream ends with, skipping messages before it.
    pub(crate) async fn final_status(&mut self) -> Status {
        loop {
            match self.next_message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    }
}

/// Sequences of `events`.
pub(crate) fn sequences(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}
