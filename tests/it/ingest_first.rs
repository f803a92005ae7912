//! The fan-out policy, ingest first, through a real gRPC stream: during a burst (verified webhooks
//! held in flight by the test itself, so the burst is certain) a subscriber behind the head gets
//! its events in order at the shared allowance's pace, and after the burst at full speed.

use std::{sync::Arc, time::Duration};

use clerk_bridge::{
    ingest_first::{BURST_IN_FLIGHT, DELIVERY_WINDOW, IngestActivity, MIN_WINDOW_EVENTS},
    log::{Log, LogOptions},
    proto::{
        Event, StartPosition, SubscribeRequest, event_stream_client::EventStreamClient,
        event_stream_server::EventStreamServer, subscribe_response::Message,
    },
    record,
    store::Store,
    telemetry::metrics::{Metrics, StateReading},
};
use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Streaming, transport::Server};

use crate::support::within;

/// Events the subscriber reads in each phase.
const EVENTS: u64 = 320;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_burst_deliveries_keep_to_the_allowance_and_catch_up_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    append(&log, 1..=EVENTS).await;
    let activity = Arc::new(IngestActivity::default());
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let addr = serve(&log, &activity, &metrics, &shutdown).await;
    let mut client = within("a gRPC connection", EventStreamClient::connect(addr))
        .await
        .unwrap();

    // A burst no webhook of which is answered: each window allows the least, MIN_WINDOW_EVENTS.
    let burst: Vec<_> = (0..BURST_IN_FLIGHT).map(|_| activity.begin()).collect();
    let began = Instant::now();
    let request = SubscribeRequest {
        start: StartPosition::Earliest.into(),
        ..Default::default()
    };
    let mut stream = within("a stream", client.subscribe(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next_sequences(&mut stream, EVENTS).await,
        sequences(1..=EVENTS)
    );
    let windows = u32::try_from(EVENTS / MIN_WINDOW_EVENTS as u64).unwrap();
    // The first window's allowance is taken at once; each further one starts DELIVERY_WINDOW on.
    assert!(
        began.elapsed() >= DELIVERY_WINDOW * (windows - 1),
        "{EVENTS} events in {:?}: faster than the allowance",
        began.elapsed()
    );
    let yields = delivery_yields(&metrics);
    assert!(yields >= u64::from(windows - 1), "{yields} yields");

    // The burst ends: the next events are delivered without waiting for any window.
    drop(burst);
    append(&log, EVENTS + 1..=2 * EVENTS).await;
    assert_eq!(
        next_sequences(&mut stream, EVENTS).await,
        sequences(EVENTS + 1..=2 * EVENTS)
    );
    assert_eq!(delivery_yields(&metrics), yields);

    shutdown.cancel();
    drop(stream);
    log.close();
}

/// Appends one `user.created` event per sequence in `range`.
async fn append(log: &Log, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        let event = Event {
            event_id: format!("msg_{i}"),
            r#type: "user.created".to_owned(),
            object_id: format!("user_{i}"),
            ..Default::default()
        };
        let appended = log.append(record::new_record(&event, 0)).await;
        assert!(appended.is_ok(), "{appended:?}");
    }
}

/// Serves the event stream of `log` on a loopback port, its live deliveries yielding to bursts
/// counted in `activity`; its address.
async fn serve(
    log: &Arc<Log>,
    activity: &Arc<IngestActivity>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> String {
    let service = clerk_bridge::subscription::EventStreamService::new(
        Store::Embedded(log.clone()),
        None,
        shutdown.clone(),
        Duration::from_secs(30),
        metrics.clone(),
        TaskTracker::new(),
        4,
    )
    .with_activity(activity.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let shutdown = shutdown.clone();
    tokio::spawn(
        Server::builder()
            .add_service(EventStreamServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()),
    );
    format!("http://{addr}")
}

/// The sequences of the next `count` events (markers and heartbeats skipped).
async fn next_sequences(
    stream: &mut Streaming<clerk_bridge::proto::SubscribeResponse>,
    count: u64,
) -> Vec<u64> {
    let mut read = Vec::new();
    while (read.len() as u64) < count {
        let message = within("the next event", stream.message()).await;
        if let Some(Message::Event(event)) = message.unwrap().unwrap().message {
            read.push(event.sequence);
        }
    }
    read
}

fn sequences(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}

/// `clerk_bridge_delivery_yields_total` as the metrics page shows it.
fn delivery_yields(metrics: &Metrics) -> u64 {
    let page = metrics.render(StateReading::default());
    page.lines()
        .find_map(|line| line.strip_prefix("clerk_bridge_delivery_yields_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no delivery yields in\n{page}"))
}
