//! The JetStream store: the event log in a NATS JetStream stream that any number of bridges
//! share, so that bridges keep nothing on local disk and a cluster (R3) replicates every event.
//!
//! # Layout
//! One stream (`--nats-stream`, default `CLERK_EVENTS`) with subjects `<stream>.>`; events are
//! published to `<stream>.events`. Every event is one message: the payload is the encoded event,
//! as the embedded log stores it, and headers carry its type, codec version and receipt time (see
//! the `headers` module). A message's stream sequence is the event's `sequence`, so positions
//! mean the same on every bridge.
//!
//! # Exactly once per webhook id
//! Each event is published with its webhook id as `Nats-Msg-Id`, and the stream's duplicate
//! window is [`DUPLICATE_WINDOW`] (72 hours; Svix retries for about 27): within it, the stream's
//! leader stores an id once and answers a second publish of it with the first copy's sequence,
//! across every bridge and after leader changes (the window is rebuilt from the stored messages).
//! Measured against the alternatives (`examples/bench/dedup_cost.py`, figures in
//! `docs/jetstream.md`): a subject per id, published with an expected subject sequence of 0, holds
//! for as long as an event is retained but costs the servers several times the memory per event,
//! for every retained event rather than three days of them; a key-value claim on the id before
//! the publish is a second write per event, at half the rate, and a crash between the two leaves an
//! id claimed with no event stored.
//!
//! # Acknowledgement
//! An append returns once the stream acknowledged the publish: the event is in the stream leader's
//! log and in a quorum of the replicas (R3: two of three). JetStream writes its files through the
//! page cache and syncs them every `sync_interval` (two minutes by default), so "stored" means
//! "on a quorum of servers"; see the README for what that survives.
//!
//! # Reads
//! New events reach every bridge once through its tail (see the `tail` module), which subscribers
//! at the head read from memory; others read batches with direct gets (the `direct` module), which
//! any replica answers.
//!
//! # State
//! The latest event of every object lives in a second bucket, `<stream>_STATE`, built from the
//! stream by one bridge at a time; snapshots read it (see the `state` module).

mod connect;
mod consumers;
mod direct;
mod headers;
mod state;
mod subject;
mod tail;

use std::sync::Arc;

use async_nats::jetstream::{self, message::PublishMessage};
use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use connect::NatsConfig;
pub(crate) use connect::retry_while_settling;
pub use consumers::{Change, ConsumerBucket, LEASE_TTL, SharedLease};
use state::StateBucket;
pub use state::StateSnapshot;
use tracing::Instrument;

/// How long a webhook id is remembered: a redelivery within it is stored once.
pub const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(72 * 3600);

use crate::log::{Appended, NewRecord, Positions, RecentEvents, StoredEvent, WriteError};

/// Why the JetStream store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No server of `--nats-url` could be reached, or it refused the connection.
    #[error("cannot connect to NATS (--nats-url): {0}")]
    Connect(String),
    /// The credentials file could not be read.
    #[error("cannot read --nats-creds {0}")]
    Credentials(String),
    /// JetStream refused to create or describe the stream.
    #[error("cannot use the JetStream stream (--nats-stream): {0}")]
    Stream(String),
    /// The stream exists but not as the flags describe it.
    #[error("{0}")]
    Mismatch(String),
}

/// Why a read of the stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The servers could not be asked, or answered something unexpected.
    #[error("cannot read the JetStream stream: {0}")]
    Remote(String),
}

/// Handle to the log in JetStream.
#[derive(Debug)]
pub struct JetStreamLog {
    /// The connection, which reconnects by itself.
    client: async_nats::Client,
    /// JetStream on that connection.
    context: jetstream::Context,
    /// The stream's name, for direct gets.
    stream: String,
    /// The subject events are published to.
    subject: String,
    /// Head and first retained sequence, as the tail and the stream's info report them.
    positions: watch::Receiver<Positions>,
    /// The newest events, as the tail read them.
    recent: Arc<RecentEvents>,
    /// Named consumers' positions and leases.
    consumers: ConsumerBucket,
    /// The current state.
    state: StateBucket,
    /// The state builder's applied sequence, as last seen.
    applied: watch::Receiver<u64>,
    /// Stops the tail and the bounds watcher.
    stop: CancellationToken,
    /// The tail and the bounds watcher, waited for at close.
    tasks: TaskTracker,
}

// === impl JetStreamLog ===

impl JetStreamLog {
    /// Connects, creates or checks the stream, and starts following its head.
    ///
    /// # Errors
    /// [`OpenError`] when no server answers, the credentials are unusable, or the stream cannot be
    /// created or is configured otherwise.
    pub async fn open(config: &NatsConfig) -> Result<Self, OpenError> {
        let client = connect::connect(config).await?;
        let context = jetstream::new(client.clone());
        let holder = holder_name();
        let (stream, consumers, objects, state) = connect::retry_while_settling(|| async {
            let mut stream = connect::ensure_stream(&context, config).await?;
            let consumers = ConsumerBucket::open(&context, &config.stream, config.replicas).await?;
            let leases = (consumers.clone(), holder.clone());
            let objects =
                StateBucket::open(&context, &config.stream, config.replicas, leases).await?;
            let info = stream
                .info()
                .await
                .map_err(|e| OpenError::Stream(e.to_string()))?;
            let state = info.state.clone();
            Ok((stream, consumers, objects, state))
        })
        .await?;
        let positions = Positions {
            head: state.last_sequence,
            first_retained: tail::first_retained(state.first_sequence, state.last_sequence),
        };
        let (positions_tx, positions_rx) = watch::channel(positions);
        let positions_tx = Arc::new(positions_tx);
        let recent = Arc::new(RecentEvents::default());
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(tail::follow(
            stream.clone(),
            positions.head,
            recent.clone(),
            positions_tx.clone(),
            stop.clone(),
        ));
        tasks.spawn(tail::watch_bounds(
            stream,
            recent.clone(),
            positions_tx,
            stop.clone(),
        ));
        let (applied_tx, applied) = watch::channel(0);
        let source = state::Source {
            client: client.clone(),
            stream: config.stream.clone(),
            positions: positions_rx.clone(),
            applied: Arc::new(applied_tx),
        };
        tasks.spawn(
            state::build(objects.clone(), source, stop.clone())
                .instrument(tracing::info_span!("state_builder")),
        );
        tasks.close();
        Ok(JetStreamLog {
            client,
            context,
            stream: config.stream.clone(),
            subject: subject::events(&config.stream),
            positions: positions_rx,
            recent,
            consumers,
            state: objects,
            applied,
            stop,
            tasks,
        })
    }

    /// Publishes `record` and waits for the stream's acknowledgement; an event whose webhook id
    /// is already stored is answered with its sequence and stores nothing.
    ///
    /// # Errors
    /// [`WriteError::Remote`] when the stream did not acknowledge it; it may then have been stored
    /// all the same, and a retry is answered as a duplicate.
    pub async fn append(&self, record: NewRecord) -> Result<Appended, WriteError> {
        let headers = headers::of_record(&record);
        let acked = match self
            .send(
                &record.event_id,
                headers,
                record.event.into(),
                Expect::Nothing,
            )
            .await
        {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        acked
            .map(appended)
            .map_err(|error| WriteError::Remote(error.to_string().into()))
    }

    /// Sends an event to the stream, to be stored only if the stream holds what `expect` says
    /// last; the stream's acknowledgement is to be awaited.
    async fn send(
        &self,
        event_id: &str,
        headers: async_nats::HeaderMap,
        event: bytes::Bytes,
        expect: Expect<'_>,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        let publish = PublishMessage::build()
            .headers(headers)
            .message_id(event_id)
            .payload(event);
        let publish = match expect {
            Expect::Nothing => publish,
            Expect::LastSequence(sequence) => publish.expected_last_sequence(sequence),
            Expect::LastMessageId(id) => publish.expected_last_message_id(id),
        };
        self.context
            .send_publish(self.subject.clone(), publish)
            .await
    }

    /// The named consumers' shared buckets.
    pub fn consumers(&self) -> &ConsumerBucket {
        &self.consumers
    }

    /// The stream's bounds, as last seen.
    pub fn positions(&self) -> Positions {
        *self.positions.borrow()
    }

    /// Watches the stream's bounds.
    pub fn watch_positions(&self) -> watch::Receiver<Positions> {
        self.positions.clone()
    }

    /// The events after `after` from the in-memory tail, if it holds all of them.
    pub fn recent_after(&self, after: u64, limit: usize) -> Option<Vec<Arc<StoredEvent>>> {
        self.recent.read_after(after, limit)
    }

    /// Up to `limit` events after `after` (at most about `max_bytes`), read from the servers.
    ///
    /// # Errors
    /// [`ReadError`] when the servers cannot be asked.
    pub async fn read_after(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, ReadError> {
        direct::read_after(&self.client, &self.stream, after, limit, max_bytes).await
    }

    /// Starts a snapshot of the state, consistent at its [`StateSnapshot::sequence`], once the
    /// builder applied `head` (or a few seconds passed); the builder pauses until it is dropped.
    ///
    /// # Errors
    /// [`ReadError`] when the state cannot be read or no builder acknowledged the snapshot.
    pub async fn snapshot(
        &self,
        head: u64,
        include_tombstones: bool,
    ) -> Result<StateSnapshot, ReadError> {
        StateSnapshot::open(&self.state, head, include_tombstones).await
    }

    /// The state builder's applied sequence, as this bridge last saw it.
    pub fn state_applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Whether the bridge is connected to a server.
    pub fn is_usable(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Stops following the head and flushes what was published.
    pub async fn close(&self) {
        self.stop.cancel();
        self.tasks.wait().await;
        if let Err(error) = self.client.flush().await {
            tracing::debug!(%error, "NATS flush at close failed");
        }
    }
}

/// What the stream must hold last for a publish to be stored.
enum Expect<'a> {
    /// Anything.
    Nothing,
    /// The event at this sequence.
    LastSequence(u64),
    /// The event with this id.
    LastMessageId(&'a str),
}

/// What an acknowledged publish did.
fn appended(ack: jetstream::publish::PublishAck) -> Appended {
    match ack.duplicate {
        true => Appended::Duplicate(ack.sequence),
        false => Appended::Stored(ack.sequence),
    }
}

/// This bridge's name in the leases bucket: the host name and a random suffix.
fn holder_name() -> String {
    format!(
        "{}-{:016x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "clerk-bridge".to_owned()),
        fastrand::u64(..)
    )
}
