//! A real `clerk-bridge serve` process on port-0 listeners (addresses read from its log), and a
//! keep-alive HTTP client that posts signed webhooks to it: for crash, shutdown and load tests.

use std::{
    ffi::{OsStr, OsString},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use clerk_bridge::proto::{
    CommitRequest, SubscribeRequest, SubscribeResponse, event_stream_client::EventStreamClient,
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    task::JoinHandle,
};
use tonic::{Streaming, transport::Channel};

use crate::support::{SECRET, WEBHOOK_PATH, svix_headers, within};

/// A running bridge process.
#[derive(Debug)]
pub(crate) struct BridgeProcess {
    /// The child; killed when dropped.
    child: Child,
    /// Its webhook address.
    pub(crate) http: SocketAddr,
    /// Its gRPC address.
    pub(crate) grpc: SocketAddr,
    /// Its log lines, as read so far.
    log: Arc<Mutex<Vec<String>>>,
    /// The task reading its log; done at the end of the log (the process has exited).
    log_reader: Option<JoinHandle<()>>,
}

impl BridgeProcess {
    /// Starts `clerk-bridge serve` on `data_dir` with `extra` flags and waits until it listens.
    pub(crate) async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[]).await
    }

    /// As [`BridgeProcess::start`], with extra environment variables (none else is set: the binary's
    /// defaults apply, such as logging at info level).
    pub(crate) async fn start_with_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut environment = vec![("CLERK_WEBHOOK_SIGNING_SECRET", SECRET)];
        environment.extend_from_slice(env);
        let mut command = clerk_bridge(&environment, serve_args(data_dir, extra));
        Self::launch(&mut command).await
    }

    /// As [`BridgeProcess::start`], started by `sh` after the shell command `setup` (such as
    /// `ulimit -Sn 256`), whose effect the bridge inherits.
    pub(crate) async fn start_after_shell(data_dir: &Path, setup: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            OsString::from("-c"),
            OsString::from(format!("{setup} && exec \"$0\" \"$@\"")),
            OsString::from(env!("CARGO_BIN_EXE_clerk-bridge")),
        ];
        args.extend(serve_args(data_dir, extra));
        let env = [("CLERK_WEBHOOK_SIGNING_SECRET", SECRET)];
        Self::launch(&mut command("sh", &env, args)).await
    }

    /// Spawns `command` and waits until the bridge listens.
    async fn launch(command: &mut Command) -> Self {
        let mut child = command.spawn().expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::default();
        let (http, grpc, log_reader) =
            within("the bridge to listen", listening_addrs(stderr, &log)).await;
        BridgeProcess {
            child,
            http,
            grpc,
            log,
            log_reader: Some(log_reader),
        }
    }

    /// The number of file descriptors the process has open.
    pub(crate) fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// The log lines read so far, the `Listening` line included. Complete once
    /// [`BridgeProcess::exit_code`] has returned.
    pub(crate) fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the bridge is running")
    }

    /// Sends `signal` (e.g. `KILL`, `TERM`) to the process.
    pub(crate) async fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit and for the rest of its log; its exit code (`None` when
    /// killed by a signal).
    pub(crate) async fn exit_code(&mut self) -> Option<i32> {
        let status = within("the bridge to exit", self.child.wait())
            .await
            .unwrap();
        if let Some(reader) = self.log_reader.take() {
            within("the end of the bridge's log", reader).await.unwrap();
        }
        status.code()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub(crate) async fn kill(&mut self) {
        self.signal("KILL").await;
        let _ = self.exit_code().await;
    }

    /// The process's peak resident set size in KiB (`VmHWM`).
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// The process's resident set size in KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A size in KiB from `/proc/PID/status`, such as `VmHWM:`.
    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/PID/status"))
    }

    /// A gRPC client.
    pub(crate) async fn client(&self) -> EventStreamClient<Channel> {
        within("a gRPC connection", grpc_client(self.grpc))
            .await
            .unwrap()
    }
}

/// The arguments of `serve` on loopback port-0 listeners and `data_dir`, then `extra`.
fn serve_args(data_dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--data-dir",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(data_dir.as_os_str().to_owned());
    args.extend(extra.iter().map(OsString::from));
    args
}

/// `clerk-bridge ARGS` with only `env` in its environment (so the binary's defaults apply): stdin
/// empty, stdout discarded, stderr piped, killed when dropped.
pub(crate) fn clerk_bridge<S: AsRef<OsStr>>(
    env: &[(&str, &str)],
    args: impl IntoIterator<Item = S>,
) -> Command {
    command(env!("CARGO_BIN_EXE_clerk-bridge"), env, args)
}

/// `program ARGS` as [`clerk_bridge`] runs the binary.
fn command<S: AsRef<OsStr>>(
    program: &str,
    env: &[(&str, &str)],
    args: impl IntoIterator<Item = S>,
) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A gRPC client of the bridge at `addr`.
pub(crate) async fn grpc_client(
    addr: SocketAddr,
) -> Result<EventStreamClient<Channel>, tonic::transport::Error> {
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    Ok(EventStreamClient::new(endpoint.connect().await?))
}

/// Reads the bridge's log until its `Listening` line, then keeps reading it into `log` in the
/// background (so the pipe never fills). Returns the bound addresses and the background reader.
async fn listening_addrs(
    stderr: tokio::process::ChildStderr,
    log: &Arc<Mutex<Vec<String>>>,
) -> (SocketAddr, SocketAddr, JoinHandle<()>) {
    let mut lines = BufReader::new(stderr).lines();
    let addrs = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the bridge exited before listening");
        log.lock().unwrap().push(line.clone());
        if line.contains("Listening") {
            break (field(&line, "http"), field(&line, "grpc"));
        }
    };
    let log = log.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap().push(line);
        }
    });
    (addrs.0, addrs.1, reader)
}

/// The address in field `key` of a log line, text (`http=ADDR`) or JSON (`"http":"ADDR"`).
pub(crate) fn field(line: &str, key: &str) -> SocketAddr {
    let text = format!("{key}=");
    let json = format!("\"{key}\":\"");
    let (start, marker) = match line.find(&text) {
        Some(at) => (at, text.len()),
        None => (
            line.find(&json)
                .unwrap_or_else(|| panic!("{key} in {line:?}")),
            json.len(),
        ),
    };
    let rest = &line[start + marker..];
    let value = rest
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap();
    value
        .parse()
        .unwrap_or_else(|_| panic!("address in {line:?}"))
}

/// A keep-alive HTTP/1.1 connection that posts signed webhooks.
#[derive(Debug)]
pub(crate) struct Poster {
    /// The connection's request sender.
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Poster {
    /// Connects to a bridge's webhook port.
    pub(crate) async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(Poster { sender })
    }

    /// Posts `body` signed under `msg_id`; the status code, or an error if the connection broke.
    pub(crate) async fn post(&mut self, msg_id: &str, body: &str) -> Result<u16, hyper::Error> {
        let mut request = hyper::Request::post(WEBHOOK_PATH)
            .header("host", "bridge")
            .header("content-type", "application/json");
        for (name, value) in svix_headers(msg_id, body.as_bytes()) {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        // The connection takes the next request once it has finished the last one.
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// A realistic `user.created` body of about 2.5 KB for user `id`.
pub(crate) fn user_created(id: &str) -> String {
    serde_json::json!({
        "object": "event",
        "type": "user.created",
        "timestamp": 1_716_883_200_000_i64,
        "instance_id": "ins_test",
        "data": {
            "object": "user",
            "id": id,
            "first_name": "Test",
            "last_name": "User",
            "primary_email_address_id": format!("idn_{id}"),
            "email_addresses": [{
                "id": format!("idn_{id}"),
                "object": "email_address",
                "email_address": format!("{id}@example.com"),
                "verification": {"status": "verified", "strategy": "email_code"},
                "linked_to": []
            }],
            "public_metadata": {"plan": "pro", "notes": "x".repeat(1800)},
            "private_metadata": {},
            "unsafe_metadata": {},
            "image_url": "https://img.clerk.com/example",
            "created_at": 1_716_883_200_000_i64,
            "updated_at": 1_716_883_200_000_i64
        }
    })
    .to_string()
}

/// Opens a stream for a named consumer from its committed position.
pub(crate) async fn subscribe_consumer(
    client: &mut EventStreamClient<Channel>,
    consumer: &str,
) -> Result<Streaming<SubscribeResponse>, tonic::Status> {
    let request = SubscribeRequest {
        consumer: consumer.to_owned(),
        ..SubscribeRequest::default()
    };
    Ok(client.subscribe(request).await?.into_inner())
}

/// Commits `sequence` for `consumer`.
pub(crate) async fn commit(
    client: &mut EventStreamClient<Channel>,
    consumer: &str,
    sequence: u64,
) -> Result<u64, tonic::Status> {
    let request = CommitRequest {
        consumer: consumer.to_owned(),
        sequence,
    };
    Ok(client
        .commit(request)
        .await?
        .into_inner()
        .committed_sequence)
}

/// A temporary data directory that outlives bridge restarts.
pub(crate) fn data_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("data")
}
