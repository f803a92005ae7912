//! The client subcommands of the real binary against an in-process bridge: `trigger` signs and
//! posts every built-in sample (each arrives typed), edits, files and redeliveries, and `tail`
//! prints what is stored and follows what comes. Bad flags exit 64 with one line, an unreachable
//! bridge 1.

use std::process::Stdio;

use clerk_bridge::proto::{event::Payload, user_event::Change};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::{
    process,
    support::{OTHER_SECRET, SECRET, TestBridge, fixtures, now_secs, within},
};

/// Exit code for bad flags (EX_USAGE).
const EX_USAGE: i32 = 64;

/// `clerk-bridge ARGS` with only the signing secret in its environment, stdout piped.
fn clerk_bridge(args: &[&str]) -> Command {
    let mut command = process::clerk_bridge(&[("CLERK_WEBHOOK_SIGNING_SECRET", SECRET)], args);
    command.stdout(Stdio::piped());
    command
}

/// What a finished command printed.
#[derive(Debug)]
struct Output {
    /// Exit code (`None` when killed).
    code: Option<i32>,
    /// Standard output lines.
    stdout: Vec<String>,
    /// Standard error lines.
    stderr: Vec<String>,
}

/// Runs `clerk-bridge ARGS` to its end.
async fn run(args: &[&str]) -> Output {
    let output = within("clerk-bridge to exit", clerk_bridge(args).output())
        .await
        .unwrap();
    let lines = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    Output {
        code: output.status.code(),
        stdout: lines(output.stdout),
        stderr: lines(output.stderr),
    }
}

/// `trigger ARGS --url <the bridge's webhook URL>`.
async fn trigger(bridge: &TestBridge, args: &[&str]) -> Output {
    let url = format!("http://{}/webhooks/clerk", bridge.http);
    let mut argv = vec!["trigger", "--url", &url];
    argv.extend_from_slice(args);
    run(&argv).await
}

/// `tail ARGS --grpc-addr <the bridge's gRPC address>`.
async fn tail(bridge: &TestBridge, args: &[&str]) -> Output {
    let addr = bridge.grpc.to_string();
    let mut argv = vec!["tail", "--grpc-addr", &addr];
    argv.extend_from_slice(args);
    run(&argv).await
}

/// The bridge's JSON answer at the end of a `trigger` line.
fn answer(line: &str) -> Value {
    let json = &line[line.find('{').unwrap_or_else(|| panic!("{line}"))..];
    serde_json::from_str(json).unwrap()
}

/// Asserts a run failed with `code` and exactly one line on stderr containing `needle`.
fn assert_one_line_error(output: &Output, code: i32, needle: &str) {
    assert_eq!(output.code, Some(code), "{output:?}");
    assert_eq!(output.stderr.len(), 1, "{output:?}");
    assert!(output.stderr[0].contains(needle), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_is_accepted_and_arrives_typed() {
    let bridge = TestBridge::start().await;
    let types = run(&["trigger", "--list"]).await.stdout;
    for fixture in fixtures() {
        assert!(
            types.iter().any(|t| t == fixture.event_type()),
            "no built-in sample for {}",
            fixture.event_type()
        );
    }
    for (i, event_type) in types.iter().enumerate() {
        let output = trigger(&bridge, &[event_type]).await;
        assert_eq!(output.code, Some(0), "{output:?}");
        let line = &output.stdout[0];
        assert!(line.starts_with(&format!("200 {event_type} ")), "{line}");
        assert_eq!(answer(line)["sequence"], i + 1, "{line}");
    }
    let events = bridge
        .subscribe(0, &[])
        .await
        .next_events(types.len())
        .await;
    for (event, event_type) in events.iter().zip(&types) {
        assert_eq!(&event.r#type, event_type);
        assert!(event.payload.is_some(), "{event_type} arrived untyped");
        assert!(!event.object_id.is_empty(), "{event_type}");
        let occurred = event.occurred_at.as_ref().unwrap().seconds;
        assert!(
            (occurred - now_secs()).abs() < 60,
            "{event_type}: a fresh time"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_and_id_shape_the_event_and_a_resend_is_a_duplicate() {
    let bridge = TestBridge::start().await;
    let args = [
        "user.created",
        "--set",
        "data.id=user_ada",
        "--set",
        "data.first_name=Ada",
        "--set",
        "data.public_metadata={\"plan\":\"pro\"}",
        "--id",
        "msg_ada",
    ];
    let first = trigger(&bridge, &args).await;
    let again = trigger(&bridge, &args).await;
    assert_eq!(first.code, Some(0), "{first:?}");
    assert!(first.stdout[0].starts_with("200 user.created user_ada msg_ada "));
    assert_eq!(answer(&first.stdout[0])["duplicate"], false);
    assert_eq!(answer(&again.stdout[0])["duplicate"], true);

    let event = bridge.subscribe(0, &[]).await.next_event().await;
    assert_eq!(event.event_id, "msg_ada");
    assert_eq!(event.object_id, "user_ada");
    let Some(Payload::User(user)) = event.payload else {
        panic!("a user event expected: {event:?}")
    };
    let Some(Change::Created(user)) = user.change else {
        panic!("user.created expected")
    };
    assert_eq!(user.first_name.as_deref(), Some("Ada"));
    // The email id was refreshed with the user id's old random part, so it still matches.
    assert_eq!(
        user.primary_email_address_id.as_deref(),
        Some(user.email_addresses[0].id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_sent_byte_for_byte() {
    let bridge = TestBridge::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.json");
    let body = "{\"type\": \"custom.thing\",   \"timestamp\": 1716883200, \"data\": {\"id\": \"thing_1\"}}";
    std::fs::write(&path, body).unwrap();
    let output = trigger(&bridge, &["--file", path.to_str().unwrap()]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(output.stdout[0].starts_with("200 custom.thing thing_1 msg_"));
    let event = bridge.subscribe(0, &[]).await.next_event().await;
    assert_eq!(event.payload_json, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_sends_distinct_objects_and_sums_up() {
    let bridge = TestBridge::start().await;
    let output = trigger(
        &bridge,
        &[
            "user.created",
            "--count",
            "6",
            "--concurrency",
            "3",
            "--quiet",
        ],
    )
    .await;
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(
        output.stderr[0].contains("sent 6 event(s)") && output.stderr[0].contains("6 stored"),
        "{output:?}"
    );
    let events = bridge.subscribe(0, &[]).await.next_events(6).await;
    let mut ids: Vec<&str> = events.iter().map(|e| e.object_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_reports_refusals_bad_flags_and_an_absent_bridge() {
    let bridge = TestBridge::start().await;
    let url = format!("http://{}/webhooks/clerk", bridge.http);

    let wrong_secret = run(&[
        "trigger",
        "user.created",
        "--url",
        &url,
        "--signing-secret",
        OTHER_SECRET,
    ])
    .await;
    assert!(
        wrong_secret.stdout[0].starts_with("401 user.created "),
        "{wrong_secret:?}"
    );
    assert_one_line_error(&wrong_secret, 1, "--signing-secret");
    assert!(!wrong_secret.stderr[0].contains(OTHER_SECRET));
    bridge.assert_nothing_stored().await;

    for (args, flag) in [
        (&["user.exploded"][..], "--list"),
        (&["user.created", "--set", "data..id=x"], "--set"),
        (
            &["user.created", "--set", "data.first_name.x=1"],
            "data.first_name",
        ),
        (&["user.created", "--rate", "0"], "--rate"),
        (&["user.created", "--url", "https://example.com/x"], "--url"),
        (&["--file", "/no/such/payload.json"], "--file"),
        (&[], "event type"),
    ] {
        let output = trigger(&bridge, args).await;
        assert_one_line_error(&output, EX_USAGE, flag);
    }

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = format!("http://{}/webhooks/clerk", closed.local_addr().unwrap());
    drop(closed);
    let absent = run(&["trigger", "user.created", "--url", &nowhere]).await;
    assert_one_line_error(&absent, 1, "cannot reach");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_the_stored_events_as_lines_or_json() {
    let bridge = TestBridge::start().await;
    for args in [
        &[
            "user.created",
            "--set",
            "data.first_name=Ada",
            "--set",
            "data.last_name=Lovelace",
        ][..],
        &["organization.created", "--set", "data.name=Analytical"],
        &["user.deleted"],
    ] {
        assert_eq!(trigger(&bridge, args).await.code, Some(0));
    }

    let lines = tail(&bridge, &["--no-follow"]).await;
    assert_eq!(lines.code, Some(0), "{lines:?}");
    assert_eq!(lines.stdout.len(), 3, "{lines:?}");
    assert!(lines.stdout[0].starts_with("#1 "), "{lines:?}");
    assert!(lines.stdout[0].contains(" user.created "), "{lines:?}");
    assert!(
        lines.stdout[0].ends_with("Ada Lovelace <john.doe@example.com>"),
        "{lines:?}"
    );
    assert!(
        lines.stdout[1].ends_with("Analytical (acme-corp)"),
        "{lines:?}"
    );
    assert!(lines.stdout[2].ends_with(" deleted"), "{lines:?}");

    let last = tail(&bridge, &["--no-follow", "--last", "1"]).await;
    assert_eq!(last.stdout.len(), 1, "{last:?}");
    assert!(last.stdout[0].starts_with("#3 "), "{last:?}");

    let json = tail(
        &bridge,
        &["--no-follow", "--from", "1", "--types", "user.*", "--json"],
    )
    .await;
    assert_eq!(json.stdout.len(), 2, "{json:?}");
    let first: Value = serde_json::from_str(&json.stdout[0]).unwrap();
    assert_eq!(first["sequence"], 1);
    assert_eq!(first["payload"]["data"]["first_name"], "Ada");
    let second: Value = serde_json::from_str(&json.stdout[1]).unwrap();
    assert_eq!(second["type"], "user.deleted");
    assert_eq!(second["deleted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_new_events() {
    let bridge = TestBridge::start().await;
    let addr = bridge.grpc.to_string();
    let mut follower = clerk_bridge(&["tail", "--grpc-addr", &addr, "--from", "1"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    for i in 1..=2 {
        assert_eq!(trigger(&bridge, &["session.created"]).await.code, Some(0));
        let line = within("a tail line", lines.next_line()).await.unwrap();
        let line = line.expect("tail is still running");
        assert!(line.starts_with(&format!("#{i} ")), "{line}");
        assert!(line.contains(" session.created "), "{line}");
    }
    follower.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_refuses_bad_flags_and_an_absent_bridge() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let absent = run(&["tail", "--grpc-addr", &nowhere]).await;
    assert_one_line_error(&absent, 1, "cannot reach");

    let bad = run(&["tail", "--grpc-addr", "not an address"]).await;
    assert_one_line_error(&bad, EX_USAGE, "--grpc-addr");
    let both = run(&["tail", "--from", "1", "--last", "3"]).await;
    assert_one_line_error(&both, EX_USAGE, "--from");

    let bridge = TestBridge::start().await;
    let ahead = tail(&bridge, &["--from", "5", "--no-follow"]).await;
    assert_one_line_error(&ahead, 1, "OutOfRange");
    let pattern = tail(&bridge, &["--types", "us*er.created", "--no-follow"]).await;
    assert_one_line_error(&pattern, EX_USAGE, "--types");
}

/// Every subcommand refuses a bad value (from a flag or its environment variable) the same way:
/// exit 64, one line on stderr naming the flag, before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_refuses_a_bad_value_with_64_and_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--http-addr", "nope"], "--http-addr"),
        (&["serve", "--grpc-addr", "1.2.3.4"], "--grpc-addr"),
        (&["serve", "--webhook-path", "hooks"], "--webhook-path"),
        (&["serve", "--webhook-path", "/healthz"], "--webhook-path"),
        (&["serve", "--max-body-bytes", "0"], "--max-body-bytes"),
        (
            &["serve", "--max-connections", "18446744073709551615"],
            "--max-connections",
        ),
        (
            &["serve", "--heartbeat-interval", "soon"],
            "--heartbeat-interval",
        ),
        (&["serve", "--shutdown-grace", "0s"], "--shutdown-grace"),
        (
            &["serve", "--body-read-timeout", "soon"],
            "--body-read-timeout",
        ),
        (
            &["serve", "--max-buffered-bytes", "1KiB"],
            "--max-buffered-bytes",
        ),
        (
            &["serve", "--retention-max-age", "forever"],
            "--retention-max-age",
        ),
        (
            &["serve", "--retention-max-bytes", "big"],
            "--retention-max-bytes",
        ),
        (&["serve", "--log-format", "xml"], "--log-format"),
        (&["consumers", "reset", "billing", "--to", "soon"], "--to"),
        (
            &["consumers", "list", "--grpc-addr", "not an address"],
            "--grpc-addr",
        ),
        (
            &["consumers", "--grpc-addr", "not an address", "delete", "x"],
            "--grpc-addr",
        ),
        (&["consumers", "explode"], "explode"),
        (&["trigger", "user.created", "--count", "0"], "--count"),
        (
            &["trigger", "user.created", "--concurrency", "999"],
            "--concurrency",
        ),
        (&["trigger", "user.created", "--rate", "fast"], "--rate"),
        (&["tail", "--from", "first"], "--from"),
        (&["tail", "--last=-3"], "--last"),
        (&["tail", "--grpc-addr", "not an address"], "--grpc-addr"),
        (
            &["snapshot", "--grpc-addr", "not an address"],
            "--grpc-addr",
        ),
        (&["snapshot", "--tombstones=maybe"], "--tombstones"),
        (
            &["backfill", "--grpc-addr", "not an address"],
            "--grpc-addr",
        ),
        (
            &["reconcile", "--grpc-addr", "not an address"],
            "--grpc-addr",
        ),
        (&["serve", "--clerk-api-share", "2"], "--clerk-api-share"),
        (
            &["serve", "--reconcile-every", "often"],
            "--reconcile-every",
        ),
    ];
    for (args, flag) in cases {
        let output = run(args).await;
        assert_one_line_error(&output, EX_USAGE, flag);
        assert!(output.stdout.is_empty(), "{args:?}: {output:?}");
    }
}

/// A bad value in a flag's environment variable is named by its flag too.
#[tokio::test]
async fn a_bad_environment_value_names_its_flag() {
    let mut command = process::clerk_bridge(
        &[
            ("CLERK_WEBHOOK_SIGNING_SECRET", SECRET),
            ("CLERK_BRIDGE_SHUTDOWN_GRACE", "eventually"),
        ],
        ["serve"],
    );
    command.stdout(Stdio::piped());
    let output = within("clerk-bridge to exit", command.output())
        .await
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(EX_USAGE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--shutdown-grace"), "{stderr}");
}
