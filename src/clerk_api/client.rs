//! The HTTP side of the client: one pooled hyper connection pool (rustls for `https`), every
//! request paced by the [`RateBudget`], bounded in time and body size, and retried per
//! [`RetryPolicy`]. Status codes are mapped to [`Error`] here and nowhere else.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri,
    header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, USER_AGENT},
};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client as HttpClient, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::{
    API_VERSION, API_VERSION_HEADER, Config, ConfigError, Cursor, Error, Instance, Kind, Listing,
    Transient, budget::RateBudget, retry::RetryPolicy,
};

/// The most of an error response's body read (for Clerk's error code).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for Clerk's Backend API. Cheap to clone: clones share the connection pool and the
/// rate budget, so every request of the process counts against one budget.
#[derive(Debug, Clone)]
pub struct Client {
    /// The shared state.
    inner: Arc<Inner>,
}

/// What clones of a [`Client`] share.
struct Inner {
    /// The connection pool.
    http: HttpClient<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// The API's base URL, without a trailing slash.
    base: Url,
    /// `Bearer <secret key>`, marked sensitive.
    authorization: HeaderValue,
    /// The instance the key belongs to.
    instance: Instance,
    /// The request pace.
    budget: RateBudget,
    /// The pace's rate, for reporting.
    requests_per_second: f64,
    /// Attempts and waits.
    retry: RetryPolicy,
    /// The bound on one attempt.
    request_timeout: Duration,
    /// The bound on a body.
    max_body_bytes: usize,
    /// Objects per listing page.
    page_limit: u32,
}

/// The answer to a GET: JSON, or Clerk's own `404`.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A `2xx` with a JSON body.
    Json(Value),
    /// A `404` with Clerk's error body: the object does not exist.
    NotFound,
}

/// How one attempt ended.
enum Attempt {
    /// Done, for better or worse.
    Done(Result<Reply, Error>),
    /// Worth another try; `Retry-After` when the answer carried one.
    Retry(Transient, Option<Duration>),
}

/// Clerk's error body (`ClerkErrors`), read leniently.
#[derive(Debug, Deserialize)]
struct ClerkErrors {
    /// The errors; only the first one's code is used.
    errors: Vec<ClerkError>,
    /// Clerk's trace id.
    #[serde(default)]
    clerk_trace_id: Option<String>,
}

/// One entry of [`ClerkErrors`].
#[derive(Debug, Deserialize)]
struct ClerkError {
    /// A machine-readable code, e.g. `resource_not_found`.
    #[serde(default)]
    code: Option<String>,
}

/// Why a body could not be read.
enum BodyError {
    /// Larger than the limit.
    TooLarge,
    /// Broke off.
    Broken(Box<dyn std::error::Error + Send + Sync>),
}

// === impl Client ===

impl Client {
    /// Builds a client: checks the config and sets up TLS (the system's root certificates, for an
    /// `https` base URL).
    ///
    /// # Errors
    /// A [`ConfigError`] for a field that cannot work, or when TLS cannot be set up.
    pub fn try_new(config: Config) -> Result<Self, ConfigError> {
        let base = config.validate()?;
        let connector = connector(&base, config.connect_timeout)?;
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let bearer = format!("Bearer {}", config.secret_key.expose());
        let mut authorization =
            HeaderValue::try_from(bearer).map_err(|_| ConfigError::UnrecognizedSecretKey)?;
        authorization.set_sensitive(true);
        let requests_per_second = config.budget();
        let inner = Inner {
            http,
            base,
            authorization,
            instance: config.secret_key.instance(),
            budget: RateBudget::new(requests_per_second),
            requests_per_second,
            retry: RetryPolicy {
                max_attempts: config.max_attempts,
                initial_backoff: config.initial_backoff,
                max_backoff: config.max_backoff,
                max_retry_after: config.max_retry_after,
            },
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
            page_limit: config.page_limit,
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// Starts a pass over every object of `kind`, oldest first, in pages of the configured size.
    pub fn list(&self, kind: Kind) -> Listing {
        Listing::new(self.clone(), Cursor::start(kind, self.inner.page_limit))
    }

    /// Continues a pass from a cursor saved after one of its pages.
    ///
    /// # Errors
    /// [`Error::InvalidCursor`] when the cursor is corrupt or from an incompatible version.
    pub fn resume(&self, cursor: Cursor) -> Result<Listing, Error> {
        cursor.check()?;
        Ok(Listing::new(self.clone(), cursor))
    }

    /// The instance the secret key belongs to.
    pub fn instance(&self) -> Instance {
        self.inner.instance
    }

    /// The request rate this client keeps to, in requests per second.
    pub fn requests_per_second(&self) -> f64 {
        self.inner.requests_per_second
    }

    /// The URL of `segments` below the base URL (each segment percent-encoded).
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        // The base URL was checked to be a base (`cannot_be_a_base` is false), so this is `Ok`.
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        url
    }

    /// GETs `url`, retrying what may pass, within the rate budget.
    ///
    /// # Errors
    /// Every [`Error`] but [`Error::InvalidCursor`].
    pub(crate) async fn fetch(&self, url: &Url) -> Result<Reply, Error> {
        let path = url.path().to_owned();
        let uri = Uri::try_from(url.as_str()).map_err(|_| Error::UnexpectedResponse {
            path: path.clone(),
            what: "the request URL is not a valid URI",
        })?;
        let retry = self.inner.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.inner.budget.acquire().await;
            let (cause, retry_after) = match self.attempt(&uri, &path).await {
                Attempt::Done(result) => return result,
                Attempt::Retry(cause, retry_after) => (cause, retry_after),
            };
            if attempt >= retry.max_attempts {
                tracing::warn!(
                    path,
                    attempts = attempt,
                    error = %cause,
                    "Clerk request failed; giving up"
                );
                return Err(Error::RetriesExhausted {
                    path,
                    attempts: attempt,
                    last: cause,
                });
            }
            if let Some(wait) = retry_after.filter(|wait| *wait > retry.max_retry_after) {
                // Not held in the budget: every wait of this client stays bounded by the config,
                // and the caller, told how long, decides when to come back.
                return Err(Error::RateLimited {
                    path,
                    retry_after: wait,
                });
            }
            let wait = retry_after.unwrap_or_else(|| retry.backoff(attempt));
            tracing::warn!(
                path,
                attempt,
                wait_ms = wait.as_millis(),
                error = %cause,
                "Clerk request failed; retrying"
            );
            if matches!(cause, Transient::RateLimited) {
                // The limit is the instance's: every request sharing this budget waits.
                self.inner.budget.hold_until(Instant::now() + wait).await;
            } else {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// One attempt, bounded by the request timeout.
    async fn attempt(&self, uri: &Uri, path: &str) -> Attempt {
        let timeout = self.inner.request_timeout;
        match tokio::time::timeout(timeout, self.exchange(uri, path)).await {
            Ok(attempt) => attempt,
            Err(_elapsed) => Attempt::Retry(Transient::Timeout(timeout), None),
        }
    }

    /// Sends the request and reads the answer.
    async fn exchange(&self, uri: &Uri, path: &str) -> Attempt {
        let response = match self.inner.http.request(self.request(uri)).await {
            Ok(response) => response,
            Err(error) => return Attempt::Retry(Transient::Connection(error), None),
        };
        let status = response.status();
        tracing::debug!(path, status = status.as_u16(), "Clerk answered");
        if status.is_success() {
            return self.success(response, path).await;
        }
        let retry_after = super::retry::retry_after(response.headers());
        // Read (a bounded part of) the body so the connection can be reused.
        let body = read_body(response, ERROR_BODY_LIMIT).await.ok();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Retry(Transient::RateLimited, retry_after);
        }
        if status.is_server_error() {
            return Attempt::Retry(Transient::ServerError(status.as_u16()), None);
        }
        Attempt::Done(refusal(status, body.as_deref(), path))
    }

    /// Reads and parses a `2xx` body.
    async fn success(&self, response: Response<Incoming>, path: &str) -> Attempt {
        let limit = self.inner.max_body_bytes;
        let body = match read_body(response, limit).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Attempt::Done(Err(Error::BodyTooLarge {
                    path: path.to_owned(),
                    limit,
                }));
            }
            Err(BodyError::Broken(error)) => return Attempt::Retry(Transient::Body(error), None),
        };
        match serde_json::from_slice(&body) {
            Ok(value) => Attempt::Done(Ok(Reply::Json(value))),
            Err(error) => Attempt::Retry(Transient::MalformedJson(error), None),
        }
    }

    /// A GET of `uri` with the headers every request carries.
    fn request(&self, uri: &Uri) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, self.inner.authorization.clone());
        headers.insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
        headers.insert(USER_AGENT, HeaderValue::from_static(super::USER_AGENT));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        request
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("instance", &self.instance)
            .field("requests_per_second", &self.requests_per_second)
            .field("page_limit", &self.page_limit)
            .finish_non_exhaustive()
    }
}

/// The connector: rustls with the aws-lc-rs provider. An `https` base URL gets the system's root
/// certificates and refuses plain `http`; a (loopback) `http` one never uses TLS.
fn connector(
    base: &Url,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, ConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let builder = HttpsConnectorBuilder::new();
    let connector = if base.scheme() == "https" {
        builder
            .with_provider_and_native_roots(provider)
            .map_err(ConfigError::TlsRoots)?
            .https_only()
            .enable_http1()
            .wrap_connector(http)
    } else {
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ConfigError::Tls)?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        builder
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http)
    };
    Ok(connector)
}

/// Reads a body of at most `limit` bytes (refusing at once when `Content-Length` says more).
async fn read_body(response: Response<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    if declared_length(response.headers()).is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(response.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(error) => Err(BodyError::Broken(error)),
    }
}

/// The `Content-Length`, when present and readable.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The error for a `4xx` (other than `429`) or an unexpected `1xx`/`3xx`; a `404` with Clerk's
/// error body is [`Reply::NotFound`].
fn refusal(status: StatusCode, body: Option<&[u8]>, path: &str) -> Result<Reply, Error> {
    let errors = body.and_then(|body| serde_json::from_slice::<ClerkErrors>(body).ok());
    let path = path.to_owned();
    let code = errors
        .as_ref()
        .and_then(|errors| errors.errors.first())
        .and_then(|error| error.code.clone());
    Err(match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized,
        StatusCode::FORBIDDEN => Error::Forbidden { path, code },
        StatusCode::NOT_FOUND if errors.is_some() => return Ok(Reply::NotFound),
        StatusCode::NOT_FOUND => Error::UnexpectedNotFound { path },
        _ => Error::Rejected {
            path,
            status: status.as_u16(),
            code,
            trace_id: errors.and_then(|errors| errors.clerk_trace_id),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_404_means_absent_only_with_clerks_error_body() {
        let clerk =
            br#"{"errors":[{"message":"x","long_message":"x","code":"resource_not_found"}]}"#;
        assert!(matches!(
            refusal(StatusCode::NOT_FOUND, Some(clerk), "/v1/users/u"),
            Ok(Reply::NotFound)
        ));
        for body in [None, Some(&b"<html>Not Found</html>"[..]), Some(b"{}")] {
            assert!(matches!(
                refusal(StatusCode::NOT_FOUND, body, "/v1/users/u"),
                Err(Error::UnexpectedNotFound { .. })
            ));
        }
    }

    #[test]
    fn other_refusals_are_typed_and_name_no_secret() {
        let body = br#"{"errors":[{"code":"form_param_invalid"}],"clerk_trace_id":"t1"}"#;
        match refusal(StatusCode::UNPROCESSABLE_ENTITY, Some(body), "/v1/users") {
            Err(Error::Rejected {
                status: 422,
                code,
                trace_id,
                ..
            }) => {
                assert_eq!(code.as_deref(), Some("form_param_invalid"));
                assert_eq!(trace_id.as_deref(), Some("t1"));
            }
            other => panic!("{other:?}"),
        }
        let unauthorized = refusal(StatusCode::UNAUTHORIZED, None, "/v1/users").unwrap_err();
        assert!(unauthorized.to_string().contains("secret key"));
    }
}
