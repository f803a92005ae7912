//! Command line and environment: parsed by clap, then validated into a typed [`Config`].
//!
//! Every flag has an environment variable. Bad input gives one line naming the flag, and `main`
//! exits with 64 (EX_USAGE).

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Parser, Subcommand};

use crate::{
    ingress::verify::{InvalidSecret, SigningSecret},
    log::{LogOptions, retention::Policy},
    telemetry::LogFormat,
};

/// Exit code for bad configuration (EX_USAGE from sysexits.h).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// clerk-bridge: verified Clerk webhooks in, a durable typed gRPC event stream out.
#[derive(Debug, Parser)]
#[command(name = "clerk-bridge", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: receive webhooks over HTTP, serve the event stream over gRPC.
    Serve(Box<ServeArgs>),
    /// List, reset or delete the named durable consumers of a running bridge.
    Consumers(ConsumersArgs),
    /// Sign and post a Clerk event (a built-in sample or your own file) to a bridge, as Clerk would.
    Trigger(crate::cli::trigger::TriggerArgs),
    /// Follow a bridge's event stream: one line (or JSON object) per event.
    Tail(crate::cli::tail::TailArgs),
}

/// Flags of `clerk-bridge consumers`.
#[derive(Debug, Args)]
pub struct ConsumersArgs {
    /// The bridge's gRPC address.
    #[arg(
        long,
        env = "CLERK_BRIDGE_GRPC_ADDR",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub grpc_addr: String,
    /// What to do.
    #[command(subcommand)]
    pub action: ConsumersAction,
}

/// `clerk-bridge consumers` actions.
#[derive(Debug, Subcommand)]
pub enum ConsumersAction {
    /// Show every consumer with its committed sequence and lag.
    List,
    /// Move a consumer (its stream must be closed).
    Reset {
        /// The consumer.
        name: String,
        /// `earliest`, `latest`, or a sequence to resume after.
        #[arg(long)]
        to: String,
    },
    /// Forget a consumer (its stream must be closed).
    Delete {
        /// The consumer.
        name: String,
    },
}

/// Flags of `clerk-bridge serve`, as typed.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Webhook signing secret(s) from the Clerk dashboard (`whsec_...`); several separated by
    /// spaces or commas (secret rotation, dev and prod instances).
    #[arg(long, env = "CLERK_WEBHOOK_SIGNING_SECRET", hide_env_values = true)]
    pub signing_secret: Option<String>,
    /// File holding the signing secret(s), e.g. a mounted Kubernetes Secret. Read again when it
    /// changes, so a rotation needs no restart. Instead of --signing-secret.
    #[arg(
        long,
        env = "CLERK_WEBHOOK_SIGNING_SECRET_FILE",
        conflicts_with = "signing_secret"
    )]
    pub signing_secret_file: Option<PathBuf>,
    /// Address for the webhook receiver (HTTP).
    #[arg(long, env = "CLERK_BRIDGE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,
    /// Address for the gRPC event stream. It carries personal data: keep it pod-local.
    #[arg(
        long,
        env = "CLERK_BRIDGE_GRPC_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub grpc_addr: String,
    /// Directory of the event log (created if missing).
    #[arg(long, env = "CLERK_BRIDGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Path of the webhook route.
    #[arg(
        long,
        env = "CLERK_BRIDGE_WEBHOOK_PATH",
        default_value = "/webhooks/clerk"
    )]
    pub webhook_path: String,
    /// Largest webhook body accepted, in bytes (larger: 413).
    #[arg(long, env = "CLERK_BRIDGE_MAX_BODY_BYTES", default_value = "1048576")]
    pub max_body_bytes: String,
    /// Most HTTP connections open at once.
    #[arg(long, env = "CLERK_BRIDGE_MAX_CONNECTIONS", default_value = "1024")]
    pub max_connections: String,
    /// Idle time after which a subscription stream sends a heartbeat (e.g. `15s`, `500ms`).
    #[arg(long, env = "CLERK_BRIDGE_HEARTBEAT_INTERVAL", default_value = "15s")]
    pub heartbeat_interval: String,
    /// Time allowed for draining on SIGTERM/SIGINT; keep it under Kubernetes' grace period.
    #[arg(long, env = "CLERK_BRIDGE_SHUTDOWN_GRACE", default_value = "8s")]
    pub shutdown_grace: String,
    /// Delete events older than this (e.g. `7d`, `36h`). Unset: keep events of any age.
    #[arg(long, env = "CLERK_BRIDGE_RETENTION_MAX_AGE")]
    pub retention_max_age: Option<String>,
    /// Delete the oldest events while the log uses more than this many bytes (e.g. `512MiB`, `2GiB`).
    /// Unset: no size cap.
    #[arg(long, env = "CLERK_BRIDGE_RETENTION_MAX_BYTES")]
    pub retention_max_bytes: Option<String>,
    /// Log line format.
    #[arg(long, env = "CLERK_BRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// File holding a bearer token that gRPC clients must send (`authorization: Bearer <token>`).
    /// Read again when it changes. Health checks stay open.
    #[arg(long, env = "CLERK_BRIDGE_GRPC_TOKEN_FILE")]
    pub grpc_token_file: Option<PathBuf>,
    /// PEM certificate chain for gRPC over TLS.
    #[arg(long, env = "CLERK_BRIDGE_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// PEM private key for gRPC over TLS.
    #[arg(long, env = "CLERK_BRIDGE_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
    /// PEM CA bundle: gRPC clients must present a certificate it signed (mutual TLS).
    #[arg(long, env = "CLERK_BRIDGE_GRPC_CLIENT_CA", requires = "grpc_tls_cert")]
    pub grpc_client_ca: Option<PathBuf>,
    /// Serve gRPC on a non-loopback address without client certificates or a token. The stream
    /// carries personal data: only for networks you trust.
    #[arg(long, env = "CLERK_BRIDGE_GRPC_INSECURE")]
    pub grpc_insecure: bool,
}

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
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often retention runs when a cap is set.
const RETENTION_INTERVAL: Duration = Duration::from_secs(30);
/// How often watched files are checked (a failed signature also checks the secret file at once).
const FILE_WATCH_INTERVAL: Duration = Duration::from_secs(5);

// === impl Config ===

impl Config {
    /// Validates the flags of `serve`.
    ///
    /// # Errors
    /// [`ConfigError`] for the first bad value.
    pub fn try_from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let grpc_addr = parse_addr("grpc-addr", &args.grpc_addr)?;
        Ok(Config {
            http_addr: parse_addr("http-addr", &args.http_addr)?,
            grpc_access: grpc_access(args, grpc_addr)?,
            grpc_addr,
            data_dir: args.data_dir.clone(),
            webhook_path: parse_path(&args.webhook_path)?,
            signing_secrets: secret_source(args)?,
            file_watch_interval: FILE_WATCH_INTERVAL,
            max_body_bytes: parse_positive("max-body-bytes", &args.max_body_bytes)?,
            max_connections: parse_positive("max-connections", &args.max_connections)?,
            header_read_timeout: HEADER_READ_TIMEOUT,
            heartbeat_interval: parse_duration("heartbeat-interval", &args.heartbeat_interval)?,
            shutdown_grace: parse_duration("shutdown-grace", &args.shutdown_grace)?,
            retention: Policy {
                max_age: optional(args.retention_max_age.as_deref(), |v| {
                    parse_duration("retention-max-age", v)
                })?,
                max_bytes: optional(args.retention_max_bytes.as_deref(), |v| {
                    parse_bytes("retention-max-bytes", v)
                })?,
            },
            retention_interval: RETENTION_INTERVAL,
            log_options: LogOptions::default(),
        })
    }

    /// A configuration for tests: loopback port 0 on both listeners, the given data dir and secret.
    ///
    /// # Panics
    /// When `secret` is not a valid signing secret.
    pub fn for_test(data_dir: PathBuf, secret: &str) -> Self {
        Config {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
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
            heartbeat_interval: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(8),
            retention: Policy::default(),
            retention_interval: RETENTION_INTERVAL,
            log_options: LogOptions::default(),
        }
    }
}

/// The signing secrets: inline, or a file that must be readable and valid now.
fn secret_source(args: &ServeArgs) -> Result<SecretSource, ConfigError> {
    match (&args.signing_secret, &args.signing_secret_file) {
        (Some(inline), _) => Ok(SecretSource::Inline(SigningSecret::parse_list(inline)?)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad("signing-secret-file", &path.display().to_string(), e))?;
            SigningSecret::parse_list(&text)
                .map_err(|e| bad("signing-secret-file", &path.display().to_string(), e))?;
            Ok(SecretSource::File(path.clone()))
        }
        (None, None) => Err(ConfigError::MissingSecret),
    }
}

/// gRPC access control. A non-loopback address needs client certificates or a token, unless
/// --grpc-insecure says otherwise: the stream carries personal data.
fn grpc_access(args: &ServeArgs, addr: SocketAddr) -> Result<GrpcAccess, ConfigError> {
    for (flag, path) in [
        ("grpc-token-file", &args.grpc_token_file),
        ("grpc-tls-cert", &args.grpc_tls_cert),
        ("grpc-tls-key", &args.grpc_tls_key),
        ("grpc-client-ca", &args.grpc_client_ca),
    ] {
        if let Some(path) = path {
            std::fs::metadata(path).map_err(|e| bad(flag, &path.display().to_string(), e))?;
        }
    }
    let tls = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
        (Some(cert), Some(key)) => Some(GrpcTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.grpc_client_ca.clone(),
        }),
        _ => None,
    };
    let access = GrpcAccess {
        tls,
        token_file: args.grpc_token_file.clone(),
    };
    let authenticated = access.token_file.is_some() || args.grpc_client_ca.is_some();
    if !addr.ip().is_loopback() && !authenticated && !args.grpc_insecure {
        return Err(bad(
            "grpc-addr",
            &args.grpc_addr,
            "not a loopback address: require clients to authenticate with --grpc-token-file or \
             --grpc-tls-cert/--grpc-tls-key/--grpc-client-ca, or pass --grpc-insecure",
        ));
    }
    Ok(access)
}

fn bad(flag: &'static str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError::BadValue {
        flag,
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

/// `host:port`, where host is an IP or a resolvable name such as `localhost`.
fn parse_addr(flag: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    value
        .to_socket_addrs()
        .map_err(|e| bad(flag, value, format!("expected host:port ({e})")))?
        .next()
        .ok_or_else(|| bad(flag, value, "the host has no address"))
}

fn parse_path(value: &str) -> Result<String, ConfigError> {
    if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
        return Err(bad(
            "webhook-path",
            value,
            "expected a path such as /webhooks/clerk",
        ));
    }
    Ok(value.to_owned())
}

fn parse_positive(flag: &'static str, value: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(flag, value, "expected a positive whole number")),
    }
}

/// Applies `parse` to a value that may be absent.
fn optional<T>(
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    value.map(parse).transpose()
}

/// Reads a positive whole number with an optional unit suffix, as a multiple of the smallest unit.
fn with_unit(value: &str, units: &[(&str, u64)], bare: u64) -> Option<u64> {
    let v = value.trim();
    let (number, multiplier) = units
        .iter()
        .find_map(|(suffix, m)| v.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((v, bare));
    match number.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(n.saturating_mul(multiplier)),
        _ => None,
    }
}

/// `500ms`, `15s`, `2m`, `36h`, `7d`, or a bare number of seconds.
fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, ConfigError> {
    const UNITS_MS: &[(&str, u64)] = &[
        ("ms", 1),
        ("s", 1000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];
    with_unit(value, UNITS_MS, 1000)
        .map(Duration::from_millis)
        .ok_or_else(|| {
            bad(
                flag,
                value,
                "expected a duration such as 500ms, 15s, 2m, 36h or 7d",
            )
        })
}

/// `1048576`, `512KiB`, `64MiB`, `2GiB` (also `KB`, `MB`, `GB` as powers of 1000).
fn parse_bytes(flag: &'static str, value: &str) -> Result<u64, ConfigError> {
    const UNITS: &[(&str, u64)] = &[
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("KB", 1000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("B", 1),
    ];
    with_unit(value, UNITS, 1)
        .ok_or_else(|| bad(flag, value, "expected a size such as 512MiB or 2GiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["clerk-bridge", "serve"];
        if !extra.contains(&"--signing-secret") {
            argv.extend_from_slice(&["--signing-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        }
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("serve expected")
        };
        Config::try_from_args(&serve)
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = args(&[]).unwrap();
        assert_eq!(c.http_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.grpc_addr, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.webhook_path, "/webhooks/clerk");
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(15));
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: [(&[&str], &str); 6] = [
            (&["--http-addr", "nope"], "--http-addr"),
            (&["--grpc-addr", "1.2.3.4"], "--grpc-addr"),
            (&["--webhook-path", "hooks"], "--webhook-path"),
            (&["--max-body-bytes", "0"], "--max-body-bytes"),
            (&["--heartbeat-interval", "soon"], "--heartbeat-interval"),
            (&["--signing-secret", "whsec_***"], "--signing-secret"),
        ];
        for (extra, flag) in cases {
            let message = args(extra).unwrap_err().to_string();
            assert!(message.contains(flag), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(
            parse_duration("x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("x", "3").unwrap(), Duration::from_secs(3));
        assert_eq!(
            parse_duration("x", "7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            parse_duration("x", "36h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert!(parse_duration("x", "0s").is_err());
        assert!(parse_duration("x", "1y").is_err());
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_bytes("x", "512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("x", "2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("x", "4096").unwrap(), 4096);
        assert!(parse_bytes("x", "lots").is_err());
    }

    #[test]
    fn a_public_grpc_address_needs_authentication() {
        let message = args(&["--grpc-addr", "0.0.0.0:50051"])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--grpc-addr") && message.contains("--grpc-insecure"),
            "{message}"
        );
        assert!(args(&["--grpc-addr", "0.0.0.0:50051", "--grpc-insecure"]).is_ok());
        let token = tempfile::NamedTempFile::new().unwrap();
        let path = token.path().to_str().unwrap();
        let c = args(&["--grpc-addr", "0.0.0.0:50051", "--grpc-token-file", path]).unwrap();
        assert_eq!(c.grpc_access.token_file.as_deref(), Some(token.path()));
        // Server-only TLS is encryption, not authentication.
        let tls = [
            "--grpc-addr",
            "0.0.0.0:1",
            "--grpc-tls-cert",
            path,
            "--grpc-tls-key",
            path,
        ];
        assert!(args(&tls).is_err());
        let missing = args(&["--grpc-token-file", "/nonexistent/token"])
            .unwrap_err()
            .to_string();
        assert!(missing.contains("--grpc-token-file"), "{missing}");
    }

    #[test]
    fn a_secret_file_is_checked_at_start() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        let cli = Cli::try_parse_from([
            "clerk-bridge",
            "serve",
            "--signing-secret-file",
            file.path().to_str().unwrap(),
        ])
        .unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("serve expected")
        };
        assert!(matches!(
            Config::try_from_args(&serve).unwrap().signing_secrets,
            SecretSource::File(_)
        ));
        std::fs::write(file.path(), "not base64 !!!").unwrap();
        let message = Config::try_from_args(&serve).unwrap_err().to_string();
        assert!(
            message.contains("--signing-secret-file") && !message.contains("!!!"),
            "{message}"
        );
    }

    #[test]
    fn retention_caps_are_optional() {
        assert_eq!(args(&[]).unwrap().retention, Policy::default());
        let c = args(&["--retention-max-age", "7d", "--retention-max-bytes", "1GiB"]).unwrap();
        assert_eq!(c.retention.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.retention.max_bytes, Some(1 << 30));
        let message = args(&["--retention-max-bytes", "big"])
            .unwrap_err()
            .to_string();
        assert!(message.contains("--retention-max-bytes"), "{message}");
    }

    #[test]
    fn a_missing_secret_is_refused() {
        let cli = Cli::try_parse_from(["clerk-bridge", "serve"]).unwrap();
        let Command::Serve(mut serve) = cli.command else {
            panic!("serve expected")
        };
        serve.signing_secret = None;
        serve.signing_secret_file = None;
        assert!(matches!(
            Config::try_from_args(&serve),
            Err(ConfigError::MissingSecret)
        ));
    }
}
