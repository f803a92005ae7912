//! Routing and the webhook handler: read (capped) → verify → decode → append → answer.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};

use super::{
    body::{BodyLimits, BodyReader},
    budget::Reservation,
    connections::Connection,
    response::{Body, Rejection, json},
    secrets::SigningSecrets,
    verify::{self, VerifiedWebhook},
};
use crate::{
    clerk,
    clock::{now_ms, timestamp_from_millis},
    ingest_first::IngestActivity,
    log::Appended,
    proto::EventSource,
    record,
    store::Store,
    telemetry::metrics::{self, Metrics, RejectReason, WebhookResult},
};

/// A request body the router can read: hyper's `Incoming` in the server, any byte body in tests.
pub trait RequestBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> {}

impl<B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>>> RequestBody for B {}

/// The error type a request body may fail with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Liveness route: answers 200 while the process serves HTTP.
const HEALTHZ: &str = "/healthz";
/// Readiness route: 200 while webhooks are accepted, 503 while shutting down or once the log can
/// store nothing (its data directory was removed).
const READYZ: &str = "/readyz";
/// Prometheus metrics.
const METRICS: &str = "/metrics";

/// Renders the metrics page; built by the wiring ([`crate::server`]), which knows where the state
/// gauges come from, so ingress needs neither the consumers nor telemetry's view of the log.
pub struct MetricsPage(pub Box<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for MetricsPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsPage")
    }
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The public webhook port: the webhook route and probes, and `/metrics` unless it has a port
    /// of its own.
    Webhooks,
    /// The metrics port (`--metrics-addr`): `/metrics` and probes, never the webhook route.
    Metrics,
}

/// State shared by every HTTP request.
#[derive(Debug)]
pub struct Ingress {
    /// Signature checks.
    secrets: SigningSecrets,
    /// Where verified events go.
    store: Store,
    /// Counters and histograms.
    metrics: Arc<Metrics>,
    /// Renders `/metrics`, with the state gauges read at that moment.
    metrics_page: MetricsPage,
    /// Path of the webhook route.
    webhook_path: String,
    /// Reads bodies within their bounds.
    bodies: BodyReader,
    /// Whether `/metrics` is served on the webhook port (no metrics port of its own).
    metrics_on_webhook_port: bool,
    /// False once shutdown begins.
    ready: AtomicBool,
    /// Verified webhooks being stored, for the fan-out policy ([`crate::ingest_first`]).
    activity: Arc<IngestActivity>,
}

// === impl Ingress ===

impl Ingress {
    /// Ingress state for `webhook_path`, storing into `store`.
    pub fn new(
        secrets: SigningSecrets,
        store: Store,
        metrics: Arc<Metrics>,
        metrics_page: MetricsPage,
        webhook_path: String,
        body_limits: BodyLimits,
    ) -> Self {
        Ingress {
            secrets,
            store,
            metrics,
            metrics_page,
            webhook_path,
            bodies: BodyReader::new(body_limits),
            metrics_on_webhook_port: true,
            ready: AtomicBool::new(true),
            activity: Arc::default(),
        }
    }

    /// Counts verified webhooks being stored in `activity`, which subscription streams watch.
    #[must_use]
    pub fn with_activity(mut self, activity: Arc<IngestActivity>) -> Self {
        self.activity = activity;
        self
    }

    /// Serves `/metrics` only on the metrics port: consumer names and counts stay off the internet.
    #[must_use]
    pub fn with_metrics_port(mut self) -> Self {
        self.metrics_on_webhook_port = false;
        self
    }

    /// Marks the bridge as shutting down: `/readyz` answers 503 from now on.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// Whether webhooks are accepted: not shutting down, and the store usable (checked now).
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.store.is_usable()
    }

    /// Answers one request. Generic over the body, so routing is tested without sockets; the
    /// server passes hyper's `Incoming`.
    pub async fn handle<B: RequestBody>(&self, req: Request<B>) -> Response<Body> {
        self.handle_on(Port::Webhooks, req).await
    }

    /// Answers one request that came in on `port`.
    pub async fn handle_on<B: RequestBody>(&self, port: Port, req: Request<B>) -> Response<Body> {
        self.route(port, req)
            .await
            .unwrap_or_else(Rejection::into_response)
    }

    async fn route<B: RequestBody>(
        &self,
        port: Port,
        req: Request<B>,
    ) -> Result<Response<Body>, Rejection> {
        let path = req.uri().path();
        let is_get = matches!(*req.method(), Method::GET | Method::HEAD);
        let metrics_here = match port {
            Port::Webhooks => self.metrics_on_webhook_port,
            Port::Metrics => true,
        };
        if port == Port::Webhooks && path == self.webhook_path {
            if req.method() != Method::POST {
                return Err(Rejection::MethodNotAllowed("POST"));
            }
            let outcome = self.receive_webhook(req).await;
            self.count(&outcome);
            return outcome.map(accepted);
        }
        match path {
            METRICS if !metrics_here => Err(Rejection::NotFound),
            HEALTHZ | READYZ | METRICS if !is_get => Err(Rejection::MethodNotAllowed("GET, HEAD")),
            METRICS => Ok(self.metrics_page()),
            HEALTHZ => Ok(json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))),
            READYZ if self.is_ready() => Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "status": "ready" }),
            )),
            READYZ => Err(Rejection::NotReady),
            _ => Err(Rejection::NotFound),
        }
    }

    #[tracing::instrument(skip_all, fields(svix_id, event_type))]
    async fn receive_webhook<B: RequestBody>(
        &self,
        req: Request<B>,
    ) -> Result<Appended, Rejection> {
        if !self.ready.load(Ordering::SeqCst) {
            return Err(Rejection::NotReady);
        }
        let (parts, body) = req.into_parts();
        // Unsigned, replayed or malformed requests are refused before their body costs anything.
        verify::check_headers(&parts.headers, now_ms() / 1000).map_err(Rejection::Unverified)?;
        let mut reservation = Reservation::default();
        let body = self
            .bodies
            .read(&parts.headers, body, &mut reservation)
            .await?;
        // From here the bridge, not the client, is the one working: this connection is not closed
        // to make room for a new one.
        let _busy = parts.extensions.get::<Connection>().map(Connection::busy);
        let webhook = self
            .secrets
            .verify(&parts.headers, body)
            .map_err(Rejection::Unverified)?;
        tracing::Span::current().record("svix_id", webhook.message_id());
        let _in_flight = self.activity.begin();
        let appended = self.store(&webhook).await?;
        tracing::debug!(?appended, "Webhook accepted");
        Ok(appended)
    }

    /// Counts a webhook's outcome.
    fn count(&self, outcome: &Result<Appended, Rejection>) {
        let (result, reason) = match outcome {
            Ok(Appended::Stored(_)) => (WebhookResult::Accepted, RejectReason::None),
            // Webhooks are stored unconditionally, so never superseded; counted as not stored anew.
            Ok(Appended::Duplicate(_) | Appended::Superseded(_)) => {
                (WebhookResult::Duplicate, RejectReason::None)
            }
            Err(rejection) => (WebhookResult::Rejected, rejection.reason()),
        };
        self.metrics.webhook(result, reason);
    }

    fn metrics_page(&self) -> Response<Body> {
        let page = (self.metrics_page.0)();
        let mut response = Response::new(Body::new(Bytes::from(page)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        response
    }

    /// Decodes the verified webhook and appends it; returns once it is durable.
    async fn store(&self, webhook: &VerifiedWebhook) -> Result<Appended, Rejection> {
        let mut event = clerk::decode_event(webhook.body()).map_err(Rejection::Undecodable)?;
        tracing::Span::current().record("event_type", event.r#type.as_str());
        let received_at_ms = now_ms();
        event.event_id = webhook.message_id().to_owned();
        event.received_at = timestamp_from_millis(received_at_ms);
        event.source = EventSource::Webhook.into();
        let started = std::time::Instant::now();
        let appended = self
            .store
            .append(record::new_record(&event, received_at_ms))
            .await;
        self.metrics
            .append_duration(started.elapsed().as_secs_f64());
        appended.map_err(|error| {
            tracing::warn!(%error, "Webhook not stored; answering 503 so the sender retries");
            Rejection::Unstored(error)
        })
    }
}

/// The answer to a stored (or already stored) webhook.
fn accepted(appended: Appended) -> Response<Body> {
    let (sequence, duplicate) = match appended {
        Appended::Stored(seq) => (seq, false),
        Appended::Duplicate(seq) | Appended::Superseded(seq) => (seq, true),
    };
    json(
        StatusCode::OK,
        &serde_json::json!({ "sequence": sequence, "duplicate": duplicate }),
    )
}
