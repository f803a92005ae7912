//! The bridge's own work per webhook, stage by stage, measured in-process on the benchmark's
//! requests: svix's signature check (the verifier of record), the typed decode, and encoding the
//! log record. What remains of the bridge's CPU per webhook is HTTP, storage and scheduling.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clerk_bridge::{
    clerk,
    ingress::verify::{SigningSecret, Verifier},
    record,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{BenchError, bridge::SECRET, load::Prepared};

/// Requests each stage is timed over.
const SAMPLES: usize = 5_000;
/// Rounds of each stage; the fastest counts (the others were disturbed).
const ROUNDS: usize = 3;

/// CPU per webhook of each stage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Costs {
    /// Signature check by the `svix` crate (HMAC-SHA256 of the body, constant-time compare).
    pub(crate) verify: Duration,
    /// Decoding the body into the typed `Event`.
    pub(crate) decode: Duration,
    /// Encoding the event into the log record.
    pub(crate) encode: Duration,
}

// === impl Costs ===

impl Costs {
    /// The three stages together.
    pub(crate) fn total(&self) -> Duration {
        self.verify + self.decode + self.encode
    }
}

/// Times each stage on up to [`SAMPLES`] of `requests`.
pub(crate) fn measure(requests: &[Prepared]) -> Result<Costs, BenchError> {
    let webhooks = requests
        .iter()
        .take(SAMPLES)
        .map(|r| split(&r.request))
        .collect::<Result<Vec<_>, _>>()?;
    let secrets =
        SigningSecret::parse_list(SECRET).map_err(|e| BenchError::Setup(e.to_string()))?;
    let verifier = Verifier::new(&secrets);
    let mut refused = 0_usize;
    let verify = fastest(webhooks.len(), || {
        for (headers, body) in &webhooks {
            refused += usize::from(verifier.verify(headers, body.clone()).is_err());
        }
    });
    if refused > 0 {
        // A refusal stops early and would make the check look cheap.
        return Err(BenchError::Setup(format!(
            "{refused} prepared webhooks failed verification"
        )));
    }
    let bodies: Vec<&str> = webhooks
        .iter()
        .map(|(_, body)| std::str::from_utf8(body).unwrap_or_default())
        .collect();
    let decode = fastest(bodies.len(), || {
        for body in &bodies {
            let _ = std::hint::black_box(clerk::decode_event(body));
        }
    });
    let events: Vec<_> = bodies
        .iter()
        .filter_map(|body| clerk::decode_event(body).ok())
        .collect();
    let encode = fastest(events.len(), || {
        for event in &events {
            std::hint::black_box(record::new_record(event, 0));
        }
    });
    Ok(Costs {
        verify,
        decode,
        encode,
    })
}

/// The fastest of [`ROUNDS`] runs of `stage`, per item of `items`.
fn fastest(items: usize, mut stage: impl FnMut()) -> Duration {
    let items = u32::try_from(items.max(1)).unwrap_or(u32::MAX);
    (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            stage();
            started.elapsed() / items
        })
        .min()
        .unwrap_or_default()
}

/// The headers and body of a raw HTTP/1.1 request.
fn split(request: &[u8]) -> Result<(HeaderMap, Bytes), BenchError> {
    let malformed = || BenchError::Setup("a prepared request is malformed".to_owned());
    let end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(malformed)?;
    let head = std::str::from_utf8(&request[..end]).map_err(|_| malformed())?;
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        let (name, value) = line.split_once(':').ok_or_else(malformed)?;
        headers.insert(
            HeaderName::try_from(name.trim()).map_err(|_| malformed())?,
            HeaderValue::try_from(value.trim()).map_err(|_| malformed())?,
        );
    }
    Ok((headers, Bytes::copy_from_slice(&request[end + 4..])))
}
