//! Fault injection: what the fake does instead of (or before) answering normally.

use std::{io, time::Duration};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{
    Response, StatusCode,
    body::Frame,
    header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER},
};

use super::routes::{Answer, clerk_error};

/// A response body of the fake.
pub(crate) type Body = BoxBody<Bytes, io::Error>;

/// One injected fault, taken by the next request to its path.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// 429, with this `Retry-After` header (or none).
    TooManyRequests {
        /// The header's value, verbatim.
        retry_after: Option<&'static str>,
    },
    /// This status, with Clerk's error body (`503`, `400`, ...).
    Status(u16),
    /// The real answer, declared in full by `Content-Length`, but the connection is cut halfway.
    TruncatedBody,
    /// The real status and framing, with the JSON cut in half.
    MalformedJson,
    /// The real answer, this much later.
    Latency(Duration),
}

// === impl Fault ===

impl Fault {
    /// The response for `answer` (the normal one) under this fault.
    pub(crate) fn respond(&self, answer: Answer) -> Response<Body> {
        match self {
            Fault::TooManyRequests { retry_after } => {
                let mut response = json(clerk_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "Too many requests",
                ));
                if let Some(value) = retry_after {
                    let value = value.parse().expect("header value");
                    response.headers_mut().insert(RETRY_AFTER, value);
                }
                response
            }
            Fault::Status(status) => {
                let status = StatusCode::from_u16(*status).expect("status");
                json(clerk_error(status, "injected", "Injected failure"))
            }
            Fault::TruncatedBody => truncated(answer),
            Fault::MalformedJson => {
                let half = answer.body.len() / 2;
                json(Answer {
                    status: answer.status,
                    body: answer.body[..half].to_owned(),
                })
            }
            Fault::Latency(_) => json(answer),
        }
    }
}

/// A JSON response.
pub(crate) fn json(answer: Answer) -> Response<Body> {
    let length = answer.body.len();
    let mut response = Response::new(
        Full::new(Bytes::from(answer.body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        "application/json".parse().expect("header value"),
    );
    headers.insert(CONTENT_LENGTH, length.into());
    response
}

/// The answer's first half, then a broken stream (hyper aborts the connection).
fn truncated(answer: Answer) -> Response<Body> {
    let length = answer.body.len();
    let mut bytes = Bytes::from(answer.body);
    let first = bytes.split_to(length / 2);
    let frames = stream::iter([
        Ok(Frame::data(first)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "injected truncation",
        )),
    ]);
    let mut response = Response::new(StreamBody::new(frames).boxed());
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        "application/json".parse().expect("header value"),
    );
    headers.insert(CONTENT_LENGTH, length.into());
    response
}
