//! Fuzz targets for the paths that take untrusted bytes: the webhook request (headers and body,
//! through the header checks, body limits, verification and decoding) and Clerk's payload decoder.
//! The harness is in [`harness`]; each target's corpus is in `tests/fuzz/corpus/<target>/`, and
//! Clerk's published examples are seeds of both.

mod harness;

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use clerk_bridge::{
    clerk::decode_event,
    clock::now_ms,
    ingress::{
        BodyLimits, Ingress, MetricsPage,
        secrets::SigningSecrets,
        verify::{SigningSecret, Verifier},
    },
    log::{Log, LogOptions},
    proto::{Event, SubscribeResponse, subscribe_response::Message as Wire},
    telemetry::metrics::{Metrics, StateReading},
};
use harness::{Verdict, find, fuzz};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use prost::Message as _;
use svix::webhooks::Webhook;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WEBHOOK_PATH: &str = "/webhooks/clerk";
/// The bridge's default body cap.
const MAX_BODY: usize = 1 << 20;
/// The 4 MiB default message limit of gRPC clients: no event may be larger on the wire.
const GRPC_DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;

fn corpus(target: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// Clerk's published example payloads.
fn clerk_examples() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clerk-events");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn clerk_payload_decoder() {
    fuzz(
        "clerk_payload",
        &corpus("clerk_payload"),
        clerk_examples(),
        decode_any,
    );
}

/// A decoded event carries the body verbatim and survives the wire within gRPC's default limit;
/// what cannot be decoded is an error, never a panic.
fn decode_any(input: &[u8]) -> Verdict {
    let Ok(body) = std::str::from_utf8(input) else {
        return Ok(()); // Verification refuses bodies that are not UTF-8 before decoding.
    };
    let Ok(event) = decode_event(body) else {
        return Ok(());
    };
    if event.payload_json != body {
        return Err("payload_json is not the body".to_owned());
    }
    survives_the_wire(event)
}

/// `event` encodes within the default gRPC message limit and decodes back to itself.
fn survives_the_wire(event: Event) -> Verdict {
    let response = SubscribeResponse {
        message: Some(Wire::Event(event)),
        ..SubscribeResponse::default()
    };
    let encoded = response.encode_to_vec();
    if encoded.len() > GRPC_DEFAULT_MAX_MESSAGE {
        return Err(format!("{} bytes on the wire", encoded.len()));
    }
    match SubscribeResponse::decode(encoded.as_slice()) {
        Ok(decoded) if decoded == response => Ok(()),
        Ok(_) => Err("the event changed on the wire".to_owned()),
        Err(e) => Err(format!("the encoded event does not decode: {e}")),
    }
}

#[test]
fn webhook_request() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    let ingress = ingress(&log);
    let seeds = clerk_examples()
        .into_iter()
        .map(|body| {
            let mut request = b"svix-id: msg_seed\r\nsvix-timestamp: 1716883200\r\n\
                svix-signature: v1,bm90IGEgc2lnbmF0dXJl\r\ncontent-type: application/json\r\n\r\n"
                .to_vec();
            request.extend(body);
            request
        })
        .collect();
    let mut runs = 0u64;
    fuzz(
        "webhook_request",
        &corpus("webhook_request"),
        seeds,
        |input| {
            runs += 1;
            runtime.block_on(one_request(&ingress, &log, input, runs))
        },
    );
    log.close();
}

fn ingress(log: &Arc<Log>) -> Ingress {
    let metrics = Arc::new(Metrics::new());
    let page_metrics = metrics.clone();
    let page = MetricsPage(Box::new(move || {
        page_metrics.render(StateReading::default())
    }));
    let secrets = SigningSecret::parse_list(SECRET).unwrap();
    Ingress::new(
        SigningSecrets::Fixed(Verifier::new(&secrets)),
        clerk_bridge::store::Store::Embedded(log.clone()),
        metrics,
        page,
        WEBHOOK_PATH.to_owned(),
        BodyLimits {
            max_body_bytes: MAX_BODY,
            read_timeout: Duration::from_secs(5),
            max_buffered_bytes: 4 * MAX_BODY,
        },
    )
}

/// The input as sent (its signature, if any, is stale or forged: never accepted), then with its
/// body signed for real now (so it reaches decoding and the log).
async fn one_request(ingress: &Ingress, log: &Log, input: &[u8], run: u64) -> Verdict {
    let (headers, body) = split_request(input);
    let (status, answer) = send(ingress, &headers, body).await?;
    if status == StatusCode::OK {
        return Err(format!("an unsigned request was accepted: {answer}"));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(());
    };
    let msg_id = format!("msg_fuzz_{run}");
    let signed = signed_headers(&headers, &msg_id, text);
    let (status, answer) = send(ingress, &signed, body).await?;
    match status {
        StatusCode::OK => stored_verbatim(log, &answer, text).await,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Ok(()),
        other => Err(format!("a signed request got {other}: {answer}")),
    }
}

/// Header lines (`name: value`) up to a blank line, then the body; without a blank line, all body.
fn split_request(input: &[u8]) -> (Vec<(String, Vec<u8>)>, &[u8]) {
    let Some(end) = find(input, b"\r\n\r\n") else {
        return (Vec::new(), input);
    };
    let headers = input[..end]
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            let name = String::from_utf8(line[..colon].trim_ascii().to_vec()).ok()?;
            let value = line[colon + 1..].trim_ascii().to_vec();
            Some((name, value))
        })
        .collect();
    (headers, &input[end + 4..])
}

/// `headers` with the three signature headers replaced by a real signature of `body` now.
fn signed_headers(
    headers: &[(String, Vec<u8>)],
    msg_id: &str,
    body: &str,
) -> Vec<(String, Vec<u8>)> {
    let timestamp = now_ms() / 1000;
    let signature = Webhook::new(SECRET)
        .unwrap()
        .sign(msg_id, timestamp, body.as_bytes())
        .unwrap();
    let mut signed: Vec<_> = headers
        .iter()
        .filter(|(name, _)| !name.to_ascii_lowercase().starts_with("svix-"))
        .filter(|(name, _)| !name.to_ascii_lowercase().starts_with("webhook-"))
        .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
        .cloned()
        .collect();
    signed.push(("svix-id".to_owned(), msg_id.as_bytes().to_vec()));
    signed.push((
        "svix-timestamp".to_owned(),
        timestamp.to_string().into_bytes(),
    ));
    signed.push(("svix-signature".to_owned(), signature.into_bytes()));
    signed
}

/// Sends a webhook request; headers `http` cannot represent are left out, as a server never sees
/// them either. The answer must be JSON.
async fn send(
    ingress: &Ingress,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<(StatusCode, serde_json::Value), String> {
    let mut request = Request::post(WEBHOOK_PATH);
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes());
        let value = http::HeaderValue::from_bytes(value);
        if let (Ok(name), Ok(value)) = (name, value) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| format!("request: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(30), ingress.handle(request))
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?;
    let status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    let answer = serde_json::from_slice(&answer)
        .map_err(|e| format!("{status} answer is not JSON ({e}): {answer:?}"))?;
    Ok((status, answer))
}

/// The accepted webhook is in the log with its body verbatim, and survives the wire.
async fn stored_verbatim(log: &Log, answer: &serde_json::Value, body: &str) -> Verdict {
    let sequence = answer["sequence"]
        .as_u64()
        .ok_or_else(|| format!("200 without a sequence: {answer}"))?;
    let reader = log.reader().map_err(|e| e.to_string())?;
    let stored = reader
        .read_after(sequence - 1, 1)
        .map_err(|e| e.to_string())?;
    let stored = stored
        .first()
        .filter(|s| s.sequence == sequence)
        .ok_or_else(|| format!("sequence {sequence} is not in the log"))?;
    let event = Event::decode(stored.event.as_ref()).map_err(|e| e.to_string())?;
    if event.payload_json != body {
        return Err("the stored payload_json is not the body".to_owned());
    }
    survives_the_wire(event)
}
