//! Prometheus metrics, served on `GET /metrics` of the webhook port.
//!
//! Labels are low-cardinality by construction: closed enums, plus the consumer name for lag (one
//! series per named consumer, a handful per deployment). Gauges that mirror state (log head,
//! consumer lag) are read when scraped, so nothing is updated per event in hot loops except atomic
//! counters.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, prometheus_text},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// `Content-Type` of the metrics page (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// What happened to one webhook.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum WebhookResult {
    /// Stored.
    Accepted,
    /// Already stored under the same svix-id.
    Duplicate,
    /// Not stored.
    Rejected,
}

/// Why a webhook was rejected (`none` when it was not).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RejectReason {
    /// Not rejected.
    None,
    /// Signature headers missing.
    MissingHeaders,
    /// No configured secret produced the signature.
    InvalidSignature,
    /// Timestamp malformed or outside the tolerance.
    Timestamp,
    /// Unusable message id.
    InvalidId,
    /// Body over the cap.
    TooLarge,
    /// Body could not be read.
    BadBody,
    /// The body did not arrive within `--body-read-timeout`.
    BodyTimeout,
    /// Bodies in memory already use `--max-buffered-bytes`.
    Overloaded,
    /// Verified, but not a Clerk event.
    InvalidPayload,
    /// The log could not store it (busy, full, failing).
    Unstored,
    /// Shutting down.
    NotReady,
}

impl WebhookResult {
    /// The Prometheus label value (snake_case, stable across releases).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Accepted => "accepted",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::Rejected => "rejected",
        }
    }
}

impl RejectReason {
    /// The Prometheus label value (snake_case, stable across releases).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::None => "none",
            RejectReason::MissingHeaders => "missing_headers",
            RejectReason::InvalidSignature => "invalid_signature",
            RejectReason::Timestamp => "timestamp",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::TooLarge => "too_large",
            RejectReason::BadBody => "bad_body",
            RejectReason::BodyTimeout => "body_timeout",
            RejectReason::Overloaded => "overloaded",
            RejectReason::InvalidPayload => "invalid_payload",
            RejectReason::Unstored => "unstored",
            RejectReason::NotReady => "not_ready",
        }
    }
}

impl EncodeLabelValue for WebhookResult {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

impl EncodeLabelValue for RejectReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

/// Labels of the webhook counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    result: WebhookResult,
    reason: RejectReason,
}

/// Labels of the consumer lag gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

/// The state the gauges mirror, read when the page is scraped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateReading {
    /// Highest stored sequence.
    pub head: u64,
    /// Lowest retained sequence.
    pub first_retained: u64,
    /// Highest sequence the current state holds the effect of.
    pub state_applied: u64,
    /// Each named consumer with the number of events stored after its committed sequence.
    pub consumer_lags: Vec<(String, u64)>,
    /// Whether the log can store nothing any more (its data directory was removed or replaced).
    pub log_failed: bool,
    /// Acknowledged events the log no longer held when it was opened.
    pub events_missing_at_open: u64,
}

/// Every metric of the bridge.
#[derive(Debug)]
pub struct Metrics {
    /// Holds the metrics below, for encoding.
    registry: Registry,
    /// Webhooks by result and reason.
    webhooks: Family<WebhookLabels, Counter>,
    /// Time from handing an event to the log until it is durable.
    append_seconds: Histogram,
    /// Highest stored sequence.
    head: Gauge<u64, AtomicU64>,
    /// Lowest retained sequence.
    first_retained: Gauge<u64, AtomicU64>,
    /// Highest sequence the current state holds the effect of.
    state_applied: Gauge<u64, AtomicU64>,
    /// 1 once the log can store nothing any more, else 0.
    log_failed: Gauge<u64, AtomicU64>,
    /// Acknowledged events the log no longer held when it was opened.
    events_missing_at_open: Gauge<u64, AtomicU64>,
    /// Open subscription streams.
    subscriptions: Gauge,
    /// Events sent to subscribers.
    delivered: Counter,
    /// Subscriptions refused because `--max-streams` were open.
    subscriptions_refused: Counter,
    /// Times a stream waited for the next delivery window during a webhook burst.
    delivery_yields: Counter,
    /// Open gRPC connections (handshakes included).
    grpc_connections: Gauge,
    /// gRPC connections closed before serving, by reason.
    grpc_rejected: Family<ConnectionLabels, Counter>,
    /// Events after each named consumer's committed sequence.
    consumer_lag: Family<ConsumerLabels, Gauge<u64, AtomicU64>>,
    /// Objects backfill and reconciliation passes handled, by pass and outcome.
    sync_objects: Family<SyncObjectLabels, Counter>,
    /// Backfill and reconciliation passes that ended, by pass and result.
    sync_passes: Family<SyncPassLabels, Counter>,
}

/// Why a gRPC connection was closed before it served anything.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ConnectionRejected {
    /// `--grpc-max-connections` were already open.
    OverCap,
    /// The TLS handshake or the HTTP/2 preface did not arrive within `--grpc-handshake-timeout`.
    HandshakeTimeout,
    /// The TLS handshake failed, or the client did not speak HTTP/2.
    BadHandshake,
}

impl ConnectionRejected {
    /// The Prometheus label value (snake_case, stable across releases).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionRejected::OverCap => "over_cap",
            ConnectionRejected::HandshakeTimeout => "handshake_timeout",
            ConnectionRejected::BadHandshake => "bad_handshake",
        }
    }
}

impl EncodeLabelValue for ConnectionRejected {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

/// Labels of the rejected gRPC connection counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    reason: ConnectionRejected,
}

/// Labels of the sync object counter: closed sets of values.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncObjectLabels {
    /// `backfill` or `reconciliation`.
    pass: &'static str,
    /// `read`, `appended`, `unchanged`, `deleted` or `confirmed_present`.
    outcome: &'static str,
}

/// Labels of the sync pass counter: closed sets of values.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncPassLabels {
    /// `backfill` or `reconciliation`.
    pass: &'static str,
    /// `completed`, `incomplete` (nothing deleted), `unsafe` (stopped at the safety bound) or
    /// `failed`.
    result: &'static str,
}

// === impl Metrics ===

impl Metrics {
    /// Registers every metric under the `clerk_bridge` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("clerk_bridge");
        let webhooks = Family::default();
        let append_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 14));
        let head = Gauge::default();
        let first_retained = Gauge::default();
        let state_applied = Gauge::default();
        let log_failed = Gauge::default();
        let events_missing_at_open = Gauge::default();
        let subscriptions = Gauge::default();
        let delivered = Counter::default();
        let subscriptions_refused = Counter::default();
        let delivery_yields = Counter::default();
        let grpc_connections = Gauge::default();
        let grpc_rejected = Family::default();
        let consumer_lag = Family::default();
        let sync_objects = Family::default();
        let sync_passes = Family::default();
        registry.register(
            "sync_objects",
            "Objects backfill and reconciliation passes read from Clerk and what they did with them",
            sync_objects.clone(),
        );
        registry.register(
            "sync_passes",
            "Backfill and reconciliation passes that ended, by result",
            sync_passes.clone(),
        );
        registry.register(
            "webhooks",
            "Webhooks received, by result and rejection reason",
            webhooks.clone(),
        );
        registry.register(
            "append_duration_seconds",
            "Time until an accepted webhook is durable",
            append_seconds.clone(),
        );
        registry.register(
            "log_head_sequence",
            "Highest sequence stored in the log",
            head.clone(),
        );
        registry.register(
            "log_first_retained_sequence",
            "Lowest sequence still retained",
            first_retained.clone(),
        );
        registry.register(
            "state_applied_sequence",
            "Highest sequence the current state (snapshots) holds the effect of: the head on the embedded log, the state builder's progress on JetStream",
            state_applied.clone(),
        );
        registry.register(
            "log_failed",
            "1 once the log's data directory was removed or replaced: nothing is stored until the bridge restarts",
            log_failed.clone(),
        );
        registry.register(
            "log_events_missing_at_open",
            "Acknowledged events the log no longer held when it opened (damaged or deleted write-ahead log)",
            events_missing_at_open.clone(),
        );
        registry.register(
            "subscriptions_active",
            "Open subscription streams",
            subscriptions.clone(),
        );
        registry.register(
            "subscriptions_refused",
            "Subscriptions refused with RESOURCE_EXHAUSTED because --max-streams were open",
            subscriptions_refused.clone(),
        );
        registry.register(
            "delivery_yields",
            "Times a subscription stream waited for the next delivery window during a webhook burst (ingest first)",
            delivery_yields.clone(),
        );
        registry.register(
            "grpc_connections_active",
            "Open gRPC connections, handshakes included",
            grpc_connections.clone(),
        );
        registry.register(
            "grpc_connections_rejected",
            "gRPC connections closed before serving: over --grpc-max-connections, handshake too slow or failed",
            grpc_rejected.clone(),
        );
        registry.register(
            "events_delivered",
            "Events sent to subscribers",
            delivered.clone(),
        );
        registry.register(
            "consumer_lag_events",
            "Events stored after a named consumer's committed sequence",
            consumer_lag.clone(),
        );
        Metrics {
            registry,
            webhooks,
            append_seconds,
            head,
            first_retained,
            state_applied,
            log_failed,
            events_missing_at_open,
            subscriptions,
            delivered,
            subscriptions_refused,
            delivery_yields,
            grpc_connections,
            grpc_rejected,
            consumer_lag,
            sync_objects,
            sync_passes,
        }
    }

    /// Counts `n` objects a `pass` (`backfill`, `reconciliation`) handled with `outcome`.
    pub fn sync_objects(&self, pass: &'static str, outcome: &'static str, n: u64) {
        self.sync_objects
            .get_or_create(&SyncObjectLabels { pass, outcome })
            .inc_by(n);
    }

    /// Counts a `pass` that ended with `result`.
    pub fn sync_pass_ended(&self, pass: &'static str, result: &'static str) {
        self.sync_passes
            .get_or_create(&SyncPassLabels { pass, result })
            .inc();
    }

    /// Counts one webhook.
    pub fn webhook(&self, result: WebhookResult, reason: RejectReason) {
        self.webhooks
            .get_or_create(&WebhookLabels { result, reason })
            .inc();
    }

    /// Records how long an append took.
    pub fn append_duration(&self, seconds: f64) {
        self.append_seconds.observe(seconds);
    }

    /// A subscription stream opened; closes (and is uncounted) when the guard drops.
    pub fn subscription_opened(self: &std::sync::Arc<Self>) -> SubscriptionGuard {
        self.subscriptions.inc();
        SubscriptionGuard {
            metrics: self.clone(),
        }
    }

    /// Counts a subscription refused for want of a stream slot.
    pub fn subscription_refused(&self) {
        self.subscriptions_refused.inc();
    }

    /// Counts a stream waiting for the next delivery window during a webhook burst.
    pub fn delivery_yielded(&self) {
        self.delivery_yields.inc();
    }

    /// A gRPC connection was accepted; it is uncounted when the guard drops.
    pub fn grpc_connection_opened(self: &std::sync::Arc<Self>) -> ConnectionGuard {
        self.grpc_connections.inc();
        ConnectionGuard {
            metrics: self.clone(),
        }
    }

    /// Counts a gRPC connection closed before it served anything.
    pub fn grpc_connection_rejected(&self, reason: ConnectionRejected) {
        self.grpc_rejected
            .get_or_create(&ConnectionLabels { reason })
            .inc();
    }

    /// Counts `n` events sent to a subscriber.
    pub fn delivered(&self, n: u64) {
        self.delivered.inc_by(n);
    }

    /// The metrics page, with the state gauges set from `state` (read by the caller just now).
    pub fn render(&self, state: StateReading) -> String {
        self.head.set(state.head);
        self.first_retained.set(state.first_retained);
        self.state_applied.set(state.state_applied);
        self.log_failed.set(u64::from(state.log_failed));
        self.events_missing_at_open
            .set(state.events_missing_at_open);
        self.consumer_lag.clear();
        for (consumer, lag) in state.consumer_lags {
            self.consumer_lag
                .get_or_create(&ConsumerLabels { consumer })
                .set(lag);
        }
        let mut page = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut page, &self.registry);
        page
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps a subscription counted in `subscriptions_active` while alive.
#[derive(Debug)]
pub struct SubscriptionGuard {
    /// The metrics to update on drop.
    metrics: std::sync::Arc<Metrics>,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.metrics.subscriptions.dec();
    }
}

/// Keeps a gRPC connection counted in `grpc_connections_active` while alive.
#[derive(Debug)]
pub struct ConnectionGuard {
    /// The metrics to update on drop.
    metrics: std::sync::Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.grpc_connections.dec();
    }
}
