//! `clerk-bridge trigger`: signs Clerk events with the webhook secret and posts them to a bridge,
//! exactly as Clerk (Svix) would, so the whole loop runs locally with no Clerk account and no
//! tunnel.
//!
//! Each event is a built-in sample (see [`super::samples`]) with fresh ids and times, or a file of
//! your own, edited by `--set`. One line per answer goes to stdout (`status type object-id
//! message-id answer`), a summary of a multi-event run to stderr. Every request is signed afresh
//! (the signature carries the send time), and a failed connection is retried once: a webhook is
//! idempotent by its message id, so a retry cannot store an event twice.

use std::{
    io::Read as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use svix::webhooks::Webhook;
use tokio::{
    net::TcpStream,
    sync::{Mutex, mpsc},
    time::Interval,
};

use super::{
    UsageError,
    samples::{self, Edit, Ids},
};
use crate::ingress::verify::SigningSecret;

/// The webhook URL of a bridge running with default flags.
const DEFAULT_URL: &str = "http://127.0.0.1:8080/webhooks/clerk";
/// The longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// What `trigger` calls itself in the `user-agent` header.
const USER_AGENT: &str = concat!("clerk-bridge-trigger/", env!("CARGO_PKG_VERSION"));

/// Flags of `clerk-bridge trigger`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clerk-bridge trigger user.created
  clerk-bridge trigger user.updated --set data.id=user_ada --set data.first_name=Ada
  clerk-bridge trigger --file payload.json --id msg_same_id   # twice: the second is a duplicate
  clerk-bridge trigger session.created --count 1000 --rate 200 --concurrency 8 --quiet")]
pub struct TriggerArgs {
    /// Event type of a built-in sample (Clerk's published example), e.g. `user.created`; see --list.
    #[arg(value_name = "EVENT_TYPE", conflicts_with = "file")]
    pub event_type: Option<String>,
    /// Print the event types that have a built-in sample, one a line, and exit.
    #[arg(long)]
    pub list: bool,
    /// Send this JSON file (`-`: standard input) instead of a sample; sent byte for byte unless
    /// --set or --refresh change it.
    #[arg(long, value_name = "PAYLOAD.json")]
    pub file: Option<PathBuf>,
    /// Change a field before sending; repeatable. The path is dot-separated, array elements by
    /// index (`data.email_addresses.0.email_address`); the value is JSON when it parses as JSON
    /// (`36`, `true`, `null`, `{"plan":"pro"}`, `"007"`), a string otherwise. Applied after
    /// refreshing, so it can pin ids and times: `--set data.id=user_ada --set timestamp=1700000000000`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Give the event fresh ids (`data.id` and the ids that share its random part) and times
    /// (`timestamp`, `data.created_at`, `data.updated_at`): the default for built-in samples.
    #[arg(long, overrides_with = "no_refresh")]
    pub refresh: bool,
    /// Send the sample or file with its ids and times as they are.
    #[arg(long, overrides_with = "refresh")]
    pub no_refresh: bool,
    /// The bridge's webhook URL (plain http).
    #[arg(long, env = "CLERK_BRIDGE_WEBHOOK_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// The bridge's signing secret (`whsec_...`); of a list separated by spaces or commas, the first
    /// signs.
    #[arg(long, env = "CLERK_WEBHOOK_SIGNING_SECRET", hide_env_values = true)]
    pub signing_secret: Option<String>,
    /// The message id (`svix-id`) to send, instead of a fresh `msg_...` per event. With --count,
    /// every event is the same message: Svix's redelivery, which the bridge stores once.
    #[arg(long, value_name = "MSG_ID")]
    pub id: Option<String>,
    /// How many events to send, each with fresh ids (unless --id or --no-refresh).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Send at most this many events per second (default: as fast as the bridge answers).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Requests in flight at once, each on its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Print each body that would be sent, one a line, and send nothing (no secret needed).
    #[arg(long)]
    pub print: bool,
    /// Print no line per event, only failures and the summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A positive, finite number of events per second.
fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("expected a positive number of events per second, e.g. 50 or 0.5".to_owned()),
    }
}

/// Runs `trigger`.
///
/// # Errors
/// [`UsageError`] for unusable flags; an error when the bridge cannot be reached, or refused an
/// event (the answers are printed first).
pub async fn run(args: TriggerArgs) -> anyhow::Result<()> {
    if args.list {
        for (event_type, _) in samples::SAMPLES {
            println!("{event_type}");
        }
        return Ok(());
    }
    let template = Template::try_from_args(&args)?;
    if args.print {
        let mut ids = Ids::new();
        for _ in 0..args.count {
            println!("{}", template.build(&mut ids)?.body);
        }
        return Ok(());
    }
    let plan = Arc::new(Plan::try_from_args(args, template)?);
    let summary = send_all(Arc::clone(&plan)).await?;
    summary.finish(&plan)
}

/// What each event is made from.
#[derive(Debug)]
struct Template {
    /// The body to start from.
    source: Source,
    /// `--set` edits, in order.
    edits: Vec<Edit>,
    /// Whether ids and times are refreshed.
    refresh: bool,
}

/// Where the body comes from.
#[derive(Debug)]
enum Source {
    /// A built-in sample, parsed.
    Sample(Value),
    /// A file: its text, and its JSON when it is JSON.
    File {
        /// The verbatim text: sent byte for byte when nothing is refreshed or edited.
        text: String,
        /// The text parsed, when it is a JSON object: what --refresh and --set edit.
        json: Option<Value>,
    },
}

/// One event ready to sign.
#[derive(Debug, Clone)]
struct Outgoing {
    /// The `svix-id`.
    msg_id: String,
    /// What is signed and sent, byte for byte (a --file need not be JSON).
    body: String,
    /// Its `type`, for the output line.
    event_type: String,
    /// Its `data.id`, for the output line.
    object_id: String,
}

// === impl Template ===

impl Template {
    /// Reads the sample or file and parses the edits; builds one event to check they apply.
    fn try_from_args(args: &TriggerArgs) -> Result<Self, UsageError> {
        let source = match (&args.event_type, &args.file) {
            (Some(event_type), None) => {
                let body = samples::sample(event_type).ok_or_else(|| {
                    UsageError(format!(
                        "no built-in sample for {event_type:?}: `clerk-bridge trigger --list` shows the event types, --file sends your own"
                    ))
                })?;
                // The samples are checked by a unit test to be JSON.
                Source::Sample(serde_json::from_str(body).unwrap_or_default())
            }
            (None, Some(path)) => {
                let text = read_file(path)?;
                let json = serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(Value::is_object);
                Source::File { text, json }
            }
            _ => {
                return Err(UsageError(
                    "name an event type (`clerk-bridge trigger --list` shows them) or give --file"
                        .to_owned(),
                ));
            }
        };
        let refresh = match source {
            Source::Sample(_) => !args.no_refresh,
            Source::File { .. } => args.refresh,
        };
        let edits = args
            .set
            .iter()
            .map(|e| Edit::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| UsageError(e.to_string()))?;
        let template = Template {
            source,
            edits,
            refresh,
        };
        template.build(&mut Ids::from_seed(0))?;
        Ok(template)
    }

    /// A new event: refreshed (when asked), edited, with a fresh message id.
    fn build(&self, ids: &mut Ids) -> Result<Outgoing, UsageError> {
        let msg_id = ids.message_id();
        let mut json = match &self.source {
            Source::File { text, json: _ } if !self.refresh && self.edits.is_empty() => {
                return Ok(Outgoing::new(msg_id, text.clone()));
            }
            Source::Sample(json)
            | Source::File {
                json: Some(json), ..
            } => json.clone(),
            Source::File { json: None, .. } => {
                return Err(UsageError(
                    "the --file is not a JSON object, so --set and --refresh cannot edit it"
                        .to_owned(),
                ));
            }
        };
        if self.refresh {
            samples::refresh(&mut json, crate::clock::now_ms(), ids);
        }
        for edit in &self.edits {
            edit.apply(&mut json)
                .map_err(|e| UsageError(e.to_string()))?;
        }
        Ok(Outgoing::new(msg_id, json.to_string()))
    }
}

/// Reads `path`, or standard input for `-`.
fn read_file(path: &PathBuf) -> Result<String, UsageError> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| UsageError(format!("cannot read --file {}: {e}", path.display())))?;
    Ok(text)
}

// === impl Outgoing ===

impl Outgoing {
    /// An event with `body`, its type and object id read from it for display.
    fn new(msg_id: String, body: String) -> Self {
        let json: Value = serde_json::from_str(&body).unwrap_or_default();
        let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        Outgoing {
            msg_id,
            event_type: text(&json["type"]),
            object_id: text(&json["data"]["id"]),
            body,
        }
    }
}

/// Everything a run needs, shared by the senders.
struct Plan {
    /// What to send.
    template: Template,
    /// The one event every request carries, with `--id`.
    fixed: Option<Outgoing>,
    /// Where to send.
    target: Target,
    /// Signs with the first secret of the list.
    webhook: Webhook,
    /// How many events.
    count: u64,
    /// Events per second, if paced.
    rate: Option<f64>,
    /// Senders, each with its own connection and one request in flight.
    concurrency: u16,
    /// No line per event.
    quiet: bool,
}

/// A parsed `--url`.
#[derive(Debug, Clone)]
struct Target {
    /// As given, for messages.
    url: String,
    /// `host:port`, to connect to.
    address: String,
    /// The `host` header.
    host: String,
    /// Path and query.
    path: String,
}

// === impl Plan ===

impl Plan {
    /// Checks the URL and the secret.
    fn try_from_args(args: TriggerArgs, template: Template) -> Result<Self, UsageError> {
        let target = Target::parse(&args.url)?;
        let webhook = signer(args.signing_secret.as_deref())?;
        let fixed = match args.id {
            Some(id) if id.trim().is_empty() => {
                return Err(UsageError("invalid --id: empty".to_owned()));
            }
            Some(id) => Some(Outgoing {
                msg_id: id,
                ..template.build(&mut Ids::new())?
            }),
            None => None,
        };
        Ok(Plan {
            template,
            fixed,
            target,
            webhook,
            count: args.count,
            rate: args.rate,
            concurrency: args.concurrency,
            quiet: args.quiet,
        })
    }

    /// The next event to send.
    fn next_event(&self, ids: &mut Ids) -> Result<Outgoing, UsageError> {
        match &self.fixed {
            Some(event) => Ok(event.clone()),
            None => self.template.build(ids),
        }
    }
}

/// The signer for the first secret of `list`.
fn signer(list: Option<&str>) -> Result<Webhook, UsageError> {
    let list = list.ok_or_else(|| {
        UsageError(
            "no signing secret: set CLERK_WEBHOOK_SIGNING_SECRET or --signing-secret to the bridge's secret".to_owned(),
        )
    })?;
    let invalid = |reason: String| {
        UsageError(format!(
            "invalid --signing-secret / CLERK_WEBHOOK_SIGNING_SECRET: {reason}"
        ))
    };
    // The same parsing as `serve`, so a secret the bridge accepts signs here.
    SigningSecret::parse_list(list).map_err(|e| invalid(e.to_string()))?;
    let first = list
        .split([' ', ',', '\n', '\t'])
        .find(|s| !s.trim().is_empty())
        .unwrap_or_default()
        .trim();
    Webhook::new(first).map_err(|e| invalid(e.to_string()))
}

// === impl Target ===

impl Target {
    /// `http://host[:port][/path]`.
    fn parse(url: &str) -> Result<Self, UsageError> {
        let bad = |reason: &str| UsageError(format!("invalid --url {url:?}: {reason}"));
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| bad("expected http://host:port/path"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "only http:// (trigger talks to the bridge's own port; TLS sits in front of it)",
                ));
            }
            _ => return Err(bad("expected http://host:port/path")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("expected a host, e.g. http://127.0.0.1:8080/webhooks/clerk"))?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Target {
            url: url.to_owned(),
            address: format!("{}:{port}", authority.host()),
            host: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), ToString::to_string),
        })
    }
}

/// The bridge's answer to one event.
#[derive(Debug)]
struct Outcome {
    /// What was sent.
    event: Outgoing,
    /// HTTP status.
    status: u16,
    /// The answer body (one line).
    answer: String,
    /// Time from send to answer.
    latency: Duration,
}

/// Sends every event of the plan; prints each answer as it comes.
async fn send_all(plan: Arc<Plan>) -> anyhow::Result<Summary> {
    let next = Arc::new(AtomicU64::new(0));
    let pacer = plan.rate.map(|rate| {
        let interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        Arc::new(Mutex::new(interval))
    });
    let (results, mut outcomes) = mpsc::channel(64);
    let started = Instant::now();
    for _ in 0..plan.concurrency {
        let sender = Sender {
            plan: Arc::clone(&plan),
            next: Arc::clone(&next),
            pacer: pacer.clone(),
            results: results.clone(),
        };
        tokio::spawn(sender.run());
    }
    drop(results);
    let mut summary = Summary::default();
    while let Some(outcome) = outcomes.recv().await {
        let outcome = outcome?;
        summary.record(&outcome, plan.quiet);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// One connection's worth of sending.
struct Sender {
    /// The run, shared by every sender.
    plan: Arc<Plan>,
    /// Index of the next event to send, shared by the senders.
    next: Arc<AtomicU64>,
    /// Paces the events, shared, when --rate is given.
    pacer: Option<Arc<Mutex<Interval>>>,
    /// Where answers go.
    results: mpsc::Sender<anyhow::Result<Outcome>>,
}

// === impl Sender ===

impl Sender {
    /// Sends events until none are left or the bridge is unreachable.
    async fn run(self) {
        let mut ids = Ids::new();
        let mut connection = None;
        while self.next.fetch_add(1, Ordering::Relaxed) < self.plan.count {
            if let Some(pacer) = &self.pacer {
                pacer.lock().await.tick().await;
            }
            let outcome = match self.plan.next_event(&mut ids) {
                Ok(event) => self.send(&mut connection, event).await,
                Err(e) => Err(e.into()),
            };
            let failed = outcome.is_err();
            if self.results.send(outcome).await.is_err() || failed {
                return;
            }
        }
    }

    /// Sends one event, reconnecting once if the connection is broken.
    async fn send(
        &self,
        connection: &mut Option<SendRequest<Full<Bytes>>>,
        event: Outgoing,
    ) -> anyhow::Result<Outcome> {
        let target = &self.plan.target;
        let mut retried = false;
        loop {
            let sender = match connection {
                Some(sender) if !sender.is_closed() => sender,
                _ => connection.insert(connect(target).await?),
            };
            let started = Instant::now();
            let request = self.request(&event)?;
            let sent = tokio::time::timeout(REQUEST_TIMEOUT, exchange(sender, request)).await;
            match sent {
                Ok(Ok((status, answer))) => {
                    return Ok(Outcome {
                        event,
                        status,
                        answer,
                        latency: started.elapsed(),
                    });
                }
                // A kept-alive connection the bridge has closed meanwhile: once more, on a new one.
                Ok(Err(_)) if !retried => {
                    retried = true;
                    *connection = None;
                }
                Ok(Err(e)) => {
                    return Err(anyhow::anyhow!("no answer from {}: {e}", target.url));
                }
                Err(_) => {
                    return Err(anyhow::anyhow!(
                        "no answer from {} within {} s",
                        target.url,
                        REQUEST_TIMEOUT.as_secs()
                    ));
                }
            }
        }
    }

    /// The signed request for `event`, signed now.
    fn request(&self, event: &Outgoing) -> anyhow::Result<Request<Full<Bytes>>> {
        let now = crate::clock::now_ms() / 1000;
        let signature = self
            .plan
            .webhook
            .sign(&event.msg_id, now, event.body.as_bytes())
            .context("signing the event")?;
        let target = &self.plan.target;
        Request::post(target.path.as_str())
            .header(http::header::HOST, target.host.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, USER_AGENT)
            .header("svix-id", event.msg_id.as_str())
            .header("svix-timestamp", now.to_string())
            .header("svix-signature", signature)
            .body(Full::new(Bytes::from(event.body.clone())))
            .context("building the request")
    }
}

/// Opens an HTTP/1.1 connection to the bridge.
async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let unreachable = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "cannot reach the bridge at {}: {e} (is `clerk-bridge serve` running?)",
            target.url
        )
    };
    let stream = TcpStream::connect(&target.address)
        .await
        .map_err(|e| unreachable(&e))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends `request` and reads the whole answer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, String), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    let answer = String::from_utf8_lossy(&body).trim().replace('\n', " ");
    Ok((status, answer))
}

/// Counts and latencies of a run.
#[derive(Debug, Default)]
struct Summary {
    /// Stored for the first time.
    stored: u64,
    /// Answered as duplicates.
    duplicates: u64,
    /// Answered with a status other than 2xx, by status.
    refused: Vec<u16>,
    /// Every latency, for percentiles.
    latencies: Vec<Duration>,
    /// Wall time of the run.
    elapsed: Duration,
}

// === impl Summary ===

impl Summary {
    /// Counts `outcome` and prints its line (refusals even when quiet, on stderr then).
    fn record(&mut self, outcome: &Outcome, quiet: bool) {
        let Outcome { event, status, .. } = outcome;
        let line = format!(
            "{status} {} {} {} {}",
            event.event_type, event.object_id, event.msg_id, outcome.answer
        );
        let ok = (200..300).contains(status);
        match (ok, quiet) {
            (true, false) | (false, false) => println!("{line}"),
            (false, true) => eprintln!("{line}"),
            (true, true) => {}
        }
        self.latencies.push(outcome.latency);
        if !ok {
            self.refused.push(*status);
        } else if serde_json::from_str::<Value>(&outcome.answer)
            .is_ok_and(|answer| answer["duplicate"] == Value::Bool(true))
        {
            self.duplicates += 1;
        } else {
            self.stored += 1;
        }
    }

    /// Prints the summary of a multi-event run; an error when any event was refused.
    fn finish(mut self, plan: &Plan) -> anyhow::Result<()> {
        let sent = self.latencies.len();
        if plan.count > 1 {
            self.latencies.sort_unstable();
            let secs = self.elapsed.as_secs_f64();
            eprintln!(
                "trigger: sent {sent} event(s) in {secs:.2} s ({:.1}/s): {} stored, {} duplicate(s), {} refused; latency p50 {:.1} ms, p99 {:.1} ms",
                sent as f64 / secs.max(1e-9),
                self.stored,
                self.duplicates,
                self.refused.len(),
                millis(crate::stats::percentile(&self.latencies, 50)),
                millis(crate::stats::percentile(&self.latencies, 99)),
            );
        }
        if self.refused.is_empty() {
            return Ok(());
        }
        let hint = if self.refused.contains(&401) {
            " (401: is --signing-secret / CLERK_WEBHOOK_SIGNING_SECRET the bridge's secret?)"
        } else {
            ""
        };
        anyhow::bail!(
            "the bridge refused {} of {sent} event(s){hint}",
            self.refused.len()
        )
    }
}

/// A duration in fractional milliseconds.
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_plain_http_with_a_host() {
        let t = Target::parse("http://127.0.0.1:8080/webhooks/clerk").unwrap();
        assert_eq!(t.address, "127.0.0.1:8080");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/webhooks/clerk");
        let t = Target::parse("http://localhost/hooks?x=1").unwrap();
        assert_eq!(t.address, "localhost:80");
        assert_eq!(t.path, "/hooks?x=1");
        for bad in [
            "https://example.com/x",
            "127.0.0.1:8080/x",
            "ftp://h/x",
            "http://",
        ] {
            let e = Target::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--url"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_first_secret_signs_and_bad_ones_are_refused() {
        assert!(
            signer(Some(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_dGVzdA=="
            ))
            .is_ok()
        );
        // The whole list is checked, as `serve` checks it.
        assert!(signer(Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_***")).is_err());
        assert!(
            signer(None)
                .unwrap_err()
                .0
                .contains("CLERK_WEBHOOK_SIGNING_SECRET")
        );
        assert!(
            signer(Some("whsec_***"))
                .unwrap_err()
                .0
                .contains("--signing-secret")
        );
    }

    fn args(extra: &[&str]) -> TriggerArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            trigger: TriggerArgs,
        }
        let argv = std::iter::once("trigger").chain(extra.iter().copied());
        Cli::try_parse_from(argv).unwrap().trigger
    }

    #[test]
    fn samples_are_refreshed_and_edited() {
        let template =
            Template::try_from_args(&args(&["user.created", "--set", "data.first_name=Ada"]))
                .unwrap();
        let mut ids = Ids::from_seed(3);
        let a = template.build(&mut ids).unwrap();
        let b = template.build(&mut ids).unwrap();
        assert_eq!(a.event_type, "user.created");
        assert_ne!(a.object_id, b.object_id);
        assert_ne!(a.msg_id, b.msg_id);
        let json: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(json["data"]["first_name"], "Ada");
    }

    #[test]
    fn no_refresh_keeps_the_published_ids() {
        let template = Template::try_from_args(&args(&["user.deleted", "--no-refresh"])).unwrap();
        let event = template.build(&mut Ids::from_seed(3)).unwrap();
        assert_eq!(event.object_id, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S");
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        let unknown = Template::try_from_args(&args(&["user.exploded"])).unwrap_err();
        assert!(unknown.0.contains("--list"), "{}", unknown.0);
        let nothing = Template::try_from_args(&args(&[])).unwrap_err();
        assert!(nothing.0.contains("--file"), "{}", nothing.0);
        let scalar =
            Template::try_from_args(&args(&["user.created", "--set", "data.first_name.x=1"]))
                .unwrap_err();
        assert!(scalar.0.contains("data.first_name"), "{}", scalar.0);
        let missing = Template::try_from_args(&args(&["--file", "/no/such/file.json"]));
        assert!(missing.unwrap_err().0.contains("--file"));
    }
}
