//! `clerk-bridge copy-to-jetstream`: moves an embedded log into a JetStream stream, for a
//! deployment that outgrows one pod. Events are published in log order under their webhook ids,
//! so a second run (after an interruption, or to pick up events that arrived since) copies only
//! what is missing, and Svix redeliveries that reach the new bridges are still stored once. Each
//! named consumer is created in the stream's bucket at the stream sequence of the last event it
//! had committed, so it resumes where it stopped. The stream numbers events from its own start:
//! sequences change, positions kept outside the bridge must be translated (the command prints how
//! many events it copied).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use clap::Args;

use super::{UsageError, nats::NatsArgs};
use crate::{
    clock::now_ms,
    jetstream::JetStreamLog,
    log::{Appended, Log, LogOptions, OpenError, StoredConsumer, retention::Policy},
    proto::Event,
    record,
};

/// Events read from the embedded log at a time.
const READ_BATCH: usize = 512;

/// Arguments of `copy-to-jetstream`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The embedded log's data directory; the bridge that owns it must be stopped.
    #[arg(long, env = "CLERK_BRIDGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The stream to copy into.
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// What a copy did.
#[derive(Debug, Default)]
struct Copied {
    /// Events published now.
    stored: u64,
    /// Events the stream already held (an earlier run, or a redelivery that reached it).
    present: u64,
    /// For each committed position of a consumer: the stream sequence of the last event at or
    /// below it.
    positions: BTreeMap<u64, u64>,
}

/// Copies the log and its consumers.
///
/// # Errors
/// A [`UsageError`] for bad flags or a data directory in use; otherwise what failed to read or
/// publish (a rerun resumes).
pub async fn run(args: CopyArgs) -> anyhow::Result<()> {
    let config = args
        .nats
        .to_config(Policy::default())
        .map_err(|e| UsageError(e.to_string()))?
        .ok_or_else(|| UsageError("--nats-url is required: the stream to copy into".into()))?;
    let log = open_log(args.data_dir.clone()).await?;
    let stream = JetStreamLog::open(&config)
        .await
        .map_err(|e| UsageError(e.to_string()))?;
    let consumers = log.reader()?.consumers()?;
    let outcome = copy_events(&log, &stream, &consumers).await;
    tokio::task::spawn_blocking(move || log.close()).await?;
    let copied = outcome?;
    let created = copy_consumers(&stream, &consumers, &copied.positions).await?;
    eprintln!(
        "copied {} events into stream {} ({} were already there); {} of {} consumers created",
        copied.stored,
        config.stream,
        copied.present,
        created,
        consumers.len()
    );
    stream.close().await;
    Ok(())
}

/// Opens the embedded log, taking its lock: the bridge that owns it must be stopped, so that
/// nothing arrives there after the copy.
async fn open_log(data_dir: PathBuf) -> anyhow::Result<Arc<Log>> {
    let opened =
        tokio::task::spawn_blocking(move || Log::open(&data_dir, LogOptions::default())).await?;
    match opened {
        Ok(log) => Ok(Arc::new(log)),
        Err(e @ (OpenError::DataDir { .. } | OpenError::Locked(_))) => Err(UsageError(format!(
            "invalid --data-dir: {e} (stop the bridge that uses it first)"
        ))
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Publishes every event in log order, noting the stream sequence each consumer position maps to.
async fn copy_events(
    log: &Arc<Log>,
    stream: &JetStreamLog,
    consumers: &[StoredConsumer],
) -> anyhow::Result<Copied> {
    let mut copied = Copied::default();
    let mut pending: Vec<u64> = consumers.iter().map(|c| c.committed).collect();
    pending.sort_unstable();
    pending.dedup();
    let (mut after, mut last_new) = (0, 0);
    loop {
        let batch = log
            .read_pooled(move |reader| reader.read_after(after, READ_BATCH))
            .await?;
        let Some(last) = batch.last() else { break };
        let last = last.sequence;
        for stored in batch {
            settle(
                &mut pending,
                &mut copied.positions,
                stored.sequence,
                last_new,
            );
            // Decoded (older codecs upgraded) without the old sequence: the stream assigns its own.
            let event = Event {
                sequence: 0,
                ..record::decode(&stored)?
            };
            let received_at_ms = event.received_at.map_or_else(now_ms, |t| {
                t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
            });
            match stream
                .append(record::new_record(&event, received_at_ms))
                .await?
            {
                Appended::Stored(sequence) => {
                    (copied.stored, last_new) = (copied.stored + 1, sequence)
                }
                Appended::Duplicate(sequence) | Appended::Superseded(sequence) => {
                    (copied.present, last_new) = (copied.present + 1, sequence);
                }
            }
        }
        after = last;
    }
    settle(&mut pending, &mut copied.positions, u64::MAX, last_new);
    Ok(copied)
}

/// Maps every pending consumer position below `next` (the next event's old sequence) to
/// `last_new`, the stream sequence of the last event copied before it.
fn settle(pending: &mut Vec<u64>, positions: &mut BTreeMap<u64, u64>, next: u64, last_new: u64) {
    let settled = pending.partition_point(|&committed| committed < next);
    for committed in pending.drain(..settled) {
        positions.insert(committed, last_new);
    }
}

/// Creates each consumer in the stream's bucket at its translated position; one that exists there
/// already is left as it is. Returns how many were created.
async fn copy_consumers(
    stream: &JetStreamLog,
    consumers: &[StoredConsumer],
    positions: &BTreeMap<u64, u64>,
) -> anyhow::Result<usize> {
    let bucket = stream.consumers();
    let mut created = 0;
    for consumer in consumers {
        if bucket.get(&consumer.name).await?.is_some() {
            continue;
        }
        let committed = positions.get(&consumer.committed).copied().unwrap_or(0);
        bucket.create(&consumer.name, committed, now_ms()).await?;
        created += 1;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_maps_to_the_last_event_copied_at_or_below_it() {
        let mut pending = vec![0, 2, 3, 9];
        let mut positions = BTreeMap::new();
        // Old sequences 1, 3 (2 skipped after a crash), 4 became stream sequences 1, 2, 3.
        settle(&mut pending, &mut positions, 1, 0);
        settle(&mut pending, &mut positions, 3, 1);
        settle(&mut pending, &mut positions, 4, 2);
        settle(&mut pending, &mut positions, u64::MAX, 3);
        assert_eq!(positions, BTreeMap::from([(0, 0), (2, 1), (3, 2), (9, 3)]));
        assert!(pending.is_empty());
    }
}
