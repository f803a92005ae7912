//! The one place where outcomes become HTTP responses: a status and a short JSON body.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::verify::VerifyError;
use crate::{clerk::DecodeError, log::WriteError, telemetry::metrics::RejectReason};

/// Seconds a client should wait before retrying when the log is busy or failing.
const RETRY_AFTER_SECS: &str = "1";

/// The response body type of every route.
pub(super) type Body = Full<Bytes>;

/// Why a request was not accepted.
#[derive(Debug)]
pub(super) enum Rejection {
    /// No such route.
    NotFound,
    /// The route exists but not for this method; the allowed methods.
    MethodNotAllowed(&'static str),
    /// Body over the configured cap.
    TooLarge,
    /// The body could not be read.
    BadBody,
    /// The body did not arrive within the deadline.
    BodyTimeout,
    /// The bodies in memory already use the byte budget; the sender should retry.
    Overloaded,
    /// Signature, timestamp or id headers wrong.
    Unverified(VerifyError),
    /// Verified, but not a Clerk event.
    Undecodable(DecodeError),
    /// The log could not take the event; the sender should retry.
    Unstored(WriteError),
    /// The bridge is not ready (starting or shutting down).
    NotReady,
}

impl Rejection {
    /// The label this rejection is counted under.
    pub(super) fn reason(&self) -> RejectReason {
        match self {
            Rejection::NotFound | Rejection::MethodNotAllowed(_) | Rejection::BadBody => {
                RejectReason::BadBody
            }
            Rejection::TooLarge => RejectReason::TooLarge,
            Rejection::BodyTimeout => RejectReason::BodyTimeout,
            Rejection::Overloaded => RejectReason::Overloaded,
            Rejection::Unverified(VerifyError::MissingHeaders) => RejectReason::MissingHeaders,
            Rejection::Unverified(VerifyError::InvalidSignature) => RejectReason::InvalidSignature,
            Rejection::Unverified(VerifyError::InvalidTimestamp | VerifyError::StaleTimestamp) => {
                RejectReason::Timestamp
            }
            Rejection::Unverified(VerifyError::InvalidId) => RejectReason::InvalidId,
            Rejection::Undecodable(_) => RejectReason::InvalidPayload,
            Rejection::Unstored(_) => RejectReason::Unstored,
            Rejection::NotReady => RejectReason::NotReady,
        }
    }

    /// Whether the request's body may be left (partly) unread: then the connection is closed.
    fn leaves_body_unread(&self) -> bool {
        matches!(
            self,
            Rejection::TooLarge
                | Rejection::BadBody
                | Rejection::BodyTimeout
                | Rejection::Overloaded
                | Rejection::Unverified(_)
                | Rejection::NotReady
        )
    }

    /// The status and JSON body for this rejection.
    pub(super) fn into_response(self) -> Response<Body> {
        let (status, reason) = match &self {
            Rejection::NotFound => (StatusCode::NOT_FOUND, "not found".to_owned()),
            Rejection::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed".to_owned(),
            ),
            Rejection::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body too large".to_owned()),
            Rejection::BadBody => (StatusCode::BAD_REQUEST, "could not read body".to_owned()),
            Rejection::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time".to_owned(),
            ),
            Rejection::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "bridge busy, retry later".to_owned(),
            ),
            Rejection::Unverified(e) => (StatusCode::UNAUTHORIZED, e.to_string()),
            Rejection::Undecodable(e) => (StatusCode::BAD_REQUEST, e.to_string()),
            Rejection::Unstored(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                unstored_reason(e).to_owned(),
            ),
            Rejection::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_owned()),
        };
        let mut response = json(status, &serde_json::json!({ "error": reason }));
        let headers = response.headers_mut();
        if self.leaves_body_unread() {
            // Reading what is left of the body would spend the bandwidth the rejection saves.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match self {
            Rejection::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Rejection::Unstored(_) | Rejection::NotReady | Rejection::Overloaded => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        response
    }
}

/// A short reason that tells the sender to retry, without internal details.
fn unstored_reason(error: &WriteError) -> &'static str {
    match error {
        WriteError::Busy => "bridge busy, retry later",
        WriteError::Closed => "bridge shutting down, retry later",
        WriteError::Storage(_) | WriteError::Watermark(_) | WriteError::Remote(_) => {
            "event not stored, retry later"
        }
        WriteError::DataDirChanged => "bridge cannot store events, retry later",
    }
}

/// `body` as a `status` response with `content-type: application/json`.
pub(super) fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
