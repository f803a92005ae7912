//! `clerk-bridge tail`: follows a bridge's event stream and prints one readable line per event
//! (sequence, time, type, object id, a short summary), or one JSON object per event.
//!
//! Events go to stdout; stream markers (where the stream starts, when it has caught up,
//! reconnections) go to stderr, so stdout can be piped. It starts a few events before the head, like
//! `tail` does with lines, and once it has streamed it survives bridge restarts: it reconnects with
//! backoff and resumes after the last event it printed.

use std::time::Duration;

use clap::Args;
use tonic::{Code, Status, transport::Channel};

use super::{
    GrpcClientArgs,
    lines::{emit, event_line},
    refused,
};
use crate::proto::{
    StartPosition, SubscribeRequest, event_stream_client::EventStreamClient,
    subscribe_response::Message,
};

/// Events shown from before the head when neither --from nor --last is given.
const DEFAULT_LAST: u64 = 10;
/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Flags of `clerk-bridge tail`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clerk-bridge tail
  clerk-bridge tail --types 'user.*,organizationMembership.*'
  clerk-bridge tail --from 1 --no-follow --json | jq .payload.data.id")]
pub struct TailArgs {
    /// Where the bridge is.
    #[command(flatten)]
    pub bridge: GrpcClientArgs,
    /// Only these event types: exact names (`user.created`) or prefix globs (`user.*`); repeatable
    /// or comma-separated.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Start at this sequence (1: every retained event).
    #[arg(long, value_name = "SEQ", conflicts_with = "last")]
    pub from: Option<u64>,
    /// Start this many events before the head (counting events of every type) [default: 10].
    #[arg(long, short = 'n', value_name = "N")]
    pub last: Option<u64>,
    /// One JSON object per line: the event's fields, and the verbatim webhook body as `payload`.
    #[arg(long)]
    pub json: bool,
    /// Exit once the stored events are printed, instead of waiting for new ones.
    #[arg(long)]
    pub no_follow: bool,
}

/// How a stream ended without a fatal error.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Caught up with --no-follow, or stdout closed: done.
    Done,
    /// The bridge closed the stream: reconnect.
    Closed,
}

/// Runs `tail`.
///
/// # Errors
/// When the bridge cannot be reached at first, or refuses the request (a bad pattern, a start
/// outside the log).
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    // Ctrl-C ends a follow cleanly, also where the shell started `tail` with SIGINT ignored (a
    // background job of a script).
    tokio::select! {
        followed = follow_until_done(args) => followed,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Prints events until the stream is done (`--no-follow`, stdout closed) or fails for good.
async fn follow_until_done(args: TailArgs) -> anyhow::Result<()> {
    let mut client = EventStreamClient::new(args.bridge.connect().await?);
    let mut after = start_after(&mut client, &args).await.map_err(refused)?;
    let mut backoff = INITIAL_BACKOFF;
    let mut announced = false;
    loop {
        let mut progressed = false;
        let ended = follow(
            &mut client,
            &args,
            &mut after,
            &mut announced,
            &mut progressed,
        )
        .await;
        let reason = match ended {
            Ok(Ended::Done) => return Ok(()),
            Ok(Ended::Closed) => "the bridge closed the stream".to_owned(),
            Err(status) if retryable(&status) => {
                format!("{:?}: {}", status.code(), status.message())
            }
            Err(status) => return Err(refused(status)),
        };
        if progressed {
            backoff = INITIAL_BACKOFF;
        }
        eprintln!(
            "-- {reason}; reconnecting in {} ms (Ctrl-C to stop)",
            backoff.as_millis()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The sequence to stream after: from --from, or --last events before the head (never below the
/// first retained event).
async fn start_after(
    client: &mut EventStreamClient<Channel>,
    args: &TailArgs,
) -> Result<u64, Status> {
    if let Some(from) = args.from {
        return Ok(from.saturating_sub(1));
    }
    // A stream from the head says where the head and the first retained event are.
    let probe = SubscribeRequest {
        start: StartPosition::Latest.into(),
        event_types: args.types.clone(),
        ..SubscribeRequest::default()
    };
    let mut stream = client.subscribe(probe).await?.into_inner();
    let Some(Message::Start(start)) = stream.message().await?.and_then(|m| m.message) else {
        return Err(Status::internal(
            "the stream did not begin with a start marker",
        ));
    };
    let last = args.last.unwrap_or(DEFAULT_LAST);
    let oldest = start.first_retained_sequence.saturating_sub(1);
    Ok(start.head_sequence.saturating_sub(last).max(oldest))
}

/// Streams after `*after` until the stream ends, advancing `*after` past every printed event.
async fn follow(
    client: &mut EventStreamClient<Channel>,
    args: &TailArgs,
    after: &mut u64,
    announced: &mut bool,
    progressed: &mut bool,
) -> Result<Ended, Status> {
    let request = SubscribeRequest {
        after_sequence: *after,
        start: StartPosition::AfterSequence.into(),
        event_types: args.types.clone(),
        ..SubscribeRequest::default()
    };
    let mut stream = client.subscribe(request).await?.into_inner();
    while let Some(response) = stream.message().await? {
        *progressed = true;
        match response.message {
            Some(Message::Event(event)) => {
                if !emit(&event_line(&event, args.json)) {
                    return Ok(Ended::Done);
                }
                *after = event.sequence;
            }
            Some(Message::Start(start)) if !*announced => eprintln!(
                "-- events after #{}; the log holds #{}..#{}",
                start.after_sequence, start.first_retained_sequence, start.head_sequence
            ),
            Some(Message::CaughtUp(_)) if args.no_follow => return Ok(Ended::Done),
            Some(Message::CaughtUp(caught_up)) if !*announced => {
                *announced = true;
                eprintln!(
                    "-- caught up at #{}; waiting for new events (Ctrl-C to stop)",
                    caught_up.head_sequence
                );
            }
            // A heartbeat comes once the stream has passed the head it carries: nothing before
            // it is left to print, whatever the filter.
            Some(Message::Heartbeat(heartbeat)) => *after = (*after).max(heartbeat.head_sequence),
            _ => {}
        }
    }
    Ok(Ended::Closed)
}

/// Errors after which a new stream may succeed: the bridge restarting, the connection breaking.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
    )
}
