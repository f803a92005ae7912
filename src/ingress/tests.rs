//! The router without sockets: requests with in-memory bodies go straight to [`Ingress::handle`],
//! which stores into a real log in a temporary directory.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::Value;
use svix::webhooks::Webhook;

use super::{
    BodyLimits, Ingress, MetricsPage,
    response::Body,
    secrets::SigningSecrets,
    verify::{SigningSecret, Verifier},
};
use crate::{
    clock::now_ms,
    log::{Log, LogOptions},
    telemetry::metrics::{Metrics, StateReading},
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WEBHOOK: &str = "/webhooks/clerk";
const MAX_BODY: usize = 4096;
/// Room for two largest bodies at once.
const MAX_BUFFERED: usize = 2 * MAX_BODY;
const BODY_TIMEOUT: Duration = Duration::from_millis(300);
const USER_CREATED: &str =
    r#"{"type":"user.created","object":"event","timestamp":1716883200000,"data":{"id":"user_1"}}"#;

/// An ingress on a fresh log, and the directory that holds it.
struct Router {
    ingress: Ingress,
    log: Arc<Log>,
    _dir: tempfile::TempDir,
}

impl Router {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
        let metrics = Arc::new(Metrics::new());
        let page_metrics = metrics.clone();
        let page = MetricsPage(Box::new(move || {
            page_metrics.render(StateReading {
                head: 7,
                ..StateReading::default()
            })
        }));
        let secrets = SigningSecret::parse_list(SECRET).unwrap();
        let ingress = Ingress::new(
            SigningSecrets::Fixed(Verifier::new(&secrets)),
            crate::store::Store::Embedded(log.clone()),
            metrics,
            page,
            WEBHOOK.to_owned(),
            BodyLimits {
                max_body_bytes: MAX_BODY,
                read_timeout: BODY_TIMEOUT,
                max_buffered_bytes: MAX_BUFFERED,
            },
        );
        Router {
            ingress,
            log,
            _dir: dir,
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> (StatusCode, String) {
        read(self.ingress.handle(request).await).await
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        self.send(request(Method::GET, path, &[], "")).await
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.log.close();
    }
}

fn request(
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// `svix-*` headers signing `body` as `msg_id`, `age_secs` ago.
fn signed(msg_id: &str, body: &str, age_secs: i64) -> Vec<(&'static str, String)> {
    let timestamp = now_ms() / 1000 - age_secs;
    let signature = Webhook::new(SECRET)
        .unwrap()
        .sign(msg_id, timestamp, body.as_bytes())
        .unwrap();
    vec![
        ("svix-id", msg_id.to_owned()),
        ("svix-timestamp", timestamp.to_string()),
        ("svix-signature", signature),
    ]
}

fn webhook(msg_id: &str, body: &str) -> Request<Full<Bytes>> {
    request(Method::POST, WEBHOOK, &signed(msg_id, body, 0), body)
}

async fn read(response: Response<Body>) -> (StatusCode, String) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn probes_answer_and_readiness_follows_shutdown() {
    runtime().block_on(async {
        let router = Router::new();
        assert_eq!(router.get("/healthz").await.0, StatusCode::OK);
        assert_eq!(router.get("/readyz").await.0, StatusCode::OK);
        router.ingress.set_not_ready();
        assert_eq!(
            router.get("/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(router.get("/healthz").await.0, StatusCode::OK);
        let (status, _) = router.send(webhook("msg_late", USER_CREATED)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(router.log.head(), 0);
    });
}

#[test]
fn metrics_are_rendered_by_the_page_the_wiring_hands_in() {
    runtime().block_on(async {
        let router = Router::new();
        let response = router
            .ingress
            .handle(request(Method::GET, "/metrics", &[], ""))
            .await;
        let content_type = response.headers()[header::CONTENT_TYPE].clone();
        let (status, page) = read(response).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.to_str().unwrap().starts_with("text/plain"));
        assert!(page.contains("clerk_bridge_log_head_sequence 7"), "{page}");
    });
}

#[test]
fn unknown_routes_and_wrong_methods_are_refused() {
    runtime().block_on(async {
        let router = Router::new();
        assert_eq!(router.get("/nope").await.0, StatusCode::NOT_FOUND);
        let get_webhook = router.send(request(Method::GET, WEBHOOK, &[], "")).await;
        assert_eq!(get_webhook.0, StatusCode::METHOD_NOT_ALLOWED);
        let post_health = router
            .send(request(Method::POST, "/healthz", &[], ""))
            .await;
        assert_eq!(post_health.0, StatusCode::METHOD_NOT_ALLOWED);
        let head = router.send(request(Method::HEAD, "/readyz", &[], "")).await;
        assert_eq!(head.0, StatusCode::OK);
    });
}

#[test]
fn a_signed_webhook_is_stored_once() {
    runtime().block_on(async {
        let router = Router::new();
        let (status, body) = router.send(webhook("msg_1", USER_CREATED)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            json(&body),
            serde_json::json!({"sequence": 1, "duplicate": false})
        );
        let (status, body) = router.send(webhook("msg_1", USER_CREATED)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            json(&body),
            serde_json::json!({"sequence": 1, "duplicate": true})
        );
        let (_, body) = router.send(webhook("msg_2", USER_CREATED)).await;
        assert_eq!(json(&body)["sequence"], 2);
        assert_eq!(router.log.head(), 2);
    });
}

#[test]
fn unverified_webhooks_are_refused_and_store_nothing() {
    runtime().block_on(async {
        let router = Router::new();
        let unsigned = request(Method::POST, WEBHOOK, &[], USER_CREATED);
        let mut tampered = signed("msg_t", USER_CREATED, 0);
        tampered[0].1 = "msg_other".to_owned();
        let cases = [
            ("unsigned", unsigned),
            (
                "tampered",
                request(Method::POST, WEBHOOK, &tampered, USER_CREATED),
            ),
            (
                "stale",
                request(
                    Method::POST,
                    WEBHOOK,
                    &signed("msg_s", USER_CREATED, 600),
                    USER_CREATED,
                ),
            ),
        ];
        for (case, req) in cases {
            let (status, body) = router.send(req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
            assert!(json(&body)["error"].is_string(), "{case}: {body}");
        }
        let not_an_event = router.send(webhook("msg_x", "[1,2]")).await;
        assert_eq!(not_an_event.0, StatusCode::BAD_REQUEST);
        assert_eq!(router.log.head(), 0);
    });
}

#[test]
fn bodies_over_the_cap_are_refused_with_or_without_a_length() {
    runtime().block_on(async {
        let router = Router::new();
        let big = format!(
            r#"{{"type":"user.created","object":"event","data":{{"id":"user_1","pad":"{}"}}}}"#,
            "x".repeat(MAX_BODY)
        );
        let declared = request(Method::POST, WEBHOOK, &signed("msg_big", &big, 0), &big);
        assert_eq!(router.send(declared).await.0, StatusCode::PAYLOAD_TOO_LARGE);

        // Chunked: no content-length, so only the limit on what is read can refuse it.
        let chunks = big
            .as_bytes()
            .chunks(1000)
            .map(|c| {
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::copy_from_slice(
                    c,
                )))
            })
            .collect::<Vec<_>>();
        let mut chunked = Request::builder().method(Method::POST).uri(WEBHOOK);
        for (name, value) in signed("msg_big", &big, 0) {
            chunked = chunked.header(name, value);
        }
        let chunked = chunked
            .body(StreamBody::new(futures_util::stream::iter(chunks)))
            .unwrap();
        let (status, _) = read(router.ingress.handle(chunked).await).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(router.log.head(), 0);
    });
}

#[test]
fn a_body_that_fails_mid_read_is_a_bad_request() {
    runtime().block_on(async {
        let router = Router::new();
        let frames: Vec<Result<hyper::body::Frame<Bytes>, std::io::Error>> = vec![
            Ok(hyper::body::Frame::data(Bytes::from_static(b"{\"type\""))),
            Err(std::io::Error::other("connection reset")),
        ];
        let mut req = Request::builder().method(Method::POST).uri(WEBHOOK);
        for (name, value) in signed("msg_cut", USER_CREATED, 0) {
            req = req.header(name, value);
        }
        let req = req
            .body(StreamBody::new(futures_util::stream::iter(frames)))
            .unwrap();
        let (status, _) = tokio::time::timeout(Duration::from_secs(30), async {
            read(router.ingress.handle(req).await).await
        })
        .await
        .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(router.log.head(), 0);
    });
}

/// A request whose body never arrives, with `headers` and a declared length (if any).
fn stalled(headers: &[(&str, String)], declared: Option<usize>) -> Request<StalledBody> {
    let mut builder = Request::builder().method(Method::POST).uri(WEBHOOK);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    if let Some(len) = declared {
        builder = builder.header(header::CONTENT_LENGTH, len);
    }
    builder
        .body(StreamBody::new(futures_util::stream::pending()))
        .unwrap()
}

/// A body that never yields a frame.
type StalledBody = StreamBody<
    futures_util::stream::Pending<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>,
>;

/// Headers shaped like a signature, fresh, but signing nothing: what an attacker can send.
fn forged() -> Vec<(&'static str, String)> {
    vec![
        ("svix-id", "msg_forged".to_owned()),
        ("svix-timestamp", (now_ms() / 1000).to_string()),
        ("svix-signature", "v1,bm90IGEgc2lnbmF0dXJl".to_owned()),
    ]
}

#[test]
fn unsigned_or_stale_requests_are_refused_without_reading_their_body() {
    runtime().block_on(async {
        let router = Router::new();
        let mut stale = forged();
        stale[1].1 = (now_ms() / 1000 - 600).to_string();
        let mut no_v1 = forged();
        no_v1[2].1 = "v2,abc".to_owned();
        for (case, headers) in [("unsigned", vec![]), ("stale", stale), ("no v1", no_v1)] {
            // The body never comes: only a check that does not wait for it can answer.
            let answer = router.ingress.handle(stalled(&headers, Some(MAX_BODY)));
            let response = tokio::time::timeout(BODY_TIMEOUT / 2, answer)
                .await
                .unwrap_or_else(|_| panic!("{case}: waited for the body"));
            assert_eq!(response.headers()[header::CONNECTION], "close", "{case}");
            assert_eq!(read(response).await.0, StatusCode::UNAUTHORIZED, "{case}");
        }
        assert_eq!(router.log.head(), 0);
    });
}

#[test]
fn a_body_that_stalls_is_refused_at_the_deadline() {
    runtime().block_on(async {
        let router = Router::new();
        for declared in [Some(100), None] {
            let answer = router.ingress.handle(stalled(&forged(), declared));
            let response = tokio::time::timeout(BODY_TIMEOUT * 20, answer)
                .await
                .expect("answered once the deadline passed");
            assert_eq!(response.headers()[header::CONNECTION], "close");
            assert_eq!(read(response).await.0, StatusCode::REQUEST_TIMEOUT);
        }
        assert_eq!(router.log.head(), 0);
    });
}

#[test]
fn bodies_past_the_byte_budget_are_refused_until_held_ones_are_released() {
    runtime().block_on(async {
        let router = Router::new();
        // Two stalled bodies declaring the largest size hold the whole budget until their deadline.
        let first = router.ingress.handle(stalled(&forged(), Some(MAX_BODY)));
        let second = router.ingress.handle(stalled(&forged(), Some(MAX_BODY)));
        let refused = async {
            let declared = router.send(webhook("msg_declared", USER_CREATED)).await;
            let chunked = router.ingress.handle(stalled(&forged(), None));
            let chunked = tokio::time::timeout(BODY_TIMEOUT * 20, chunked)
                .await
                .unwrap();
            (declared, chunked.status())
        };
        let (first, second, (declared, chunked)) = tokio::join!(biased; first, second, refused);
        assert_eq!(
            declared.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            declared.1
        );
        assert_eq!(json(&declared.1)["error"], "bridge busy, retry later");
        // A chunked body reserves as it arrives: it only waits for its deadline here, holding
        // nothing, because its first frame never comes.
        assert_eq!(chunked, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(first.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(second.status(), StatusCode::REQUEST_TIMEOUT);

        // Released: the same webhook is taken now.
        let (status, body) = router.send(webhook("msg_declared", USER_CREATED)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    });
}

#[test]
fn chunked_bodies_reserve_their_bytes_as_they_arrive() {
    runtime().block_on(async {
        let router = Router::new();
        // Together these hold all but 10 bytes of the budget.
        let held = router.ingress.handle(stalled(&forged(), Some(MAX_BODY)));
        let held_too = router
            .ingress
            .handle(stalled(&forged(), Some(MAX_BUFFERED - MAX_BODY - 10)));
        let chunked = async {
            let frames = vec![Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                Bytes::from(vec![b' '; 20]),
            ))];
            let mut req = Request::builder().method(Method::POST).uri(WEBHOOK);
            for (name, value) in forged() {
                req = req.header(name, value);
            }
            let req = req
                .body(StreamBody::new(futures_util::stream::iter(frames)))
                .unwrap();
            read(router.ingress.handle(req).await).await
        };
        let (held, held_too, (status, body)) = tokio::join!(biased; held, held_too, chunked);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(held.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(held_too.status(), StatusCode::REQUEST_TIMEOUT);
    });
}
