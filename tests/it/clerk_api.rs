//! The Backend API client (`clerk_api`) over real sockets against the fake Clerk
//! (`fake_clerk`): complete listings at both page sizes, every retry path, objects created and
//! deleted between pages, resuming from a saved cursor, lookups, and the request rate as the fake
//! measured it.
//!
//! The rate budget is set high except where the rate is what is tested, and backoffs short, so the
//! file stays fast; no test sleeps (the fake's injected latency is the server's, and every wait is
//! bounded by `support::within`).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use clerk_bridge::clerk_api::{
    API_VERSION, Client, Config, Cursor, Error, Kind, Listing, Lookup, PassReport, SecretKey,
    Transient, USER_AGENT,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    fake_clerk::{DeletedCursor, FakeClerk, Fault, Recorded, SECRET_KEY, Store, listing_requests},
    support::{Body, http, within},
};

/// A budget high enough not to matter (requests per second).
const FAST: f64 = 2000.0;

/// A client config for `fake`: pages of `limit`, a high budget, short backoffs, 4 attempts.
fn config(fake: &FakeClerk, limit: u32) -> Config {
    let mut config = Config::new(SecretKey::try_new(SECRET_KEY).unwrap());
    config.base_url = fake.base_url();
    config.page_limit = limit;
    config.requests_per_second = Some(FAST);
    config.max_attempts = 4;
    config.initial_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    config.max_retry_after = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    config
}

/// A client for `fake` with pages of `limit`.
fn client(fake: &FakeClerk, limit: u32) -> Client {
    Client::try_new(config(fake, limit)).unwrap()
}

/// Every remaining page of `listing`, flattened, and its report.
async fn drain(listing: &mut Listing) -> (Vec<Value>, PassReport) {
    let mut objects = Vec::new();
    while let Some(page) = listing.next_page().await.unwrap() {
        assert!(!page.is_empty(), "empty page");
        objects.extend(page);
    }
    let report = listing.report().expect("a report once the pass is over");
    (objects, report)
}

/// A whole pass over `kind`.
async fn pass(client: &Client, kind: Kind) -> (Vec<Value>, PassReport) {
    within("a listing", drain(&mut client.list(kind))).await
}

/// The ids of `objects`.
fn ids(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|object| object["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Asserts that `seen` holds every id of `expected` exactly once, and nothing else.
fn assert_exactly(seen: &[String], expected: &[String], what: &str) {
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "{what}: an object was yielded twice"
    );
    let expected: HashSet<&String> = expected.iter().collect();
    assert!(
        unique == expected,
        "{what}: {} seen, {} expected",
        unique.len(),
        expected.len()
    );
}

/// The ids of `kind` in the fake now.
fn live_ids(fake: &FakeClerk, kind: Kind) -> Vec<String> {
    fake.with_store(|store| store.table(kind).ids())
}

/// Asserts a clean, complete pass over `total` objects.
fn assert_complete(report: &PassReport, total: u64) {
    assert!(report.complete, "{report:?}");
    assert_eq!(
        (report.total_at_start, report.total_at_end, report.objects),
        (total, total, total)
    );
    assert_eq!(
        (report.step_backs, report.lost_cursors, report.anomalies),
        (0, 0, 0),
        "{report:?}"
    );
}

/// Lists every kind at once over one client and checks each against the fake.
async fn list_all_kinds(fake: &FakeClerk, client: &Client) -> [PassReport; 3] {
    let (users, orgs, memberships) = tokio::join!(
        pass(client, Kind::User),
        pass(client, Kind::Organization),
        pass(client, Kind::OrganizationMembership),
    );
    let mut reports = Vec::new();
    for (kind, (objects, report)) in Kind::ALL.into_iter().zip([users, orgs, memberships]) {
        let expected = live_ids(fake, kind);
        assert_exactly(&ids(&objects), &expected, kind.as_str());
        assert_complete(&report, expected.len() as u64);
        assert!(
            objects.iter().all(|o| o["object"] == kind.as_str()),
            "{kind}"
        );
        reports.push(report);
    }
    [reports[0], reports[1], reports[2]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_every_object_at_the_largest_page_size() {
    let fake = FakeClerk::start(Store::generate(10_000, 2_000, 20_000)).await;
    let client = client(&fake, 500);
    let [users, orgs, memberships] = list_all_kinds(&fake, &client).await;

    // Users: 20 full pages and the empty one that ends the pass; offsets overlap by 10.
    assert_eq!(users.pages, 21);
    assert_eq!(orgs.pages, offset_pages(2_000, 500, 10));
    assert_eq!(memberships.pages, offset_pages(20_000, 500, 10));
    let requests = fake.requests();
    for request in &requests {
        assert_eq!(request.status, 200, "{request:?}");
        assert_eq!(request.user_agent.as_deref(), Some(USER_AGENT));
        assert_eq!(request.api_version.as_deref(), Some(API_VERSION));
    }
    for request in requests.iter().filter(|r| r.is_listing()) {
        assert_eq!(request.param("limit"), Some("500"));
        assert_eq!(request.param("order_by"), Some("+created_at"));
    }
    // The objects are Clerk's shapes, as sent.
    let user = fake.with_store(|store| store.users.rows()[0].json.clone());
    let sent: Value = serde_json::from_str(&user).unwrap();
    let got = client
        .get(&Lookup::of(Kind::User, &sent).unwrap())
        .await
        .unwrap();
    assert_eq!(got, Some(sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_every_object_at_the_default_page_size() {
    let fake = FakeClerk::start(Store::generate(500, 150, 600)).await;
    let client = client(&fake, 10);
    let [users, orgs, _] = list_all_kinds(&fake, &client).await;
    assert_eq!(users.pages, 51);
    // Pages of 10 overlapping by 1: 9 new objects per page after the first.
    assert_eq!(orgs.pages, offset_pages(150, 10, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_follows_the_spec_rules() {
    let fake = FakeClerk::start(Store::generate(30, 5, 10)).await;
    let auth = [("authorization".to_owned(), format!("Bearer {SECRET_KEY}"))];
    let get = |path: &'static str, authorized: bool| {
        let headers = if authorized { &auth[..] } else { &[][..] };
        http(fake.addr(), "GET", path, headers, Body::Empty)
    };
    assert_eq!(get("/v1/users", false).await.status, 401);
    let users = get("/v1/users", true).await.json();
    assert_eq!(
        users.as_array().map(Vec::len),
        Some(10),
        "limit defaults to 10"
    );
    // Newest first by default.
    let first_at = users[0]["created_at"].as_i64().unwrap();
    assert!(first_at > users[9]["created_at"].as_i64().unwrap());
    assert_eq!(
        get("/v1/users?limit=500", true)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        30
    );
    for refused in [
        "/v1/users?limit=501",
        "/v1/users?limit=0",
        "/v1/users?starting_after=x&offset=1",
        "/v1/users?starting_after=x&order_by=username",
        "/v1/organizations?order_by=nonsense",
    ] {
        let response = get(refused, true).await;
        assert_eq!(response.status, 422, "{refused}");
        assert!(
            response.json()["errors"][0]["code"].is_string(),
            "{refused}"
        );
    }
    let orgs = get("/v1/organizations?limit=2&offset=1", true).await.json();
    assert_eq!(orgs["total_count"], 5);
    assert_eq!(orgs["data"].as_array().unwrap().len(), 2);
    let count = get("/v1/users/count", true).await.json();
    assert_eq!(count["total_count"], 30);
    assert_eq!(get("/v1/users/user_missing", true).await.status, 404);
    assert_eq!(get("/v2/users", true).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_unauthorized_names_no_key_and_is_not_retried() {
    let fake = FakeClerk::start(Store::generate(5, 1, 1)).await;
    let mut config = config(&fake, 10);
    let wrong = "sk_test_WrongKeyWrongKeyWrongKey";
    config.secret_key = SecretKey::try_new(wrong).unwrap();
    let client = Client::try_new(config).unwrap();
    let error = within("an answer", client.list(Kind::Organization).next_page())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unauthorized), "{error:?}");
    let message = format!("{error} {error:?} {client:?}");
    assert!(
        message.contains("secret key") && !message.contains("WrongKey"),
        "{message}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_with_retry_after_waits_as_told() {
    let fake = FakeClerk::start(Store::generate(5, 30, 1)).await;
    fake.inject(
        "/organizations",
        Fault::TooManyRequests {
            retry_after: Some("1"),
        },
    );
    let (orgs, report) = pass(&client(&fake, 10), Kind::Organization).await;
    assert_exactly(
        &ids(&orgs),
        &live_ids(&fake, Kind::Organization),
        "organizations",
    );
    assert!(report.complete);
    let requests = fake.requests();
    assert_eq!(requests[0].status, 429);
    assert!(
        requests[1].at - requests[0].at >= Duration::from_secs(1),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_without_a_usable_retry_after_backs_off() {
    let fake = FakeClerk::start(Store::generate(5, 30, 1)).await;
    for retry_after in [None, Some("soon"), Some("Wed, 21 Oct 2015 07:28:00 GMT")] {
        fake.inject("/organizations", Fault::TooManyRequests { retry_after });
    }
    let (orgs, _) = pass(&client(&fake, 10), Kind::Organization).await;
    assert_exactly(
        &ids(&orgs),
        &live_ids(&fake, Kind::Organization),
        "organizations",
    );
    let requests = fake.requests();
    let statuses: Vec<u16> = requests.iter().take(4).map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 429, 200]);
    for pair in requests[..4].windows(2) {
        // The first backoff is 20 ms, jittered into [10, 20] ms, and grows from there.
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(10),
            "{requests:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_the_client_waits_is_an_error() {
    let fake = FakeClerk::start(Store::generate(5, 3, 1)).await;
    fake.inject(
        "/organizations",
        Fault::TooManyRequests {
            retry_after: Some("3600"),
        },
    );
    let error = within(
        "an answer",
        client(&fake, 10).list(Kind::Organization).next_page(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, Error::RateLimited { retry_after, .. }
            if retry_after == Duration::from_secs(3600)),
        "{error:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let fake = FakeClerk::start(Store::generate(5, 40, 1)).await;
    let client = client(&fake, 10);
    let mut listing = client.list(Kind::Organization);
    fake.inject("/organizations", Fault::Status(503));
    fake.inject("/organizations", Fault::Status(503));
    let first = within("a page", listing.next_page())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.len(), 10);

    for _ in 0..4 {
        fake.inject("/organizations", Fault::Status(503));
    }
    let cursor = listing.cursor().clone();
    let error = within("an answer", listing.next_page()).await.unwrap_err();
    match &error {
        Error::RetriesExhausted {
            attempts: 4,
            last: Transient::ServerError(503),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        listing.cursor(),
        &cursor,
        "a failed page leaves the cursor alone"
    );
    let (rest, report) = within("the rest", drain(&mut listing)).await;
    let seen = [ids(&first), ids(&rest)].concat();
    assert_exactly(&seen, &live_ids(&fake, Kind::Organization), "organizations");
    assert!(report.complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_and_malformed_bodies_are_retried() {
    let fake = FakeClerk::start(Store::generate(60, 60, 60)).await;
    fake.inject("/users", Fault::TruncatedBody);
    fake.inject("/organizations", Fault::MalformedJson);
    fake.inject("/organization_memberships", Fault::TruncatedBody);
    fake.inject("/organization_memberships", Fault::MalformedJson);
    list_all_kinds(&fake, &client(&fake, 20)).await;
    assert_eq!(fake.pending_faults(), 0);
    // Each fault cost exactly one more request: the client saw each as a failure and retried it.
    let requests = fake.requests();
    let count =
        |kind| listing_requests(&requests, &format!("/{}", listing_path(kind))).len() as u64;
    assert_eq!(count(Kind::User), 3 + 1 + 1);
    assert_eq!(count(Kind::Organization), offset_pages(60, 20, 1) + 1);
    assert_eq!(
        count(Kind::OrganizationMembership),
        offset_pages(60, 20, 1) + 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_times_out_and_is_retried() {
    let fake = FakeClerk::start(Store::generate(5, 15, 1)).await;
    fake.inject("/organizations", Fault::Latency(Duration::from_secs(2)));
    let mut config = config(&fake, 10);
    config.request_timeout = Duration::from_millis(300);
    let client = Client::try_new(config).unwrap();
    let (orgs, _) = pass(&client, Kind::Organization).await;
    assert_exactly(
        &ids(&orgs),
        &live_ids(&fake, Kind::Organization),
        "organizations",
    );
    let requests = fake.requests();
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(300) && gap < Duration::from_secs(2),
        "{gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_errors_are_not_retried() {
    let fake = FakeClerk::start(Store::generate(5, 3, 1)).await;
    let client = client(&fake, 10);
    fake.inject("/organizations", Fault::Status(400));
    let error = within("an answer", client.list(Kind::Organization).next_page())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Rejected { status: 400, code: Some(code), .. }
            if code == "injected"),
        "{error:?}"
    );
    fake.inject("/users/user_x", Fault::Status(403));
    let error = within("an answer", client.get(&Lookup::user("user_x")))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Forbidden { .. }), "{error:?}");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_created_and_deleted_between_pages_are_all_accounted_for() {
    let fake = FakeClerk::start(Store::generate(1_000, 1, 1)).await;
    let before = live_ids(&fake, Kind::User);
    let gone = Arc::new(Mutex::new(HashSet::new()));
    let created = Arc::new(Mutex::new(Vec::new()));
    let (hook_gone, hook_created) = (gone.clone(), created.clone());
    fake.set_hook(move |request: &Recorded, store: &mut Store| {
        let Some(cursor) = request
            .param("starting_after")
            .filter(|_| request.path == "/users")
        else {
            return;
        };
        // Behind the cursor, ahead of it, and new ones (which land at the end).
        let ids = store.users.ids();
        let here = ids.iter().position(|id| id == cursor).unwrap_or(0);
        let victims = [
            here.saturating_sub(5),
            here.saturating_sub(9),
            here + 3,
            here + 30,
        ];
        for index in victims {
            if let Some(id) = ids.get(index).filter(|id| id.as_str() != cursor)
                && store.delete(Kind::User, id)
            {
                hook_gone.lock().unwrap().insert(id.clone());
            }
        }
        hook_created.lock().unwrap().push(store.create_user());
    });
    let (users, report) = pass(&client(&fake, 50), Kind::User).await;
    let seen = ids(&users);
    let gone = gone.lock().unwrap().clone();
    let throughout: Vec<String> = before
        .iter()
        .filter(|id| !gone.contains(*id))
        .cloned()
        .collect();
    let seen_set: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen_set.len(), seen.len(), "no user yielded twice");
    // Users created during the pass (and not deleted again) land at its end, so they are seen too.
    let created: Vec<String> = created
        .lock()
        .unwrap()
        .iter()
        .filter(|id| !gone.contains(*id))
        .cloned()
        .collect();
    assert!(!created.is_empty());
    for id in throughout.iter().chain(&created) {
        assert!(seen_set.contains(id), "{id} missed: {report:?}");
    }
    assert!(!gone.is_empty());
    assert_eq!(report.total_at_start, 1_000);
    assert_eq!(
        report.total_at_end,
        live_ids(&fake, Kind::User).len() as u64
    );
    assert!(
        !report.complete,
        "counts changed during the pass: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_deleted_behind_an_offset_listing_are_not_skipped() {
    for kind in [Kind::Organization, Kind::OrganizationMembership] {
        let fake = FakeClerk::start(Store::generate(100, 500, 500)).await;
        let before = live_ids(&fake, kind);
        let gone = Arc::new(Mutex::new(HashSet::new()));
        let hook_gone = gone.clone();
        let path = format!("/{}", listing_path(kind));
        fake.set_hook(move |request: &Recorded, store: &mut Store| {
            let offset: usize = request
                .param("offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            if request.path != path || offset == 0 || hook_gone.lock().unwrap().len() >= 100 {
                return;
            }
            // Far more than the overlap of 1, all behind the pass, on every other page.
            if (offset / 49).is_multiple_of(2) {
                for id in store
                    .table(kind)
                    .ids()
                    .iter()
                    .take(offset)
                    .skip(offset / 2)
                    .take(7)
                {
                    if store.delete(kind, id) {
                        hook_gone.lock().unwrap().insert(id.clone());
                    }
                }
            }
        });
        let (objects, report) = pass(&client(&fake, 50), kind).await;
        let gone = gone.lock().unwrap().clone();
        let throughout: Vec<String> = before
            .iter()
            .filter(|id| !gone.contains(*id))
            .cloned()
            .collect();
        let seen = ids(&objects);
        let seen_set: HashSet<&String> = seen.iter().collect();
        assert_eq!(seen_set.len(), seen.len(), "{kind}: none yielded twice");
        assert!(
            throughout.iter().all(|id| seen_set.contains(id)),
            "{kind}: one was skipped"
        );
        assert!(report.step_backs > 0, "{kind}: {report:?}");
        assert_eq!(report.total_at_end, 500 - gone.len() as u64);
        assert!(!report.complete, "{kind}: {report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_saw_every_change_is_complete() {
    // Balanced churn: one old organization deleted and one new created before each page. The
    // counts agree and every organization is seen, so the pass may call itself complete.
    let fake = FakeClerk::start(Store::generate(10, 300, 1)).await;
    let before = live_ids(&fake, Kind::Organization);
    fake.set_hook(move |request: &Recorded, store: &mut Store| {
        if request.path == "/organizations" && request.param("offset") != Some("0") {
            let oldest = store.organizations.ids()[0].clone();
            store.delete(Kind::Organization, &oldest);
            store.create_organization();
        }
    });
    let (orgs, report) = pass(&client(&fake, 50), Kind::Organization).await;
    let seen: HashSet<String> = ids(&orgs).into_iter().collect();
    let now = live_ids(&fake, Kind::Organization);
    assert!(now.iter().all(|id| seen.contains(id)));
    assert!(seen.len() > before.len());
    assert!(report.complete, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cursor_user_is_survived_whatever_clerk_answers() {
    for mode in [
        DeletedCursor::NotFound,
        DeletedCursor::Unprocessable,
        DeletedCursor::Empty,
        DeletedCursor::Continue,
    ] {
        let fake = FakeClerk::start(Store::generate(200, 1, 1)).await;
        fake.set_deleted_cursor(mode);
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let hook_deleted = deleted.clone();
        let mut pages = 0;
        fake.set_hook(move |request: &Recorded, store: &mut Store| {
            if request.path != "/users" {
                return;
            }
            pages += 1;
            // Before the 3rd and 7th pages, delete the user the page starts after.
            if let Some(cursor) = request
                .param("starting_after")
                .filter(|_| [3, 7].contains(&pages))
            {
                assert!(store.delete(Kind::User, cursor));
                hook_deleted.lock().unwrap().push(cursor.to_owned());
            }
        });
        let (users, report) = pass(&client(&fake, 20), Kind::User).await;
        assert_exactly(
            &ids(&users),
            &[live_ids(&fake, Kind::User), deleted.lock().unwrap().clone()].concat(),
            &format!("{mode:?}"),
        );
        let expected_lost = if mode == DeletedCursor::Continue {
            0
        } else {
            2
        };
        assert_eq!(report.lost_cursors, expected_lost, "{mode:?}: {report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_resumes_from_a_saved_cursor() {
    let fake = FakeClerk::start(Store::generate(300, 300, 300)).await;
    for kind in Kind::ALL {
        let before = fake.requests().len();
        let mut listing = client(&fake, 20).list(kind);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend(ids(&within("a page", listing.next_page())
                .await
                .unwrap()
                .unwrap()));
        }
        let saved = serde_json::to_string(listing.cursor()).unwrap();
        assert!(saved.len() < 1024, "{kind}: {saved}");
        drop(listing);

        // A new process: a new client, the cursor from storage.
        let cursor: Cursor = serde_json::from_str(&saved).unwrap();
        let mut listing = client(&fake, 500).resume(cursor).unwrap();
        let (rest, report) = within("the rest", drain(&mut listing)).await;
        seen.extend(ids(&rest));
        assert_exactly(&seen, &live_ids(&fake, kind), kind.as_str());
        assert!(report.complete, "{kind}: {report:?}");

        // No page was asked for twice: every listing request of the pass is distinct.
        let path = format!("/{}", listing_path(kind));
        let pass_requests = listing_requests(&fake.requests()[before..], &path);
        let keys: Vec<String> = pass_requests
            .iter()
            .map(|r| format!("{:?} {:?}", r.param("offset"), r.param("starting_after")))
            .collect();
        let distinct: HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{kind}: {keys:?}");
        assert!(
            pass_requests.iter().all(|r| r.param("limit") == Some("20")),
            "{kind}"
        );
        assert_eq!(report.pages, pass_requests.len() as u64, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_confirm_presence_and_absence() {
    let fake = FakeClerk::start(Store::generate(20, 3, 12)).await;
    let client = client(&fake, 10);
    let (memberships, _) = pass(&client, Kind::OrganizationMembership).await;
    let membership = memberships[0].clone();
    let lookup = Lookup::of(Kind::OrganizationMembership, &membership).unwrap();
    let Lookup::OrganizationMembership {
        organization_id,
        user_id,
        id,
    } = lookup.clone()
    else {
        unreachable!()
    };
    let get = |lookup: Lookup| {
        let client = client.clone();
        async move { within("a lookup", client.get(&lookup)).await.unwrap() }
    };
    assert_eq!(get(lookup.clone()).await, Some(membership));
    assert!(get(Lookup::user(&user_id)).await.is_some());
    assert!(get(Lookup::organization(&organization_id)).await.is_some());

    // The user leaves and joins again: the old membership is gone, the new one found.
    let rejoined = fake.with_store(|store| {
        store.delete(Kind::OrganizationMembership, &id);
        store.create_membership(&organization_id, &user_id)
    });
    assert_eq!(get(lookup.clone()).await, None);
    let new = Lookup::OrganizationMembership {
        id: rejoined,
        organization_id: organization_id.clone(),
        user_id: user_id.clone(),
    };
    assert!(get(new.clone()).await.is_some());
    fake.with_store(|store| store.update(Kind::OrganizationMembership, new.id()));

    // The organization is deleted (404 on its member list), then the user.
    fake.with_store(|store| store.delete(Kind::Organization, &organization_id));
    assert_eq!(get(new).await, None);
    assert_eq!(get(Lookup::organization(&organization_id)).await, None);
    fake.with_store(|store| store.delete(Kind::User, &user_id));
    assert_eq!(get(Lookup::user(&user_id)).await, None);

    // A 404 that is not Clerk's (a wrong base URL) proves nothing.
    let mut wrong = config(&fake, 10);
    wrong.base_url = wrong.base_url.replace("/v1", "/v2");
    let error = Client::try_new(wrong)
        .unwrap()
        .get(&Lookup::user("user_x"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::UnexpectedNotFound { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_rate_stays_within_the_budget() {
    const BUDGET: f64 = 200.0;
    let fake = FakeClerk::start(Store::generate(400, 400, 400)).await;
    let mut config = config(&fake, 10);
    config.requests_per_second = Some(BUDGET);
    let client = Client::try_new(config).unwrap();
    // Nine passes at once (three of each kind), sharing one client and so one budget: together
    // they would go faster than the budget allows.
    let passes = Kind::ALL.into_iter().cycle().take(9).map(|kind| {
        let client = client.clone();
        let fake = &fake;
        async move {
            let (objects, report) = pass(&client, kind).await;
            assert_exactly(&ids(&objects), &live_ids(fake, kind), kind.as_str());
            assert_complete(&report, 400);
        }
    });
    let started = Instant::now();
    futures_util::future::join_all(passes).await;
    let elapsed = started.elapsed();

    let mut arrivals: Vec<Instant> = fake.requests().iter().map(|r| r.at).collect();
    arrivals.sort();
    let per_second = BUDGET as usize;
    assert!(
        arrivals.len() > per_second * 3 / 2,
        "{} requests",
        arrivals.len()
    );
    // No second holds more than the budget: request i + 200 arrives a second after request i (less
    // a few ms for loopback and scheduling jitter between the client's clock and the fake's).
    for (i, window) in arrivals.windows(per_second + 1).enumerate() {
        let span = window[per_second] - window[0];
        assert!(
            span >= Duration::from_millis(975),
            "requests {i}..={}: {span:?}",
            i + per_second
        );
    }
    let floor = Duration::from_secs_f64((arrivals.len() - 1) as f64 / BUDGET);
    assert!(elapsed >= floor, "{elapsed:?} < {floor:?}");
    let by_path = fake
        .requests()
        .iter()
        .fold(HashMap::new(), |mut counts, r| {
            *counts.entry(r.path.clone()).or_insert(0) += 1;
            counts
        });
    assert_eq!(by_path.get("/users/count"), Some(&6), "{by_path:?}");
}

/// The listing path of `kind`, as the fake logs it (without the leading `/`).
fn listing_path(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "users",
        Kind::Organization => "organizations",
        Kind::OrganizationMembership => "organization_memberships",
    }
}

/// The pages an undisturbed offset pass over `n` objects fetches: the first at offset 0, each next
/// one `overlap` before the end of the last, until one is short.
fn offset_pages(n: u64, limit: u64, overlap: u64) -> u64 {
    let (mut next, mut pages) = (0, 0);
    loop {
        let start = if pages == 0 { 0 } else { next - overlap };
        let len = limit.min(n - start);
        pages += 1;
        next = start + len;
        if len < limit {
            return pages;
        }
    }
}
