//! The flags that put the log in a NATS JetStream stream, shared by `serve` and
//! `copy-to-jetstream`.

use std::path::PathBuf;

use clap::Args;

use super::values;
use crate::{config::ConfigError, jetstream::NatsConfig, log::retention::Policy};

/// Where the JetStream stream is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// Store the log in a NATS JetStream stream instead of the data directory: one or more
    /// `nats://` (or `tls://`) URLs of the cluster, comma-separated. Any number of bridges may then
    /// share the stream. Unset: the embedded log.
    #[arg(long, env = "CLERK_BRIDGE_NATS_URL", value_delimiter = ',', value_parser = values::nats_url)]
    pub nats_url: Vec<async_nats::ServerAddr>,
    /// The JetStream stream of the log (created if missing; its subjects are `<name>.>`).
    #[arg(long, env = "CLERK_BRIDGE_NATS_STREAM", default_value = "CLERK_EVENTS", value_parser = values::stream_name)]
    pub nats_stream: String,
    /// Replicas of the stream (1, 3 or 5; 3 in production): checked against an existing stream.
    #[arg(long, env = "CLERK_BRIDGE_NATS_REPLICAS", default_value = "1", value_parser = values::replicas)]
    pub nats_replicas: usize,
    /// NATS credentials file (user JWT and seed).
    #[arg(long, env = "CLERK_BRIDGE_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// PEM CA the NATS servers' certificates must chain to (requires TLS).
    #[arg(long, env = "CLERK_BRIDGE_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate for NATS servers that verify clients.
    #[arg(long, env = "CLERK_BRIDGE_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM key of `--nats-tls-cert`.
    #[arg(long, env = "CLERK_BRIDGE_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
}

// === impl NatsArgs ===

impl NatsArgs {
    /// The JetStream config, when `--nats-url` is given; the stream gets `retention` as limits
    /// when the bridge creates it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the flag of a file that cannot be read.
    pub fn to_config(&self, retention: Policy) -> Result<Option<NatsConfig>, ConfigError> {
        if self.nats_url.is_empty() {
            return Ok(None);
        }
        values::files_exist(&[
            ("nats-creds", &self.nats_creds),
            ("nats-tls-ca", &self.nats_tls_ca),
            ("nats-tls-cert", &self.nats_tls_cert),
            ("nats-tls-key", &self.nats_tls_key),
        ])?;
        Ok(Some(NatsConfig {
            urls: self.nats_url.clone(),
            stream: self.nats_stream.clone(),
            replicas: self.nats_replicas,
            credentials: self.nats_creds.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_client: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
            retention,
        }))
    }
}
