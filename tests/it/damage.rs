//! The bridge when its files are taken from under it: a data directory removed or replaced while
//! it runs, a write-ahead log that lost acknowledged events in a crash.

use std::{net::SocketAddr, path::Path};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    operations::sample,
    process::{BridgeProcess, data_dir},
    support::{Body, TestBridge, WEBHOOK_PATH, event_body, eventually, http, svix_headers},
};

/// The gRPC health status of the whole server.
async fn grpc_health(bridge: &TestBridge) -> ServingStatus {
    let mut health = HealthClient::new(bridge.channel().await);
    let request = HealthCheckRequest::default();
    health.check(request).await.unwrap().into_inner().status()
}

/// The value of `series` on the bridge's metrics page at `addr`.
async fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let page = http(addr, "GET", "/metrics", &[], Body::Empty).await;
    sample(&String::from_utf8(page.body).unwrap(), series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_or_replaced_data_directory_stops_acknowledging_and_fails_readiness() {
    for replace in [false, true] {
        let case = if replace { "replaced" } else { "removed" };
        let mut bridge = TestBridge::start_embedded_with(|_| {}).await;
        let first = event_body("session.created", "sess_1");
        let second = event_body("session.created", "sess_2");
        assert_eq!(bridge.post_new("msg_1", &first).await, 1);
        assert_eq!(bridge.get("/readyz").await.status, 200);

        let dir = bridge.data_dir().to_path_buf();
        // Not while the watermark keeper writes into it (that would make the removal fail).
        eventually("the watermark to record head 1", || async {
            (recorded_head(&dir) == Some(1)).then_some(())
        })
        .await;
        let moved = dir.with_extension("moved");
        if replace {
            std::fs::rename(&dir, &moved).unwrap();
            std::fs::create_dir(&dir).unwrap();
        } else {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let refused = bridge.post_signed("msg_2", &second).await;
        refused.assert_error(503, case);
        assert!(
            refused.header("retry-after").is_some(),
            "{case}: {refused:?}"
        );
        bridge.get("/readyz").await.assert_error(503, case);
        assert_eq!(
            metric(bridge.http, "clerk_bridge_log_failed").await,
            Some(1.0)
        );
        eventually("gRPC health to say NOT_SERVING", || async {
            (grpc_health(&bridge).await == ServingStatus::NotServing).then_some(())
        })
        .await;
        // Still refused: the log does not come back by itself.
        bridge
            .post_signed("msg_2", &second)
            .await
            .assert_error(503, case);

        // Restarted on the path, the bridge has a log of its own, where the refused webhook is not.
        bridge.stop().await.unwrap();
        bridge.start_again().await;
        assert_eq!(bridge.deliver("msg_2", &second).await, (1, false), "{case}");
        assert_eq!(bridge.get("/readyz").await.status, 200);
        if replace {
            std::fs::remove_dir_all(&moved).unwrap();
        }
    }
}

/// Posts `count` new events `{prefix}_N` to the bridge at `addr`; their sequences.
async fn post_events(addr: SocketAddr, prefix: &str, count: usize) -> Vec<u64> {
    let mut sequences = Vec::new();
    for i in 0..count {
        let body = event_body("session.created", &format!("sess_{prefix}_{i}"));
        let headers = svix_headers(&format!("msg_{prefix}_{i}"), body.as_bytes());
        let response = http(
            addr,
            "POST",
            WEBHOOK_PATH,
            &headers,
            Body::Sized(body.as_bytes()),
        )
        .await;
        let (sequence, duplicate) = response.accepted();
        assert!(!duplicate);
        sequences.push(sequence);
    }
    sequences
}

/// The head the sequence watermark file in `dir` records (see `src/log/watermark.rs`).
fn recorded_head(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("WATERMARK")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("head "))?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_that_loses_acknowledged_events_is_reported_and_their_sequences_are_not_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let database = dir.join("events.sqlite3");
    let saved = tmp.path().join("saved.sqlite3");

    let mut bridge = BridgeProcess::start(&dir, &[]).await;
    assert_eq!(post_events(bridge.http, "kept", 3).await, [1, 2, 3]);
    bridge.signal("TERM").await;
    assert_eq!(bridge.exit_code().await, Some(0));
    std::fs::copy(&database, &saved).unwrap();

    let mut bridge = BridgeProcess::start(&dir, &[]).await;
    let acknowledged = post_events(bridge.http, "lost", 4).await;
    assert_eq!(acknowledged, [4, 5, 6, 7]);
    // The watermark records the acknowledged head within about a second.
    eventually("the watermark to record head 7", || async {
        (recorded_head(&dir) == Some(7)).then_some(())
    })
    .await;
    bridge.kill().await;
    // The crash damaged the write-ahead log, which lost the last four transactions: the database
    // as it was before them (the checkpointer may have copied them into the database file already,
    // so its old copy stands in), and no WAL.
    std::fs::copy(&saved, &database).unwrap();
    for leftover in ["events.sqlite3-wal", "events.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }

    let bridge = BridgeProcess::start(&dir, &[]).await;
    let next = post_events(bridge.http, "after", 1).await[0];
    assert!(
        next > 7,
        "sequence {next} was already acknowledged before the crash"
    );
    assert_eq!(
        metric(bridge.http, "clerk_bridge_log_events_missing_at_open").await,
        Some(4.0)
    );
    let reported = eventually("the loss to be logged at ERROR", || async {
        bridge
            .log_lines()
            .into_iter()
            .find(|line| line.contains("ERROR") && line.contains("acknowledged events are missing"))
    })
    .await;
    assert!(reported.contains("missing=4"), "{reported}");
}
