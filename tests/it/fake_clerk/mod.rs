//! A fake Clerk Backend API on loopback, for the `clerk_api` client's tests: a hyper 1 server on
//! `127.0.0.1:0` answering the listings and lookups with the spec's shapes and limits (see
//! `routes`), from deterministic generated data (see `store`).
//!
//! Tests drive it through:
//! - the mutation API ([`FakeClerk::with_store`]: create, update, delete objects), also from a
//!   [`Hook`] run before each request is answered, to change the data between two pages;
//! - fault injection ([`FakeClerk::inject`]: 429 with or without `Retry-After`, any status, a body
//!   cut off mid-stream, malformed JSON, latency), and [`DeletedCursor`];
//! - the request log ([`FakeClerk::requests`]: path, query, arrival time, status, headers), to
//!   count requests per path and per second.
//!
//! Every request must carry `Authorization: Bearer` [`SECRET_KEY`], or it gets Clerk's 401. The
//! server stops when the [`FakeClerk`] is dropped.

mod faults;
mod routes;
mod store;

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{AUTHORIZATION, USER_AGENT},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, time::Instant};
use tokio_util::sync::CancellationToken;

pub(crate) use faults::Fault;
pub(crate) use routes::DeletedCursor;
pub(crate) use store::Store;

use faults::Body;
use routes::{Answer, clerk_error};

/// The secret key the fake accepts.
pub(crate) const SECRET_KEY: &str = "sk_test_FakeClerkBridgeKey0123456789abcdef";
/// The path prefix of the API.
const PREFIX: &str = "/v1";

/// Runs before each authorized request is answered, with the request and the data.
pub(crate) type Hook = Box<dyn FnMut(&Recorded, &mut Store) + Send>;

/// One request the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// The path below `/v1`, e.g. `/users`.
    pub(crate) path: String,
    /// The query, decoded.
    pub(crate) query: Vec<(String, String)>,
    /// When it arrived.
    pub(crate) at: Instant,
    /// The status answered (0 until answered).
    pub(crate) status: u16,
    /// Its `User-Agent`.
    pub(crate) user_agent: Option<String>,
    /// Its `Clerk-API-Version`.
    pub(crate) api_version: Option<String>,
}

/// A running fake.
#[derive(Debug)]
pub(crate) struct FakeClerk {
    /// Where it listens.
    addr: SocketAddr,
    /// Its data, faults and log.
    state: Arc<Mutex<State>>,
    /// Stops the server.
    shutdown: CancellationToken,
}

/// The fake's mutable state; locked briefly, never across an await.
struct State {
    /// The data.
    store: Store,
    /// Faults waiting for a request to their path.
    faults: VecDeque<(String, Fault)>,
    /// Run before each authorized request is answered.
    hook: Option<Hook>,
    /// Every request, in order of arrival.
    requests: Vec<Recorded>,
    /// How a `starting_after` naming a deleted user is answered.
    deleted_cursor: DeletedCursor,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("faults", &self.faults)
            .field("requests", &self.requests.len())
            .field("deleted_cursor", &self.deleted_cursor)
            .finish_non_exhaustive()
    }
}

// === impl Recorded ===

impl Recorded {
    /// The first value of a query parameter.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        routes::param(&self.query, name)
    }

    /// Whether this is a listing request (not a count or lookup).
    pub(crate) fn is_listing(&self) -> bool {
        routes::listed_kind(&self.path).is_some()
    }
}

// === impl FakeClerk ===

impl FakeClerk {
    /// Starts a fake serving `store`.
    pub(crate) async fn start(store: Store) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State {
            store,
            faults: VecDeque::new(),
            hook: None,
            requests: Vec::new(),
            deleted_cursor: DeletedCursor::NotFound,
        }));
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, state.clone(), shutdown.clone()));
        FakeClerk {
            addr,
            state,
            shutdown,
        }
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure the client with.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}{PREFIX}", self.addr)
    }

    /// Runs `change` on the data (the mutation API).
    pub(crate) fn with_store<R>(&self, change: impl FnOnce(&mut Store) -> R) -> R {
        change(&mut self.lock().store)
    }

    /// Queues `fault` for the next request to `path` (below `/v1`, without the query).
    pub(crate) fn inject(&self, path: &str, fault: Fault) {
        self.lock().faults.push_back((path.to_owned(), fault));
    }

    /// Faults not yet taken.
    pub(crate) fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    /// Sets the hook run before each authorized request is answered.
    pub(crate) fn set_hook(&self, hook: impl FnMut(&Recorded, &mut Store) + Send + 'static) {
        self.lock().hook = Some(Box::new(hook));
    }

    /// Chooses how a `starting_after` naming a deleted user is answered.
    pub(crate) fn set_deleted_cursor(&self, mode: DeletedCursor) {
        self.lock().deleted_cursor = mode;
    }

    /// Every request so far, in order of arrival.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The state, even if a panicking test poisoned it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeClerk {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Accepts connections until `shutdown`.
async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            () = shutdown.cancelled() => return,
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// Answers one request: auth, hook, fault, route; logs it.
async fn handle(state: &Mutex<State>, request: Request<Incoming>) -> Response<Body> {
    let mut recorded = record(&request);
    let authorized = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {SECRET_KEY}"));
    let (fault, answer) = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let (fault, answer) = if !request.uri().path().starts_with(PREFIX) {
            // Not the API: a bare 404 like a proxy's, without Clerk's error body.
            let answer = Answer {
                status: StatusCode::NOT_FOUND,
                body: "Not Found".to_owned(),
            };
            (None, answer)
        } else if !authorized {
            let answer = clerk_error(
                StatusCode::UNAUTHORIZED,
                "authentication_invalid",
                "Unauthorized",
            );
            (None, answer)
        } else if request.method() != hyper::Method::GET {
            (
                None,
                clerk_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "GET only",
                ),
            )
        } else {
            state.prepare(&recorded)
        };
        recorded.status = match &fault {
            Some(Fault::TooManyRequests { .. }) => 429,
            Some(Fault::Status(status)) => *status,
            _ => answer.status.as_u16(),
        };
        state.requests.push(recorded);
        (fault, answer)
    };
    match fault {
        None => faults::json(answer),
        Some(fault) => {
            if let Fault::Latency(delay) = fault {
                tokio::time::sleep(delay).await;
            }
            fault.respond(answer)
        }
    }
}

/// The log entry of a request, before it is answered.
fn record(request: &Request<Incoming>) -> Recorded {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|value: &hyper::header::HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    let path = request.uri().path();
    Recorded {
        path: path.strip_prefix(PREFIX).unwrap_or(path).to_owned(),
        query: url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        at: Instant::now(),
        status: 0,
        user_agent: header(USER_AGENT.as_str()),
        api_version: header("clerk-api-version"),
    }
}

// === impl State ===

impl State {
    /// Runs the hook, takes a matching fault, and computes the normal answer.
    fn prepare(&mut self, request: &Recorded) -> (Option<Fault>, Answer) {
        if let Some(hook) = self.hook.as_mut() {
            hook(request, &mut self.store);
        }
        let fault = self
            .faults
            .iter()
            .position(|(path, _)| *path == request.path)
            .and_then(|index| self.faults.remove(index))
            .map(|(_, fault)| fault);
        let answer = routes::answer(
            &self.store,
            self.deleted_cursor,
            &request.path,
            &request.query,
        );
        (fault, answer)
    }
}

/// Helpers for tests reading the log.
pub(crate) fn listing_requests(requests: &[Recorded], path: &str) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|request| request.path == path && request.is_listing())
        .cloned()
        .collect()
}
