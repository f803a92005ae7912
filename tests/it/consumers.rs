//! Named durable consumers: commit and resume, one stream per consumer, flow control, reset,
//! delete, list; stream markers; retention with OUT_OF_RANGE; a full disk answered with 503.

use std::time::Duration;

use futures_util::TryFutureExt;

use clerk_bridge::{
    log::LogOptions,
    proto::{
        CommitRequest, DeleteConsumerRequest, ListConsumersRequest, ResetConsumerRequest,
        StartPosition, SubscribeRequest, event_stream_client::EventStreamClient,
        subscribe_response::Message,
    },
};
use tonic::{Code, Streaming, transport::Channel};

use crate::{
    process::user_created,
    support::{TestBridge, eventually, within},
};

/// One open stream of a named consumer.
struct ConsumerStream {
    stream: Streaming<clerk_bridge::proto::SubscribeResponse>,
}

impl ConsumerStream {
    /// The next event with its delivery attempt, skipping markers and heartbeats.
    async fn next_event(&mut self) -> (u64, u32) {
        loop {
            let response = within("a consumer message", self.stream.message())
                .await
                .unwrap()
                .expect("the stream is open");
            if let Some(Message::Event(event)) = response.message {
                return (event.sequence, response.delivery_attempt);
            }
        }
    }

    /// The next message that is not a start or caught-up marker.
    async fn next_event_or_heartbeat(&mut self) -> Message {
        loop {
            let response = within("a consumer message", self.stream.message())
                .await
                .unwrap()
                .expect("the stream is open");
            match response.message {
                Some(Message::Start(_) | Message::CaughtUp(_)) | None => {}
                Some(message) => return message,
            }
        }
    }
}

async fn client(bridge: &TestBridge) -> EventStreamClient<Channel> {
    EventStreamClient::new(bridge.channel().await)
}

async fn try_open(
    bridge: &TestBridge,
    name: &str,
    start: StartPosition,
    max_in_flight: u32,
) -> Result<ConsumerStream, tonic::Status> {
    let request = SubscribeRequest {
        consumer: name.to_owned(),
        start: start.into(),
        max_in_flight,
        ..SubscribeRequest::default()
    };
    let response = within("Subscribe", client(bridge).await.subscribe(request)).await?;
    Ok(ConsumerStream {
        stream: response.into_inner(),
    })
}

async fn open(bridge: &TestBridge, name: &str) -> ConsumerStream {
    try_open(bridge, name, StartPosition::Unspecified, 0)
        .await
        .unwrap()
}

/// Opens `name` once its previous stream has been released by the bridge.
async fn reopen(bridge: &TestBridge, name: &str) -> ConsumerStream {
    eventually("the consumer's lease to be released", || async {
        try_open(bridge, name, StartPosition::Unspecified, 0)
            .await
            .ok()
    })
    .await
}

async fn commit(bridge: &TestBridge, name: &str, sequence: u64) -> Result<u64, tonic::Status> {
    let request = CommitRequest {
        consumer: name.to_owned(),
        sequence,
    };
    Ok(client(bridge)
        .await
        .commit(request)
        .await?
        .into_inner()
        .committed_sequence)
}

async fn reset(
    bridge: &TestBridge,
    name: &str,
    position: StartPosition,
    after: u64,
) -> Result<u64, tonic::Status> {
    let request = ResetConsumerRequest {
        consumer: name.to_owned(),
        position: position.into(),
        after_sequence: after,
    };
    Ok(client(bridge)
        .await
        .reset_consumer(request)
        .await?
        .into_inner()
        .committed_sequence)
}

async fn delete(bridge: &TestBridge, name: &str) -> Result<(), tonic::Status> {
    let request = DeleteConsumerRequest {
        consumer: name.to_owned(),
    };
    client(bridge)
        .await
        .delete_consumer(request)
        .await
        .map(|_| ())
}

/// `(name, committed, lag, active)` of every consumer.
async fn list(bridge: &TestBridge) -> Vec<(String, u64, u64, bool)> {
    let response = client(bridge)
        .await
        .list_consumers(ListConsumersRequest {})
        .await
        .unwrap();
    response
        .into_inner()
        .consumers
        .into_iter()
        .map(|c| (c.name, c.committed_sequence, c.lag, c.active))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumes_after_its_commit_and_counts_redeliveries() {
    let mut bridge = TestBridge::start().await;
    bridge.post_events(0, 5).await;
    let mut stream = open(&bridge, "billing").await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(stream.next_event().await);
    }
    assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
    assert_eq!(commit(&bridge, "billing", 3).await.unwrap(), 3);
    // Commits never move a consumer backwards.
    assert_eq!(commit(&bridge, "billing", 2).await.unwrap(), 3);
    drop(stream);

    let mut again = reopen(&bridge, "billing").await;
    assert_eq!(again.next_event().await, (4, 2));
    assert_eq!(again.next_event().await, (5, 2));
    bridge.post_events(5, 1).await;
    assert_eq!(again.next_event().await, (6, 1));
    drop(again);

    // The committed position survives a restart.
    bridge.restart().await;
    let mut after_restart = reopen(&bridge, "billing").await;
    assert_eq!(after_restart.next_event().await.0, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stream_for_the_same_consumer_is_aborted() {
    let bridge = TestBridge::start().await;
    let first = open(&bridge, "app").await;
    let second = try_open(&bridge, "app", StartPosition::Unspecified, 0).await;
    let status = second.err().expect("the second stream is refused");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("app"), "{status:?}");
    // Another name is independent.
    try_open(&bridge, "other", StartPosition::Unspecified, 0)
        .await
        .unwrap();
    drop(first);
    reopen(&bridge, "app").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_pauses_at_max_in_flight_until_a_commit() {
    let bridge = TestBridge::start_quick_heartbeat().await;
    bridge.post_events(0, 10).await;
    let mut stream = try_open(&bridge, "slow", StartPosition::Unspecified, 3)
        .await
        .unwrap();
    for expected in 1..=3 {
        assert_eq!(stream.next_event().await.0, expected);
    }
    // Paused: with 7 events left, only heartbeats come.
    assert!(
        matches!(stream.next_event_or_heartbeat().await, Message::Heartbeat(h) if h.head_sequence == 10)
    );
    commit(&bridge, "slow", 2).await.unwrap();
    for expected in 4..=5 {
        assert_eq!(stream.next_event().await.0, expected);
    }
    assert!(matches!(
        stream.next_event_or_heartbeat().await,
        Message::Heartbeat(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_delete_and_list_manage_consumers() {
    let bridge = TestBridge::start().await;
    bridge.post_events(0, 4).await;
    let mut stream = open(&bridge, "etl").await;
    stream.next_event().await;
    commit(&bridge, "etl", 1).await.unwrap();
    assert_eq!(list(&bridge).await, vec![("etl".to_owned(), 1, 3, true)]);

    let busy = reset(&bridge, "etl", StartPosition::Earliest, 0)
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
    let busy = delete(&bridge, "etl").await.unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
    drop(stream);

    eventually("the stream to close", || async {
        (!list(&bridge).await[0].3).then_some(())
    })
    .await;
    assert_eq!(
        reset(&bridge, "etl", StartPosition::Latest, 0)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        reset(&bridge, "etl", StartPosition::AfterSequence, 2)
            .await
            .unwrap(),
        2
    );
    let mut from_two = reopen(&bridge, "etl").await;
    assert_eq!(from_two.next_event().await.0, 3);
    drop(from_two);
    eventually("the stream to close", || async {
        (!list(&bridge).await[0].3).then_some(())
    })
    .await;
    assert_eq!(
        reset(&bridge, "etl", StartPosition::Earliest, 0)
            .await
            .unwrap(),
        0
    );
    let ahead = reset(&bridge, "etl", StartPosition::AfterSequence, 99)
        .await
        .unwrap_err();
    assert_eq!(ahead.code(), Code::OutOfRange, "{ahead:?}");

    delete(&bridge, "etl").await.unwrap();
    assert!(list(&bridge).await.is_empty());
    assert_eq!(
        delete(&bridge, "etl").await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        commit(&bridge, "etl", 1).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_consumer_requests_are_refused() {
    let bridge = TestBridge::start().await;
    bridge.post_events(0, 2).await;
    for name in ["has space", "slash/no", &"x".repeat(65)] {
        let status = try_open(&bridge, name, StartPosition::Unspecified, 0)
            .await
            .err()
            .unwrap();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
    }
    open(&bridge, "ok_name-1").await;
    let ahead = commit(&bridge, "ok_name-1", 3).await.unwrap_err();
    assert_eq!(ahead.code(), Code::OutOfRange, "{ahead:?}");
    let no_consumer = SubscribeRequest {
        start: StartPosition::Committed.into(),
        ..SubscribeRequest::default()
    };
    let status = client(&bridge)
        .await
        .subscribe(no_consumer)
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_start_with_a_marker_and_say_when_they_caught_up() {
    let bridge = TestBridge::start().await;
    bridge.post_events(0, 3).await;
    let mut sub = bridge.subscribe(1, &[]).await;
    match sub.next_message().await.unwrap() {
        Some(Message::Start(start)) => {
            assert_eq!(
                (
                    start.after_sequence,
                    start.first_retained_sequence,
                    start.head_sequence
                ),
                (1, 1, 3)
            );
        }
        other => panic!("expected a start marker, got {other:?}"),
    }
    assert!(
        matches!(sub.next_message().await.unwrap(), Some(Message::Event(e)) if e.sequence == 2)
    );
    assert!(
        matches!(sub.next_message().await.unwrap(), Some(Message::Event(e)) if e.sequence == 3)
    );
    assert!(
        matches!(sub.next_message().await.unwrap(), Some(Message::CaughtUp(c)) if c.head_sequence == 3)
    );
    // LATEST starts at the head.
    let latest = SubscribeRequest {
        start: StartPosition::Latest.into(),
        ..SubscribeRequest::default()
    };
    let mut stream = client(&bridge)
        .await
        .subscribe(latest)
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().message;
    assert!(
        matches!(first, Some(Message::Start(s)) if s.after_sequence == 3),
        "{first:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_age_deletes_old_events_and_refuses_positions_below_them() {
    let bridge = TestBridge::start_with(|c| {
        // JetStream's shortest age limit is 100 ms.
        c.retention.max_age = Some(Duration::from_millis(100));
        c.retention_interval = Duration::from_millis(20);
    })
    .await;
    // The consumer exists (committed 0) before its events arrive, and is idle while they expire.
    drop(open(&bridge, "late").await);
    bridge.post_events(0, 5).await;
    let first = eventually("retention to delete the events", || async {
        let start = first_retained(&bridge).await;
        (start > 5).then_some(start)
    })
    .await;
    assert_eq!(
        first, 6,
        "an empty log's first retained sequence is head + 1"
    );
    let status = bridge.try_subscribe(2, &[]).await.expect_err("refused");
    assert_eq!(status.code(), Code::OutOfRange);
    assert!(
        status.message().contains("first retained sequence is 6"),
        "{status:?}"
    );
    // A consumer whose position was deleted is refused the same way, until reset.
    let status = reopen_status(&bridge, "late").await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    reset(&bridge, "late", StartPosition::Earliest, 0)
        .await
        .unwrap();
    // after_sequence 0 always means "from the first retained event".
    bridge.post_events(5, 1).await;
    let mut from_start = bridge.subscribe(0, &[]).await;
    assert_eq!(from_start.next_event().await.sequence, 6);
}

/// The status Subscribe answers for `name`, once its last stream has been released.
async fn reopen_status(bridge: &TestBridge, name: &str) -> tonic::Status {
    eventually("a refusal other than ABORTED", || async {
        match try_open(bridge, name, StartPosition::Unspecified, 0).await {
            Err(status) if status.code() != Code::Aborted => Some(status),
            _ => None,
        }
    })
    .await
}

/// The first retained sequence, as a start marker reports it.
async fn first_retained(bridge: &TestBridge) -> u64 {
    let mut sub = bridge.subscribe(0, &[]).await;
    match sub.next_message().await.unwrap() {
        Some(Message::Start(start)) => start.first_retained_sequence,
        other => panic!("expected a start marker, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_keeps_the_newest_events() {
    let cap: u64 = 256 * 1024;
    let bridge = TestBridge::start_with(|c| {
        c.retention.max_bytes = Some(cap);
        c.retention_interval = Duration::from_millis(20);
    })
    .await;
    for i in 0..300 {
        bridge
            .post_new(&format!("msg_{i}"), &user_created(&format!("user_{i}")))
            .await;
    }
    let first = eventually("retention to cut the log down", || async {
        let first = first_retained(&bridge).await;
        (first > 1).then_some(first)
    })
    .await;
    assert!(
        first <= 300,
        "the newest events stay: first retained {first}"
    );
    let mut newest = bridge.subscribe(299, &[]).await;
    assert_eq!(newest.next_event().await.sequence, 300);
    let status = bridge
        .try_subscribe(first - 2, &[])
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_keeps_what_was_stored() {
    let bridge = TestBridge::start_embedded_with(|c| {
        c.log_options = LogOptions {
            max_pages: Some(64),
        };
    })
    .await;
    let mut stored = Vec::new();
    let refusal = loop {
        let i = stored.len();
        let response = bridge
            .post_signed(&format!("msg_{i}"), &user_created(&format!("user_{i}")))
            .await;
        if response.status != 200 {
            break response;
        }
        stored.push(response.accepted().0);
        assert!(stored.len() < 1000, "the page cap never filled the log");
    };
    refusal.assert_error(503, "log full");
    assert_eq!(refusal.header("retry-after"), Some("1"));
    assert!(!stored.is_empty());
    // Everything acknowledged before the disk filled is still delivered, in order.
    let mut sub = bridge.subscribe(0, &[]).await;
    let delivered: Vec<u64> = sub
        .next_events(stored.len())
        .await
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(delivered, stored);
}

/// A delete racing a commit or reset: both may answer OK, but the consumer stays deleted, also
/// after a restart (the move queued behind the delete must not recreate the stored row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_consumer_stays_deleted_when_a_commit_or_reset_races_it() {
    let mut bridge = TestBridge::start().await;
    bridge.post_events(0, 1).await;
    let names: Vec<String> = (0..60).map(|i| format!("racer-{i}")).collect();
    for name in &names {
        drop(open(&bridge, name).await);
    }
    for name in &names {
        drop(reopen(&bridge, name).await);
    }
    eventually("every lease to be released", || async {
        list(&bridge).await.iter().all(|c| !c.3).then_some(())
    })
    .await;
    let races = names.iter().enumerate().map(|(i, name)| {
        let bridge = &bridge;
        async move {
            let (deleted, moved) = if i % 2 == 0 {
                tokio::join!(delete(bridge, name), commit(bridge, name, 1).map_ok(|_| ()))
            } else {
                let reset = reset(bridge, name, StartPosition::Latest, 0).map_ok(|_| ());
                tokio::join!(delete(bridge, name), reset)
            };
            deleted.unwrap();
            if let Err(status) = moved {
                assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
            }
        }
    });
    futures_util::future::join_all(races).await;
    assert_eq!(list(&bridge).await, Vec::new());
    bridge.restart().await;
    assert_eq!(
        list(&bridge).await,
        Vec::new(),
        "deleted consumers came back"
    );
}
