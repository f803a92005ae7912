//! The sidecar's validated configuration: what `serve` runs with.
//!
//! The `serve` subcommand builds it from flags and environment variables; tests build it with
//! [`Config::for_test`]. Bad input gives one line naming the flag, and `main` exits with 64
//! (EX_USAGE).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    access::TlsError,
    clerk_api,
    ingress::verify::{InvalidSecret, SigningSecret},
    jetstream::NatsConfig,
    log::{LogOptions, retention::Policy},
};

/// Exit code for bad configuration (EX_USAGE from sysexits.h).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Where the signing secrets come from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Given on the command line or in the environment.
    Inline(Vec<SigningSecret>),
    /// Read from this file, and again whenever it changes.
    File(PathBuf),
}

/// TLS for the gRPC port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA that client certificates must chain to; `None` = no client certificates asked.
    pub client_ca: Option<PathBuf>,
}

/// Who may use the gRPC port (health checks excepted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcAccess {
    /// TLS, with or without client certificates.
    pub tls: Option<GrpcTls>,
    /// Bearer token file.
    pub token_file: Option<PathBuf>,
}

/// Validated configuration of the sidecar.
#[derive(Debug, Clone)]
pub struct Config {
    /// Webhook receiver address.
    pub http_addr: SocketAddr,
    /// gRPC address.
    pub grpc_addr: SocketAddr,
    /// Address of the metrics port; `None`: `/metrics` is served on the webhook port.
    pub metrics_addr: Option<SocketAddr>,
    /// Event log directory.
    pub data_dir: PathBuf,
    /// Webhook route path (starts with `/`).
    pub webhook_path: String,
    /// Secrets any of which may sign a webhook.
    pub signing_secrets: SecretSource,
    /// Who may use the gRPC port.
    pub grpc_access: GrpcAccess,
    /// How often watched files (secret, token) are checked for changes.
    pub file_watch_interval: Duration,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Most concurrent HTTP connections.
    pub max_connections: usize,
    /// Time a client has to send request headers.
    pub header_read_timeout: Duration,
    /// Time a client has to send a webhook's body once its headers arrived.
    pub body_read_timeout: Duration,
    /// Most webhook body bytes held in memory across all requests.
    pub max_buffered_bytes: usize,
    /// Most concurrent gRPC connections, handshakes included.
    pub grpc_max_connections: usize,
    /// Time a gRPC client has for the TLS handshake and the HTTP/2 preface.
    pub grpc_handshake_timeout: Duration,
    /// Most subscription streams open at once.
    pub max_streams: usize,
    /// Idle time before a heartbeat.
    pub heartbeat_interval: Duration,
    /// Drain time at shutdown.
    pub shutdown_grace: Duration,
    /// Caps on the log's age and size.
    pub retention: Policy,
    /// How often retention runs (when a cap is set).
    pub retention_interval: Duration,
    /// Options of the log (fault injection in tests).
    pub log_options: LogOptions,
    /// Clerk's Backend API, for backfill and reconciliation; `None` without a secret key.
    pub clerk_api: Option<clerk_api::Config>,
    /// How often reconciliation runs by itself; `None`: only on demand.
    pub reconcile_every: Option<Duration>,
    /// The JetStream stream that holds the log instead of the data directory; `None`: the
    /// embedded log.
    pub nats: Option<NatsConfig>,
}

/// A configuration problem, naming the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No secret given.
    #[error(
        "no signing secret: set CLERK_WEBHOOK_SIGNING_SECRET, --signing-secret or --signing-secret-file (whsec_... from the Clerk dashboard)"
    )]
    MissingSecret,
    /// A secret is malformed.
    #[error("invalid --signing-secret / CLERK_WEBHOOK_SIGNING_SECRET: {0}")]
    BadSecret(#[from] InvalidSecret),
    /// Clerk's secret key is malformed (the key itself is never shown).
    #[error("invalid CLERK_SECRET_KEY / --clerk-secret-key(-file): {0}")]
    BadSecretKey(#[source] clerk_api::ConfigError),
    /// A TLS file of the gRPC port cannot be used (the error names its flag).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A flag's value does not parse.
    #[error("invalid --{flag} {value:?}: {reason}")]
    BadValue {
        /// The flag, without dashes.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// Time a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often retention runs when a cap is set.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(30);
/// How often watched files are checked (a failed signature also checks the secret file at once).
pub const FILE_WATCH_INTERVAL: Duration = Duration::from_secs(5);

// === impl Config ===

impl Config {
    /// A configuration for tests: loopback port 0 on both listeners, the given data dir and secret.
    ///
    /// # Panics
    /// When `secret` is not a valid signing secret.
    pub fn for_test(data_dir: PathBuf, secret: &str) -> Self {
        Config {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            data_dir,
            webhook_path: "/webhooks/clerk".to_owned(),
            // A test passes a literal secret it knows to be valid.
            signing_secrets: SecretSource::Inline(
                SigningSecret::parse_list(secret).expect("valid test secret"),
            ),
            grpc_access: GrpcAccess::default(),
            file_watch_interval: FILE_WATCH_INTERVAL,
            max_body_bytes: 1 << 20,
            max_connections: 1024,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: Duration::from_secs(10),
            max_buffered_bytes: 64 << 20,
            grpc_max_connections: crate::grpc_transport::DEFAULT_MAX_CONNECTIONS,
            grpc_handshake_timeout: crate::grpc_transport::DEFAULT_HANDSHAKE_TIMEOUT,
            max_streams: crate::subscription::DEFAULT_MAX_STREAMS,
            heartbeat_interval: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(8),
            retention: Policy::default(),
            retention_interval: RETENTION_INTERVAL,
            log_options: LogOptions::default(),
            clerk_api: None,
            reconcile_every: None,
            nats: None,
        }
    }
}

// === impl ConfigError ===

impl ConfigError {
    /// A bad value of `--{flag}`: `value` as given, and what is wrong with it.
    pub fn bad(flag: &'static str, value: &str, reason: impl ToString) -> Self {
        ConfigError::BadValue {
            flag,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}
