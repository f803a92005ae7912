//! Generated protobuf and gRPC code for `clerk.bridge.v1`, and the descriptor set for reflection.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("clerk.bridge.v1");

/// The generated server, which streams [`crate::subscription::wire::SubscribeResponse`] (events
/// passed through as stored) instead of [`SubscribeResponse`]; see build.rs.
mod server {
    include!(concat!(env!("OUT_DIR"), "/server/clerk.bridge.v1.rs"));
}
pub use server::{event_stream_server, sync_service_server};

/// Encoded `FileDescriptorSet` of every proto file (with imports), served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("clerk_bridge_descriptor");
