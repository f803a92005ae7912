//! The load generator: realistic `user.created` webhooks, each with its own `svix-id` and user id,
//! signed before timing starts and written as raw HTTP/1.1 bytes over keep-alive connections, so
//! the generator spends almost nothing per request.

use std::{
    collections::HashMap,
    net::SocketAddr,
    ops::Range,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::{Buf, Bytes, BytesMut};
use svix::webhooks::Webhook;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

use crate::{BenchError, bridge::SECRET, stats::Latencies};

/// The webhook route of the bridge.
const WEBHOOK_PATH: &str = "/webhooks/clerk";
/// End of the HTTP head.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// One signed webhook, ready to write.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// Its `svix-id`: the key of [`SentAt`], to match a delivery to its send.
    pub(crate) id: Bytes,
    /// The whole HTTP request.
    pub(crate) request: Bytes,
    /// Size of its body.
    pub(crate) body_len: usize,
}

/// What a closed-loop or paced run did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Webhooks answered 200 as newly stored.
    pub(crate) stored: usize,
    /// Webhooks answered 200 as duplicates.
    pub(crate) duplicates: usize,
    /// Webhooks answered anything else.
    pub(crate) failed: usize,
    /// From the first request to the last answer.
    pub(crate) elapsed: Duration,
    /// Request → 2xx latency of each stored webhook.
    pub(crate) latencies: Latencies,
}

/// Send instants by `svix-id`, for matching deliveries to subscribers.
pub(crate) type SentAt = Arc<Mutex<HashMap<Bytes, Instant>>>;

/// Signs webhook number `i` of `range` (ids `msg_<tag>...`, users `user_<tag>...`) with a current
/// timestamp.
pub(crate) fn prepare(tag: &str, range: Range<usize>) -> Result<Vec<Prepared>, BenchError> {
    let signer = Webhook::new(SECRET)?;
    let timestamp = i64::try_from(now().as_secs()).unwrap_or(i64::MAX);
    range
        .map(|i| {
            let id = format!("msg_{tag}{i:0>24}");
            let body = user_created(&format!("user_{tag}{i:0>24}"), now().as_millis());
            let signature = signer.sign(&id, timestamp, body.as_bytes())?;
            let request = format!(
                "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: bridge\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nsvix-id: {id}\r\nsvix-timestamp: {timestamp}\r\n\
                 svix-signature: {signature}\r\n\r\n{body}",
                body.len()
            );
            Ok(Prepared {
                id: Bytes::from(id),
                request: Bytes::from(request),
                body_len: body.len(),
            })
        })
        .collect()
}

/// Sends `requests` over `connections` keep-alive connections, each sending its next request as
/// soon as the previous one is answered, until all are sent or `limit` has passed.
pub(crate) async fn closed_loop(
    addr: SocketAddr,
    requests: Arc<Vec<Prepared>>,
    connections: usize,
    limit: Duration,
) -> Result<Outcome, BenchError> {
    let stored = Arc::new(AtomicUsize::new(0));
    closed_loop_counted(addr, requests, connections, limit, stored).await
}

/// [`closed_loop`], adding one to `stored` as each webhook is acknowledged as newly stored (so
/// another task can follow the acknowledged head during the run).
pub(crate) async fn closed_loop_counted(
    addr: SocketAddr,
    requests: Arc<Vec<Prepared>>,
    connections: usize,
    limit: Duration,
    stored: Arc<AtomicUsize>,
) -> Result<Outcome, BenchError> {
    let conns = connect_all(addr, connections).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let (requests, next, stored) = (requests.clone(), next.clone(), stored.clone());
            tokio::spawn(closed_worker(conn, requests, next, stored, start + limit))
        })
        .collect();
    let outcome = join(workers, requests.len() / connections.max(1)).await?;
    Ok(Outcome {
        elapsed: start.elapsed(),
        ..outcome
    })
}

async fn closed_worker(
    mut conn: Conn,
    requests: Arc<Vec<Prepared>>,
    next: Arc<AtomicUsize>,
    stored: Arc<AtomicUsize>,
    deadline: Instant,
) -> Result<Outcome, BenchError> {
    let mut outcome = Outcome::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(prepared) = requests.get(i) else {
            break;
        };
        if Instant::now() >= deadline {
            break;
        }
        let before = outcome.stored;
        conn.send_counted(prepared, &mut outcome).await?;
        stored.fetch_add(outcome.stored - before, Ordering::Relaxed);
    }
    Ok(outcome)
}

/// Sends `requests` at `rate` per second on a fixed schedule (request `i` at `i / rate` seconds),
/// over `connections` connections so one slow answer does not delay the next send. Records each
/// send instant in `sent_at` first.
pub(crate) async fn paced(
    addr: SocketAddr,
    requests: Arc<Vec<Prepared>>,
    rate: u32,
    connections: usize,
    sent_at: SentAt,
) -> Result<Outcome, BenchError> {
    let conns = connect_all(addr, connections).await?;
    let start = Instant::now();
    let interval = Duration::from_secs(1) / rate.max(1);
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(worker, conn)| {
            let schedule = Schedule {
                start,
                interval,
                worker,
                stride: connections,
            };
            let (requests, sent_at) = (requests.clone(), sent_at.clone());
            tokio::spawn(paced_worker(conn, requests, schedule, sent_at))
        })
        .collect();
    let outcome = join(workers, requests.len() / connections.max(1)).await?;
    Ok(Outcome {
        elapsed: start.elapsed(),
        ..outcome
    })
}

/// The requests one paced worker sends, and when.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// When request 0 is due.
    start: Instant,
    /// Time between two consecutive requests (of all workers).
    interval: Duration,
    /// This worker's first request.
    worker: usize,
    /// Number of workers: this worker sends every `stride`-th request.
    stride: usize,
}

async fn paced_worker(
    mut conn: Conn,
    requests: Arc<Vec<Prepared>>,
    schedule: Schedule,
    sent_at: SentAt,
) -> Result<Outcome, BenchError> {
    let mut outcome = Outcome::default();
    for i in (schedule.worker..requests.len()).step_by(schedule.stride) {
        let due = schedule.start + schedule.interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let prepared = &requests[i];
        lock(&sent_at).insert(prepared.id.clone(), Instant::now());
        conn.send_counted(prepared, &mut outcome).await?;
    }
    Ok(outcome)
}

/// Locks the send-time map; a panic elsewhere leaves it usable (entries are only inserted).
pub(crate) fn lock(sent_at: &SentAt) -> std::sync::MutexGuard<'_, HashMap<Bytes, Instant>> {
    sent_at
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn connect_all(addr: SocketAddr, connections: usize) -> Result<Vec<Conn>, BenchError> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::connect(addr).await?);
    }
    Ok(conns)
}

/// Waits for every worker and adds up what they did.
async fn join(
    workers: Vec<tokio::task::JoinHandle<Result<Outcome, BenchError>>>,
    per_worker: usize,
) -> Result<Outcome, BenchError> {
    let mut total = Outcome {
        latencies: Latencies::with_capacity(per_worker * workers.len()),
        ..Outcome::default()
    };
    for worker in workers {
        let outcome = worker
            .await
            .map_err(|e| BenchError::Setup(format!("load worker failed: {e}")))??;
        total.stored += outcome.stored;
        total.duplicates += outcome.duplicates;
        total.failed += outcome.failed;
        total.latencies.merge(outcome.latencies);
    }
    Ok(total)
}

/// A keep-alive HTTP/1.1 connection with one request in flight at a time.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket, with `TCP_NODELAY` so each small request leaves at once.
    stream: TcpStream,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
}

/// The parts of an answer the benchmark checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    /// HTTP status code.
    pub(crate) status: u16,
    /// Whether the bridge said it already had the event.
    pub(crate) duplicate: bool,
}

// === impl Conn ===

impl Conn {
    /// Connects to the bridge's webhook port.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Self, BenchError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Sends one request and records its outcome (and its latency, if stored).
    async fn send_counted(
        &mut self,
        prepared: &Prepared,
        outcome: &mut Outcome,
    ) -> Result<(), BenchError> {
        let sent = Instant::now();
        let reply = self.post(&prepared.request).await?;
        match reply {
            Reply {
                status: 200,
                duplicate: false,
            } => {
                outcome.latencies.record(sent.elapsed());
                outcome.stored += 1;
            }
            Reply { status: 200, .. } => outcome.duplicates += 1,
            Reply { .. } => outcome.failed += 1,
        }
        Ok(())
    }

    /// Writes `request` and reads the answer.
    pub(crate) async fn post(&mut self, request: &[u8]) -> Result<Reply, BenchError> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(reply) = self.parse()? {
                return Ok(reply);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(BenchError::Setup("the bridge closed a connection".into()));
            }
        }
    }

    /// One complete answer from the buffer, if it holds one.
    fn parse(&mut self) -> Result<Option<Reply>, BenchError> {
        let Some(head_len) = find(&self.buf, HEAD_END).map(|at| at + HEAD_END.len()) else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&self.buf[..head_len])
            .map_err(|_| BenchError::Setup("answer head is not UTF-8".into()))?;
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| BenchError::Setup(format!("bad status line in {head:?}")))?;
        let body_len = content_length(head)
            .ok_or_else(|| BenchError::Setup(format!("no content-length in {head:?}")))?;
        if self.buf.len() < head_len + body_len {
            return Ok(None);
        }
        let duplicate = find(
            &self.buf[head_len..head_len + body_len],
            b"\"duplicate\":true",
        )
        .is_some();
        self.buf.advance(head_len + body_len);
        Ok(Some(Reply { status, duplicate }))
    }
}

/// The `content-length` of an HTTP head.
fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A `user.created` webhook shaped like Clerk's (about 3.2 KB): two email addresses, a phone
/// number, a Google account, metadata and the request attributes Clerk adds.
fn user_created(user_id: &str, now_ms: u128) -> String {
    serde_json::json!({
        "object": "event",
        "type": "user.created",
        "timestamp": now_ms,
        "instance_id": "ins_2g7np7Hrk0SN6kj5EDMLDaKNL0S",
        "event_attributes": {"http_request": {
            "client_ip": "203.0.113.17",
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36"
        }},
        "data": user(user_id, now_ms)
    })
    .to_string()
}

/// The `data` of a `user.created` webhook.
fn user(user_id: &str, now_ms: u128) -> serde_json::Value {
    let tail = &user_id[user_id.len().saturating_sub(8)..];
    let mut user = serde_json::json!({
        "object": "user",
        "id": user_id,
        "external_id": format!("crm-{tail}"),
        "username": format!("ada{tail}"),
        "first_name": "Ada",
        "last_name": "Lovelace",
        "image_url": "https://img.clerk.com/eyJ0eXBlIjoicHJveHkiLCJzcmMiOiJodHRwczovL2ltYWdlcy5jbGVyay5kZXYvdXBsb2FkZWQvaW1nXzJnN25wN0hyazBTTjZrajVFRE1MRGFLTkwwUy5qcGVnIn0",
        "profile_image_url": "https://images.clerk.dev/uploaded/img_2g7np7Hrk0SN6kj5EDMLDaKNL0S.jpeg",
        "has_image": true,
        "primary_email_address_id": format!("idn_e1{tail}"),
        "primary_phone_number_id": format!("idn_p1{tail}"),
        "primary_web3_wallet_id": null,
        "email_addresses": [
            email(&format!("idn_e1{tail}"), &format!("ada.{tail}@example.com"), "from_oauth_google"),
            email(&format!("idn_e2{tail}"), &format!("ada.{tail}@work.example.org"), "email_code"),
        ],
        "phone_numbers": [phone(tail, now_ms)],
        "web3_wallets": [],
        "passkeys": [],
        "external_accounts": [google_account(tail, now_ms)],
        "saml_accounts": [],
        "enterprise_accounts": [],
        "public_metadata": {"plan": "pro", "seats": 5, "roles": ["admin", "billing"]},
        "private_metadata": {"stripe_customer_id": format!("cus_{tail}")},
        "unsafe_metadata": {"onboarding_step": 3},
        "created_at": now_ms,
        "updated_at": now_ms
    });
    if let Some(fields) = user.as_object_mut() {
        fields.extend(user_flags(now_ms));
    }
    user
}

/// The flags and times of a fresh user.
fn user_flags(now_ms: u128) -> serde_json::Map<String, serde_json::Value> {
    let flags = serde_json::json!({
        "password_enabled": false,
        "two_factor_enabled": false,
        "totp_enabled": false,
        "backup_code_enabled": false,
        "banned": false,
        "locked": false,
        "lockout_expires_in_seconds": null,
        "verification_attempts_remaining": 100,
        "delete_self_enabled": true,
        "create_organization_enabled": true,
        "create_organizations_limit": null,
        "last_sign_in_at": null,
        "last_active_at": now_ms,
        "legal_accepted_at": now_ms,
        "mfa_enabled_at": null,
        "mfa_disabled_at": null
    });
    match flags {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// A verified phone number.
fn phone(tail: &str, now_ms: u128) -> serde_json::Value {
    serde_json::json!({
        "id": format!("idn_p1{tail}"),
        "object": "phone_number",
        "phone_number": "+15555550123",
        "reserved_for_second_factor": false,
        "default_second_factor": false,
        "verification": {"status": "verified", "strategy": "phone_code", "attempts": 1, "expire_at": now_ms},
        "linked_to": [],
        "backup_codes": null,
        "created_at": now_ms,
        "updated_at": now_ms
    })
}

/// A Google account the user signed up with.
fn google_account(tail: &str, now_ms: u128) -> serde_json::Value {
    serde_json::json!({
        "id": format!("eac_{tail}"),
        "object": "google_account",
        "provider": "oauth_google",
        "identification_id": format!("idn_e1{tail}"),
        "provider_user_id": format!("1180{tail}"),
        "approved_scopes": "email https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile openid profile",
        "email_address": format!("ada.{tail}@example.com"),
        "first_name": "Ada",
        "last_name": "Lovelace",
        "image_url": "https://lh3.googleusercontent.com/a/ACg8ocJ",
        "username": null,
        "public_metadata": {},
        "label": null,
        "verification": {"status": "verified", "strategy": "oauth_google", "attempts": null, "expire_at": now_ms},
        "created_at": now_ms,
        "updated_at": now_ms
    })
}

/// One verified email address of a user.
fn email(id: &str, address: &str, strategy: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "object": "email_address",
        "email_address": address,
        "reserved": false,
        "verification": {"status": "verified", "strategy": strategy, "attempts": null, "expire_at": null},
        "linked_to": [],
        "matches_sso_connection": false,
        "created_at": 1_716_883_200_000_i64,
        "updated_at": 1_716_883_200_000_i64
    })
}
