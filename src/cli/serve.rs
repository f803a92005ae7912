//! `clerk-bridge serve`: the sidecar's flags, and their validation into a [`Config`].
//!
//! Each value is typed by its parser in [`super::values`] (clap reports a bad one as a usage error);
//! what needs several flags at once, or a file to read, is checked here by [`ServeArgs::to_config`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use super::values;
use crate::{
    access, clerk_api,
    cli::nats::NatsArgs,
    config::{self, Config, ConfigError, GrpcAccess, GrpcTls, SecretSource},
    grpc_transport,
    ingress::verify::SigningSecret,
    jetstream::NatsConfig,
    log::{LogOptions, retention::Policy},
    subscription,
    telemetry::LogFormat,
};

/// Flags of `clerk-bridge serve`, as typed.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Webhook signing secret(s) from the Clerk dashboard (`whsec_...`); several separated by
    /// spaces or commas (secret rotation, dev and prod instances). Prefer the environment variable
    /// or --signing-secret-file: a value on the command line shows in `ps`.
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
    #[arg(long, env = "CLERK_BRIDGE_HTTP_ADDR", default_value = "0.0.0.0:8080", value_parser = values::socket_addr)]
    pub http_addr: SocketAddr,
    /// Address for the gRPC event stream. It carries personal data: keep it pod-local.
    #[arg(long, env = "CLERK_BRIDGE_GRPC_ADDR", default_value = "127.0.0.1:50051", value_parser = values::socket_addr)]
    pub grpc_addr: SocketAddr,
    /// Address for `/metrics` (and the probes) apart from the public webhook port, e.g.
    /// `0.0.0.0:9090`. Unset: `/metrics` is served on --http-addr, where anyone who reaches the
    /// webhook port can read consumer names and counts.
    #[arg(long, env = "CLERK_BRIDGE_METRICS_ADDR", value_parser = values::socket_addr)]
    pub metrics_addr: Option<SocketAddr>,
    /// Directory of the event log (created if missing).
    #[arg(long, env = "CLERK_BRIDGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Path of the webhook route.
    #[arg(long, env = "CLERK_BRIDGE_WEBHOOK_PATH", default_value = "/webhooks/clerk", value_parser = values::url_path)]
    pub webhook_path: String,
    /// Largest webhook body accepted, in bytes (larger: 413); units such as `512KiB` work too. At
    /// most 2MB, so that every event fits in the 4 MiB message gRPC clients accept by default.
    #[arg(long, env = "CLERK_BRIDGE_MAX_BODY_BYTES", default_value = "1048576", value_parser = values::body_cap)]
    pub max_body_bytes: u64,
    /// Most HTTP connections open at once. At the cap, the connection that has waited longest on
    /// its client is closed to make room for a new one.
    #[arg(long, env = "CLERK_BRIDGE_MAX_CONNECTIONS", default_value = "1024", value_parser = values::connection_cap)]
    pub max_connections: usize,
    /// Time a client has to send a webhook's whole body once its headers arrived (408 past it).
    #[arg(long, env = "CLERK_BRIDGE_BODY_READ_TIMEOUT", default_value = "10s", value_parser = values::duration)]
    pub body_read_timeout: Duration,
    /// Most webhook body bytes held in memory by all requests together (503, retry later, past
    /// it): bounds what many large bodies at once can cost.
    #[arg(long, env = "CLERK_BRIDGE_MAX_BUFFERED_BYTES", default_value = "64MiB", value_parser = values::byte_size)]
    pub max_buffered_bytes: u64,
    /// Most gRPC connections open at once, handshakes included; one more is closed at once.
    #[arg(long, env = "CLERK_BRIDGE_GRPC_MAX_CONNECTIONS", default_value_t = grpc_transport::DEFAULT_MAX_CONNECTIONS, value_parser = values::connection_cap)]
    pub grpc_max_connections: usize,
    /// Time a gRPC client has to finish the TLS handshake and send the HTTP/2 preface before its
    /// connection is closed (e.g. `10s`, `500ms`).
    #[arg(long, env = "CLERK_BRIDGE_GRPC_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = values::duration)]
    pub grpc_handshake_timeout: Duration,
    /// Most subscription streams open at once; Subscribe past it is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "CLERK_BRIDGE_MAX_STREAMS", default_value_t = subscription::DEFAULT_MAX_STREAMS, value_parser = values::connection_cap)]
    pub max_streams: usize,
    /// Idle time after which a subscription stream sends a heartbeat (e.g. `15s`, `500ms`).
    #[arg(long, env = "CLERK_BRIDGE_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = values::duration)]
    pub heartbeat_interval: Duration,
    /// Time allowed for draining on SIGTERM/SIGINT; keep it under Kubernetes' grace period.
    #[arg(long, env = "CLERK_BRIDGE_SHUTDOWN_GRACE", default_value = "8s", value_parser = values::duration)]
    pub shutdown_grace: Duration,
    /// Delete events older than this (e.g. `7d`, `36h`). Unset: keep events of any age.
    #[arg(long, env = "CLERK_BRIDGE_RETENTION_MAX_AGE", value_parser = values::duration)]
    pub retention_max_age: Option<Duration>,
    /// Delete the oldest events while the log uses more than this many bytes (e.g. `512MiB`, `2GiB`).
    /// Unset: no size cap.
    #[arg(long, env = "CLERK_BRIDGE_RETENTION_MAX_BYTES", value_parser = values::byte_size)]
    pub retention_max_bytes: Option<u64>,
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
    /// Clerk's secret key (`sk_live_...` or `sk_test_...`), for backfill and reconciliation from
    /// the Backend API (read access to users and organizations). Prefer the environment variable
    /// or --clerk-secret-key-file: a value on the command line shows in `ps`.
    #[arg(long, env = "CLERK_SECRET_KEY", hide_env_values = true)]
    pub clerk_secret_key: Option<String>,
    /// File holding Clerk's secret key, e.g. a mounted Kubernetes Secret. Instead of
    /// CLERK_SECRET_KEY.
    #[arg(
        long,
        env = "CLERK_SECRET_KEY_FILE",
        conflicts_with = "clerk_secret_key"
    )]
    pub clerk_secret_key_file: Option<PathBuf>,
    /// Base URL of Clerk's Backend API.
    #[arg(long, env = "CLERK_API_URL", default_value = clerk_api::DEFAULT_BASE_URL)]
    pub clerk_api_url: String,
    /// Share of the instance's Backend API rate limit that passes may use (the application shares
    /// the limit: 1000 requests per 10 s in production, 100 in development).
    #[arg(long, env = "CLERK_BRIDGE_CLERK_API_SHARE", default_value = "0.25", value_parser = values::fraction)]
    pub clerk_api_share: f64,
    /// Run a reconciliation pass this often (e.g. `6h`, `1d`); needs the secret key. Unset: only
    /// on demand (`clerk-bridge reconcile`).
    #[arg(long, env = "CLERK_BRIDGE_RECONCILE_EVERY", value_parser = values::duration)]
    pub reconcile_every: Option<Duration>,
    /// Where the log lives when not in the data directory.
    #[command(flatten)]
    pub nats: NatsArgs,
}

// === impl ServeArgs ===

impl ServeArgs {
    /// Checks what single values cannot show (secrets, files, gRPC exposure) and builds the config.
    ///
    /// # Errors
    /// [`ConfigError`] for the first problem, naming its flag.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        Ok(Config {
            http_addr: self.http_addr,
            grpc_addr: self.grpc_addr,
            metrics_addr: self.metrics_addr,
            grpc_access: self.grpc_access()?,
            data_dir: self.data_dir.clone(),
            webhook_path: self.webhook_path.clone(),
            signing_secrets: self.secret_source()?,
            max_body_bytes: usize::try_from(self.max_body_bytes).map_err(|e| {
                ConfigError::bad("max-body-bytes", &self.max_body_bytes.to_string(), e)
            })?,
            max_connections: self.max_connections,
            body_read_timeout: self.body_read_timeout,
            max_buffered_bytes: self.buffered_bytes()?,
            grpc_max_connections: self.grpc_max_connections,
            grpc_handshake_timeout: self.grpc_handshake_timeout,
            max_streams: self.max_streams,
            heartbeat_interval: self.heartbeat_interval,
            shutdown_grace: self.shutdown_grace,
            retention: Policy {
                max_age: self.retention_max_age,
                max_bytes: self.retention_max_bytes,
            },
            retention_interval: config::RETENTION_INTERVAL,
            file_watch_interval: config::FILE_WATCH_INTERVAL,
            header_read_timeout: config::HEADER_READ_TIMEOUT,
            log_options: LogOptions::default(),
            clerk_api: self.clerk_api()?,
            reconcile_every: self.reconcile_every,
            nats: self.nats()?,
        })
    }

    /// The JetStream store's config, when `--nats-url` is given.
    fn nats(&self) -> Result<Option<NatsConfig>, ConfigError> {
        let retention = Policy {
            max_age: self.retention_max_age,
            max_bytes: self.retention_max_bytes,
        };
        self.nats.to_config(retention)
    }

    /// The Backend API client's config, when a secret key is given. Neither the key nor the file's
    /// content ever appears in an error.
    fn clerk_api(&self) -> Result<Option<clerk_api::Config>, ConfigError> {
        let key = match (&self.clerk_secret_key, &self.clerk_secret_key_file) {
            (Some(key), _) => key.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::bad("clerk-secret-key-file", &path.display().to_string(), e)
                })?
                .trim()
                .to_owned(),
            (None, None) if self.reconcile_every.is_some() => {
                return Err(ConfigError::bad(
                    "reconcile-every",
                    "",
                    "needs Clerk's secret key (CLERK_SECRET_KEY or --clerk-secret-key-file)",
                ));
            }
            (None, None) => return Ok(None),
        };
        let key = clerk_api::SecretKey::try_new(key).map_err(ConfigError::BadSecretKey)?;
        let config = clerk_api::Config {
            base_url: self.clerk_api_url.clone(),
            rate_share: self.clerk_api_share,
            ..clerk_api::Config::new(key)
        };
        config
            .validate()
            .map_err(|e| ConfigError::bad("clerk-api-url", &self.clerk_api_url, e))?;
        Ok(Some(config))
    }

    /// The signing secrets: inline, or a file that must be readable and valid now. A bad secret's
    /// text never appears in the error.
    /// The byte budget: at least one largest body, or such a body could never be accepted.
    fn buffered_bytes(&self) -> Result<usize, ConfigError> {
        let bad = |reason: String| {
            ConfigError::bad(
                "max-buffered-bytes",
                &self.max_buffered_bytes.to_string(),
                reason,
            )
        };
        if self.max_buffered_bytes < self.max_body_bytes {
            return Err(bad(format!(
                "must be at least --max-body-bytes ({})",
                self.max_body_bytes
            )));
        }
        usize::try_from(self.max_buffered_bytes).map_err(|e| bad(e.to_string()))
    }

    fn secret_source(&self) -> Result<SecretSource, ConfigError> {
        match (&self.signing_secret, &self.signing_secret_file) {
            (Some(inline), _) => Ok(SecretSource::Inline(SigningSecret::parse_list(inline)?)),
            (None, Some(path)) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::bad("signing-secret-file", &shown, e))?;
                SigningSecret::parse_list(&text)
                    .map_err(|e| ConfigError::bad("signing-secret-file", &shown, e))?;
                Ok(SecretSource::File(path.clone()))
            }
            (None, None) => Err(ConfigError::MissingSecret),
        }
    }

    /// gRPC access control. A non-loopback address needs client certificates or a token, unless
    /// --grpc-insecure says otherwise: the stream carries personal data.
    fn grpc_access(&self) -> Result<GrpcAccess, ConfigError> {
        values::files_exist(&[
            ("grpc-token-file", &self.grpc_token_file),
            ("grpc-tls-cert", &self.grpc_tls_cert),
            ("grpc-tls-key", &self.grpc_tls_key),
            ("grpc-client-ca", &self.grpc_client_ca),
        ])?;
        let tls = match (&self.grpc_tls_cert, &self.grpc_tls_key) {
            (Some(cert), Some(key)) => Some(GrpcTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.grpc_client_ca.clone(),
            }),
            _ => None,
        };
        // Not PEM, a key of another certificate, an empty CA: refused now, naming the flag.
        if let Some(tls) = &tls {
            access::server_tls(tls)?;
        }
        let access = GrpcAccess {
            tls,
            token_file: self.grpc_token_file.clone(),
        };
        let authenticated = access.token_file.is_some() || self.grpc_client_ca.is_some();
        if !self.grpc_addr.ip().is_loopback() && !authenticated && !self.grpc_insecure {
            return Err(ConfigError::bad(
                "grpc-addr",
                &self.grpc_addr.to_string(),
                "not a loopback address: require clients to authenticate with --grpc-token-file or \
                 --grpc-tls-cert/--grpc-tls-key/--grpc-client-ca, or pass --grpc-insecure",
            ));
        }
        Ok(access)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// `serve` with `extra` flags (and a valid secret unless `extra` gives one), parsed and checked;
    /// the error is the first line, as `main` prints it.
    fn serve(extra: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["clerk-bridge", "serve"];
        if !extra.contains(&"--signing-secret") {
            argv.extend_from_slice(&["--signing-secret", SECRET]);
        }
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| first_line(&e.to_string()))?;
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        args.to_config().map_err(|e| e.to_string())
    }

    fn first_line(text: &str) -> String {
        text.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = serve(&[]).unwrap();
        assert_eq!(c.http_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.grpc_addr, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.webhook_path, "/webhooks/clerk");
        assert_eq!(c.max_body_bytes, 1 << 20);
        let largest = serve(&["--max-body-bytes", "2MB"]).unwrap();
        assert_eq!(largest.max_body_bytes, 2_000_000);
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.body_read_timeout, Duration::from_secs(10));
        assert_eq!(c.max_buffered_bytes, 64 << 20);
        assert_eq!(c.grpc_max_connections, 512);
        assert_eq!(c.grpc_handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.max_streams, 256);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(c.shutdown_grace, Duration::from_secs(8));
    }

    #[test]
    fn help_warns_that_secrets_given_as_flags_show_in_the_process_list() {
        let help = Cli::try_parse_from(["clerk-bridge", "serve", "--help"])
            .unwrap_err()
            .to_string();
        for flag in ["--signing-secret <", "--clerk-secret-key <"] {
            let text = &help[help
                .find(flag)
                .unwrap_or_else(|| panic!("{flag} in {help}"))..];
            let entry = &text[..text[2..].find("\n  -").map_or(text.len(), |end| end + 2)];
            assert!(entry.contains("shows in `ps`"), "{entry}");
        }
    }

    #[test]
    fn bad_values_name_their_flag_on_one_line() {
        let cases: [(&[&str], &str); 23] = [
            (&["--nats-url", "http://127.0.0.1:4222"], "--nats-url"),
            (&["--nats-url", "nats://127.0.0.1:port"], "--nats-url"),
            (&["--nats-stream", "clerk.events"], "--nats-stream"),
            (&["--nats-replicas", "2"], "--nats-replicas"),
            (
                &[
                    "--nats-url",
                    "nats://127.0.0.1:4222",
                    "--nats-creds",
                    "/no/such.creds",
                ],
                "--nats-creds",
            ),
            (
                &[
                    "--nats-url",
                    "nats://127.0.0.1:4222",
                    "--nats-tls-ca",
                    "/no/such/ca.pem",
                ],
                "--nats-tls-ca",
            ),
            (&["--grpc-max-connections", "0"], "--grpc-max-connections"),
            (
                &["--grpc-handshake-timeout", "0s"],
                "--grpc-handshake-timeout",
            ),
            (
                &["--grpc-handshake-timeout", "soon"],
                "--grpc-handshake-timeout",
            ),
            (&["--max-streams", "0"], "--max-streams"),
            (&["--http-addr", "nope"], "--http-addr"),
            (&["--grpc-addr", "1.2.3.4"], "--grpc-addr"),
            (&["--webhook-path", "hooks"], "--webhook-path"),
            (&["--max-body-bytes", "0"], "--max-body-bytes"),
            (&["--max-body-bytes", "2000001"], "--max-body-bytes"),
            (
                &["--max-connections", "18446744073709551615"],
                "--max-connections",
            ),
            (&["--heartbeat-interval", "soon"], "--heartbeat-interval"),
            (&["--body-read-timeout", "0"], "--body-read-timeout"),
            (&["--max-buffered-bytes", "512KiB"], "--max-buffered-bytes"),
            (&["--shutdown-grace", "0s"], "--shutdown-grace"),
            (&["--retention-max-age", "forever"], "--retention-max-age"),
            (&["--retention-max-bytes", "big"], "--retention-max-bytes"),
            (&["--signing-secret", "whsec_***"], "--signing-secret"),
        ];
        for (extra, flag) in cases {
            let message = serve(extra).unwrap_err();
            assert!(message.contains(flag), "{flag}: {message}");
        }
    }

    #[test]
    fn nats_urls_select_the_jetstream_store() {
        assert_eq!(serve(&[]).unwrap().nats, None);
        let config = serve(&[
            "--nats-url",
            "nats://n1:4222,tls://n2:4222, n3:4222",
            "--nats-replicas",
            "3",
        ])
        .unwrap();
        let nats = config.nats.unwrap();
        assert_eq!(nats.urls.len(), 3);
        assert_eq!((nats.stream.as_str(), nats.replicas), ("CLERK_EVENTS", 3));
        // Reconciliation runs on JetStream too.
        let scheduled = serve(&[
            "--nats-url",
            "nats://a:4222",
            "--clerk-secret-key",
            "sk_test_abc",
            "--reconcile-every",
            "1h",
        ])
        .unwrap();
        assert_eq!(scheduled.reconcile_every, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn a_public_grpc_address_needs_authentication() {
        let message = serve(&["--grpc-addr", "0.0.0.0:50051"]).unwrap_err();
        assert!(
            message.contains("--grpc-addr") && message.contains("--grpc-insecure"),
            "{message}"
        );
        assert!(serve(&["--grpc-addr", "0.0.0.0:50051", "--grpc-insecure"]).is_ok());
        let token = tempfile::NamedTempFile::new().unwrap();
        let path = token.path().to_str().unwrap();
        let c = serve(&["--grpc-addr", "0.0.0.0:50051", "--grpc-token-file", path]).unwrap();
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
        assert!(serve(&tls).is_err());
        let missing = serve(&["--grpc-token-file", "/nonexistent/token"]).unwrap_err();
        assert!(missing.contains("--grpc-token-file"), "{missing}");
    }

    #[test]
    fn a_secret_file_is_checked_at_start() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("{SECRET}\n")).unwrap();
        let cli = Cli::try_parse_from([
            "clerk-bridge",
            "serve",
            "--signing-secret-file",
            file.path().to_str().unwrap(),
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        assert!(matches!(
            args.to_config().unwrap().signing_secrets,
            SecretSource::File(_)
        ));
        std::fs::write(file.path(), "not base64 !!!").unwrap();
        let message = args.to_config().unwrap_err().to_string();
        assert!(
            message.contains("--signing-secret-file") && !message.contains("!!!"),
            "{message}"
        );
    }

    #[test]
    fn retention_caps_are_optional() {
        assert_eq!(serve(&[]).unwrap().retention, Policy::default());
        let c = serve(&["--retention-max-age", "7d", "--retention-max-bytes", "1GiB"]).unwrap();
        assert_eq!(c.retention.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.retention.max_bytes, Some(1 << 30));
    }

    #[test]
    fn a_clerk_secret_key_enables_passes_and_is_never_shown() {
        assert!(serve(&[]).unwrap().clerk_api.is_none());
        let c = serve(&[
            "--clerk-secret-key",
            "sk_test_abc123",
            "--reconcile-every",
            "6h",
        ])
        .unwrap();
        let api = c.clerk_api.unwrap();
        assert_eq!(api.base_url, clerk_api::DEFAULT_BASE_URL);
        assert_eq!(c.reconcile_every, Some(Duration::from_secs(6 * 3600)));
        let bad = serve(&["--clerk-secret-key", "pk_test_not_secret"]).unwrap_err();
        assert!(
            bad.contains("CLERK_SECRET_KEY") && !bad.contains("pk_test"),
            "{bad}"
        );
        let http = serve(&[
            "--clerk-secret-key",
            "sk_test_abc123",
            "--clerk-api-url",
            "http://clerk.example.com/v1",
        ])
        .unwrap_err();
        assert!(http.contains("--clerk-api-url"), "{http}");
        let schedule = serve(&["--reconcile-every", "1h"]).unwrap_err();
        assert!(schedule.contains("--reconcile-every"), "{schedule}");
        let share = serve(&["--clerk-api-share", "2"]).unwrap_err();
        assert!(share.contains("--clerk-api-share"), "{share}");
    }

    #[test]
    fn a_missing_secret_is_refused() {
        let cli = Cli::try_parse_from(["clerk-bridge", "serve"]).unwrap();
        let Command::Serve(mut args) = cli.command else {
            panic!("serve expected")
        };
        args.signing_secret = None;
        args.signing_secret_file = None;
        assert!(matches!(args.to_config(), Err(ConfigError::MissingSecret)));
    }
}
