//! The public edge under attack: clients without a signature and with little bandwidth must not
//! stall, starve or kill the bridge.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    process::{BridgeProcess, Poster, data_dir, user_created},
    support::{Body, TestBridge, WEBHOOK_PATH, now_secs, within},
};

/// Most the done-when of the hardening allows for an answer while the bridge is under attack.
const ANSWER_UNDER_ATTACK: Duration = Duration::from_secs(2);

/// Request headers of a webhook whose body will not come: forged signature headers (fresh, well
/// formed, signing nothing), so only reading the body could tell it is not signed. `declared`:
/// a `Content-Length`; `None`: chunked.
fn stalled_request(declared: Option<usize>) -> String {
    let length = match declared {
        Some(len) => format!("content-length: {len}\r\n"),
        None => "transfer-encoding: chunked\r\n".to_owned(),
    };
    format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: bridge\r\n{length}svix-id: msg_forged\r\n\
         svix-timestamp: {}\r\nsvix-signature: v1,bm90IGEgc2lnbmF0dXJl\r\n\r\n",
        now_secs()
    )
}

/// Opens a connection and sends `prefix` of a request, then nothing more.
async fn stall(addr: SocketAddr, prefix: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(prefix.as_bytes()).await.unwrap();
    stream
}

/// Whether the bridge closed `stream` (EOF or reset), without waiting.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An answer (e.g. 408) before the close: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

/// `GET /healthz` on a new connection, answered within [`ANSWER_UNDER_ATTACK`].
async fn healthz(addr: SocketAddr) -> u16 {
    let probe = crate::support::try_http(addr, "GET", "/healthz", &[], Body::Empty);
    tokio::time::timeout(ANSWER_UNDER_ATTACK, probe)
        .await
        .expect("/healthz answered in time")
        .expect("/healthz answered")
        .status
}

/// A signed webhook on a new connection, answered within [`ANSWER_UNDER_ATTACK`].
async fn signed_webhook(addr: SocketAddr, msg_id: &str) -> u16 {
    let post = async {
        let mut poster = Poster::connect(addr).await.unwrap();
        poster
            .post(msg_id, &user_created("user_edge"))
            .await
            .unwrap()
    };
    tokio::time::timeout(ANSWER_UNDER_ATTACK, post)
        .await
        .expect("the signed webhook answered in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_longest_stalled_connection_makes_room() {
    let bridge = TestBridge::start_with(|c| c.max_connections = 8).await;
    let mut stalled = Vec::new();
    for i in 0..8 {
        let request = if i % 2 == 0 {
            stalled_request(None)
        } else {
            // Slowloris: headers that never end.
            "POST /webhooks/clerk HTTP/1.1\r\nhost: bridge\r\n".to_owned()
        };
        stalled.push(stall(bridge.http, &request).await);
    }
    // The bridge accepts in arrival order, so the probe finds all eight ahead of it.
    assert_eq!(healthz(bridge.http).await, 200);
    assert_eq!(signed_webhook(bridge.http, "msg_room").await, 200);
    assert!(
        closed_by_peer(&mut stalled[0]).await,
        "the longest-stalled connection gave way"
    );
    assert!(
        !closed_by_peer(&mut stalled[7]).await,
        "the newest stalled connection is still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_at_its_deadline() {
    let bridge = TestBridge::start_with(|c| c.body_read_timeout = Duration::from_millis(300)).await;
    let mut stream = stall(bridge.http, &stalled_request(Some(1000))).await;
    let mut answer = String::new();
    within("the bridge to give up on the body", async {
        stream.read_to_string(&mut answer).await
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

/// The hardening's done-when: a release-like process with default flags, under 1,024 stalled HTTP
/// connections, 250 forged 1 MiB bodies and 300 silent gRPC connections, still answers a probe and a
/// signed webhook within seconds, and stays under the manifests' 256 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_answers_and_stays_small_under_stalled_and_silent_connections() {
    crate::support::raise_fd_limit(4096);
    let tmp = tempfile::tempdir().unwrap();
    let bridge = BridgeProcess::start(&data_dir(&tmp), &[]).await;

    // 250 forged bodies of 1 MiB, sent whole: read within the byte budget and refused.
    let body = vec![b' '; 1 << 20];
    let floods = (0..250).map(|_| {
        let (addr, body) = (bridge.http, body.clone());
        tokio::spawn(async move {
            let mut stream = stall(addr, &stalled_request(Some(body.len()))).await;
            let _ = stream.write_all(&body).await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        })
    });
    let floods = futures_util::future::join_all(floods).await;
    for answer in floods {
        let answer = answer.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 401") || answer.starts_with("HTTP/1.1 503"),
            "a forged body is refused: {answer}"
        );
    }

    let mut held = Vec::new();
    for i in 0..1024 {
        let request = if i % 2 == 0 {
            stalled_request(None)
        } else {
            "POST /webhooks/clerk HTTP/1.1\r\nhost: bridge\r\n".to_owned()
        };
        held.push(stall(bridge.http, &request).await);
    }
    for _ in 0..300 {
        held.push(TcpStream::connect(bridge.grpc).await.unwrap());
    }

    assert_eq!(healthz(bridge.http).await, 200);
    assert_eq!(signed_webhook(bridge.http, "msg_under_attack").await, 200);
    let peak_mib = bridge.peak_rss_kib() / 1024;
    assert!(peak_mib < 256, "peak RSS {peak_mib} MiB");
    eprintln!("peak RSS under attack: {peak_mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_leave_the_public_port() {
    let tmp = tempfile::tempdir().unwrap();
    let bridge = BridgeProcess::start(&data_dir(&tmp), &["--metrics-addr", "127.0.0.1:0"]).await;
    let listening = bridge
        .log_lines()
        .into_iter()
        .find(|line| line.contains("Listening"))
        .unwrap();
    let metrics: SocketAddr = crate::process::field(&listening, "metrics");
    let get = |addr, path| crate::support::http(addr, "GET", path, &[], Body::Empty);

    assert_eq!(get(bridge.http, "/metrics").await.status, 404);
    assert_eq!(get(bridge.http, "/healthz").await.status, 200);
    let page = get(metrics, "/metrics").await;
    assert_eq!(page.status, 200);
    assert!(
        String::from_utf8_lossy(&page.body).contains("clerk_bridge_log_head_sequence"),
        "{page:?}"
    );
    assert_eq!(get(metrics, "/readyz").await.status, 200);
    let webhook = crate::support::http(
        metrics,
        "POST",
        WEBHOOK_PATH,
        &[],
        Body::Sized(br#"{"type":"user.created"}"#),
    );
    assert_eq!(
        webhook.await.status,
        404,
        "webhooks only on the public port"
    );
}
