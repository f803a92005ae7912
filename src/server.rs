//! Wiring: opens the store, builds the HTTP and gRPC services on listeners the caller bound, runs them
//! until the shutdown token fires, then drains in order (see [`run`]).

use std::{sync::Arc, time::Duration};

use tracing::Instrument;

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::service::{Routes, interceptor::InterceptedService};
use tonic_health::{
    pb::health_server::{Health, HealthServer},
    server::HealthReporter,
};

use crate::{
    access::{self, TlsError, TokenCheck},
    clerk_api,
    clock::now_ms,
    config::{Config, SecretSource},
    grpc_transport::{self, GrpcLimits},
    health,
    ingest_first::IngestActivity,
    ingress::{
        self, BodyLimits, HttpLimits, Ingress, MetricsPage, Port,
        secrets::{SigningSecrets, parse_secret_file},
        verify::Verifier,
    },
    jetstream::{self, JetStreamLog},
    log::{Log, OpenError, retention::Policy},
    proto::{
        FILE_DESCRIPTOR_SET, event_stream_server::EventStreamServer,
        sync_service_server::SyncServiceServer,
    },
    record,
    shutdown::Every,
    store::Store,
    subscription::{Consumers, EventStreamService},
    sync::{self, Syncer, service::SyncServiceImpl},
    telemetry::metrics::{Metrics, StateReading},
    watched_file::WatchedFile,
};

/// Largest gRPC request accepted: subscription requests are tiny.
const MAX_GRPC_REQUEST_BYTES: usize = 64 * 1024;
/// Most connections to the metrics port: scrapers and probes, a handful at a time.
const METRICS_CONNECTIONS: usize = 64;
/// How often the log's data directory is checked while no webhook arrives (each append checks it
/// too): three `stat` calls.
const LOG_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before the consumer bucket is watched again after its watch failed.
const CONSUMER_WATCH_RETRY: Duration = Duration::from_millis(500);

/// The two listeners, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// The public webhook listener (HTTP/1.1).
    pub http: TcpListener,
    /// The pod-local gRPC listener (event stream, health, reflection).
    pub grpc: TcpListener,
    /// The metrics listener (`/metrics` and probes), if `/metrics` is not to be served on the
    /// public webhook port.
    pub metrics: Option<TcpListener>,
}

/// Why the bridge stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The log could not be opened.
    #[error(transparent)]
    OpenLog(#[from] OpenError),
    /// The JetStream stream could not be reached or set up (a configuration problem: exit 64).
    #[error(transparent)]
    OpenJetStream(#[from] jetstream::OpenError),
    /// A watched file (secret, token) could not be read.
    #[error("invalid --{flag}: {reason}")]
    File {
        /// The flag naming the file.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A TLS file could not be read.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The log's current state could not be rebuilt from its events.
    #[error("cannot rebuild the log's current state: {0}")]
    StateRebuild(#[source] crate::log::WriteError),
    /// The client of Clerk's Backend API could not be set up (e.g. no TLS root certificates).
    #[error("cannot set up the client of Clerk's Backend API: {0}")]
    ClerkApi(#[source] clerk_api::ConfigError),
    /// A background task failed.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The pass an earlier run left unfinished could not be read.
    #[error(transparent)]
    SavedPass(#[from] sync::SavedPassError),
}

/// Runs the bridge until `shutdown` is cancelled, then shuts down in order:
/// health NOT_SERVING and `/readyz` 503 → HTTP stops accepting and drains in-flight webhooks (their
/// appends complete) → subscription streams end with UNAVAILABLE → the log commits what is queued
/// and closes. The draining steps share `config.shutdown_grace`.
///
/// # Errors
/// [`RunError`] when the log cannot be opened or a server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let (store, consumers) = open_store(&config, &shutdown).await?;
    let metrics = Arc::new(Metrics::new());
    let tasks = TaskTracker::new();
    let ingress = Ingress::new(
        signing_secrets(&config, &shutdown, &tasks)?,
        store.clone(),
        metrics.clone(),
        metrics_page(&metrics, &store, consumers.as_ref()),
        config.webhook_path.clone(),
        BodyLimits {
            max_body_bytes: config.max_body_bytes,
            read_timeout: config.body_read_timeout,
            max_buffered_bytes: config.max_buffered_bytes,
        },
    );
    let activity = Arc::new(IngestActivity::default());
    let ingress = ingress.with_activity(activity.clone());
    let ingress = Arc::new(match listeners.metrics {
        Some(_) => ingress.with_metrics_port(),
        None => ingress,
    });
    let streams = CancellationToken::new();
    let (health, health_service) = health::health(streams.clone());
    health
        .set_serving::<EventStreamServer<EventStreamService>>()
        .await;

    let http = tasks.spawn(
        ingress::serve(
            (listeners.http, Port::Webhooks),
            ingress.clone(),
            HttpLimits {
                max_connections: config.max_connections,
                header_read_timeout: config.header_read_timeout,
            },
            shutdown.clone(),
            config.shutdown_grace,
        )
        .instrument(tracing::info_span!("http")),
    );
    if let Some(listener) = listeners.metrics {
        tasks.spawn(
            ingress::serve(
                (listener, Port::Metrics),
                ingress.clone(),
                HttpLimits {
                    max_connections: METRICS_CONNECTIONS,
                    header_read_timeout: config.header_read_timeout,
                },
                shutdown.clone(),
                config.shutdown_grace,
            )
            .instrument(tracing::info_span!("metrics")),
        );
    }
    let events = EventStreamService::new(
        store.clone(),
        consumers,
        streams.clone(),
        config.heartbeat_interval,
        metrics.clone(),
        tasks.clone(),
        config.max_streams,
    )
    .with_activity(activity);
    let syncer = syncer(&config, &store, &metrics, &tasks, &shutdown).await?;
    let tls = config
        .grpc_access
        .tls
        .as_ref()
        .map(access::server_tls)
        .transpose()?;
    let services = Services {
        events,
        sync: SyncServiceImpl::new(syncer),
        health: health_service,
    };
    let routes = grpc_routes(services, token_check(&config, &shutdown, &tasks)?);
    let grpc = tasks.spawn(
        grpc_transport::serve(
            listeners.grpc,
            routes,
            tls,
            GrpcLimits {
                max_connections: config.grpc_max_connections,
                handshake_timeout: config.grpc_handshake_timeout,
            },
            metrics.clone(),
            streams.clone(),
        )
        .instrument(tracing::info_span!("grpc")),
    );
    // JetStream enforces the retention caps itself (they are the stream's limits), and a lost
    // connection is not for good: readiness follows it.
    if let Some(log) = store.embedded() {
        tasks.spawn(
            watch_log(log.clone(), health.clone(), shutdown.clone())
                .instrument(tracing::info_span!("log_check")),
        );
    }
    if let (true, Some(log)) = (config.retention.is_active(), store.embedded()) {
        tasks.spawn(
            enforce_retention(
                log.clone(),
                config.retention,
                config.retention_interval,
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("retention")),
        );
    }
    tracing::info!("clerk-bridge ready");

    shutdown.cancelled().await;
    tracing::info!("Shutting down");
    mark_not_serving(&health, &ingress).await;
    streams.cancel();
    let drained = drain(http, grpc, &tasks, config.shutdown_grace).await;
    if tokio::time::timeout(config.shutdown_grace, store.close())
        .await
        .is_err()
    {
        tracing::error!("Log did not close within the grace period");
    }
    drained?;
    tracing::info!("Stopped");
    Ok(())
}

/// Waits, within `grace`, for both servers to drain and then for every other task (streams saying
/// goodbye, watchers, retention) to end; each was told to stop by the shutdown tokens. A server's
/// error is returned; running out of time is only logged, since the log still closes after it.
async fn drain(
    http: JoinHandle<()>,
    grpc: JoinHandle<()>,
    tasks: &TaskTracker,
    grace: Duration,
) -> Result<(), RunError> {
    tasks.close();
    let deadline = tokio::time::Instant::now() + grace;
    let (http, grpc) =
        match tokio::time::timeout_at(deadline, async { (http.await, grpc.await) }).await {
            Ok(joined) => joined,
            Err(_) => {
                tracing::warn!("Servers did not drain within the grace period");
                return Ok(());
            }
        };
    if tokio::time::timeout_at(deadline, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = tasks.len(),
            "Background tasks still running after the grace period"
        );
    }
    http?;
    grpc?;
    Ok(())
}

/// The `/metrics` page: counters from `metrics`, gauges read from the log and the consumers at
/// each scrape.
fn metrics_page(
    metrics: &Arc<Metrics>,
    store: &Store,
    consumers: Option<&Arc<Consumers>>,
) -> MetricsPage {
    let (metrics, store, consumers) = (metrics.clone(), store.clone(), consumers.cloned());
    MetricsPage(Box::new(move || {
        metrics.render(state_reading(&store, consumers.as_deref()))
    }))
}

/// What the state gauges show now.
fn state_reading(store: &Store, consumers: Option<&Consumers>) -> StateReading {
    let positions = store.positions();
    let consumer_lags = consumers
        .map(Consumers::list)
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let lag = positions.head.saturating_sub(c.stored.committed);
            (c.stored.name, lag)
        })
        .collect();
    StateReading {
        head: positions.head,
        first_retained: positions.first_retained,
        state_applied: store.state_applied(),
        consumer_lags,
        log_failed: !store.is_usable(),
        events_missing_at_open: store
            .embedded()
            .map_or(0, |log| log.events_missing_at_open()),
    }
}

/// The syncer of backfill and reconciliation passes: resumes a pass a previous run left unfinished
/// and starts the reconciliation schedule, if configured.
async fn syncer(
    config: &Config,
    store: &Store,
    metrics: &Arc<Metrics>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Syncer, RunError> {
    let client = match &config.clerk_api {
        Some(api) => Some(clerk_api::Client::try_new(api.clone()).map_err(RunError::ClerkApi)?),
        None => None,
    };
    let syncer = Syncer::new(
        client,
        sync::Target::of(store),
        metrics.clone(),
        tasks.clone(),
        shutdown.clone(),
    );
    syncer.resume_saved().await?;
    if let Some(interval) = config.reconcile_every {
        tasks.spawn(
            syncer
                .clone()
                .reconcile_every(interval)
                .instrument(tracing::info_span!("reconcile_schedule")),
        );
    }
    Ok(syncer)
}

/// The signing secrets; a secret file is also watched for changes until shutdown.
fn signing_secrets(
    config: &Config,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<SigningSecrets, RunError> {
    match &config.signing_secrets {
        SecretSource::Inline(secrets) => Ok(SigningSecrets::Fixed(Verifier::new(secrets))),
        SecretSource::File(path) => {
            let file =
                watch_file(path, parse_secret_file, config, shutdown, tasks).map_err(|reason| {
                    RunError::File {
                        flag: "signing-secret-file",
                        reason,
                    }
                })?;
            Ok(SigningSecrets::File(file))
        }
    }
}

/// Loads `path` and spawns its watcher, which stops at shutdown.
fn watch_file<T: Send + Sync + 'static>(
    path: &std::path::Path,
    parse: crate::watched_file::Parse<T>,
    config: &Config,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Arc<WatchedFile<T>>, String> {
    let file = Arc::new(WatchedFile::load(path, parse)?);
    let watcher = file
        .clone()
        .watch(config.file_watch_interval, shutdown.clone());
    tasks.spawn(watcher.instrument(tracing::info_span!("watch", file = %path.display())));
    Ok(file)
}

/// The token check the gRPC services share (none without a token file, whose watcher stops at
/// shutdown).
fn token_check(
    config: &Config,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<TokenCheck, RunError> {
    let token = match &config.grpc_access.token_file {
        Some(path) => Some(
            watch_file(path, access::parse_token, config, shutdown, tasks).map_err(|reason| {
                RunError::File {
                    flag: "grpc-token-file",
                    reason,
                }
            })?,
        ),
        None => None,
    };
    Ok(TokenCheck::new(token))
}

/// Opens the store the config names: the JetStream stream, or the embedded log with its named
/// consumers.
async fn open_store(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<(Store, Option<Arc<Consumers>>), RunError> {
    let Some(nats) = &config.nats else {
        let (log, consumers) = open_log(config).await?;
        return Ok((Store::Embedded(log), Some(consumers)));
    };
    let stream = JetStreamLog::open(nats).await?;
    let consumers = shared_consumers(&stream, shutdown).await?;
    let positions = stream.positions();
    tracing::info!(
        stream = %nats.stream,
        replicas = nats.replicas,
        head = positions.head,
        first_retained = positions.first_retained,
        "JetStream stream opened"
    );
    Ok((Store::JetStream(Arc::new(stream)), Some(consumers)))
}

/// The named consumers of a JetStream store, mirrored from its shared bucket until `shutdown`.
async fn shared_consumers(
    stream: &JetStreamLog,
    shutdown: &CancellationToken,
) -> Result<Arc<Consumers>, RunError> {
    let bucket = stream.consumers().clone();
    let stored = jetstream::retry_while_settling(|| async {
        bucket
            .load()
            .await
            .map_err(|e| jetstream::OpenError::Stream(e.to_string()))
    })
    .await?;
    let holder = format!(
        "{}-{:016x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "clerk-bridge".to_owned()),
        fastrand::u64(..)
    );
    let consumers = Arc::new(Consumers::shared(bucket.clone(), holder, stored));
    let mirror = consumers.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let applied = mirror.clone();
            if let Err(error) = bucket.watch(move |c| applied.apply(c), stop.clone()).await {
                tracing::warn!(%error, "Consumer watch stopped; watching again");
                tokio::time::sleep(CONSUMER_WATCH_RETRY).await;
            }
        }
    });
    Ok(consumers)
}

/// Opens the log (migrating a log from before the state existed) and loads the named consumers,
/// off the async workers.
async fn open_log(config: &Config) -> Result<(Arc<Log>, Arc<Consumers>), RunError> {
    let data_dir = config.data_dir.clone();
    let options = config.log_options;
    let (log, stored, state_complete) = tokio::task::spawn_blocking(move || {
        let log = Log::open(&data_dir, options)?;
        let reader = log.reader()?;
        Ok::<_, OpenError>((Arc::new(log), reader.consumers()?, reader.state_complete()?))
    })
    .await??;
    if !state_complete {
        let objects = log
            .rebuild_state(record::object_of_stored)
            .await
            .map_err(RunError::StateRebuild)?;
        tracing::info!(objects, "Current state rebuilt from the stored events");
    }
    let positions = log.positions();
    tracing::info!(
        head = positions.head,
        first_retained = positions.first_retained,
        consumers = stored.len(),
        data_dir = %config.data_dir.display(),
        "Log opened"
    );
    let consumers = Arc::new(Consumers::new(log.clone(), stored));
    Ok((log, consumers))
}

/// Deletes events past the retention caps every `interval` until shutdown.
async fn enforce_retention(
    log: Arc<Log>,
    policy: Policy,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut every = Every::new(interval, shutdown);
    while every.tick().await {
        match log.retain(policy, now_ms()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                deleted,
                first_retained = log.positions().first_retained,
                "Retention deleted events"
            ),
            Err(error) => tracing::warn!(%error, "Retention step failed; will retry"),
        }
    }
}

/// Checks the log every [`LOG_CHECK_INTERVAL`] until shutdown; once its data directory was
/// removed or replaced (the log has logged it), gRPC health says NOT_SERVING. `/readyz` asks the
/// log itself.
async fn watch_log(log: Arc<Log>, health: HealthReporter, shutdown: CancellationToken) {
    let mut every = Every::new(LOG_CHECK_INTERVAL, shutdown);
    while every.tick().await {
        if !log.is_usable() {
            set_health_not_serving(&health).await;
            return;
        }
    }
}

/// Starts the shutdown: `/readyz` 503, gRPC health NOT_SERVING.
async fn mark_not_serving(health: &HealthReporter, ingress: &Ingress) {
    ingress.set_not_ready();
    set_health_not_serving(health).await;
}

/// gRPC health NOT_SERVING, for the event stream and the server as a whole.
async fn set_health_not_serving(health: &HealthReporter) {
    health
        .set_not_serving::<EventStreamServer<EventStreamService>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
}

/// The gRPC services besides reflection.
struct Services<H> {
    /// The event stream and consumer administration.
    events: EventStreamService,
    /// Backfill and reconciliation.
    sync: SyncServiceImpl,
    /// Health checks (probes).
    health: HealthServer<H>,
}

/// EventStream, SyncService and reflection (v1 and v1alpha) behind the token check, and health
/// without it (probes).
fn grpc_routes<H: Health>(services: Services<H>, token: TokenCheck) -> Routes {
    let events =
        EventStreamServer::new(services.events).max_decoding_message_size(MAX_GRPC_REQUEST_BYTES);
    let sync =
        SyncServiceServer::new(services.sync).max_decoding_message_size(MAX_GRPC_REQUEST_BYTES);
    // The descriptor sets are generated by build.rs from our own protos and by tonic-health;
    // failing to load them is a build defect that every test would catch.
    let reflection_v1 = reflection()
        .build_v1()
        .expect("embedded descriptor sets are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("embedded descriptor sets are valid");
    Routes::new(services.health)
        .add_service(InterceptedService::new(reflection_v1, token.clone()))
        .add_service(InterceptedService::new(reflection_v1alpha, token.clone()))
        .add_service(InterceptedService::new(events, token.clone()))
        .add_service(InterceptedService::new(sync, token))
        .prepare()
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
