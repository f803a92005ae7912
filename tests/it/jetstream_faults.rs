//! The scaled-out shape under faults: two bridge processes on a three-node JetStream cluster with
//! the stream at R3. Webhooks alternate between the bridges under concurrent load, each redelivered
//! to the other bridge as Svix would; mid-load one NATS node and one bridge are killed with SIGKILL
//! and started again. Every `svix-id` answered 2xx must be stored exactly once, at the sequence
//! both answers named, and a named consumer that moves between the bridges must read the whole
//! stream in order with no gap.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, stream};
use clerk_bridge::{
    jetstream::LEASE_TTL,
    proto::{CommitRequest, StartPosition, SubscribeRequest, subscribe_response::Message},
};
use tokio::{sync::watch, task::JoinSet};

use crate::{
    nats::NatsServer,
    process::{BridgeProcess, Poster},
    support::{
        Body, WEBHOOK_PATH, event_body, eventually, eventually_within, svix_headers, try_http,
        within,
    },
};

/// Distinct webhooks sent.
const WEBHOOKS: usize = 600;
/// Senders at once.
const SENDERS: usize = 8;
/// Longest a single attempt may take (a publish waits 5 s for JetStream at most).
const ATTEMPT_LIMIT: Duration = Duration::from_secs(15);
/// Longest a webhook may go without a 2xx: once a node is killed, the cluster elects new leaders
/// for the stream and each bucket, which took over 20 s once on a loaded 2-CPU machine.
const ELECTIONS_LIMIT: Duration = Duration::from_secs(60);

/// Where the two bridges listen now (a restarted bridge listens elsewhere).
type Addresses = watch::Receiver<[SocketAddr; 2]>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_nats_node_and_a_bridge_mid_load_loses_and_duplicates_nothing() {
    let mut nodes = NatsServer::cluster();
    let urls = nodes
        .iter()
        .map(|node| node.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    create_stream_when_the_cluster_is_ready(&urls).await;
    let flags = ["--nats-url", urls.as_str(), "--nats-replicas", "3"];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let env = [("RUST_LOG", "info,clerk_bridge=debug")];
    let first = BridgeProcess::start_with_env(dirs[0].path(), &flags, &env).await;
    let mut second = BridgeProcess::start(dirs[1].path(), &flags).await;
    let (addresses_tx, addresses) = watch::channel([first.http, second.http]);

    let answered = Arc::new(Mutex::new(BTreeMap::new()));
    let mut senders = JoinSet::new();
    for sender in 0..SENDERS {
        let (addresses, answered) = (addresses.clone(), answered.clone());
        senders.spawn(async move {
            for i in (sender..WEBHOOKS).step_by(SENDERS) {
                let sequence = deliver_twice(&addresses, i).await;
                answered
                    .lock()
                    .unwrap()
                    .insert(format!("msg_{i}"), sequence);
            }
        });
    }

    let progress = |share: usize| {
        let answered = answered.clone();
        move || {
            let done = answered.lock().unwrap().len() >= WEBHOOKS * share / 3;
            async move { done.then_some(()) }
        }
    };
    eventually("a third of the webhooks answered", progress(1)).await;
    nodes[1].kill();
    second.kill().await;
    eventually("two thirds of the webhooks answered", progress(2)).await;
    nodes[1].restart();
    let second = BridgeProcess::start(dirs[1].path(), &flags).await;
    addresses_tx.send_modify(|a| a[1] = second.http);
    while let Some(joined) = senders.join_next().await {
        joined.unwrap();
    }

    let answered = answered.lock().unwrap().clone();
    let stream = read_moving_between(&[&first, &second], WEBHOOKS as u64).await;
    assert_exactly_once_in_order(&answered, &stream);
}

/// The bridge building the shared state is killed with SIGKILL: the other bridge takes the
/// builder's lease over once it expires, and its snapshot holds what arrived before and after,
/// consistent at the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_state_builder_is_replaced_and_snapshots_stay_exact() {
    let nats = NatsServer::start();
    let flags = ["--nats-url", nats.url.as_str()];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut builder = BridgeProcess::start(dirs[0].path(), &flags).await;
    eventually("the first bridge to build the state", || {
        let building = building_on(&builder);
        async move { building.then_some(()) }
    })
    .await;
    let other = BridgeProcess::start(dirs[1].path(), &flags).await;
    post_users(&builder, 0..3).await;
    builder.kill().await;
    post_users(&other, 3..6).await;
    // The killed bridge's lease lives out its TTL first.
    let limit = LEASE_TTL + crate::support::patience();
    eventually_within(limit, "the other bridge to take the builder over", || {
        let building = building_on(&other);
        async move { building.then_some(()) }
    })
    .await;

    let request = SubscribeRequest {
        start: StartPosition::Snapshot.into(),
        ..Default::default()
    };
    let mut client = other.client().await;
    let mut snapshot = within("a snapshot", client.subscribe(request))
        .await
        .unwrap()
        .into_inner();
    let mut objects = Vec::new();
    let end = loop {
        let message = within("the next snapshot message", snapshot.message()).await;
        match message.unwrap().unwrap().message {
            Some(Message::Event(event)) => objects.push((event.object_id, event.event_id)),
            Some(Message::SnapshotEnd(end)) => break end,
            _ => {}
        }
    };
    assert_eq!(end.sequence, 6);
    objects.sort();
    let expected: Vec<_> = (0..6)
        .map(|i| (format!("user_{i}"), format!("msg_{i}")))
        .collect();
    assert_eq!(objects, expected);
}

/// Whether `bridge` has logged that it builds the state.
fn building_on(bridge: &BridgeProcess) -> bool {
    bridge
        .log_lines()
        .iter()
        .any(|line| line.contains("Building the JetStream state on this bridge"))
}

/// Posts a new user `user_<i>` as webhook `msg_<i>` for each `i`, expecting 200.
async fn post_users(bridge: &BridgeProcess, ids: std::ops::Range<usize>) {
    let mut poster = within("a connection", Poster::connect(bridge.http))
        .await
        .unwrap();
    for i in ids {
        let body = event_body("user.created", &format!("user_{i}"));
        let status = within("an answer", poster.post(&format!("msg_{i}"), &body)).await;
        assert_eq!(status.unwrap(), 200, "msg_{i}");
    }
}

/// Creates the R3 stream as the bridge would, once the cluster has elected its leaders.
async fn create_stream_when_the_cluster_is_ready(urls: &str) {
    let servers: Vec<async_nats::ServerAddr> =
        urls.split(',').map(|url| url.parse().unwrap()).collect();
    let client = within("a NATS connection", async_nats::connect(servers))
        .await
        .unwrap();
    let context = jetstream::new(client);
    let config = stream::Config {
        name: "CLERK_EVENTS".to_owned(),
        subjects: vec!["CLERK_EVENTS.>".to_owned()],
        num_replicas: 3,
        allow_direct: true,
        duplicate_window: clerk_bridge::jetstream::DUPLICATE_WINDOW,
        ..Default::default()
    };
    eventually("the R3 stream to be created", || {
        let (context, config) = (context.clone(), config.clone());
        async move { context.get_or_create_stream(config).await.ok().map(|_| ()) }
    })
    .await;
}

/// Delivers webhook `i` to one bridge until it answers 2xx, then redelivers it to the other until
/// it answers 2xx too (each attempt that fails goes to the other bridge next, as a Service would
/// route around a dead pod); both answers must name the same sequence. Returns it.
async fn deliver_twice(addresses: &Addresses, i: usize) -> u64 {
    let id = format!("msg_{i}");
    let body = event_body("user.updated", &format!("user_{i}"));
    let (first, first_bridge) = deliver(addresses, i % 2, &id, &body).await;
    let (again, _) = deliver(addresses, 1 - first_bridge, &id, &body).await;
    assert_eq!(first.0, again.0, "{id} answered two sequences");
    assert!(again.1, "{id}'s redelivery was not a duplicate");
    first.0
}

/// Posts until a bridge answers 2xx, starting with bridge `bridge`: the answer and which bridge
/// gave it.
async fn deliver(
    addresses: &Addresses,
    mut bridge: usize,
    id: &str,
    body: &str,
) -> ((u64, bool), usize) {
    let headers = svix_headers(id, body.as_bytes());
    eventually_within(ELECTIONS_LIMIT, &format!("a 2xx for {id}"), || {
        let addr = addresses.borrow()[bridge];
        let attempt = bridge;
        bridge = 1 - bridge;
        let headers = headers.clone();
        async move {
            let post = try_http(
                addr,
                "POST",
                WEBHOOK_PATH,
                &headers,
                Body::Sized(body.as_bytes()),
            );
            match tokio::time::timeout(ATTEMPT_LIMIT, post).await {
                Ok(Ok(response)) if response.status == 200 => Some((response.accepted(), attempt)),
                _ => None,
            }
        }
    })
    .await
}

/// Reads the stream from the start until `head` as the named consumer `faults`, committing every
/// event: half through one bridge, then, once that stream is closed, through the other, where the
/// consumer resumes after its committed sequence. `(sequence, svix-id)` in the order received.
async fn read_moving_between(bridges: &[&BridgeProcess; 2], head: u64) -> Vec<(u64, String)> {
    let mut read = Vec::new();
    for (turn, bridge) in bridges.iter().enumerate() {
        let addr = &bridge.grpc;
        let until = if turn == 0 { head / 2 } else { head };
        let mut client = within("a gRPC connection", crate::process::grpc_client(*addr))
            .await
            .unwrap();
        let request = SubscribeRequest {
            consumer: "faults".to_owned(),
            ..Default::default()
        };
        // The lease the other bridge gave back may take a moment to be deleted.
        let mut stream = eventually("the consumer's stream", || {
            let (mut client, request) = (client.clone(), request.clone());
            async move { client.subscribe(request).await.ok() }
        })
        .await
        .into_inner();
        while read.last().map_or(0, |(sequence, _)| *sequence) < until {
            let last = read.last().map_or(0, |(sequence, _)| *sequence);
            let what = format!("an event after {last} through bridge {turn}");
            let Ok(message) =
                tokio::time::timeout(crate::support::patience(), stream.message()).await
            else {
                for line in bridge.log_lines().iter().rev().take(40).rev() {
                    eprintln!("{line}");
                }
                panic!("timed out waiting for {what}");
            };
            let message = message.unwrap().unwrap();
            if let Some(Message::Event(event)) = message.message {
                let commit = CommitRequest {
                    consumer: "faults".to_owned(),
                    sequence: event.sequence,
                };
                within("a commit", client.commit(commit)).await.unwrap();
                read.push((event.sequence, event.event_id));
            }
        }
    }
    read
}

fn assert_exactly_once_in_order(answered: &BTreeMap<String, u64>, stream: &[(u64, String)]) {
    assert_eq!(answered.len(), WEBHOOKS);
    let expected: Vec<u64> = (1..=WEBHOOKS as u64).collect();
    let sequences: Vec<u64> = stream.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(
        sequences, expected,
        "the stream has a gap, a repeat or a reordering"
    );
    let ids: HashSet<&String> = stream.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), WEBHOOKS, "an id is stored twice");
    for (sequence, id) in stream {
        assert_eq!(
            answered.get(id),
            Some(sequence),
            "{id} was answered another sequence"
        );
    }
}
