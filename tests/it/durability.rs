//! Durability of a real `clerk-bridge` process: SIGKILL under load, SIGTERM with webhooks in flight,
//! and a burst with one subscriber that reads nothing while another keeps up.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clerk_bridge::proto::{SubscribeRequest, subscribe_response::Message};
use tokio::task::JoinSet;

use crate::{
    process::{
        BridgeProcess, Poster, commit, data_dir, grpc_client, subscribe_consumer, user_created,
    },
    support::within,
};

/// Times the crash test kills the bridge.
const KILLS: usize = 20;
/// Concurrent webhook senders.
const SENDERS: usize = 4;
/// The durable consumer of the crash test.
const CONSUMER: &str = "crash-test";

/// A generator seeded at random and printed, so a failing run can be repeated from its seed.
fn seeded_rng() -> fastrand::Rng {
    let seed = fastrand::u64(..);
    println!("random seed {seed}");
    fastrand::Rng::with_seed(seed)
}

/// Event ids answered 2xx, shared by the senders.
type Acked = Arc<Mutex<BTreeSet<String>>>;

/// Starts `SENDERS` tasks posting new events to `bridge` until their connection breaks, or until
/// the bridge answers 503 once `stopping` is set (a request on a kept-alive connection after SIGTERM:
/// refused with `Retry-After`, so Clerk retries; nothing was acknowledged).
fn start_senders(
    bridge: &BridgeProcess,
    round: usize,
    acked: &Acked,
    stopping: &Arc<AtomicBool>,
) -> JoinSet<()> {
    let mut senders = JoinSet::new();
    for worker in 0..SENDERS {
        let (addr, acked, stopping) = (bridge.http, acked.clone(), stopping.clone());
        senders.spawn(async move {
            let Ok(mut poster) = Poster::connect(addr).await else {
                return;
            };
            for i in 0.. {
                let id = format!("msg_{round}_{worker}_{i}");
                match poster
                    .post(&id, &user_created(&format!("user_{round}_{worker}_{i}")))
                    .await
                {
                    Ok(200) => drop(acked.lock().unwrap().insert(id)),
                    Ok(503) if stopping.load(Ordering::SeqCst) => return,
                    Ok(status) => panic!("{id} answered {status}"),
                    Err(_) => return,
                }
            }
        });
    }
    senders
}

/// What the durable consumer has seen across all its streams.
#[derive(Default)]
struct ConsumerLog {
    /// Event id → how many times it was delivered.
    deliveries: HashMap<String, u32>,
    /// Streams opened.
    streams: usize,
}

/// Reads one stream of the durable consumer, committing as it goes, until the stream breaks or,
/// with `until_caught_up`, until it has caught up. Asserts that the stream is in sequence order and
/// starts right after the committed position.
async fn consume(grpc: SocketAddr, seen: &Mutex<ConsumerLog>, until_caught_up: bool) {
    let Ok(Ok(mut client)) = tokio::time::timeout(Duration::from_secs(5), grpc_client(grpc)).await
    else {
        return;
    };
    let Ok(mut stream) = subscribe_consumer(&mut client, CONSUMER).await else {
        return;
    };
    seen.lock().unwrap().streams += 1;
    let mut last = None;
    while let Ok(Some(response)) = stream.message().await {
        match response.message {
            Some(Message::Start(start)) => last = Some(start.after_sequence),
            Some(Message::Event(event)) => {
                let previous = last.expect("the start marker comes first");
                assert!(
                    event.sequence > previous,
                    "out of order: {} after {previous}",
                    event.sequence
                );
                last = Some(event.sequence);
                *seen
                    .lock()
                    .unwrap()
                    .deliveries
                    .entry(event.event_id)
                    .or_insert(0) += 1;
                if commit(&mut client, CONSUMER, event.sequence).await.is_err() {
                    return;
                }
            }
            Some(Message::CaughtUp(_)) if until_caught_up => return,
            _ => {}
        }
    }
}

/// Every event id in the log, read from the beginning until caught up.
async fn all_event_ids(bridge: &BridgeProcess) -> Vec<String> {
    let mut client = bridge.client().await;
    let request = SubscribeRequest::default();
    let mut stream = client.subscribe(request).await.unwrap().into_inner();
    let mut ids = Vec::new();
    loop {
        let message = within("the log to be read", stream.message())
            .await
            .unwrap()
            .unwrap();
        match message.message {
            Some(Message::Event(event)) => ids.push(event.event_id),
            Some(Message::CaughtUp(_)) => return ids,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_webhook() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let acked: Acked = Arc::default();
    let seen = Arc::new(Mutex::new(ConsumerLog::default()));
    let mut rng = seeded_rng();
    for round in 0..KILLS {
        let mut bridge = BridgeProcess::start(&dir, &[]).await;
        let senders = start_senders(&bridge, round, &acked, &Arc::default());
        let consumer = {
            let (grpc, seen) = (bridge.grpc, seen.clone());
            tokio::spawn(async move { consume(grpc, &seen, false).await })
        };
        tokio::time::sleep(Duration::from_millis(rng.u64(50..300))).await;
        bridge.kill().await;
        senders.join_all().await;
        consumer.await.unwrap();
    }
    let bridge = BridgeProcess::start(&dir, &[]).await;
    let ids = all_event_ids(&bridge).await;
    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an event id is stored twice");
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > KILLS,
        "too little load: {} acknowledged",
        acked.len()
    );
    let missing: Vec<_> = acked.difference(&unique).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");

    consume(bridge.grpc, &seen, true).await;
    let seen = seen.lock().unwrap();
    let not_delivered: Vec<_> = acked
        .iter()
        .filter(|id| !seen.deliveries.contains_key(*id))
        .collect();
    assert!(
        not_delivered.is_empty(),
        "never delivered to the consumer: {not_delivered:?}"
    );
    println!(
        "{} acknowledged, {} stored, {} consumer streams, {} redeliveries",
        acked.len(),
        ids.len(),
        seen.streams,
        seen.deliveries.values().map(|n| n - 1).sum::<u32>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_in_flight_webhooks_and_loses_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = data_dir(&tmp);
    let acked: Acked = Arc::default();
    let mut bridge = BridgeProcess::start(&dir, &[]).await;
    let stopping = Arc::new(AtomicBool::new(false));
    let senders = start_senders(&bridge, 0, &acked, &stopping);
    crate::support::eventually("webhooks to flow", || async {
        (acked.lock().unwrap().len() >= 50).then_some(())
    })
    .await;
    stopping.store(true, Ordering::SeqCst);
    bridge.signal("TERM").await;
    assert_eq!(bridge.exit_code().await, Some(0));
    senders.join_all().await;

    let bridge = BridgeProcess::start(&dir, &[]).await;
    let stored: BTreeSet<_> = all_event_ids(&bridge).await.into_iter().collect();
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

/// Events in the slow-consumer burst.
const BURST: usize = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_hold_back_a_burst_and_gets_it_all_later() {
    let tmp = tempfile::tempdir().unwrap();
    let bridge = BridgeProcess::start(&data_dir(&tmp), &[]).await;
    let idle_rss = bridge.peak_rss_kib();

    // The stalled subscriber opens its stream and reads nothing until the burst is over.
    let mut stalled = bridge.client().await;
    let mut stalled = stalled
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let keeper = {
        let mut client = bridge.client().await;
        tokio::spawn(async move {
            let mut stream = client
                .subscribe(SubscribeRequest::default())
                .await
                .unwrap()
                .into_inner();
            let mut received = 0;
            while received < BURST {
                if let Some(Message::Event(_)) = stream.message().await.unwrap().unwrap().message {
                    received += 1;
                }
            }
            received
        })
    };

    let started = Instant::now();
    let mut senders = JoinSet::new();
    for worker in 0..8 {
        let addr = bridge.http;
        senders.spawn(async move {
            let mut poster = Poster::connect(addr).await.unwrap();
            for i in (worker..BURST).step_by(8) {
                let status = poster
                    .post(&format!("msg_{i}"), &user_created(&format!("user_{i}")))
                    .await
                    .unwrap();
                assert_eq!(status, 200);
            }
        });
    }
    senders.join_all().await;
    let ingest_secs = started.elapsed().as_secs_f64();
    assert_eq!(within("the live subscriber", keeper).await.unwrap(), BURST);
    let peak_rss = bridge.peak_rss_kib();
    println!(
        "burst of {BURST}: {:.0} webhooks/s with one stalled subscriber; bridge RSS idle {} KiB, peak {} KiB",
        BURST as f64 / ingest_secs,
        idle_rss,
        peak_rss
    );
    assert!(
        peak_rss < 256 * 1024,
        "bridge memory grew to {peak_rss} KiB"
    );

    let mut expected = 1;
    while expected <= BURST as u64 {
        if let Some(Message::Event(event)) = within("the stalled subscriber", stalled.message())
            .await
            .unwrap()
            .unwrap()
            .message
        {
            assert_eq!(event.sequence, expected);
            expected += 1;
        }
    }
}
