//! Running the bridge: restarts on the same data directory, gRPC health and reflection, and a
//! graceful shutdown with a subscriber connected.

use std::time::Duration;

use prost::Message as _;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};

use crate::support::{TestBridge, sequences};

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
    assert_eq!(
        bridge.post_signed("msg_1", body).await.accepted(),
        (1, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_reports_serving() {
    let bridge = TestBridge::start().await;
    let mut health = HealthClient::new(bridge.channel().await);
    for service in ["", EVENT_STREAM] {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        let response = health.check(request).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = HealthCheckRequest {
        service: "no.such.Service".to_owned(),
    };
    assert_eq!(
        health.check(unknown).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_lists_and_describes_the_event_stream() {
    use v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let bridge = TestBridge::start().await;
    let mut client = ServerReflectionClient::new(bridge.channel().await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(EVENT_STREAM.to_owned()),
    ]
    .map(|request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    });
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let listed = responses.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::ListServicesResponse(list)) = listed else {
        panic!("expected a service list, got {listed:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&EVENT_STREAM), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let described = responses.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::FileDescriptorResponse(files)) = described else {
        panic!("expected file descriptors, got {described:?}");
    };
    let file_names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .unwrap()
                .name()
                .to_owned()
        })
        .collect();
    assert!(
        file_names
            .iter()
            .any(|f| f == "clerk/bridge/v1/service.proto"),
        "{file_names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_lists_the_event_stream() {
    use v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let bridge = TestBridge::start().await;
    let mut client = ServerReflectionClient::new(bridge.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let listed = responses.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::ListServicesResponse(list)) = listed else {
        panic!("expected a service list, got {listed:?}");
    };
    assert!(
        list.service.iter().any(|s| s.name == EVENT_STREAM),
        "{list:?}"
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
