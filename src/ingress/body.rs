//! Reading a webhook body within its bounds: a size cap, a deadline, and a byte budget shared with
//! every other request.
//!
//! The body is the one thing an unauthenticated client controls in size and pace, and it must be
//! read before its signature can be checked. So it is read against all three bounds at once, and
//! the bytes it holds are reserved in the budget before they are buffered.

use std::{pin::pin, time::Duration};

use bytes::{Bytes, BytesMut};
use http::header;
use http_body_util::BodyExt;

use super::{
    budget::{ByteBudget, Reservation},
    response::Rejection,
    routes::RequestBody,
};

/// The bounds on webhook bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body accepted (413 past it).
    pub max_body_bytes: usize,
    /// Time the whole body has to arrive once the headers have (408 past it).
    pub read_timeout: Duration,
    /// Bytes all bodies being read or stored may hold together (503 past it).
    pub max_buffered_bytes: usize,
}

/// Reads webhook bodies within [`BodyLimits`].
#[derive(Debug)]
pub(super) struct BodyReader {
    /// The bounds.
    limits: BodyLimits,
    /// The shared budget of buffered bytes.
    budget: ByteBudget,
}

// === impl BodyReader ===

impl BodyReader {
    /// A reader with its own budget of `limits.max_buffered_bytes`.
    pub(super) fn new(limits: BodyLimits) -> Self {
        BodyReader {
            limits,
            budget: ByteBudget::new(limits.max_buffered_bytes),
        }
    }

    /// Reads the whole body. The bytes stay reserved in the budget as long as `reservation` lives:
    /// the caller keeps it until the body is no longer needed.
    ///
    /// # Errors
    /// [`Rejection::TooLarge`] past the cap (refused before reading when the length is declared),
    /// [`Rejection::Overloaded`] when the budget lacks the bytes, [`Rejection::BodyTimeout`] past
    /// the deadline, [`Rejection::BadBody`] when the body fails mid-read.
    pub(super) async fn read<B: RequestBody>(
        &self,
        headers: &http::HeaderMap,
        body: B,
        reservation: &mut Reservation,
    ) -> Result<Bytes, Rejection> {
        let declared = declared_length(headers);
        if declared.is_some_and(|len| len > self.limits.max_body_bytes as u64) {
            return Err(Rejection::TooLarge);
        }
        // Within the cap, so it fits in usize.
        let declared = declared.map_or(0, |len| len as usize);
        self.budget
            .reserve(reservation, declared)
            .map_err(|_| Rejection::Overloaded)?;
        let read = self.collect(body, declared, reservation);
        tokio::time::timeout(self.limits.read_timeout, read)
            .await
            .map_err(|_| Rejection::BodyTimeout)?
    }

    /// Gathers the body's data frames, reserving each one's bytes before keeping them. A body that
    /// arrives as one frame (the usual case) is kept as it is, without a copy.
    async fn collect<B: RequestBody>(
        &self,
        body: B,
        declared: usize,
        reservation: &mut Reservation,
    ) -> Result<Bytes, Rejection> {
        let mut body = pin!(body);
        let mut first: Option<Bytes> = None;
        let mut rest = BytesMut::new();
        let mut len = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| Rejection::BadBody)?.into_data() else {
                continue; // Trailers carry nothing the bridge reads.
            };
            len = len.saturating_add(data.len());
            if len > self.limits.max_body_bytes {
                return Err(Rejection::TooLarge);
            }
            // Received bytes are reserved before they are kept (the declared length already was).
            self.budget
                .reserve(reservation, len.saturating_sub(reservation.len()))
                .map_err(|_| Rejection::Overloaded)?;
            match first.take() {
                None if rest.is_empty() => first = Some(data),
                earlier => {
                    if let Some(earlier) = earlier {
                        rest.reserve(declared.max(len));
                        rest.extend_from_slice(&earlier);
                    }
                    rest.extend_from_slice(&data);
                }
            }
        }
        Ok(first.unwrap_or_else(|| rest.freeze()))
    }
}

/// The `Content-Length` the client declared, if any and well-formed.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}
