//! `clerk-bridge snapshot`: prints the bridge's current state, the latest event of every object
//! (deleted ones with --tombstones), and exits. The same stream a consumer bootstraps from
//! (`START_POSITION_SNAPSHOT`), cut at its `snapshot_end` marker.
//!
//! Objects go to stdout, one line or JSON object each (each JSON object carries at least
//! `object_id`, `type`, `object_version` and `deleted`); the closing count and the sequence the
//! state is consistent at go to stderr.

use super::{
    GrpcClientArgs,
    lines::{emit, event_line},
    refused,
};
use crate::proto::{
    StartPosition, SubscribeRequest, event_stream_client::EventStreamClient,
    subscribe_response::Message,
};
use clap::Args;

/// Flags of `clerk-bridge snapshot`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clerk-bridge snapshot
  clerk-bridge snapshot --types 'user.*' --json | jq -r .object_id
  clerk-bridge snapshot --tombstones --json > state.jsonl")]
pub struct SnapshotArgs {
    /// Where the bridge is.
    #[command(flatten)]
    pub bridge: GrpcClientArgs,
    /// Only objects whose latest event has one of these types: exact names (`user.updated`) or
    /// prefix globs (`user.*`); repeatable or comma-separated.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Also print deleted objects (their tombstones).
    #[arg(long)]
    pub tombstones: bool,
    /// One JSON object per line: the event's fields, and its verbatim body as `payload`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `snapshot`.
///
/// # Errors
/// When the bridge cannot be reached, refuses the request (a bad pattern is a [`super::UsageError`]), or
/// the stream ends before the snapshot is complete.
pub async fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let mut client = EventStreamClient::new(args.bridge.connect().await?);
    let request = SubscribeRequest {
        start: StartPosition::Snapshot.into(),
        event_types: args.types.clone(),
        include_tombstones: args.tombstones,
        ..SubscribeRequest::default()
    };
    let mut stream = client
        .subscribe(request)
        .await
        .map_err(refused)?
        .into_inner();
    while let Some(response) = stream.message().await? {
        match response.message {
            // stdout closed (`snapshot | head`): done.
            Some(Message::Event(event)) if !emit(&event_line(&event, args.json)) => return Ok(()),
            Some(Message::SnapshotEnd(end)) => {
                eprintln!(
                    "-- {} objects, consistent at #{}",
                    end.objects, end.sequence
                );
                return Ok(());
            }
            _ => {}
        }
    }
    anyhow::bail!("the bridge closed the stream before the snapshot was complete")
}
