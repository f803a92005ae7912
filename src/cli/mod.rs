//! Subcommands that talk to a running bridge over gRPC.

pub mod consumers;

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
        .map_err(|e| anyhow::anyhow!("invalid --grpc-addr {grpc_addr:?}: {e}"))?;
    endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach clerk-bridge at {url}: {e}"))
}
