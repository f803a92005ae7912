//! clerk-bridge: receives Clerk webhooks over HTTP, verifies them, stores them durably, and streams
//! them as typed protobuf events over gRPC.
//!
//! The flow, one module per step: [`ingress`] (HTTP, [`ingress::verify`]) → [`clerk`] (typed
//! decoding) → [`log`] (durable, ordered, deduplicated; [`record`] is its encoding) →
//! [`subscription`] (gRPC streams). [`server::run`] wires them; `main.rs` only parses config.

pub mod access;
pub mod clerk;
pub mod clerk_api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod fd_budget;
pub mod grpc_transport;
pub mod health;
pub mod ingest_first;
pub mod ingress;
pub mod jetstream;
pub mod log;
pub mod proto;
pub mod record;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod store;
pub mod subscription;
pub mod sync;
pub mod telemetry;
pub mod watched_file;

pub use config::Config;
pub use server::{Listeners, RunError, run};
