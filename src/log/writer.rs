//! The writer thread: applies queued writes in batches (group commit): one transaction and one
//! fsync for every request waiting when the previous commit finished.
//!
//! Before a batch, the sequences it may assign must be reserved (see the `reservation` module).
//! After its commit, and before anyone is told, the data directory must still be the one opened
//! (see the `identity` module): a batch committed into a removed directory is answered with
//! [`WriteError::DataDirChanged`], never acknowledged, and so is every later one.

use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Appended, NewRecord, Positions, StoredEvent, WriteError,
    identity::DataDirIdentity,
    paced::Poke,
    passes::{self, PassUpdate},
    recent::RecentEvents,
    reservation::Reservation,
    retention, schema,
    state::{self, ObjectRef},
};

/// Most requests applied in one transaction: bounds the time any one request waits for a batch.
const MAX_BATCH: usize = 1024;
/// Most times the writer yields its CPU to let more requests join a batch (see `Writer::gather`).
const MAX_YIELDS: usize = 8;

/// Where a request's outcome goes once its batch is durable.
type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// One write waiting for the writer.
#[derive(Debug)]
pub(super) enum Request {
    /// Store an event (or find it already stored).
    Append {
        /// The event; its type and body move into the cache of recent events once stored.
        record: NewRecord,
        /// Gets the stored sequence, or that of the event already stored with the same id.
        reply: Reply<Appended>,
    },
    /// Create or move a named consumer.
    SaveConsumer {
        /// The consumer's name, its key.
        name: String,
        /// The sequence it has processed up to and including.
        committed: u64,
        /// Stored as `updated_at_ms`, and as `created_at_ms` if the consumer is new.
        now_ms: i64,
        /// Told once the change is durable.
        reply: Reply<()>,
    },
    /// Move an existing named consumer (a commit or reset); a consumer deleted meanwhile stays
    /// deleted.
    MoveConsumer {
        /// The consumer's name, its key.
        name: String,
        /// The sequence it has processed up to and including.
        committed: u64,
        /// Stored as `updated_at_ms`.
        now_ms: i64,
        /// Whether the consumer existed (and so was moved), once the change is durable.
        reply: Reply<bool>,
    },
    /// Forget a named consumer (nothing happens if there is none of this name).
    DeleteConsumer {
        /// The consumer's name.
        name: String,
        /// Told once the delete is durable.
        reply: Reply<()>,
    },
    /// Record a backfill or reconciliation pass's progress.
    SavePass {
        /// What the pass has seen and where it stands.
        update: PassUpdate,
        /// Told once the update is durable.
        reply: Reply<()>,
    },
    /// Rebuild the current state from every stored event (a log from before the state existed).
    RebuildState {
        /// Which object a stored event is about.
        object_of: fn(&StoredEvent) -> Option<ObjectRef>,
        /// How many objects the state holds now.
        reply: Reply<u64>,
    },
    /// Delete the oldest events beyond the retention caps (one bounded step).
    Retain {
        /// The caps on age and size.
        policy: retention::Policy,
        /// The time the age cap counts back from, in unix milliseconds.
        now_ms: i64,
        /// How many events were deleted, and whether more are due.
        reply: Reply<retention::Step>,
    },
}

/// What one request did, before its batch committed.
enum Outcome {
    /// An append's result, to send once the batch is durable.
    Appended(Appended),
    /// A consumer save or delete went through.
    Done,
    /// Whether a consumer move found its consumer.
    Moved(bool),
    /// A retention step's result.
    Retained(retention::Step),
    /// The state was rebuilt; how many objects it holds.
    Rebuilt(u64),
}

/// Owns the write connection and the receiving end of the queue.
#[derive(Debug)]
pub(super) struct Writer {
    /// The only write connection.
    conn: Connection,
    /// Writes from request handlers and services.
    queue: mpsc::Receiver<Request>,
    /// Publishes the head and first retained sequence after each commit.
    positions: watch::Sender<Positions>,
    /// Where committed events go for subscribers at the head.
    recent: Arc<RecentEvents>,
    /// Asks for a background checkpoint after each commit.
    checkpoint: Poke,
    /// The sequences that may be committed; told the acknowledged head after each commit.
    reservation: Arc<Reservation>,
    /// Asks the keeper to write the acknowledged head down after each commit.
    keeper: Poke,
    /// What the data directory was at open.
    identity: Arc<DataDirIdentity>,
    /// New sequences go above it: after a crash, the reservation the last run left.
    floor: u64,
}

/// The writer's companions besides its connection and queue.
#[derive(Debug)]
pub(super) struct Companions {
    /// Publishes the head and first retained sequence after each commit.
    pub(super) positions: watch::Sender<Positions>,
    /// Where committed events go for subscribers at the head.
    pub(super) recent: Arc<RecentEvents>,
    /// Asks for a background checkpoint.
    pub(super) checkpoint: Poke,
    /// The sequences that may be committed.
    pub(super) reservation: Arc<Reservation>,
    /// Asks the keeper to write the acknowledged head down.
    pub(super) keeper: Poke,
    /// What the data directory was at open.
    pub(super) identity: Arc<DataDirIdentity>,
    /// New sequences go above it.
    pub(super) floor: u64,
}

// === impl Writer ===

impl Writer {
    pub(super) fn new(
        conn: Connection,
        queue: mpsc::Receiver<Request>,
        companions: Companions,
    ) -> Self {
        let Companions {
            positions,
            recent,
            checkpoint,
            reservation,
            keeper,
            identity,
            floor,
        } = companions;
        Writer {
            conn,
            queue,
            positions,
            recent,
            checkpoint,
            reservation,
            keeper,
            identity,
            floor,
        }
    }

    /// Applies batches until every sender is gone and the queue is empty.
    pub(super) fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.queue.blocking_recv() {
            batch.push(first);
            self.gather(&mut batch);
            self.commit(&mut batch);
        }
        tracing::debug!("Log writer stopped");
    }

    /// Adds the requests queued behind the first one. As long as that finds more, the writer first
    /// yields its CPU (at most [`MAX_YIELDS`] times): when it shares a CPU with the request
    /// handlers, they then queue the requests they are working on and this batch takes them too,
    /// instead of committing alone and leaving them to wait a whole commit for the next one. When
    /// nothing else wants the CPU, a yield returns at once.
    fn gather(&mut self, batch: &mut Vec<Request>) {
        for _ in 0..MAX_YIELDS {
            std::thread::yield_now();
            let before = batch.len();
            while batch.len() < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            if batch.len() == before || batch.len() == MAX_BATCH {
                return;
            }
        }
    }

    /// Applies `batch` in one transaction and answers every request in it.
    fn commit(&mut self, batch: &mut Vec<Request>) {
        let appends = match self.prepare(batch) {
            Ok(appends) => appends,
            Err(error) => {
                fail_all(batch, &error);
                return;
            }
        };
        let head = self.positions.borrow().head;
        let floor = (appends > 0 && self.floor > head).then_some(self.floor);
        match apply_batch(&mut self.conn, batch, floor) {
            Ok(_) if self.identity.check().is_err() => {
                fail_all(batch, &WriteError::DataDirChanged);
            }
            Ok(outcomes) => {
                self.update_recent(batch, &outcomes);
                self.publish_positions(&outcomes);
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    reply(request, outcome);
                }
                self.checkpoint.poke();
                self.reservation.acknowledged(self.positions.borrow().head);
                self.keeper.poke();
            }
            Err(error) => {
                tracing::warn!(%error, batch = batch.len(), "Log write failed; batch rolled back");
                fail_all(batch, &WriteError::Storage(Arc::new(error)));
            }
        }
    }

    /// Refuses a batch once the data directory has changed, and reserves the sequences its appends
    /// may take (each at most one, after the head). Returns how many appends it has.
    fn prepare(&self, batch: &[Request]) -> Result<usize, WriteError> {
        if self.identity.changed().is_some() {
            return Err(WriteError::DataDirChanged);
        }
        let appends = batch
            .iter()
            .filter(|r| matches!(r, Request::Append { .. }))
            .count();
        let highest = self.positions.borrow().head.max(self.floor) + appends as u64;
        match self.reservation.cover(highest) {
            Ok(()) => Ok(appends),
            Err(error) => {
                let error = WriteError::from(error);
                if let WriteError::Watermark(cause) = &error {
                    tracing::warn!(error = %cause, batch = batch.len(), "Sequences not reserved; batch refused");
                }
                Err(error)
            }
        }
    }

    /// Moves the events the batch stored into the cache of recent events (before the head that
    /// announces them is published), and drops from it what retention deleted.
    fn update_recent(&self, batch: &mut [Request], outcomes: &[Outcome]) {
        let stored = batch
            .iter_mut()
            .zip(outcomes)
            .filter_map(|pair| match pair {
                (Request::Append { record, .. }, Outcome::Appended(Appended::Stored(sequence))) => {
                    Some(StoredEvent {
                        sequence: *sequence,
                        event_type: std::mem::take(&mut record.event_type),
                        codec_version: record.codec_version,
                        event: Bytes::from(std::mem::take(&mut record.event)),
                    })
                }
                _ => None,
            });
        self.recent.extend(stored);
        for outcome in outcomes {
            if let Outcome::Retained(step) = outcome
                && step.deleted > 0
            {
                self.recent.forget_before(step.first_retained);
            }
        }
    }

    /// Publishes the head and first retained sequence a committed batch moved (only ever forward),
    /// after its events are in the cache of recent events.
    fn publish_positions(&self, outcomes: &[Outcome]) {
        let head = outcomes.iter().filter_map(|o| match o {
            Outcome::Appended(Appended::Stored(seq)) => Some(*seq),
            _ => None,
        });
        let first = outcomes.iter().filter_map(|o| match o {
            Outcome::Retained(step) if step.deleted > 0 => Some(step.first_retained),
            _ => None,
        });
        let (head, first) = (head.max(), first.max());
        if head.is_none() && first.is_none() {
            return;
        }
        self.positions.send_modify(|p| {
            p.head = head.unwrap_or(p.head).max(p.head);
            p.first_retained = first.unwrap_or(p.first_retained).max(p.first_retained);
        });
    }
}

/// Answers a request with its outcome. A receiver that has gone (client hung up) changes nothing:
/// the write is durable regardless.
fn reply(request: Request, outcome: Outcome) {
    match (request, outcome) {
        (Request::Append { reply, .. }, Outcome::Appended(a)) => drop(reply.send(Ok(a))),
        (
            Request::SaveConsumer { reply, .. }
            | Request::DeleteConsumer { reply, .. }
            | Request::SavePass { reply, .. },
            Outcome::Done,
        ) => {
            drop(reply.send(Ok(())));
        }
        (Request::Retain { reply, .. }, Outcome::Retained(step)) => drop(reply.send(Ok(step))),
        (Request::MoveConsumer { reply, .. }, Outcome::Moved(found)) => {
            drop(reply.send(Ok(found)));
        }
        (Request::RebuildState { reply, .. }, Outcome::Rebuilt(objects)) => {
            drop(reply.send(Ok(objects)));
        }
        (request, _) => fail(request, &WriteError::Closed),
    }
}

/// Answers every request of `batch` with `error`.
fn fail_all(batch: &mut Vec<Request>, error: &WriteError) {
    for request in batch.drain(..) {
        fail(request, error);
    }
}

/// Answers a request with `error` (each request gets its own copy of the shared cause).
fn fail(request: Request, error: &WriteError) {
    let error = || error.clone();
    match request {
        Request::Append { reply, .. } => drop(reply.send(Err(error()))),
        Request::SaveConsumer { reply, .. } | Request::DeleteConsumer { reply, .. } => {
            drop(reply.send(Err(error())));
        }
        Request::Retain { reply, .. } => drop(reply.send(Err(error()))),
        Request::RebuildState { reply, .. } => drop(reply.send(Err(error()))),
        Request::SavePass { reply, .. } => drop(reply.send(Err(error()))),
        Request::MoveConsumer { reply, .. } => drop(reply.send(Err(error()))),
    }
}

/// Applies every request of `batch` in one transaction; all or nothing. With a `floor`, the
/// sequences it assigns go above it.
fn apply_batch(
    conn: &mut Connection,
    batch: &[Request],
    floor: Option<u64>,
) -> rusqlite::Result<Vec<Outcome>> {
    let tx = conn.transaction()?;
    if let Some(floor) = floor {
        schema::raise_head(&tx, floor)?;
    }
    let outcomes = batch
        .iter()
        .map(|request| apply_one(&tx, request))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(outcomes)
}

/// Applies one request inside the batch's transaction.
fn apply_one(tx: &Transaction<'_>, request: &Request) -> rusqlite::Result<Outcome> {
    match request {
        Request::Append { record, .. } => insert_event(tx, record).map(Outcome::Appended),
        Request::SaveConsumer {
            name,
            committed,
            now_ms,
            ..
        } => save_consumer(tx, name, *committed, *now_ms).map(|()| Outcome::Done),
        Request::MoveConsumer {
            name,
            committed,
            now_ms,
            ..
        } => move_consumer(tx, name, *committed, *now_ms).map(Outcome::Moved),
        Request::DeleteConsumer { name, .. } => tx
            .execute("DELETE FROM consumers WHERE name = ?1", [name])
            .map(|_| Outcome::Done),
        Request::Retain { policy, now_ms, .. } => {
            retention::step(tx, policy, *now_ms).map(Outcome::Retained)
        }
        Request::SavePass { update, .. } => passes::apply(tx, update).map(|()| Outcome::Done),
        Request::RebuildState { object_of, .. } => {
            state::rebuild(tx, *object_of).map(Outcome::Rebuilt)
        }
    }
}

/// Inserts one event and records it in the state, or finds the sequence of the already stored
/// event with the same id, or (for a record stored only if newer) of the state's newer event.
/// The lookups come first so a refused record never reaches the INSERT: a conflicting INSERT can
/// still consume an AUTOINCREMENT value and leave a gap in the sequence.
fn insert_event(tx: &Transaction<'_>, record: &NewRecord) -> rusqlite::Result<Appended> {
    let existing: Option<i64> = tx
        .prepare_cached("SELECT sequence FROM events WHERE event_id = ?1")?
        .query_row([&record.event_id], |row| row.get(0))
        .optional()?;
    if let Some(seq) = existing {
        return Ok(Appended::Duplicate(schema::to_sequence(seq)));
    }
    if let (true, Some(object)) = (record.only_if_newer, &record.object) {
        let current = state::current(tx, object)?;
        if !object.supersedes(current.map(|(version, deleted, _)| (version, deleted))) {
            let sequence = current.map_or(0, |(_, _, sequence)| sequence);
            return Ok(Appended::Superseded(sequence));
        }
    }
    let inserted: i64 = tx
        .prepare_cached(
            "INSERT INTO events (event_id, event_type, received_at_ms, codec_version, event)
             VALUES (?1, ?2, ?3, ?4, ?5)
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
        )?;
    state::apply(tx, record, inserted)?;
    Ok(Appended::Stored(schema::to_sequence(inserted)))
}

/// Moves the consumer `name` to `committed` if it exists; whether it did.
fn move_consumer(
    tx: &Transaction<'_>,
    name: &str,
    committed: u64,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let committed = i64::try_from(committed).unwrap_or(i64::MAX);
    let moved = tx
        .prepare_cached("UPDATE consumers SET committed = ?2, updated_at_ms = ?3 WHERE name = ?1")?
        .execute(params![name, committed, now_ms])?;
    Ok(moved > 0)
}

/// Creates the consumer `name` at `committed`, or moves an existing one there (keeping its
/// creation time).
fn save_consumer(
    tx: &Transaction<'_>,
    name: &str,
    committed: u64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let committed = i64::try_from(committed).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "INSERT INTO consumers (name, committed, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (name) DO UPDATE SET committed = excluded.committed, updated_at_ms = excluded.updated_at_ms",
    )?
    .execute(params![name, committed, now_ms])?;
    Ok(())
}
