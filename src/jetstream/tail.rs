//! Following the stream's head: every bridge reads each new event once, with an ordered consumer
//! (which JetStream recreates by itself after a reconnect or a lost message, from the last one
//! seen), into the in-memory tail its live subscribers read from, and publishes the new head.
//! The first retained sequence (which JetStream moves by its limits) and the head are also read
//! from the stream's info every [`INFO_INTERVAL`], so positions stay right while the tail
//! restarts.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull::OrderedConfig},
    stream::Stream,
};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::headers;
use crate::{
    log::{Positions, RecentEvents},
    shutdown::Every,
};

/// How often the stream's bounds are read.
pub(super) const INFO_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before the tail's consumer is created again after it failed.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Reads new events into `recent` and moves `positions` until `stop`, starting after `head`.
pub(super) async fn follow(
    stream: Stream,
    mut head: u64,
    recent: Arc<RecentEvents>,
    positions: Arc<watch::Sender<Positions>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            end = follow_from(&stream, &mut head, &recent, &positions) => {
                tracing::warn!(error = %end, head, "Stream tail stopped; following again");
            }
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_PAUSE) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Follows from `head + 1` until the consumer fails; returns why.
async fn follow_from(
    stream: &Stream,
    head: &mut u64,
    recent: &RecentEvents,
    positions: &watch::Sender<Positions>,
) -> String {
    let config = OrderedConfig {
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: *head + 1,
        },
        ..Default::default()
    };
    let consumer = match stream.create_consumer(config).await {
        Ok(consumer) => consumer,
        Err(error) => return error.to_string(),
    };
    let mut messages = match consumer.messages().await {
        Ok(messages) => messages,
        Err(error) => return error.to_string(),
    };
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            Err(error) => return error.to_string(),
        };
        let sequence = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(error) => return error.to_string(),
        };
        let empty = async_nats::HeaderMap::new();
        let map = message.headers.as_ref().unwrap_or(&empty);
        match headers::stored_event(map, sequence, message.payload.clone()) {
            Ok(event) => recent.extend([event]),
            // Not ours (someone else published to the subjects): readers will skip it too.
            Err(error) => tracing::warn!(%error, sequence, "Unreadable message in the stream"),
        }
        *head = sequence;
        positions.send_if_modified(|p| raise_head(p, sequence));
    }
    "the consumer ended".into()
}

/// Reads the stream's bounds every [`INFO_INTERVAL`] until `stop`.
pub(super) async fn watch_bounds(
    mut stream: Stream,
    recent: Arc<RecentEvents>,
    positions: Arc<watch::Sender<Positions>>,
    stop: CancellationToken,
) {
    let mut every = Every::new(INFO_INTERVAL, stop);
    while every.tick().await {
        match stream.info().await {
            Ok(info) => {
                let state = &info.state;
                let first = first_retained(state.first_sequence, state.last_sequence);
                recent.forget_before(first);
                positions.send_if_modified(|p| {
                    let moved = p.first_retained < first;
                    p.first_retained = p.first_retained.max(first);
                    raise_head(p, state.last_sequence) || moved
                });
            }
            Err(error) => tracing::debug!(%error, "Stream info unavailable"),
        }
    }
}

/// The first retained sequence of a stream whose first and last sequences JetStream reports (an
/// empty stream reports its first sequence as one past its last).
pub(super) fn first_retained(first: u64, last: u64) -> u64 {
    first.max(1).min(last + 1)
}

fn raise_head(positions: &mut Positions, head: u64) -> bool {
    if head > positions.head {
        positions.head = head;
        true
    } else {
        false
    }
}
