//! The JetStream store (`--nats-url`) against real nats-server processes: webhooks stored once
//! per `svix-id` across bridges, sequences that are the stream's, subscriptions that read the
//! shared stream from any bridge, snapshots of the shared state, stateless restarts, and
//! backfill's conditional appends.

use clerk_bridge::{
    jetstream::JetStreamLog,
    log::{Appended, NewRecord},
    proto::{
        CommitRequest, Event, ListConsumersRequest, ResetConsumerRequest, StartPosition,
        SubscribeRequest, event_stream_client::EventStreamClient,
    },
};
use tonic::Code;

use crate::{
    nats::NatsServer,
    process::clerk_bridge,
    snapshot,
    support::{TestBridge, event_body, eventually, nats_config, sequences, within},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_stored_once_and_streamed_in_stream_order() {
    let nats = NatsServer::start();
    let bridge = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    assert_eq!(bridge.post_events(1, 5).await, [1, 2, 3, 4, 5]);
    // A redelivery of an id stored earlier answers with the stored copy's sequence.
    let body = event_body("session.created", "sess_3");
    assert_eq!(bridge.deliver("msg_3", &body).await, (3, true));
    let events = bridge.subscribe(0, &[]).await.events_until_head(5).await;
    assert_eq!(sequences(&events), [1, 2, 3, 4, 5]);
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["msg_1", "msg_2", "msg_3", "msg_4", "msg_5"]);
    let tail = bridge.subscribe(3, &[]).await.events_until_head(5).await;
    assert_eq!(sequences(&tail), [4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_on_one_stream_share_sequences_and_deduplicate_across_each_other() {
    let nats = NatsServer::start();
    let first = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    let second = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    let mut live = second.subscribe(0, &[]).await;
    let body = event_body("user.created", "user_1");
    assert_eq!(first.deliver("msg_a", &body).await, (1, false));
    assert_eq!(second.deliver("msg_a", &body).await, (1, true));
    assert_eq!(second.deliver("msg_b", &body).await, (2, false));
    assert_eq!(first.deliver("msg_b", &body).await, (2, true));
    let events = live.next_events(2).await;
    assert_eq!(sequences(&events), [1, 2]);
    assert_eq!(events[0].event_id, "msg_a");
    // Ids that are not plain subject tokens are stored apart and deduplicated as well.
    assert_eq!(first.deliver("msg.with.dots", &body).await, (3, false));
    assert_eq!(second.deliver("msg.with.dots", &body).await, (3, true));
    assert_eq!(first.deliver("msg_with_dots", &body).await, (4, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bridge_keeps_nothing_locally_and_resumes_from_the_stream() {
    let nats = NatsServer::start();
    let mut bridge = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    bridge.post_events(1, 3).await;
    bridge.restart().await;
    assert_eq!(bridge.positions().await, (3, 1));
    assert_eq!(bridge.post_events(4, 1).await, [4]);
    let events = bridge.subscribe(2, &[]).await.events_until_head(4).await;
    assert_eq!(sequences(&events), [3, 4]);
}

/// Webhooks through one bridge, a snapshot through another: the state is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_through_another_bridge_holds_the_shared_state() {
    let nats = NatsServer::start();
    let first = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    let second = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    snapshot::deliver_history(&first).await;
    let (_, events, end) = snapshot::take_snapshot(&second, &[], false).await;
    assert_eq!(end.sequence, 7);
    assert_eq!(snapshot::by_object(&events), snapshot::history_state());
}

/// The bridge building the state stops; the other takes the builder's lease over, and the
/// state catches up with what arrived meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_bridge_takes_over_building_the_state() {
    let nats = NatsServer::start();
    let mut first = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    snapshot::deliver_history(&first).await;
    // Alone on the stream, the first bridge builds: its snapshot is answered.
    let (_, events, _) = snapshot::take_snapshot(&first, &[], false).await;
    assert_eq!(events.len(), 2);
    let second = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    first.stop().await.unwrap();

    let body = snapshot::user_body("user.created", "user_c", 1_000, "Cy");
    let after = second.post_new("msg_8", &body).await;
    let (_, events, end) = snapshot::take_snapshot(&second, &[], false).await;
    assert_eq!(end.sequence, after);
    let objects = snapshot::by_object(&events);
    assert_eq!(objects.len(), 3, "{objects:?}");
    assert_eq!(objects["user_c"].1, "Cy");
}

/// A snapshot through one bridge while webhooks arrive through another misses nothing and
/// sends nothing twice past its sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_while_webhooks_arrive_through_another_bridge_misses_nothing() {
    let nats = NatsServer::start();
    let first = std::sync::Arc::new(TestBridge::start_on_jetstream(&[&nats.url], 1).await);
    let second = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    snapshot::assert_snapshot_while_webhooks_arrive(first, &second).await;
}

/// A named consumer on two bridges: one stream across both, commits through either bridge move
/// the other's window, and the consumer resumes on the other bridge after its committed sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_consumer_is_shared_by_every_bridge() {
    let nats = NatsServer::start();
    let first = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    let second = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    first.post_events(1, 5).await;
    let request = SubscribeRequest {
        consumer: "billing".to_owned(),
        max_in_flight: 2,
        ..SubscribeRequest::default()
    };
    let mut stream = first.subscribe_with(request.clone()).await.unwrap();
    assert_eq!(sequences(&stream.next_events(2).await), [1, 2]);
    let busy = second.subscribe_with(request.clone()).await.unwrap_err();
    assert_eq!(busy.code(), Code::Aborted, "{busy:?}");
    let mut admin = EventStreamClient::new(second.channel().await);
    // The other bridge lists the consumer as active: its stream is open on the first.
    let listed = list_consumers(&mut admin).await;
    assert!(
        listed.iter().any(|c| c.name == "billing" && c.active),
        "{listed:?}"
    );
    let reset = admin
        .reset_consumer(ResetConsumerRequest {
            consumer: "billing".to_owned(),
            position: StartPosition::Earliest.into(),
            ..ResetConsumerRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reset.code(), Code::FailedPrecondition, "{reset:?}");
    // A commit through the other bridge opens the window of the stream on the first.
    let commit = CommitRequest {
        consumer: "billing".to_owned(),
        sequence: 2,
    };
    assert_eq!(
        admin
            .commit(commit)
            .await
            .unwrap()
            .into_inner()
            .committed_sequence,
        2
    );
    assert_eq!(sequences(&stream.next_events(2).await), [3, 4]);
    let commit = CommitRequest {
        consumer: "billing".to_owned(),
        sequence: 3,
    };
    admin.commit(commit).await.unwrap();
    drop(stream);
    // The lease is given back (or expires): the consumer resumes on the second bridge.
    let mut moved = eventually("the consumer to move to the second bridge", || {
        let request = request.clone();
        let second = &second;
        async move { second.subscribe_with(request).await.ok() }
    })
    .await;
    assert_eq!(sequences(&moved.next_events(2).await), [4, 5]);
    let listed = list_consumers(&mut admin).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].committed_sequence),
        ("billing", 3)
    );
}

/// While NATS is down, a webhook gets 503 with Retry-After and `/readyz` 503; once NATS is back,
/// Svix's redelivery is stored, once, after the events stored before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_down_webhooks_get_503_and_their_retries_are_stored_once() {
    let mut nats = NatsServer::start();
    let bridge = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    bridge.post_events(1, 2).await;
    nats.kill();
    let body = event_body("user.created", "user_9");
    let refused = eventually("a 503 while NATS is down", || async {
        let response = bridge.post_signed("msg_retry", &body).await;
        (response.status == 503).then_some(response)
    })
    .await;
    assert!(refused.header("retry-after").is_some(), "{refused:?}");
    eventually("/readyz to fail", || async {
        (bridge.get("/readyz").await.status == 503).then_some(())
    })
    .await;

    nats.restart();
    let (sequence, _) = eventually("the retry to be stored", || async {
        let response = bridge.post_signed("msg_retry", &body).await;
        (response.status == 200).then(|| response.accepted())
    })
    .await;
    assert_eq!(bridge.deliver("msg_retry", &body).await, (sequence, true));
    assert_eq!(bridge.get("/readyz").await.status, 200);
    let events = bridge
        .subscribe(0, &[])
        .await
        .events_until_head(sequence)
        .await;
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["msg_1", "msg_2", "msg_retry"]);
}

/// `copy-to-jetstream` moves a stopped bridge's embedded log into a stream: the same events in the
/// same order, a consumer resuming after what it had committed, and a rerun that copies nothing
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_log_is_copied_into_a_stream_with_its_consumers() {
    let nats = NatsServer::start();
    let mut embedded = TestBridge::start_embedded_with(|_| {}).await;
    embedded.post_events(1, 4).await;
    let consumer = SubscribeRequest {
        consumer: "billing".to_owned(),
        ..SubscribeRequest::default()
    };
    let mut stream = embedded.subscribe_with(consumer.clone()).await.unwrap();
    stream.next_events(2).await;
    let mut admin = EventStreamClient::new(embedded.channel().await);
    let commit = CommitRequest {
        consumer: "billing".to_owned(),
        sequence: 2,
    };
    admin.commit(commit).await.unwrap();
    drop((stream, admin));
    embedded.stop().await.unwrap();

    for (run, expected) in [(1, "copied 4 events"), (2, "copied 0 events")] {
        let (code, lines) = copy(embedded.data_dir(), &nats.url).await;
        assert_eq!(code, Some(0), "run {run}: {lines:?}");
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "run {run}: {lines:?}"
        );
    }

    let bridge = TestBridge::start_on_jetstream(&[&nats.url], 1).await;
    let events = bridge.subscribe(0, &[]).await.events_until_head(4).await;
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["msg_1", "msg_2", "msg_3", "msg_4"]);
    let mut resumed = bridge.subscribe_with(consumer).await.unwrap();
    assert_eq!(sequences(&resumed.next_events(2).await), [3, 4]);
}

/// Every named consumer, as `ListConsumers` through `client` answers.
async fn list_consumers(
    client: &mut EventStreamClient<tonic::transport::Channel>,
) -> Vec<clerk_bridge::proto::ConsumerInfo> {
    client
        .list_consumers(ListConsumersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .consumers
}

/// Runs `clerk-bridge copy-to-jetstream` on `data_dir` into the server at `url`.
async fn copy(data_dir: &std::path::Path, url: &str) -> (Option<i32>, Vec<String>) {
    let mut command = clerk_bridge(&[], ["copy-to-jetstream", "--nats-url", url, "--data-dir"]);
    command.arg(data_dir);
    crate::binary::run_to_exit(command).await
}

/// Backfill's conditional appends racing a flood of newer webhooks from another connection: every
/// record gets an outcome, and no backfilled event follows a newer event of its object in the
/// stream (a webhook stored between the state lookups and the publishes breaks the chain of
/// expected last sequence and message ids there, and the rest is looked up again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_appends_racing_webhooks_never_overtake_them() {
    const OBJECTS: u64 = 300;
    let nats = NatsServer::start();
    let config = nats_config(&[&nats.url], 1);
    let webhooks = std::sync::Arc::new(JetStreamLog::open(&config).await.unwrap());
    let backfill = JetStreamLog::open(&config).await.unwrap();
    let flood = tokio::spawn({
        let webhooks = webhooks.clone();
        async move {
            for i in 0..2 * OBJECTS {
                let record = user_record(&format!("msg_{i}"), i % OBJECTS, 2_000 + i, false);
                webhooks.append(record).await.unwrap();
            }
        }
    });
    let mut outcomes = Vec::new();
    for first in (0..OBJECTS).step_by(50) {
        let page = (first..first + 50)
            .map(|i| user_record(&format!("bapi_{i}"), i, 1_500, true))
            .collect();
        outcomes.extend(
            within("a page", backfill.append_if_newer(page))
                .await
                .unwrap(),
        );
    }
    within("the flood", flood).await.unwrap();
    assert_eq!(outcomes.len() as u64, OBJECTS);

    let mut newest = std::collections::HashMap::new();
    let (mut after, mut backfilled) = (0, 0);
    loop {
        let batch = backfill.read_after(after, 256, 1 << 20).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.sequence;
        for stored in &batch {
            let event = clerk_bridge::record::decode(stored).unwrap();
            let seen = newest.entry(event.object_id.clone()).or_insert(0);
            if event.event_id.starts_with("bapi_") {
                backfilled += 1;
                assert!(
                    event.object_version > *seen,
                    "{} backfilled at {} after version {seen}",
                    event.object_id,
                    stored.sequence
                );
            }
            *seen = (*seen).max(event.object_version);
        }
    }
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, Appended::Stored(_)))
        .count();
    assert_eq!(backfilled, stored);
    assert_eq!(after, 2 * OBJECTS + stored as u64);
}

/// The record of a `user.updated` event about `user_<user>` at `version`; a backfill's record is
/// stored only if newer than the state.
fn user_record(event_id: &str, user: u64, version: u64, backfill: bool) -> NewRecord {
    let event = Event {
        event_id: event_id.to_owned(),
        r#type: "user.updated".to_owned(),
        object_id: format!("user_{user}"),
        object_version: version,
        ..Default::default()
    };
    let mut record = clerk_bridge::record::new_record(&event, 0);
    record.only_if_newer = backfill;
    record
}
