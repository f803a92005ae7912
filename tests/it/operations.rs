//! Running it in production: metrics, JSON logs, gRPC access control (token, mutual TLS), refusal
//! to expose the stream unprotected, and signing-secret rotation through a watched file.

use std::{path::Path, time::Duration};

use clerk_bridge::{
    config::{GrpcTls, SecretSource},
    proto::{SubscribeRequest, event_stream_client::EventStreamClient},
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::{
    Code,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    process::{BridgeProcess, Poster, clerk_bridge, user_created},
    support::{
        Body, OTHER_SECRET, SECRET, TestBridge, assert_closed, event_body, now_secs,
        signed_headers, svix_headers, within,
    },
};

/// The value of the sample `name{labels}` on a Prometheus text page.
pub(crate) fn sample(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let bridge = TestBridge::start().await;
    let body = event_body("user.created", "user_1");
    bridge.post_new("msg_1", &body).await;
    bridge
        .post_new("msg_2", &event_body("user.updated", "user_1"))
        .await;
    assert!(bridge.deliver("msg_1", &body).await.1, "duplicate");
    let wrong = signed_headers(OTHER_SECRET, "svix", "msg_3", now_secs(), body.as_bytes());
    bridge
        .post(&wrong, body.as_bytes())
        .await
        .assert_error(401, "wrong secret");
    let stale = signed_headers(SECRET, "svix", "msg_4", now_secs() - 600, body.as_bytes());
    bridge
        .post(&stale, body.as_bytes())
        .await
        .assert_error(401, "stale");
    bridge
        .post(&svix_headers("msg_5", b"[]"), b"[]")
        .await
        .assert_error(400, "array");
    let mut sub = bridge.subscribe(0, &[]).await;
    sub.next_events(2).await;

    let page = bridge.get("/metrics").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let page = String::from_utf8(page.body).unwrap();
    let expected = [
        (
            r#"clerk_bridge_webhooks_total{result="accepted",reason="none"}"#,
            2.0,
        ),
        (
            r#"clerk_bridge_webhooks_total{result="duplicate",reason="none"}"#,
            1.0,
        ),
        (
            r#"clerk_bridge_webhooks_total{result="rejected",reason="invalid_signature"}"#,
            1.0,
        ),
        (
            r#"clerk_bridge_webhooks_total{result="rejected",reason="timestamp"}"#,
            1.0,
        ),
        (
            r#"clerk_bridge_webhooks_total{result="rejected",reason="invalid_payload"}"#,
            1.0,
        ),
        ("clerk_bridge_log_head_sequence", 2.0),
        ("clerk_bridge_log_failed", 0.0),
        ("clerk_bridge_log_events_missing_at_open", 0.0),
        ("clerk_bridge_subscriptions_active", 1.0),
        ("clerk_bridge_events_delivered_total", 2.0),
        ("clerk_bridge_append_duration_seconds_count", 3.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&page, series), Some(value), "{series} in {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_and_carry_ids_but_no_personal_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bridge = BridgeProcess::start_with_env(
        &tmp.path().join("data"),
        &["--log-format", "json"],
        &[("RUST_LOG", "clerk_bridge=debug")],
    )
    .await;
    let body = user_created("user_json_logs");
    let mut poster = Poster::connect(bridge.http).await.unwrap();
    assert_eq!(poster.post("msg_json_logs", &body).await.unwrap(), 200);
    bridge.signal("TERM").await;
    assert_eq!(bridge.exit_code().await, Some(0));

    let lines = bridge.log_lines();
    assert!(lines.len() > 3, "{lines:?}");
    let mut accepted_spans = 0;
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            entry["level"].is_string() && entry["fields"].is_object(),
            "{line}"
        );
        for private in [
            "user_json_logs@example.com",
            "\"Test\"",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "payload",
        ] {
            assert!(!line.contains(private), "{private} logged: {line}");
        }
        if entry["fields"]["message"] == "Webhook accepted" {
            assert_eq!(entry["span"]["svix_id"], "msg_json_logs", "{line}");
            assert_eq!(entry["span"]["event_type"], "user.created", "{line}");
            accepted_spans += 1;
        }
    }
    assert_eq!(accepted_spans, 1, "{lines:?}");
}

/// Subscribes with an optional bearer token; the status of the answer.
async fn subscribe_with_token(channel: Channel, token: Option<&str>) -> Code {
    let mut request = tonic::Request::new(SubscribeRequest::default());
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    match EventStreamClient::new(channel).subscribe(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Writes `text` to `path` the way Kubernetes updates a mounted Secret: a new file renamed over.
fn replace_file(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_guards_the_stream_but_not_health() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let bridge = TestBridge::start_with(|c| {
        c.grpc_access.token_file = Some(token.clone());
        c.file_watch_interval = Duration::from_secs(3600);
    })
    .await;
    let channel = bridge.channel().await;
    assert_eq!(
        subscribe_with_token(channel.clone(), None).await,
        Code::Unauthenticated
    );
    assert_eq!(
        subscribe_with_token(channel.clone(), Some("wrong")).await,
        Code::Unauthenticated
    );
    assert_eq!(
        subscribe_with_token(channel.clone(), Some("first-token")).await,
        Code::Ok
    );
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, 1, "SERVING without a token");
    // A rotated token is honoured at once, and the old one no longer is.
    replace_file(&token, "second-token");
    assert_eq!(
        subscribe_with_token(channel.clone(), Some("second-token")).await,
        Code::Ok
    );
    assert_eq!(
        subscribe_with_token(channel, Some("first-token")).await,
        Code::Unauthenticated
    );
}

/// TLS files that cannot work (not PEM, a key of another certificate, an empty CA bundle) stop the
/// bridge at start: exit 64, one line naming the flag of the file at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_files_stop_the_bridge_naming_their_flag() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf(&["localhost"]);
    let (_, other_key) = pki.leaf(&["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let cert = write("cert.pem", &cert);
    let key = write("key.pem", &key);
    let other_key = write("other-key.pem", &other_key);
    let junk = write("junk.pem", "not a certificate");
    let empty = write("empty.pem", "");
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--grpc-tls-cert", &junk, "--grpc-tls-key", &key],
            "--grpc-tls-cert",
        ),
        (
            vec!["--grpc-tls-cert", &cert, "--grpc-tls-key", &junk],
            "--grpc-tls-key",
        ),
        (
            vec!["--grpc-tls-cert", &cert, "--grpc-tls-key", &other_key],
            "--grpc-tls-key",
        ),
        (
            vec![
                "--grpc-tls-cert",
                &cert,
                "--grpc-tls-key",
                &key,
                "--grpc-client-ca",
                &empty,
            ],
            "--grpc-client-ca",
        ),
    ];
    let data = dir.path().join("data");
    for (flags, flag) in cases {
        let mut command = clerk_bridge(
            &[("CLERK_WEBHOOK_SIGNING_SECRET", SECRET)],
            [
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
            ],
        );
        command.arg("--data-dir").arg(&data).args(&flags);
        let output = within("the bridge to refuse its TLS files", command.output())
            .await
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(64), "{flag}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
    }
}

/// A CA, and a certificate with its key signed by it for `names`.
struct Pki {
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki {
            ca_pem: issuer.pem(),
            issuer,
        }
    }

    /// `(certificate PEM, key PEM)` for `names`.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS channel to `bridge` trusting `ca`, presenting `identity` if any; `None` if the handshake
/// or connection fails.
async fn tls_channel(
    bridge: &TestBridge,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Option<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Channel::from_shared(format!("https://{}", bridge.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    within("a TLS connection", endpoint.connect()).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, rogue_ca) = (Pki::new(), Pki::new());
    let (server_cert, server_key) = ca.leaf(&["localhost", "127.0.0.1"]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let tls = GrpcTls {
        cert: write("server.pem", &server_cert),
        key: write("server.key", &server_key),
        client_ca: Some(write("ca.pem", &ca.ca_pem)),
    };
    let bridge = TestBridge::start_with(|c| {
        c.grpc_access.tls = Some(tls);
        c.grpc_handshake_timeout = Duration::from_secs(2);
    })
    .await;
    // A client that never starts its TLS handshake is dropped after the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(bridge.grpc).await.unwrap();

    let client = ca.leaf(&["app"]);
    let good = tls_channel(&bridge, &ca.ca_pem, Some(&client))
        .await
        .expect("a trusted client connects");
    assert_eq!(subscribe_with_token(good, None).await, Code::Ok);

    let rogue = rogue_ca.leaf(&["app"]);
    for identity in [None, Some(&rogue)] {
        if let Some(channel) = tls_channel(&bridge, &ca.ca_pem, identity).await {
            // TLS 1.3 may finish the client side of the handshake before the server refuses.
            assert_ne!(subscribe_with_token(channel, None).await, Code::Ok);
        }
    }
    assert_closed(&mut silent).await;
}

#[tokio::test]
async fn the_binary_refuses_a_public_grpc_address_without_authentication() {
    let tmp = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_clerk-bridge"))
        .env_clear()
        .env("CLERK_WEBHOOK_SIGNING_SECRET", SECRET)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(tmp.path())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--grpc-addr") && stderr.contains("--grpc-token-file"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_file_is_honoured_while_webhooks_flow() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("signing-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let bridge = TestBridge::start_with(|c| {
        c.signing_secrets = SecretSource::File(secret_file.clone());
        // Far longer than the test: only the reload on a failed signature can pick the change up.
        c.file_watch_interval = Duration::from_secs(3600);
    })
    .await;
    let post = |secret: &'static str, id: String| {
        let bridge = &bridge;
        async move {
            let body = event_body("user.updated", &id);
            let headers = signed_headers(secret, "svix", &id, now_secs(), body.as_bytes());
            bridge
                .request(
                    "POST",
                    "/webhooks/clerk",
                    &headers,
                    Body::Sized(body.as_bytes()),
                )
                .await
                .status
        }
    };
    for i in 0..20 {
        assert_eq!(post(SECRET, format!("msg_old_{i}")).await, 200);
    }
    // Rotation step 1: both secrets; step 2: only the new one.
    replace_file(&secret_file, &format!("{SECRET} {OTHER_SECRET}"));
    for i in 0..20 {
        assert_eq!(
            post(OTHER_SECRET, format!("msg_new_{i}")).await,
            200,
            "new secret rejected after the change"
        );
        assert_eq!(post(SECRET, format!("msg_both_{i}")).await, 200);
    }
    // A broken file keeps the secrets in force.
    replace_file(&secret_file, "not a secret !!!");
    assert_eq!(post(OTHER_SECRET, "msg_kept".to_owned()).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_secret_stops_verifying_at_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("signing-secret");
    std::fs::write(&secret_file, format!("{SECRET},{OTHER_SECRET}")).unwrap();
    let bridge = TestBridge::start_with(|c| {
        c.signing_secrets = SecretSource::File(secret_file.clone());
        c.file_watch_interval = Duration::from_millis(20);
    })
    .await;
    let body = event_body("user.updated", "user_1");
    bridge.post_new("msg_1", &body).await;
    replace_file(&secret_file, OTHER_SECRET);
    let mut n = 1;
    crate::support::eventually("the retired secret to be refused", || {
        n += 1;
        let id = format!("msg_{n}");
        let bridge = &bridge;
        let body = body.clone();
        async move { (bridge.post_signed(&id, &body).await.status == 401).then_some(()) }
    })
    .await;
    let headers = signed_headers(OTHER_SECRET, "svix", "msg_new", now_secs(), body.as_bytes());
    assert_eq!(bridge.post(&headers, body.as_bytes()).await.status, 200);
}
