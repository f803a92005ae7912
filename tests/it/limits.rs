//! The gRPC port's bounds (issue 14 items 2 and 9): the cap on subscription streams, the handshake
//! deadline and the connection cap, descriptors given back when streams end, and the open file
//! limit checked at start.

use std::time::Duration;

use clerk_bridge::{
    log::READER_POOL_SIZE,
    proto::{SubscribeRequest, subscribe_response::Message},
};
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tonic::Code;

use crate::{
    process::{BridgeProcess, Poster, data_dir, grpc_client, user_created},
    support::{Body, TestBridge, assert_closed, eventually, http, patience, within},
};

/// Descriptors a process may hold beyond its start once its streams have ended: the log's shared
/// readers (two each) and a few that come and go (a scrape, a timer).
const FD_SLACK: usize = 2 * READER_POOL_SIZE + 4;

/// The metrics page of an in-process bridge.
async fn metrics(bridge: &TestBridge) -> String {
    String::from_utf8(bridge.get("/metrics").await.body).unwrap()
}

/// Whether a new client can connect and subscribe.
async fn can_subscribe(bridge: &TestBridge) -> Option<()> {
    let mut client = grpc_client(bridge.grpc).await.ok()?;
    client.subscribe(SubscribeRequest::default()).await.ok()?;
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_past_the_stream_cap_are_refused_until_one_ends() {
    let bridge = TestBridge::start_with(|c| c.max_streams = 2).await;
    let first = bridge.subscribe(0, &[]).await;
    let _second = bridge.subscribe(0, &[]).await;
    let refused = bridge.try_subscribe(0, &[]).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-streams"), "{refused:?}");
    let page = metrics(&bridge).await;
    assert!(
        page.contains("clerk_bridge_subscriptions_refused_total 1\n"),
        "{page}"
    );

    drop(first);
    eventually("the slot of the stream that ended", || {
        can_subscribe(&bridge)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_grpc_connections_are_closed_after_the_handshake_timeout() {
    let bridge =
        TestBridge::start_with(|c| c.grpc_handshake_timeout = Duration::from_millis(300)).await;
    let mut silent = TcpStream::connect(bridge.grpc).await.unwrap();
    let mut partial = TcpStream::connect(bridge.grpc).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut http1 = TcpStream::connect(bridge.grpc).await.unwrap();
    http1
        .write_all(b"GET / HTTP/1.1\r\nhost: bridge\r\n\r\n")
        .await
        .unwrap();
    for connection in [&mut silent, &mut partial, &mut http1] {
        assert_closed(connection).await;
    }

    // Clients that speak HTTP/2 are served as before.
    bridge.post_events(1, 1).await;
    assert_eq!(
        bridge.subscribe(0, &[]).await.next_event().await.sequence,
        1
    );
    let page = metrics(&bridge).await;
    for line in [
        "clerk_bridge_grpc_connections_rejected_total{reason=\"handshake_timeout\"} 2\n",
        "clerk_bridge_grpc_connections_rejected_total{reason=\"bad_handshake\"} 1\n",
    ] {
        assert!(page.contains(line), "{line} in {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_connections_past_the_cap_are_closed_while_open_ones_keep_working() {
    let bridge = TestBridge::start_with(|c| c.grpc_max_connections = 2).await;
    let mut subscription = bridge.subscribe(0, &[]).await;
    // The second place: a connection in its (10 s) handshake. Connections are accepted in order,
    // so it has its place before the next one arrives.
    let silent = TcpStream::connect(bridge.grpc).await.unwrap();
    let mut over = TcpStream::connect(bridge.grpc).await.unwrap();
    assert_closed(&mut over).await;
    let page = metrics(&bridge).await;
    assert!(
        page.contains("clerk_bridge_grpc_connections_rejected_total{reason=\"over_cap\"} 1\n"),
        "{page}"
    );

    // The open stream is unaffected.
    bridge.post_events(1, 1).await;
    assert_eq!(subscription.next_event().await.sequence, 1);
    // A closed connection gives its place back.
    drop(silent);
    eventually("the place of the closed connection", || {
        can_subscribe(&bridge)
    })
    .await;
}

/// Streams that read from disk at the same time, then end: the process gives their read
/// connections' descriptors back (SQLite parks the descriptor of a closed connection while other
/// connections hold locks on the file, so one connection per stream kept them all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_of_ended_streams_are_given_back() {
    const EVENTS: u64 = 20;
    const STREAMS: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let mut bridge = BridgeProcess::start(&dir, &[]).await;
    for i in 1..=EVENTS {
        let mut poster = Poster::connect(bridge.http).await.unwrap();
        let body = user_created(&format!("user_{i}"));
        assert_eq!(poster.post(&format!("msg_{i}"), &body).await.unwrap(), 200);
    }
    bridge.signal("TERM").await;
    assert_eq!(bridge.exit_code().await, Some(0));
    // A new process has nothing in memory: its streams read the events from disk.
    let bridge = BridgeProcess::start(&dir, &[]).await;
    let start = bridge.open_fds();

    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut client = bridge.client().await;
        let request = SubscribeRequest::default();
        let mut stream = client.subscribe(request).await.unwrap().into_inner();
        loop {
            let response = within("an event", stream.message()).await.unwrap().unwrap();
            if let Some(Message::Event(event)) = response.message
                && event.sequence == EVENTS
            {
                break;
            }
        }
        streams.push((client, stream));
    }
    drop(streams);
    eventually("the descriptors of the ended streams", || async {
        let open = bridge.open_fds();
        (open <= start + FD_SLACK).then_some(())
    })
    .await;
}

/// An HTTP/2 frame: its header (length, type, flags, stream) and `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = length[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Opens a Subscribe stream from the beginning the way a hostile client would: by hand, granting
/// the bridge the largest flow-control windows HTTP/2 allows, and then never reading the socket.
/// The connection is kept open until the returned stream is dropped.
async fn stalled_stream(addr: std::net::SocketAddr) -> TcpStream {
    const MAX_WINDOW: u32 = (1 << 31) - 1;
    let mut settings = vec![0, 4]; // SETTINGS_INITIAL_WINDOW_SIZE
    settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
    let mut headers = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/clerk.bridge.v1.EventStream/Subscribe"),
        (":authority", "bridge"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        // HPACK: a literal field without indexing, new name, no Huffman coding.
        headers.push(0);
        headers.push(u8::try_from(name.len()).unwrap());
        headers.extend_from_slice(name.as_bytes());
        headers.push(u8::try_from(value.len()).unwrap());
        headers.extend_from_slice(value.as_bytes());
    }
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(4, 0, 0, &settings));
    bytes.extend(frame(8, 0, 0, &(MAX_WINDOW - 65_535).to_be_bytes()));
    bytes.extend(frame(1, 0x4, 1, &headers)); // HEADERS, END_HEADERS
    bytes.extend(frame(0, 0x1, 1, &[0; 5])); // an empty SubscribeRequest, END_STREAM
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    stream
}

/// The value of a metric without labels on a page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `streams` streams are open and the bridge has handed them no event for three polls
/// in a row (about a second).
async fn wait_until_stalled(bridge: &BridgeProcess, streams: u64) {
    const POLL: Duration = Duration::from_millis(300);
    let deadline = tokio::time::Instant::now() + patience();
    let (mut previous, mut unchanged) = (None, 0);
    while unchanged < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the streams did not stall: {previous:?}"
        );
        tokio::time::sleep(POLL).await;
        let page = http(bridge.http, "GET", "/metrics", &[], Body::Empty).await;
        let page = String::from_utf8(page.body).unwrap();
        let open = metric(&page, "clerk_bridge_subscriptions_active");
        let delivered = metric(&page, "clerk_bridge_events_delivered_total");
        let now = Some((open, delivered));
        unchanged = if open == Some(streams as f64) && now == previous {
            unchanged + 1
        } else {
            0
        };
        previous = now;
    }
}

/// Clients that stop reading, with the largest windows and without reading their sockets, leave
/// the bridge holding a bounded amount of memory per stream: the stream's buffer, one disk batch
/// and a small HTTP/2 send buffer (before: 32 messages, a batch of 128 events, h2's default
/// 400 KiB and a read connection's 512 KiB page cache: 2.3 MiB per stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_whose_clients_stop_reading_hold_little_memory() {
    const EVENTS: usize = 1200;
    const STREAMS: u64 = 48;
    const WARM_UP: u64 = 8;
    /// What a stalled stream may hold, with its connection (measured in a debug build: about
    /// 350 KiB; 2.3 MiB before the bounds).
    const PER_STREAM_KIB: u64 = 768;
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let mut bridge = BridgeProcess::start(&dir, &[]).await;
    // About 3 MB of events, more than a stalled stream's socket buffers take.
    let mut posters = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let addr = bridge.http;
        posters.spawn(async move {
            for i in (worker..EVENTS).step_by(8) {
                let mut poster = Poster::connect(addr).await.unwrap();
                let body = user_created(&format!("user_{i}"));
                assert_eq!(poster.post(&format!("msg_{i}"), &body).await.unwrap(), 200);
            }
        });
    }
    within("the events to be stored", posters.join_all()).await;
    bridge.signal("TERM").await;
    assert_eq!(bridge.exit_code().await, Some(0));
    // A new process has nothing in memory: its streams read the events from disk. The first
    // streams also pay for what is set up once (the shared readers, the allocator's caches).
    let bridge = BridgeProcess::start(&dir, &[]).await;
    let mut stalled = Vec::new();
    for _ in 0..WARM_UP {
        stalled.push(stalled_stream(bridge.grpc).await);
    }
    wait_until_stalled(&bridge, WARM_UP).await;
    let start = bridge.rss_kib();
    for _ in 0..STREAMS {
        stalled.push(stalled_stream(bridge.grpc).await);
    }
    wait_until_stalled(&bridge, WARM_UP + STREAMS).await;
    let held = bridge.rss_kib().saturating_sub(start);
    eprintln!("{STREAMS} stalled streams hold {} KiB each", held / STREAMS);
    assert!(
        held < STREAMS * PER_STREAM_KIB,
        "{STREAMS} stalled streams hold {held} KiB"
    );
    drop(stalled);
}

/// The soft limit of open files of process `pid` and its hard limit.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_open_file_limit_is_raised_or_reported() {
    // A low soft limit under a higher hard one is raised to the hard one.
    let tmp = tempfile::tempdir().unwrap();
    let mut raised = BridgeProcess::start_after_shell(&data_dir(&tmp), "ulimit -Sn 256", &[]).await;
    let (soft, hard) = open_file_limits(raised.pid());
    assert!(soft == hard && soft > 256, "soft {soft}, hard {hard}");
    raised.kill().await;

    // A hard limit below what the caps allow is reported, naming the flags to lower.
    let tmp = tempfile::tempdir().unwrap();
    let mut low = BridgeProcess::start_after_shell(
        &data_dir(&tmp),
        "ulimit -Sn 256 && ulimit -Hn 256",
        &["--max-streams", "64"],
    )
    .await;
    assert_eq!(open_file_limits(low.pid()), (256, 256));
    low.kill().await;
    let warning = low
        .log_lines()
        .into_iter()
        .find(|line| line.contains("Open file limit is below"))
        .expect("a warning about the open file limit");
    for flag in [
        "--max-connections",
        "--grpc-max-connections",
        "--max-streams",
    ] {
        assert!(warning.contains(flag), "{flag} in {warning}");
    }
    assert!(warning.contains("limit=256"), "{warning}");
}
