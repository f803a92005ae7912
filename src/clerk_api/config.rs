//! The client's configuration: where Clerk is, the secret key, how much of the instance's rate
//! limit the client may use, and its retry and timeout bounds.
//!
//! [`Config::new`] gives defaults fit for production; [`Config::validate`] (called by
//! [`Client::try_new`](super::Client::try_new)) rejects values that cannot work. The secret key
//! never appears in `Debug` output or in error messages.

use std::{fmt, net::IpAddr, time::Duration};

use url::{Host, Url};

/// Clerk's Backend API, version 1.
pub const DEFAULT_BASE_URL: &str = "https://api.clerk.com/v1";

/// The largest `limit` Clerk's listings accept (its `LimitParameter`: 1 to 500, default 10).
pub const MAX_PAGE_LIMIT: u32 = 500;

/// The smallest page size the client uses: offset listings overlap their pages by at least one
/// object, so a page must hold more than that.
pub const MIN_PAGE_LIMIT: u32 = 2;

/// The window of Clerk's Backend API rate limit.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The prefix of a production instance's secret key.
const PRODUCTION_PREFIX: &str = "sk_live_";
/// The prefix of a development instance's secret key.
const DEVELOPMENT_PREFIX: &str = "sk_test_";

/// The kind of Clerk instance a secret key belongs to; it decides the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// A production instance (`sk_live_...`): 1000 requests per 10 s.
    Production,
    /// A development instance (`sk_test_...`): 100 requests per 10 s.
    Development,
}

// === impl Instance ===

impl Instance {
    /// The instance's whole Backend API rate limit in requests per second, shared by every client
    /// of the instance (the application included).
    pub fn requests_per_second(self) -> f64 {
        let per_window = match self {
            Instance::Production => 1000.0,
            Instance::Development => 100.0,
        };
        per_window / RATE_WINDOW.as_secs_f64()
    }
}

/// A Clerk secret key (`sk_live_...` or `sk_test_...`). `Debug` shows only which kind it is.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    /// The key itself.
    key: String,
    /// Which kind of instance it belongs to, from its prefix.
    instance: Instance,
}

// === impl SecretKey ===

impl SecretKey {
    /// Checks the key's shape: a known prefix, something after it, no whitespace.
    ///
    /// # Errors
    /// [`ConfigError::UnrecognizedSecretKey`] (naming no part of the key) when the shape is wrong.
    pub fn try_new(key: impl Into<String>) -> Result<Self, ConfigError> {
        let key = key.into();
        let instance = if key.starts_with(PRODUCTION_PREFIX) {
            Instance::Production
        } else if key.starts_with(DEVELOPMENT_PREFIX) {
            Instance::Development
        } else {
            return Err(ConfigError::UnrecognizedSecretKey);
        };
        let well_formed =
            key.len() > PRODUCTION_PREFIX.len() && key.bytes().all(|b| b.is_ascii_graphic());
        if !well_formed {
            return Err(ConfigError::UnrecognizedSecretKey);
        }
        Ok(SecretKey { key, instance })
    }

    /// The kind of instance the key belongs to.
    pub fn instance(&self) -> Instance {
        self.instance
    }

    /// The key, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("instance", &self.instance)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// How the client reaches Clerk and how hard it may push.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API's base URL, [`DEFAULT_BASE_URL`] unless testing. `https`, or `http` to a loopback
    /// address (for a fake Clerk in tests).
    pub base_url: String,
    /// The instance's secret key.
    pub secret_key: SecretKey,
    /// The fraction of the instance's rate limit this client may use, in (0, 1]: the rest is left
    /// to the application. Ignored when `requests_per_second` is set.
    pub rate_share: f64,
    /// An explicit request rate that overrides `rate_share` (tests, or an operator who knows
    /// better).
    pub requests_per_second: Option<f64>,
    /// Objects per listing page, [`MIN_PAGE_LIMIT`] to [`MAX_PAGE_LIMIT`].
    pub page_limit: u32,
    /// Attempts per request, the first included, before a retryable failure becomes an error.
    pub max_attempts: u32,
    /// The first backoff after a retryable failure; it grows 1.5-fold per attempt, with jitter.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// The longest `Retry-After` the client waits out by itself; a longer one becomes
    /// [`Error::RateLimited`](super::Error::RateLimited) so the caller can save its cursor.
    pub max_retry_after: Duration,
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for one attempt, from sending the request to the end of the response body.
    pub request_timeout: Duration,
    /// The largest response body read (a page of 500 users is a few MB).
    pub max_body_bytes: usize,
}

// === impl Config ===

impl Config {
    /// Defaults: Clerk's API, a quarter of the instance's rate limit, pages of 500, 8 attempts with
    /// backoff from 0.5 s to 30 s (the spec's `x-speakeasy-retries` starts at 0.5 s and grows
    /// 1.5-fold), `Retry-After` up to 2 min, 10 s to connect, 60 s per attempt, 64 MiB bodies.
    pub fn new(secret_key: SecretKey) -> Self {
        Config {
            base_url: DEFAULT_BASE_URL.to_owned(),
            secret_key,
            rate_share: 0.25,
            requests_per_second: None,
            page_limit: MAX_PAGE_LIMIT,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_body_bytes: 64 * 1024 * 1024,
        }
    }

    /// The request rate the client keeps to, in requests per second.
    pub fn budget(&self) -> f64 {
        self.requests_per_second
            .unwrap_or_else(|| self.rate_share * self.secret_key.instance().requests_per_second())
    }

    /// Checks every field and parses the base URL.
    ///
    /// # Errors
    /// The [`ConfigError`] naming the first field that cannot work.
    pub fn validate(&self) -> Result<Url, ConfigError> {
        if !(self.rate_share > 0.0 && self.rate_share <= 1.0) {
            return Err(ConfigError::InvalidRateShare);
        }
        let budget = self.budget();
        if !(budget.is_finite() && budget > 0.0) {
            return Err(ConfigError::InvalidRequestRate);
        }
        if !(MIN_PAGE_LIMIT..=MAX_PAGE_LIMIT).contains(&self.page_limit) {
            return Err(ConfigError::InvalidPageLimit);
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::InvalidMaxAttempts);
        }
        let timeouts = [
            self.initial_backoff,
            self.max_backoff,
            self.connect_timeout,
            self.request_timeout,
        ];
        if timeouts.contains(&Duration::ZERO) || self.max_body_bytes == 0 {
            return Err(ConfigError::ZeroBound);
        }
        base_url(&self.base_url)
    }
}

/// Parses and checks the base URL; the result has no trailing slash.
fn base_url(text: &str) -> Result<Url, ConfigError> {
    let mut url = Url::parse(text).map_err(|_| ConfigError::InvalidBaseUrl)?;
    if url.cannot_be_a_base() || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::InvalidBaseUrl);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::InvalidBaseUrl);
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url.host()) => {}
        "http" => return Err(ConfigError::InsecureBaseUrl),
        _ => return Err(ConfigError::InvalidBaseUrl),
    }
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
    }
    Ok(url)
}

/// Whether `host` is this machine.
fn is_loopback(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Why a [`Config`] cannot make a client. No variant carries the secret key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The secret key does not start with `sk_live_` or `sk_test_`, or is malformed.
    #[error("the Clerk secret key is not an `sk_live_...` or `sk_test_...` key")]
    UnrecognizedSecretKey,
    /// The base URL does not parse, or has a query, fragment or credentials.
    #[error("the Clerk API base URL is not a plain http(s) URL")]
    InvalidBaseUrl,
    /// The base URL is plain `http` to a host other than loopback.
    #[error("the Clerk API base URL must use https (http only to a loopback address)")]
    InsecureBaseUrl,
    /// `rate_share` is not in (0, 1].
    #[error("the rate share must be above 0 and at most 1")]
    InvalidRateShare,
    /// The request rate is not a positive finite number.
    #[error("the request rate must be a positive number of requests per second")]
    InvalidRequestRate,
    /// `page_limit` is not in 2..=500.
    #[error("the page limit must be between {MIN_PAGE_LIMIT} and {MAX_PAGE_LIMIT}")]
    InvalidPageLimit,
    /// `max_attempts` is 0.
    #[error("at least one attempt per request is needed")]
    InvalidMaxAttempts,
    /// A timeout, backoff or body limit is zero.
    #[error("timeouts, backoffs and the body limit must be above zero")]
    ZeroBound,
    /// The system's TLS root certificates could not be loaded.
    #[error("cannot load the system's TLS root certificates")]
    TlsRoots(#[source] std::io::Error),
    /// TLS could not be set up.
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> SecretKey {
        SecretKey::try_new(text).unwrap()
    }

    #[test]
    fn secret_key_prefix_picks_the_instance_and_debug_redacts_it() {
        let live = key("sk_live_abcdef123");
        assert_eq!(live.instance(), Instance::Production);
        assert_eq!(key("sk_test_abc").instance(), Instance::Development);
        let debug = format!("{live:?} {:?}", Config::new(live.clone()));
        assert!(!debug.contains("abcdef123"), "{debug}");
        for bad in ["", "sk_live_", "pk_test_abc", "sk_test_a b", "abc"] {
            assert!(SecretKey::try_new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn budget_is_a_share_of_the_instance_limit_unless_overridden() {
        let mut config = Config::new(key("sk_live_x"));
        assert!((config.budget() - 25.0).abs() < 1e-9);
        config.secret_key = key("sk_test_x");
        assert!((config.budget() - 2.5).abs() < 1e-9);
        config.requests_per_second = Some(200.0);
        assert!((config.budget() - 200.0).abs() < 1e-9);
    }

    #[test]
    fn base_url_must_be_https_or_loopback_http() {
        let mut config = Config::new(key("sk_test_x"));
        assert_eq!(config.validate().unwrap().as_str(), DEFAULT_BASE_URL);
        for ok in [
            "http://127.0.0.1:9/v1/",
            "http://[::1]:9/v1",
            "http://localhost/v1",
        ] {
            config.base_url = ok.to_owned();
            assert!(config.validate().is_ok(), "{ok}");
        }
        config.base_url = "http://api.clerk.com/v1".to_owned();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::InsecureBaseUrl)
        ));
        for bad in [
            "ftp://x/v1",
            "https://x/v1?a=b",
            "not a url",
            "https://u:p@x/v1",
        ] {
            config.base_url = bad.to_owned();
            assert!(
                matches!(config.validate(), Err(ConfigError::InvalidBaseUrl)),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_checked() {
        let good = Config::new(key("sk_test_x"));
        let cases: [fn(&mut Config); 6] = [
            |c| c.page_limit = 1,
            |c| c.rate_share = 0.0,
            |c| c.rate_share = 1.5,
            |c| c.page_limit = 501,
            |c| c.max_attempts = 0,
            |c| c.request_timeout = Duration::ZERO,
        ];
        for case in cases {
            let mut config = good.clone();
            case(&mut config);
            assert!(config.validate().is_err());
        }
    }
}
