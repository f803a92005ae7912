//! Connecting to the NATS cluster and making sure the event stream exists as configured.

use std::{path::PathBuf, time::Duration};

use async_nats::{
    ConnectOptions, ServerAddr,
    jetstream::{self, stream},
};

use super::{OpenError, subject};
use crate::log::retention::Policy;

/// The largest message the servers must accept: the largest event ([`crate::clerk::MAX_MESSAGE_BYTES`])
/// with its headers, which NATS counts against `max_payload` too.
pub(super) const MIN_MAX_PAYLOAD: usize = crate::clerk::MAX_MESSAGE_BYTES + 4096;

/// How long the first connection may take before `serve` gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long JetStream may take to answer a request (a publish acknowledgement among them).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the log lives when it lives in JetStream (`--nats-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Servers of the cluster, any of which will do (`--nats-url`).
    pub urls: Vec<ServerAddr>,
    /// The stream the events go to (`--nats-stream`).
    pub stream: String,
    /// Replicas of the stream when the bridge creates it, and checked when it exists
    /// (`--nats-replicas`).
    pub replicas: usize,
    /// A NATS credentials file (JWT and seed; `--nats-creds`).
    pub credentials: Option<PathBuf>,
    /// PEM CA the servers' certificates must chain to (`--nats-tls-ca`); also requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients (`--nats-tls-cert`,
    /// `--nats-tls-key`).
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Retention caps, applied as the stream's limits when the bridge creates it.
    pub retention: Policy,
}

/// Connects to the cluster: the first connection must succeed within [`CONNECT_TIMEOUT`]; after
/// that the client reconnects by itself for as long as the bridge runs.
pub(super) async fn connect(config: &NatsConfig) -> Result<async_nats::Client, OpenError> {
    let mut options = ConnectOptions::new()
        .name("clerk-bridge")
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT));
    if let Some(path) = &config.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| OpenError::Credentials(format!("{}: {e}", path.display())))?;
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &config.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let connecting = options.connect(config.urls.clone());
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(client)) => check_max_payload(client),
        Ok(Err(error)) => Err(OpenError::Connect(error.to_string())),
        Err(_) => Err(OpenError::Connect(format!(
            "no server answered within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// How long the stream and buckets may stay unavailable at start (a cluster electing leaders
/// after a restart) before `serve` gives up.
const SETTLE_PATIENCE: Duration = Duration::from_secs(30);
/// Pause between attempts while the cluster settles.
const SETTLE_PAUSE: Duration = Duration::from_millis(500);

/// Runs `attempt` until it succeeds, fails for good (the stream is configured otherwise), or
/// [`SETTLE_PATIENCE`] has passed: JetStream answers requests with errors or not at all while a
/// cluster elects its leaders, which is no reason to exit.
pub(crate) async fn retry_while_settling<T, F, Fut>(mut attempt: F) -> Result<T, OpenError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OpenError>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE_PATIENCE;
    loop {
        match attempt().await {
            Err(OpenError::Stream(reason)) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%reason, "JetStream not ready yet; trying again");
                tokio::time::sleep(SETTLE_PAUSE).await;
            }
            done => return done,
        }
    }
}

/// Refuses servers that would refuse the largest events: a webhook whose event does not fit would
/// get 503 on every retry until Clerk gave up on it.
fn check_max_payload(client: async_nats::Client) -> Result<async_nats::Client, OpenError> {
    let max_payload = client.server_info().max_payload;
    if max_payload < MIN_MAX_PAYLOAD {
        return Err(OpenError::Mismatch(format!(
            "the NATS servers accept messages of at most {max_payload} bytes (max_payload); \
             events take up to {MIN_MAX_PAYLOAD}: set max_payload: 8MB in their configuration"
        )));
    }
    Ok(client)
}

/// The stream as configured: created when missing, checked when present (its subjects must
/// cover the bridge's, and its replicas must be those asked for).
pub(super) async fn ensure_stream(
    context: &jetstream::Context,
    config: &NatsConfig,
) -> Result<stream::Stream, OpenError> {
    let wanted = stream_config(config);
    let mut stream = context
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| OpenError::Stream(format!("{}: {e}", config.stream)))?;
    let info = stream
        .info()
        .await
        .map_err(|e| OpenError::Stream(format!("{}: {e}", config.stream)))?;
    let existing = &info.config;
    if !existing.subjects.contains(&wanted.subjects[0]) {
        return Err(OpenError::Mismatch(format!(
            "stream {} exists with subjects {:?}, not {}",
            config.stream, existing.subjects, wanted.subjects[0]
        )));
    }
    if existing.num_replicas != config.replicas {
        return Err(OpenError::Mismatch(format!(
            "stream {} exists with {} replicas but --nats-replicas is {}",
            config.stream, existing.num_replicas, config.replicas
        )));
    }
    if existing.duplicate_window < wanted.duplicate_window {
        return Err(OpenError::Mismatch(format!(
            "stream {} exists with a duplicate window of {:?}; redeliveries need {:?}",
            config.stream, existing.duplicate_window, wanted.duplicate_window
        )));
    }
    if !existing.allow_direct {
        return Err(OpenError::Mismatch(format!(
            "stream {} exists without allow_direct, which the bridge reads with",
            config.stream
        )));
    }
    Ok(stream)
}

/// The stream's duplicate window: [`super::DUPLICATE_WINDOW`], or the retention age when shorter
/// (JetStream allows no longer window; an id is stored once while its event is retained).
fn duplicate_window(retention: Policy) -> Duration {
    retention.max_age.map_or(super::DUPLICATE_WINDOW, |age| {
        age.min(super::DUPLICATE_WINDOW)
    })
}

/// The stream the bridge creates: file storage, the retention caps as limits (oldest deleted
/// first), direct reads from any replica.
fn stream_config(config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some("Clerk webhooks stored by clerk-bridge".into()),
        subjects: vec![subject::all_events(&config.stream)],
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: config.retention.max_age.unwrap_or_default(),
        max_bytes: config
            .retention
            .max_bytes
            .map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
        allow_direct: true,
        duplicate_window: duplicate_window(config.retention),
        ..Default::default()
    }
}
