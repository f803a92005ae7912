//! The command line: `serve` runs the sidecar; `consumers`, `tail`, `snapshot`, `backfill` and
//! `reconcile` talk to a running bridge over gRPC; `trigger` posts signed webhooks to it;
//! `copy-to-jetstream` moves an embedded log into a JetStream stream.
//!
//! Every flag is typed by a parser in [`values`], so a bad value (from a flag or its environment
//! variable) is a usage error: `main` prints one line naming the flag and exits with 64, as it does
//! for a [`UsageError`] a subcommand finds later.

pub mod consumers;
pub mod copy;
mod lines;
pub mod nats;
pub mod samples;
pub mod serve;
pub mod snapshot;
pub mod sync;
pub mod tail;
pub mod trigger;
pub mod values;

use clap::{Args, Parser, Subcommand};
use tonic::transport::{Channel, Endpoint};

/// clerk-bridge: verified Clerk webhooks in, a durable typed gRPC event stream out.
#[derive(Debug, Parser)]
#[command(name = "clerk-bridge", version, about)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands: the server, and clients of a running bridge.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: receive webhooks over HTTP, serve the event stream over gRPC.
    Serve(Box<serve::ServeArgs>),
    /// List, reset or delete the named durable consumers of a running bridge.
    Consumers(consumers::ConsumersArgs),
    /// Sign and post a Clerk event (a built-in sample or your own file) to a bridge, as Clerk would.
    Trigger(trigger::TriggerArgs),
    /// Follow a bridge's event stream: one line (or JSON object) per event.
    Tail(tail::TailArgs),
    /// Print a bridge's current state: the latest event of every object, then exit.
    Snapshot(snapshot::SnapshotArgs),
    /// Have a running bridge load users, organizations and memberships from Clerk's Backend API.
    Backfill(sync::SyncArgs),
    /// Have a running bridge repair its state against Clerk's Backend API, deletions included.
    Reconcile(sync::SyncArgs),
    /// Copy the embedded log (stopped bridge) into a JetStream stream, with its named consumers.
    CopyToJetstream(copy::CopyArgs),
}

/// How a client subcommand reaches the bridge's gRPC port; shared by every such subcommand.
#[derive(Debug, Clone, Args)]
pub struct GrpcClientArgs {
    /// The bridge's gRPC address: `host:port`, or an `http://` / `https://` URL.
    #[arg(
        long = "grpc-addr",
        env = "CLERK_BRIDGE_GRPC_ADDR",
        default_value = "127.0.0.1:50051",
        value_parser = values::grpc_endpoint,
        global = true
    )]
    pub grpc_endpoint: Endpoint,
}

// === impl GrpcClientArgs ===

impl GrpcClientArgs {
    /// Connects to the bridge.
    ///
    /// # Errors
    /// When nothing answers there; the message names the address and the innermost cause.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        let url = self.grpc_endpoint.uri().to_string();
        self.grpc_endpoint.connect().await.map_err(|e| {
            // tonic's own message is only "transport error": the cause is further down the chain.
            let cause = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                .last()
                .map_or_else(|| e.to_string(), ToString::to_string);
            anyhow::anyhow!("cannot reach clerk-bridge at {url}: {cause}")
        })
    }
}

/// A subscription's refusal as an error: a pattern the bridge rejects (INVALID_ARGUMENT) is a bad
/// `--types` flag, so a [`UsageError`] (exit 64); anything else stays the gRPC status.
fn refused(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        tonic::Code::InvalidArgument => {
            UsageError(format!("invalid --types: {}", status.message())).into()
        }
        _ => status.into(),
    }
}

/// A mistake in a client subcommand's input found after parsing (a file that is missing, an edit
/// that does not apply): `main` prints it on one line and exits with 64 (EX_USAGE), as for a bad
/// flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
