//! What can go wrong talking to Clerk: [`Error`] for what the caller gets, [`Transient`] for the
//! failures worth retrying (the last one is kept when the attempts run out).
//!
//! Messages carry the request path (ids are fine), statuses, Clerk's error `code` and trace id;
//! never the secret key, a query's personal data, or Clerk's free-text messages (which can quote
//! email addresses).

use std::time::Duration;

/// A request to Clerk that did not produce the answer asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `401`: Clerk does not accept the secret key.
    #[error(
        "Clerk rejected the secret key (HTTP 401): it is wrong, revoked, or from another instance"
    )]
    Unauthorized,
    /// `403`: the key is valid but may not do this (e.g. a feature the plan lacks).
    #[error("Clerk refused {path} to this secret key (HTTP 403, code {code:?})")]
    Forbidden {
        /// The request path.
        path: String,
        /// Clerk's error code, when the body had one.
        code: Option<String>,
    },
    /// Another `4xx` that retrying cannot fix.
    #[error("Clerk rejected {path} with HTTP {status} (code {code:?}, trace {trace_id:?})")]
    Rejected {
        /// The request path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Clerk's error code, when the body had one.
        code: Option<String>,
        /// Clerk's trace id, for a support request.
        trace_id: Option<String>,
    },
    /// `404` without Clerk's error body: something other than the Backend API answered (a wrong
    /// base URL, a proxy), so it says nothing about whether the object exists.
    #[error("{path} answered 404 without a Clerk error body: is the base URL right?")]
    UnexpectedNotFound {
        /// The request path.
        path: String,
    },
    /// `429` with a `Retry-After` longer than the client waits by itself: save the cursor and come
    /// back after `retry_after` (the client does not enforce it, so that none of its waits is
    /// longer than configured).
    #[error("Clerk asked to wait {retry_after:?} before {path}, more than this client waits")]
    RateLimited {
        /// The request path.
        path: String,
        /// How long Clerk asked to wait.
        retry_after: Duration,
    },
    /// A retryable failure lasted for every attempt.
    #[error("{path} failed {attempts} times; the last failure")]
    RetriesExhausted {
        /// The request path.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Transient,
    },
    /// The response body is larger than the configured limit.
    #[error("the response to {path} is larger than {limit} bytes")]
    BodyTooLarge {
        /// The request path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// A `2xx` whose JSON does not have the shape the spec gives (the message says what is off).
    #[error("unexpected response to {path}: {what}")]
    UnexpectedResponse {
        /// The request path.
        path: String,
        /// What is off.
        what: &'static str,
    },
    /// A cursor that this client cannot resume (corrupt, or from an incompatible version).
    #[error("the listing cursor is not usable: {0}")]
    InvalidCursor(&'static str),
}

/// A failure that may pass: the request is tried again after a backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Transient {
    /// No complete response within the request timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made, or broke before the response head.
    #[error("connection failed")]
    Connection(#[source] hyper_util::client::legacy::Error),
    /// The response body broke off.
    #[error("the response body broke off")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A `5xx`.
    #[error("HTTP {0} from Clerk")]
    ServerError(u16),
    /// A `429`.
    #[error("rate limited by Clerk (HTTP 429)")]
    RateLimited,
    /// A `2xx` whose body is not JSON (cut short, most likely).
    #[error("the response body is not valid JSON")]
    MalformedJson(#[source] serde_json::Error),
}
