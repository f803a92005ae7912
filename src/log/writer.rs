//! The writer thread: commits queued appends in batches (group commit).

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::{AppendError, Appended, NewRecord};

/// Most appends committed in one transaction: bounds the time any one request waits for a batch.
const MAX_BATCH: usize = 1024;

/// One append waiting for the writer.
#[derive(Debug)]
pub(super) struct AppendRequest {
    /// What to store.
    pub(super) record: NewRecord,
    /// Where to send the outcome once the batch is durable.
    pub(super) reply: oneshot::Sender<Result<Appended, AppendError>>,
}

/// Owns the write connection and the receiving end of the append queue.
#[derive(Debug)]
pub(super) struct Writer {
    /// The only write connection.
    conn: Connection,
    /// Appends from request handlers.
    queue: mpsc::Receiver<AppendRequest>,
    /// Publishes the head after each commit.
    head: watch::Sender<u64>,
}

// === impl Writer ===

impl Writer {
    pub(super) fn new(
        conn: Connection,
        queue: mpsc::Receiver<AppendRequest>,
        head: watch::Sender<u64>,
    ) -> Self {
        Writer { conn, queue, head }
    }

    /// Commits batches until every sender is gone and the queue is empty.
    pub(super) fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.queue.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
        tracing::debug!("Log writer stopped");
    }

    /// Writes `batch` in one transaction and answers every request in it.
    fn commit(&mut self, batch: &mut Vec<AppendRequest>) {
        match insert_batch(&mut self.conn, batch) {
            Ok(outcomes) => {
                if let Some(head) = outcomes.iter().filter_map(stored_sequence).max() {
                    self.head.send_replace(head);
                }
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    // The handler may have gone (client hung up); the event is stored regardless.
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::warn!(%error, batch = batch.len(), "Log append failed; batch rolled back");
                let error = std::sync::Arc::new(error);
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(AppendError::Storage(error.clone())));
                }
            }
        }
    }
}

fn stored_sequence(outcome: &Appended) -> Option<u64> {
    match outcome {
        Appended::Stored(seq) => Some(*seq),
        Appended::Duplicate(_) => None,
    }
}

/// Inserts every record of `batch` in one transaction; all or nothing.
fn insert_batch(conn: &mut Connection, batch: &[AppendRequest]) -> rusqlite::Result<Vec<Appended>> {
    let tx = conn.transaction()?;
    let outcomes = batch
        .iter()
        .map(|request| insert_one(&tx, &request.record))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(outcomes)
}

/// Inserts one record, or finds the sequence of the already stored event with the same id.
fn insert_one(tx: &Transaction<'_>, record: &NewRecord) -> rusqlite::Result<Appended> {
    let inserted: Option<i64> = tx
        .prepare_cached(
            "INSERT INTO events (event_id, event_type, received_at_ms, codec_version, event)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (event_id) DO NOTHING
             RETURNING sequence",
        )?
        .query_row(
            params![
                record.event_id,
                record.event_type,
                record.received_at_ms,
                record.codec_version,
                record.event
            ],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(seq) = inserted {
        return Ok(Appended::Stored(to_sequence(seq)));
    }
    let existing: i64 = tx
        .prepare_cached("SELECT sequence FROM events WHERE event_id = ?1")?
        .query_row([&record.event_id], |row| row.get(0))?;
    Ok(Appended::Duplicate(to_sequence(existing)))
}

/// Sequences are assigned by SQLite from 1 upwards, so they are never negative.
fn to_sequence(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}
