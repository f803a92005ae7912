//! Running the bridge: restarts on the same data directory, gRPC health and reflection, and a
//! graceful shutdown with a subscriber connected.

use std::time::Duration;

use prost::Message as _;
use prost_types::FileDescriptorProto;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1;

use crate::support::{TestBridge, sequences, within};

/// The full name of the bridge's gRPC service.
const EVENT_STREAM: &str = "clerk.bridge.v1.EventStream";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_restart_with_their_sequences() {
    const N: usize = 5;
    let mut bridge = TestBridge::start().await;
    let before = bridge.post_events(1, N).await;
    let delivered = bridge.subscribe(0, &[]).await.next_events(N).await;
    assert_eq!(sequences(&delivered), before);

    bridge.restart().await;
    let mut subscription = bridge.subscribe(0, &[]).await;
    let after = subscription.next_events(N).await;
    assert_eq!(after, delivered, "the same events, sequences and all");
    // New events continue the sequence, and reach the open stream.
    assert_eq!(bridge.post_events(N + 1, 1).await, [N as u64 + 1]);
    assert_eq!(subscription.next_event().await.sequence, N as u64 + 1);
    // The id index survived too: a redelivery is still a duplicate.
    let body = &delivered[0].payload_json;
    assert_eq!(bridge.deliver("msg_1", body).await, (1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_reports_serving() {
    let bridge = TestBridge::start().await;
    let mut health = HealthClient::new(bridge.channel().await);
    for service in ["", EVENT_STREAM] {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let response = within("a health check", health.check(request))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = HealthCheckRequest {
        service: "no.such.Service".to_owned(),
    };
    let refused = within("a health check", health.check(unknown)).await;
    assert_eq!(refused.unwrap_err().code(), Code::NotFound);
}

/// One reflection request (`$request` is a variant of `MessageRequest`) through protocol version
/// `$version` (`v1` or `v1alpha`: the same API, generated into two modules); the first answer.
macro_rules! reflect {
    ($version:ident, $channel:expr, $request:ident($argument:expr)) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::$request($argument)),
        };
        let mut client = ServerReflectionClient::new($channel);
        let call = client.server_reflection_info(tokio_stream::iter([request]));
        let mut answers = within("reflection", call).await.unwrap().into_inner();
        let answer = within("a reflection answer", answers.message()).await;
        answer.unwrap().expect("an answer").message_response
    }};
}

/// The service names reflection `$version` lists.
macro_rules! reflected_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        match reflect!($version, $channel, ListServices(String::new())) {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("expected a service list, got {other:?}"),
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_list_the_event_stream() {
    let bridge = TestBridge::start().await;
    let v1 = reflected_services!(v1, bridge.channel().await);
    let v1alpha = reflected_services!(v1alpha, bridge.channel().await);
    for names in [&v1, &v1alpha] {
        assert!(names.iter().any(|n| n == EVENT_STREAM), "{names:?}");
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
    }
}

/// What grpcurl asks next: the file that defines the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_describes_the_event_stream() {
    use v1::server_reflection_response::MessageResponse;
    let bridge = TestBridge::start().await;
    let answer = reflect!(
        v1,
        bridge.channel().await,
        FileContainingSymbol(EVENT_STREAM.to_owned())
    );
    let Some(MessageResponse::FileDescriptorResponse(files)) = answer else {
        panic!("expected file descriptors, got {answer:?}");
    };
    let names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .map(|file| file.name().to_owned())
        .collect();
    assert!(
        names.iter().any(|f| f == "clerk/bridge/v1/service.proto"),
        "{names:?}"
    );
}

/// Shutdown ends open streams with UNAVAILABLE (tonic alone would wait for them forever) and `run`
/// returns well within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_with_unavailable() {
    let mut bridge = TestBridge::start().await;
    bridge.post_events(1, 1).await;
    let mut subscription = bridge.subscribe(0, &[]).await;
    assert_eq!(subscription.next_event().await.sequence, 1);
    let mut idle = bridge.subscribe(1, &[]).await;

    bridge.cancel();
    for stream in [&mut subscription, &mut idle] {
        let status = stream.final_status().await;
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    let grace = bridge.config.shutdown_grace;
    let limit = Duration::from_secs(5);
    assert!(
        limit < grace,
        "the limit must be shorter than the grace period to mean anything"
    );
    bridge.stopped_within(limit).await.expect("run returns Ok");
}

/// An open `Health/Watch` stream (a probe, a client's watcher) does not hold shutdown for the whole
/// grace period: it ends with the other streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_health_watch_does_not_hold_shutdown() {
    let mut bridge = TestBridge::start().await;
    let mut health = HealthClient::new(bridge.channel().await);
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let mut watch = health.watch(request).await.unwrap().into_inner();
    let first = within("the first health status", watch.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    bridge.cancel();
    let limit = Duration::from_secs(5);
    assert!(limit < bridge.config.shutdown_grace);
    bridge.stopped_within(limit).await.expect("run returns Ok");
    while let Ok(Some(_)) = within("the watch to end", watch.message()).await {}
}
