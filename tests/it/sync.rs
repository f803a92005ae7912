//! Backfill and reconciliation against a fake Clerk Backend API on loopback (see `fake_clerk`):
//! complete and idempotent at full scale, resumed after a SIGKILL, repairing random histories in
//! which webhooks were lost, and deleting nothing when a pass is partial or would delete too much.

use std::{collections::BTreeMap, time::Duration};

use clerk_bridge::{
    clerk_api::{self, Kind, SecretKey},
    proto::{
        BackfillRequest, Event, EventSource, ReconcileRequest, StartPosition, SubscribeRequest,
        SyncProgress, SyncState, sync_service_client::SyncServiceClient,
    },
};
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Status;

use crate::{
    fake_clerk::{FakeClerk, SECRET_KEY, Store},
    nats::NatsServer,
    process::{BridgeProcess, clerk_bridge},
    snapshot::read_snapshot,
    support::{StoreUnderTest, TestBridge, eventually, store_under_test, within},
};

/// Requests per second the in-process bridges may send the fake: fast, still paced.
const TEST_RATE: f64 = 400.0;

/// A bridge on the store under test whose passes read `fake`.
async fn bridge_for(fake: &FakeClerk) -> TestBridge {
    TestBridge::start_with(reading(fake, TEST_RATE)).await
}

/// The config change that points a bridge's passes at `fake`, at `rate` requests per second.
fn reading(fake: &FakeClerk, rate: f64) -> impl FnOnce(&mut clerk_bridge::config::Config) {
    let base_url = fake.base_url();
    move |c| {
        c.clerk_api = Some(clerk_api::Config {
            base_url,
            requests_per_second: Some(rate),
            ..clerk_api::Config::new(SecretKey::try_new(SECRET_KEY).unwrap())
        });
    }
}

/// Runs a pass to its end over gRPC and returns its final progress.
async fn run_pass(bridge: &TestBridge, reconcile: bool) -> SyncProgress {
    let mut client = SyncServiceClient::new(bridge.channel().await);
    let mut stream: std::pin::Pin<Box<dyn Stream<Item = Result<SyncProgress, Status>> + Send>> =
        if reconcile {
            let stream = client.reconcile(ReconcileRequest {}).await.unwrap();
            Box::pin(stream.into_inner().map_ok(|m| m.progress.unwrap()))
        } else {
            let stream = client.backfill(BackfillRequest {}).await.unwrap();
            Box::pin(stream.into_inner().map_ok(|m| m.progress.unwrap()))
        };
    let mut last = None;
    while let Some(progress) = within("pass progress", stream.next()).await {
        last = Some(progress.unwrap());
    }
    let last = last.expect("at least one progress message");
    assert_ne!(last.state(), SyncState::Running, "{last:?}");
    last
}

/// The bridge's state: every live object's latest event, by object id.
async fn live_objects(bridge: &TestBridge) -> BTreeMap<String, Event> {
    let request = SubscribeRequest {
        start: StartPosition::Snapshot.into(),
        ..SubscribeRequest::default()
    };
    let mut subscription = bridge.subscribe_with(request).await.unwrap();
    let (events, _) = read_snapshot(&mut subscription).await;
    events
        .into_iter()
        .map(|e| (e.object_id.clone(), e))
        .collect()
}

/// Clerk's state: every live object's `updated_at`, by id.
fn clerk_objects(fake: &FakeClerk) -> BTreeMap<String, i64> {
    fake.with_store(|store| {
        Kind::ALL
            .iter()
            .flat_map(|&kind| store.table(kind).rows().to_vec())
            .map(|row| {
                let json: Value = serde_json::from_str(&row.json).unwrap();
                (row.id, json["updated_at"].as_i64().unwrap())
            })
            .collect()
    })
}

/// The bridge's state as (id, version), to compare with [`clerk_objects`].
fn versions(objects: &BTreeMap<String, Event>) -> BTreeMap<String, i64> {
    objects
        .iter()
        .map(|(id, e)| (id.clone(), i64::try_from(e.object_version).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_loads_every_object_once_within_its_budget_and_a_rerun_appends_nothing() {
    let fake = FakeClerk::start(Store::generate(10_000, 2_000, 20_000)).await;
    let bridge = bridge_for(&fake).await;

    let done = run_pass(&bridge, false).await;
    assert_eq!(done.state(), SyncState::Completed, "{done:?}");
    assert_eq!(
        (done.read, done.appended, done.unchanged),
        (32_000, 32_000, 0)
    );
    assert_eq!(done.expected, 32_000);
    let objects = live_objects(&bridge).await;
    assert_eq!(versions(&objects), clerk_objects(&fake));
    for event in objects.values() {
        assert_eq!(event.source, i32::from(EventSource::Backfill));
        assert!(event.r#type.ends_with(".updated"), "{}", event.r#type);
        assert!(event.payload.is_some(), "typed: {}", event.r#type);
    }
    // Pages of 500 (users by cursor: 20 and the short one; organizations and memberships by
    // offset, overlapping 10: 5 and 41 and the short ones) and a few counts per kind, no retry
    // and no page twice; never faster than the budget.
    let requests = fake.requests();
    assert!(requests.len() <= 80, "{} requests", requests.len());
    let span = requests.last().unwrap().at - requests.first().unwrap().at;
    let fastest = Duration::from_secs_f64((requests.len() - 1) as f64 / TEST_RATE);
    assert!(
        span + Duration::from_millis(50) >= fastest,
        "{span:?} < {fastest:?}"
    );

    let again = run_pass(&bridge, false).await;
    assert_eq!(again.state(), SyncState::Completed);
    assert_eq!(
        (again.read, again.appended, again.unchanged),
        (32_000, 0, 32_000)
    );
    let (head, _) = bridge.positions().await;
    assert_eq!(head, 32_000, "a rerun stores nothing");
}

/// Backfill on JetStream, with webhooks newer than Clerk's listing arriving through another bridge
/// before and during the pass: one pass runs across the bridges at a time, objects a webhook
/// changed are left as they are, and no backfilled event follows a newer event of its object.
/// Then a reconciliation pass finds the user Clerk deleted without a webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_on_jetstream_never_overtakes_a_newer_webhook() {
    let fake = FakeClerk::start(Store::generate(600, 10, 10)).await;
    let nats = NatsServer::start();
    let urls = [nats.url.as_str()];
    // Slow enough that the other bridge asks while the pass runs.
    let first = TestBridge::start_on_jetstream_with(&urls, 1, reading(&fake, 4.0)).await;
    let second = TestBridge::start_on_jetstream_with(&urls, 1, reading(&fake, TEST_RATE)).await;
    let users = fake.with_store(|store| store.users.rows().to_vec());
    for (i, row) in users.iter().take(10).enumerate() {
        second
            .post_new(&format!("msg_before_{i}"), &changed_since(&row.json))
            .await;
    }

    let pass = tokio::spawn(async move { (run_pass(&first, false).await, first) });
    eventually("the pass's first page of users", || async {
        let pages = fake
            .requests()
            .iter()
            .filter(|r| r.path == "/users")
            .count();
        (pages >= 1).then_some(())
    })
    .await;
    let refused = run_pass(&second, false).await;
    assert_eq!(refused.state(), SyncState::Failed, "{refused:?}");
    assert!(refused.message.contains("another bridge"), "{refused:?}");
    for (i, row) in users.iter().skip(300).take(10).enumerate() {
        second
            .post_new(&format!("msg_during_{i}"), &changed_since(&row.json))
            .await;
    }
    let (done, first) = within("the pass", pass).await.unwrap();
    assert_eq!(done.state(), SyncState::Completed, "{done:?}");
    assert!(done.unchanged >= 10, "{done:?}");

    let (head, _) = second.positions().await;
    let events = second.subscribe(0, &[]).await.events_until_head(head).await;
    let mut newest = BTreeMap::new();
    for event in &events {
        let seen = newest.entry(event.object_id.clone()).or_insert(0);
        if event.source == i32::from(EventSource::Backfill) {
            assert!(
                event.object_version > *seen,
                "backfilled {} at {} after version {seen}",
                event.object_id,
                event.sequence
            );
        }
        *seen = (*seen).max(event.object_version);
    }
    let newest: BTreeMap<_, _> = newest
        .into_iter()
        .map(|(id, version)| (id, i64::try_from(version).unwrap()))
        .collect();
    assert_eq!(versions(&live_objects(&second).await), newest);
    assert_eq!(newest.len(), 620);

    // Clerk deletes a user without a webhook; reconciliation through the first bridge finds it.
    let gone = users[500].id.clone();
    fake.with_store(|store| store.delete(Kind::User, &gone));
    let reconciled = run_pass(&first, true).await;
    assert_eq!(reconciled.state(), SyncState::Completed, "{reconciled:?}");
    assert_eq!(reconciled.deleted, 1, "{reconciled:?}");
    let live = live_objects(&second).await;
    assert!(!live.contains_key(&gone));
    assert_eq!(live.len(), 619);
}

/// A `user.updated` webhook for the user Clerk lists as `json`, changed a second later.
fn changed_since(json: &str) -> String {
    let mut data: Value = serde_json::from_str(json).unwrap();
    let updated_at = data["updated_at"].as_i64().unwrap() + 1_000;
    data["updated_at"] = updated_at.into();
    serde_json::json!({"object": "event", "type": "user.updated", "timestamp": updated_at,
                       "data": data})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_mid_way_resumes_where_it_stood() {
    let fake = FakeClerk::start(Store::generate(3_000, 10, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let api_url = fake.base_url();
    let env = [
        ("CLERK_SECRET_KEY", SECRET_KEY),
        ("CLERK_API_URL", api_url.as_str()),
    ];
    // A development key: 10 requests per second at the whole share, so the pass takes a while.
    // On JetStream the pass is saved in the stream's state bucket, and the bridge started again
    // resumes it once the lease of the killed one expires.
    let nats = (store_under_test() == StoreUnderTest::JetStream).then(NatsServer::start);
    let mut flags = vec!["--clerk-api-share", "1"];
    if let Some(nats) = &nats {
        flags.extend(["--nats-url", nats.url.as_str()]);
    }
    let mut bridge = BridgeProcess::start_with_env(dir.path(), &flags, &env).await;
    let grpc = bridge.grpc.to_string();
    let mut follower = clerk_bridge(&env, ["backfill", "--grpc-addr", &grpc]);
    let mut follower = follower.spawn().unwrap();
    eventually("two pages of users", || async {
        let pages = fake
            .requests()
            .iter()
            .filter(|r| r.path == "/users" && r.status == 200)
            .count();
        (pages >= 2).then_some(())
    })
    .await;
    bridge.kill().await;
    let _ = follower.wait().await;
    let before = fake.requests().len();

    let bridge = BridgeProcess::start_with_env(dir.path(), &flags, &env).await;
    let grpc = bridge.grpc.to_string();
    // On JetStream it first waits out the killed bridge's lease.
    let limit = crate::support::patience() + clerk_bridge::jetstream::LEASE_TTL;
    let resumed = clerk_bridge(&env, ["backfill", "--grpc-addr", &grpc]).output();
    let output = tokio::time::timeout(limit, resumed)
        .await
        .expect("the resumed backfill ends")
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("backfill completed"), "{stdout}");
    let resumed: Vec<_> = fake.requests()[before..]
        .iter()
        .filter(|r| r.path == "/users")
        .cloned()
        .collect();
    assert!(
        resumed
            .first()
            .is_some_and(|r| r.param("starting_after").is_some()),
        "the resumed pass continued after the saved cursor: {resumed:?}"
    );
    let logs = bridge.log_lines().join("\n");
    assert!(logs.contains("Resuming an unfinished pass"), "{logs}");
}

/// A change to Clerk in a random history.
#[derive(Debug, Clone, Copy)]
enum Change {
    CreateUser,
    UpdateUser,
    DeleteUser,
    CreateMembership,
    UpdateOrganization,
}

/// Applies `change` to the fake and returns the webhook Clerk would send for it (type, data).
fn apply_change(
    fake: &FakeClerk,
    change: Change,
    rng: &mut fastrand::Rng,
) -> Option<(String, Value)> {
    fake.with_store(|store| {
        let pick = |ids: Vec<String>, rng: &mut fastrand::Rng| {
            (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())].clone())
        };
        let data = |store: &Store, kind: Kind, id: &str| -> Value {
            serde_json::from_str(&store.table(kind).get(id).unwrap().json).unwrap()
        };
        match change {
            Change::CreateUser => {
                let id = store.create_user();
                Some(("user.created".to_owned(), data(store, Kind::User, &id)))
            }
            Change::UpdateUser => {
                let id = pick(store.users.ids(), rng)?;
                store.update(Kind::User, &id);
                Some(("user.updated".to_owned(), data(store, Kind::User, &id)))
            }
            Change::DeleteUser => {
                let id = pick(store.users.ids(), rng)?;
                store.delete(Kind::User, &id);
                Some((
                    "user.deleted".to_owned(),
                    serde_json::json!({"object": "user", "id": id, "deleted": true}),
                ))
            }
            Change::CreateMembership => {
                let user = pick(store.users.ids(), rng)?;
                let organization = pick(store.organizations.ids(), rng)?;
                let id = store.create_membership(&organization, &user);
                Some((
                    "organizationMembership.created".to_owned(),
                    data(store, Kind::OrganizationMembership, &id),
                ))
            }
            Change::UpdateOrganization => {
                let id = pick(store.organizations.ids(), rng)?;
                store.update(Kind::Organization, &id);
                Some((
                    "organization.updated".to_owned(),
                    data(store, Kind::Organization, &id),
                ))
            }
        }
    })
}

/// Random histories in which some webhooks never arrive: after a reconciliation pass, a consumer
/// that applies the bridge's snapshot with the version rule holds exactly Clerk's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_repairs_random_histories_with_lost_webhooks() {
    for seed in 1..=6_u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let fake = FakeClerk::start(Store::generate(40, 4, 30)).await;
        let bridge = bridge_for(&fake).await;
        assert_eq!(run_pass(&bridge, false).await.state(), SyncState::Completed);
        let changes = [
            Change::CreateUser,
            Change::UpdateUser,
            Change::DeleteUser,
            Change::CreateMembership,
            Change::UpdateOrganization,
        ];
        for step in 0..40 {
            let change = changes[rng.usize(..changes.len())];
            let Some((event_type, data)) = apply_change(&fake, change, &mut rng) else {
                continue;
            };
            // Two webhooks in five are lost for good.
            if rng.u8(..5) < 2 {
                continue;
            }
            let timestamp = data["updated_at"].as_i64().unwrap_or(4_000_000_000_000);
            let body = serde_json::json!({"object": "event", "type": event_type,
                                          "timestamp": timestamp, "data": data});
            bridge
                .post_new(&format!("msg_{seed}_{step}"), &body.to_string())
                .await;
        }
        let done = run_pass(&bridge, true).await;
        assert_eq!(done.state(), SyncState::Completed, "seed {seed}: {done:?}");
        assert_eq!(
            versions(&live_objects(&bridge).await),
            clerk_objects(&fake),
            "seed {seed}"
        );
        if seed <= 2 {
            let database = example_consumer_database(&bridge).await;
            assert_eq!(
                database,
                clerk_objects(&fake),
                "seed {seed}: the example's database"
            );
        }
    }
}

/// Runs the Rust example consumer (`examples/sync_sqlite.rs`) on a new database until it has caught
/// up (it bootstraps from the snapshot), and returns its live rows as (id, version).
async fn example_consumer_database(bridge: &TestBridge) -> BTreeMap<String, i64> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let grpc = bridge.grpc.to_string();
    let mut consumer = tokio::process::Command::new(example_binary("sync_sqlite"))
        .args(["--db", db.to_str().unwrap(), "--grpc-addr", &grpc])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(consumer.stderr.take().unwrap()).lines();
    within("the example consumer to catch up", async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("caught up at") {
                return;
            }
        }
        panic!("the example consumer ended before it caught up");
    })
    .await;
    consumer.kill().await.unwrap();
    let db = rusqlite::Connection::open(&db).unwrap();
    let mut live = BTreeMap::new();
    for table in ["users", "organizations", "organization_memberships"] {
        let mut rows = db
            .prepare(&format!(
                "SELECT id, version FROM {table} WHERE NOT deleted"
            ))
            .unwrap();
        let rows = rows
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .unwrap();
        live.extend(rows.map(Result::unwrap));
    }
    live
}

/// An example's binary beside the test binary (`cargo test` builds the examples); built first when
/// only this test target was.
fn example_binary(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .status()
            .unwrap();
        assert!(built.success(), "cargo build --example {name}");
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_pass_deletes_nothing() {
    let fake = FakeClerk::start(Store::generate(50, 2, 0)).await;
    let bridge = bridge_for(&fake).await;
    run_pass(&bridge, false).await;
    let gone = fake.with_store(|s| s.users.ids()[0].clone());
    fake.with_store(|s| s.delete(Kind::User, &gone));
    // A user created while the pass lists users makes Clerk's counts disagree.
    let mut created = false;
    fake.set_hook(move |request, store| {
        if request.path == "/users" && request.param("starting_after").is_none() && !created {
            created = true;
            store.create_user();
        }
    });
    let done = run_pass(&bridge, true).await;
    assert_eq!(done.state(), SyncState::Failed, "{done:?}");
    assert!(
        done.message.contains("nothing was deleted"),
        "{}",
        done.message
    );
    assert_eq!(done.deleted, 0);
    assert!(live_objects(&bridge).await.contains_key(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safety_bound_stops_a_mass_deletion() {
    let fake = FakeClerk::start(Store::generate(120, 2, 0)).await;
    let bridge = bridge_for(&fake).await;
    run_pass(&bridge, false).await;
    // As if the key belonged to another instance: most users are "gone".
    fake.with_store(|s| {
        for id in s.users.ids().into_iter().take(60) {
            s.delete(Kind::User, &id);
        }
    });
    let done = run_pass(&bridge, true).await;
    assert_eq!(done.state(), SyncState::Failed, "{done:?}");
    assert!(done.message.contains("safety bound"), "{}", done.message);
    assert_eq!(done.deleted, 0);
    assert_eq!(live_objects(&bridge).await.len(), 122);
    let metrics = bridge.get("/metrics").await;
    let page = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        page.contains(r#"clerk_bridge_sync_passes_total{pass="reconciliation",result="unsafe"} 1"#),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_key_a_pass_is_refused_with_the_reason() {
    let bridge = TestBridge::start_with(|_| {}).await;
    let grpc = bridge.grpc.to_string();
    let output = within(
        "clerk-bridge reconcile",
        clerk_bridge(&[], ["reconcile", "--grpc-addr", &grpc]).output(),
    )
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("CLERK_SECRET_KEY"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
