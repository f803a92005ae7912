//! Client subcommands: `consumers` and `tail` talk to a running bridge over gRPC, `trigger` posts
//! signed webhooks to it.

pub mod consumers;
pub mod samples;
pub mod tail;
pub mod trigger;

use tonic::transport::{Channel, Endpoint};

/// Connects to the bridge's gRPC address (`host:port` or a full `http://` URL).
///
/// # Errors
/// When the address is malformed or nothing answers there.
pub async fn connect(grpc_addr: &str) -> anyhow::Result<Channel> {
    let url = if grpc_addr.contains("://") {
        grpc_addr.to_owned()
    } else {
        format!("http://{grpc_addr}")
    };
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| UsageError(format!("invalid --grpc-addr {grpc_addr:?}: {e}")))?;
    endpoint.connect().await.map_err(|e| {
        // tonic's own message is only "transport error": the cause is further down the chain.
        let cause = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .last()
            .map_or_else(|| e.to_string(), ToString::to_string);
        anyhow::anyhow!("cannot reach clerk-bridge at {url}: {cause}")
    })
}

/// A mistake in a client subcommand's flags or input: `main` prints it on one line and exits with
/// 64 (EX_USAGE), as for a bad `serve` flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
