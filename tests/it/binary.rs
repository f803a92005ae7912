//! The `clerk-bridge` binary: exit code 64 with a one-line error naming the bad flag, serving
//! `/healthz`, a clean exit on SIGTERM, and logs free of secrets and personal data.

use std::path::Path;

use serde_json::json;
use tokio::process::Command;

use crate::{
    process::{BridgeProcess, clerk_bridge},
    support::{Body, SECRET, WEBHOOK_PATH, http, svix_headers, within},
};

/// Exit code for bad configuration (EX_USAGE).
const EX_USAGE: i32 = 64;

/// Any free loopback port (the binary exits before it would serve).
const ANY_PORT: &str = "127.0.0.1:0";
/// The environment variable holding the signing secret.
const SECRET_VAR: &str = "CLERK_WEBHOOK_SIGNING_SECRET";

/// `clerk-bridge serve` with only `env` in its environment.
fn serve(env: &[(&str, &str)], http_addr: &str, grpc_addr: &str, data_dir: &Path) -> Command {
    let mut command = clerk_bridge(
        env,
        [
            "serve",
            "--http-addr",
            http_addr,
            "--grpc-addr",
            grpc_addr,
            "--data-dir",
        ],
    );
    command.arg(data_dir);
    command
}

/// Runs `command` to its end: its exit code and stderr lines.
pub(crate) async fn run_to_exit(mut command: Command) -> (Option<i32>, Vec<String>) {
    let output = within("the binary to exit", command.output())
        .await
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (
        output.status.code(),
        stderr.lines().map(str::to_owned).collect(),
    )
}

#[tokio::test]
async fn no_secret_exits_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, lines) = run_to_exit(serve(&[], ANY_PORT, ANY_PORT, dir.path())).await;
    assert_eq!(code, Some(EX_USAGE), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(SECRET_VAR), "{lines:?}");
}

#[tokio::test]
async fn a_bad_http_addr_exits_64_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(SECRET_VAR, SECRET)];
    let (code, lines) = run_to_exit(serve(&env, "nope", ANY_PORT, dir.path())).await;
    assert_eq!(code, Some(EX_USAGE), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("--http-addr") && lines[0].contains("nope"),
        "{lines:?}"
    );
    assert!(!lines[0].contains(SECRET), "{lines:?}");
}

#[tokio::test]
async fn an_unusable_data_dir_exits_64_naming_the_flag() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = file.path().join("data");
    let env = [(SECRET_VAR, SECRET)];
    let (code, lines) = run_to_exit(serve(&env, ANY_PORT, ANY_PORT, &under_a_file)).await;
    assert_eq!(code, Some(EX_USAGE), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("--data-dir")), "{lines:?}");
}

#[tokio::test]
async fn an_unreachable_nats_url_exits_64_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = [(SECRET_VAR, SECRET)];
    let mut command = serve(&env, ANY_PORT, ANY_PORT, dir.path());
    command.args(["--nats-url", &format!("nats://127.0.0.1:{port}")]);
    let (code, lines) = run_to_exit(command).await;
    assert_eq!(code, Some(EX_USAGE), "{lines:?}");
    let error = lines
        .iter()
        .find(|l| l.starts_with("clerk-bridge:"))
        .unwrap();
    assert!(error.contains("--nats-url"), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains(SECRET)), "{lines:?}");
}

#[tokio::test]
async fn nats_servers_that_refuse_the_largest_events_exit_64_naming_max_payload() {
    let nats = crate::nats::NatsServer::start_configured("");
    let dir = tempfile::tempdir().unwrap();
    let env = [(SECRET_VAR, SECRET)];
    let mut command = serve(&env, ANY_PORT, ANY_PORT, dir.path());
    command.args(["--nats-url", &nats.url]);
    let (code, lines) = run_to_exit(command).await;
    assert_eq!(code, Some(EX_USAGE), "{lines:?}");
    // The NATS client may still log its disconnection after the error line.
    let error = lines.iter().find(|l| l.starts_with("clerk-bridge:"));
    assert!(
        error.is_some_and(|l| l.contains("max_payload")),
        "{lines:?}"
    );
}

/// A started binary serves, takes a webhook, exits 0 on SIGTERM, and never logs the secret or the
/// user's personal data at the default level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = BridgeProcess::start(dir.path(), &[]).await;
    let health = http(bridge.http, "GET", "/healthz", &[], Body::Empty).await;
    assert_eq!(health.status, 200);

    let (first_name, email) = ("Quintessa", "quintessa.private@example.com");
    let body = json!({
        "type": "user.created",
        "data": {
            "id": "user_pii",
            "first_name": first_name,
            "primary_email_address_id": "idn_1",
            "email_addresses": [{ "id": "idn_1", "email_address": email }],
        },
    })
    .to_string();
    let signed = svix_headers("msg_pii", body.as_bytes());
    let response = http(
        bridge.http,
        "POST",
        WEBHOOK_PATH,
        &signed,
        Body::Sized(body.as_bytes()),
    )
    .await;
    assert_eq!(response.accepted(), (1, false));

    bridge.signal("TERM").await;
    assert_eq!(bridge.exit_code().await, Some(0));
    let logs = bridge.log_lines().join("\n");
    assert!(
        logs.contains("Stopped"),
        "the binary logs at info by default, to the end:\n{logs}"
    );
    let key = SECRET.trim_start_matches("whsec_");
    for secret in [SECRET, key, first_name, email] {
        assert!(
            !logs.contains(secret),
            "stderr contains {secret:?}:\n{logs}"
        );
    }
}
