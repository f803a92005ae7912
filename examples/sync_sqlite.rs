//! Keeps a SQLite database in sync with Clerk through a clerk-bridge: tables `users`,
//! `organizations` and `organization_memberships`, as your application would keep its own.
//!
//! ```text
//! cargo run --release --example sync_sqlite -- --db app.db [--grpc-addr 127.0.0.1:50051] [--consumer sync-sqlite-rust]
//! cargo run --release --example sync_sqlite -- --db app.db --dump
//! ```
//!
//! - Each event is applied by the rule in the README ("Applying events to your database"): upsert
//!   keyed by `object_id` when `object_version` is greater than the stored one, a delete also when
//!   it is equal; a delete leaves a tombstone (the row with `deleted = 1`, its data cleared) so a
//!   late create or update cannot bring the object back.
//! - The cursor (the sequence of the last event handled) is written in the same transaction as the
//!   change, so a crash at any point neither skips nor applies an event twice. On start the stream
//!   resumes after that cursor: the database is the source of truth.
//! - Bootstrapping: with no cursor yet (a new database), or when the bridge refuses the cursor with
//!   OUT_OF_RANGE (retention deleted the events after it), the stream starts from a snapshot of the
//!   bridge's state instead, tombstones included (rows of objects deleted since become tombstones).
//!   Its events go through the same rule but leave the cursor alone; at `snapshot_end` the cursor
//!   moves to the snapshot's sequence S, S is committed, and the events after S follow on the same
//!   stream. A crash before `snapshot_end` bootstraps again, which the rule makes harmless.
//! - The stream belongs to a named durable consumer: after each transaction the sequence is
//!   committed to the bridge too, which keeps its lag and retention right, and the bridge lets only
//!   one stream per name run, so two copies of this program cannot interleave.
//! - A lost stream (bridge restarting, network) is reopened with exponential backoff and jitter.
//!
//! The same consumer in Python and Node is in `examples/python/` and `examples/node/`; CI checks
//! that the three end with identical databases (`examples/convergence/`).

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use clerk_bridge::proto::{
    CommitRequest, EmailAddress, Event, SnapshotEnd, StartPosition, SubscribeRequest, User,
    event::Payload, event_stream_client::EventStreamClient, organization_event,
    organization_membership_event, subscribe_response::Message, user_event,
};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter, types::Value as SqlValue};
use tonic::{Code, Status, transport::Channel};

/// The event types this consumer applies.
const EVENT_TYPES: [&str; 3] = ["user.*", "organization.*", "organizationMembership.*"];
/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The tables, and the cursor beside them.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
  id         TEXT PRIMARY KEY,
  version    INTEGER NOT NULL,
  deleted    INTEGER NOT NULL,
  first_name TEXT,
  last_name  TEXT,
  username   TEXT,
  email      TEXT
);
CREATE TABLE IF NOT EXISTS organizations (
  id      TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  name    TEXT,
  slug    TEXT
);
CREATE TABLE IF NOT EXISTS organization_memberships (
  id              TEXT PRIMARY KEY,
  version         INTEGER NOT NULL,
  deleted         INTEGER NOT NULL,
  organization_id TEXT,
  user_id         TEXT,
  role            TEXT
);
CREATE TABLE IF NOT EXISTS clerk_cursor (
  consumer TEXT PRIMARY KEY,
  sequence INTEGER NOT NULL
);";

/// Data columns of each table (after `id`, `version`, `deleted`).
const TABLES: [(&str, &[&str]); 3] = [
    ("users", &["first_name", "last_name", "username", "email"]),
    ("organizations", &["name", "slug"]),
    (
        "organization_memberships",
        &["organization_id", "user_id", "role"],
    ),
];

/// Where the bridge and the database are, and the consumer's name at the bridge.
#[derive(Debug, Parser)]
#[command(about = "Keep users, organizations and memberships in a SQLite file in sync with Clerk")]
struct Args {
    /// The bridge's gRPC address.
    #[arg(
        long,
        env = "CLERK_BRIDGE_GRPC_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    grpc_addr: String,
    /// The SQLite database file (created if missing).
    #[arg(long, default_value = "app.db")]
    db: PathBuf,
    /// Name of the durable consumer at the bridge.
    #[arg(long, default_value = "sync-sqlite-rust")]
    consumer: String,
    /// Print the tables and the cursor, and exit.
    #[arg(long)]
    dump: bool,
}

/// Why the sync stopped or paused.
#[derive(Debug)]
enum Stop {
    /// Worth another try after a pause.
    Retry(String),
    /// The bridge no longer holds the events after the cursor (OUT_OF_RANGE): the next stream
    /// bootstraps from a snapshot.
    Behind(String),
    /// Needs a person: a database error, or a request the bridge will always refuse.
    Fatal(String),
}

impl From<Status> for Stop {
    fn from(status: Status) -> Self {
        let text = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            // Retention deleted events this consumer has not applied.
            Code::OutOfRange => Stop::Behind(text),
            // A bad consumer name, or a request the bridge will always refuse.
            Code::InvalidArgument | Code::PermissionDenied => Stop::Fatal(text),
            // Unavailable (restart), Aborted (a previous stream of this consumer is still closing)...
            _ => Stop::Retry(text),
        }
    }
}

impl From<rusqlite::Error> for Stop {
    fn from(e: rusqlite::Error) -> Self {
        Stop::Fatal(format!("database: {e}"))
    }
}

/// One row to upsert.
#[derive(Debug)]
struct Row {
    /// One of the tables of [`TABLES`].
    table: &'static str,
    /// The Clerk id.
    id: String,
    /// The event's `object_version`: it replaces a stored row only when newer (or equal, for a
    /// delete).
    version: i64,
    /// A delete: the row stays as a tombstone, so a late create cannot bring the object back.
    deleted: bool,
    /// Data columns in [`TABLES`] order; all `None` on a tombstone.
    values: Vec<Option<String>>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let result = match open(&args) {
        Ok(db) if args.dump => dump(&db).map_err(Stop::from),
        Ok(mut db) => tokio::select! {
            stop = sync(&args, &mut db) => Err(stop),
            () = shutdown_signal() => Ok(()),
        },
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => {}
        Err(Stop::Fatal(reason) | Stop::Retry(reason) | Stop::Behind(reason)) => {
            eprintln!("sync_sqlite: {reason}");
            std::process::exit(1);
        }
    }
}

/// Opens the database and creates the tables.
fn open(args: &Args) -> rusqlite::Result<Connection> {
    let db = Connection::open(&args.db)?;
    db.busy_timeout(Duration::from_secs(5))?;
    // WAL: `--dump` can read while the sync writes.
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

/// Streams and applies events forever; returns only on a fatal error.
async fn sync(args: &Args, db: &mut Connection) -> Stop {
    let url = if args.grpc_addr.contains("://") {
        args.grpc_addr.clone()
    } else {
        format!("http://{}", args.grpc_addr)
    };
    let channel = match Channel::from_shared(url) {
        Ok(endpoint) => endpoint.connect_lazy(),
        Err(e) => return Stop::Fatal(format!("invalid --grpc-addr: {e}")),
    };
    let mut client = EventStreamClient::new(channel);
    let mut backoff = FIRST_BACKOFF;
    // Set by OUT_OF_RANGE, cleared once a snapshot is applied.
    let mut behind = false;
    loop {
        let reason = match stream_once(args, db, &mut client, &mut backoff, &mut behind).await {
            Stop::Fatal(reason) => return Stop::Fatal(reason),
            Stop::Behind(reason) => {
                behind = true;
                reason
            }
            Stop::Retry(reason) => reason,
        };
        let pause = jittered(backoff);
        eprintln!(
            "stream lost ({reason}); reconnecting in {} ms",
            pause.as_millis()
        );
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One stream: from the stored cursor (or a snapshot, see [`request`]) until it fails.
async fn stream_once(
    args: &Args,
    db: &mut Connection,
    client: &mut EventStreamClient<Channel>,
    backoff: &mut Duration,
    behind: &mut bool,
) -> Stop {
    let run = async {
        let request = request(args, cursor(db, &args.consumer)?, *behind);
        // Until `snapshot_end`, events are the snapshot's: they leave the cursor where it is.
        let mut in_snapshot = request.start == i32::from(StartPosition::Snapshot);
        let mut stream = client.subscribe(request).await?.into_inner();
        while let Some(response) = stream.message().await? {
            match response.message {
                Some(Message::Event(event)) => {
                    let moves_cursor = !in_snapshot;
                    let outcome = apply(db, &args.consumer, &event, moves_cursor)?;
                    println!(
                        "#{} {} {}: {outcome}",
                        event.sequence, event.r#type, event.object_id
                    );
                    if moves_cursor {
                        commit(client, &args.consumer, event.sequence).await?;
                        *backoff = FIRST_BACKOFF;
                    }
                }
                Some(Message::SnapshotEnd(end)) => {
                    finish_snapshot(db, client, &args.consumer, &end).await?;
                    in_snapshot = false;
                    *behind = false;
                }
                Some(Message::Start(start)) => eprintln!(
                    "streaming after #{} as consumer {:?} (the log holds #{}..#{})",
                    start.after_sequence,
                    args.consumer,
                    start.first_retained_sequence,
                    start.head_sequence
                ),
                Some(Message::CaughtUp(caught_up)) => {
                    *backoff = FIRST_BACKOFF;
                    eprintln!(
                        "caught up at #{}; waiting for new events",
                        caught_up.head_sequence
                    );
                }
                Some(Message::Heartbeat(_)) | None => {}
            }
        }
        Ok::<_, Stop>(Stop::Retry("the bridge ended the stream".to_owned()))
    };
    run.await.unwrap_or_else(|stop| stop)
}

/// The stream to open: after the cursor, or the bridge's state first (a snapshot, tombstones
/// included) when there is no cursor yet or the bridge no longer holds the events after it.
fn request(args: &Args, cursor: Option<u64>, behind: bool) -> SubscribeRequest {
    let request = SubscribeRequest {
        consumer: args.consumer.clone(),
        event_types: EVENT_TYPES.map(String::from).to_vec(),
        ..SubscribeRequest::default()
    };
    let why = match cursor {
        Some(cursor) if !behind => {
            return SubscribeRequest {
                start: StartPosition::AfterSequence.into(),
                after_sequence: cursor,
                ..request
            };
        }
        Some(cursor) => format!("position {cursor} no longer retained"),
        None => "database empty".to_owned(),
    };
    eprintln!("bootstrapping from a snapshot ({why})");
    SubscribeRequest {
        start: StartPosition::Snapshot.into(),
        include_tombstones: true,
        ..request
    }
}

/// Moves the cursor to the snapshot's sequence (the state now holds everything up to it) and
/// commits it to the bridge.
async fn finish_snapshot(
    db: &Connection,
    client: &mut EventStreamClient<Channel>,
    consumer: &str,
    end: &SnapshotEnd,
) -> Result<(), Stop> {
    move_cursor(db, consumer, end.sequence)?;
    commit(client, consumer, end.sequence).await?;
    eprintln!(
        "snapshot applied: {} objects, consistent at #{}",
        end.objects, end.sequence
    );
    Ok(())
}

/// Tells the bridge that everything up to `sequence` is applied.
async fn commit(
    client: &mut EventStreamClient<Channel>,
    consumer: &str,
    sequence: u64,
) -> Result<(), Status> {
    let request = CommitRequest {
        consumer: consumer.to_owned(),
        sequence,
    };
    client.commit(request).await.map(drop)
}

/// The sequence of the last event handled (`None`: nothing yet).
fn cursor(db: &Connection, consumer: &str) -> rusqlite::Result<Option<u64>> {
    let stored: Option<i64> = db
        .query_row(
            "SELECT sequence FROM clerk_cursor WHERE consumer = ?1",
            [consumer],
            |row| row.get(0),
        )
        .optional()?;
    Ok(stored.map(|s| u64::try_from(s).unwrap_or(0)))
}

/// Applies `event`, and moves the cursor to it unless it is a snapshot's, in one transaction.
/// Says what happened.
fn apply(
    db: &mut Connection,
    consumer: &str,
    event: &Event,
    moves_cursor: bool,
) -> rusqlite::Result<&'static str> {
    let tx = db.transaction()?;
    let outcome = match row(event) {
        Some(row) if upsert(&tx, &row)? > 0 => "applied",
        Some(_) => "ignored (not newer than the stored version)",
        None => "skipped (not a synced type)",
    };
    if moves_cursor {
        move_cursor(&tx, consumer, event.sequence)?;
    }
    tx.commit()?;
    Ok(outcome)
}

/// Stores `sequence` as the cursor (within the caller's transaction, if any).
fn move_cursor(db: &Connection, consumer: &str, sequence: u64) -> rusqlite::Result<usize> {
    let sequence = i64::try_from(sequence).unwrap_or(i64::MAX);
    db.execute(
        "INSERT INTO clerk_cursor (consumer, sequence) VALUES (?1, ?2)
         ON CONFLICT (consumer) DO UPDATE SET sequence = excluded.sequence",
        params![consumer, sequence],
    )
}

/// The rule: insert, or overwrite only a strictly older version (or the same version by a delete).
/// Returns the number of rows changed (0: the stored row is newer).
fn upsert(db: &Connection, row: &Row) -> rusqlite::Result<usize> {
    let columns = TABLES
        .iter()
        .find(|(table, _)| *table == row.table)
        .map_or(&[][..], |(_, columns)| *columns);
    let names = columns.join(", ");
    let placeholders: String = (4..4 + columns.len()).map(|i| format!(", ?{i}")).collect();
    let updates: String = columns
        .iter()
        .map(|c| format!(", {c} = excluded.{c}"))
        .collect();
    let table = row.table;
    let sql = format!(
        "INSERT INTO {table} (id, version, deleted, {names}) VALUES (?1, ?2, ?3{placeholders})
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted{updates}
         WHERE excluded.version > {table}.version
            OR (excluded.deleted AND excluded.version = {table}.version)"
    );
    let mut values = vec![
        SqlValue::Text(row.id.clone()),
        SqlValue::Integer(row.version),
        SqlValue::Integer(i64::from(row.deleted)),
    ];
    values.extend(
        row.values
            .iter()
            .map(|v| v.clone().map_or(SqlValue::Null, SqlValue::Text)),
    );
    db.prepare_cached(&sql)?.execute(params_from_iter(values))
}

/// The row an event writes, or `None` for an event this consumer does not keep.
fn row(event: &Event) -> Option<Row> {
    let (table, values) = match event.payload.as_ref()? {
        Payload::User(user) => (
            "users",
            match &user.change {
                Some(user_event::Change::Created(u) | user_event::Change::Updated(u)) => {
                    user_values(u)
                }
                _ => vec![None; 4],
            },
        ),
        Payload::Organization(org) => (
            "organizations",
            match &org.change {
                Some(
                    organization_event::Change::Created(o) | organization_event::Change::Updated(o),
                ) => vec![Some(o.name.clone()), Some(o.slug.clone())],
                _ => vec![None; 2],
            },
        ),
        Payload::OrganizationMembership(membership) => {
            use organization_membership_event::Change;
            (
                "organization_memberships",
                match &membership.change {
                    Some(Change::Created(m) | Change::Updated(m) | Change::Deleted(m)) => vec![
                        Some(m.organization_id.clone()),
                        Some(m.user_id.clone()),
                        Some(m.role.clone()),
                    ],
                    None => vec![None; 3],
                },
            )
        }
        _ => return None,
    };
    let values = if event.deleted {
        vec![None; values.len()]
    } else {
        values
    };
    Some(Row {
        table,
        id: event.object_id.clone(),
        version: i64::try_from(event.object_version).unwrap_or(i64::MAX),
        deleted: event.deleted,
        values,
    })
}

/// `first_name`, `last_name`, `username`, and the primary email address.
fn user_values(user: &User) -> Vec<Option<String>> {
    let primary = user.primary_email_address_id.as_deref();
    let email = user
        .email_addresses
        .iter()
        .find(|e: &&EmailAddress| Some(e.id.as_str()) == primary)
        .map(|e| e.email_address.clone());
    vec![
        user.first_name.clone(),
        user.last_name.clone(),
        user.username.clone(),
        email,
    ]
}

/// Prints every table and the cursor, one row a line.
fn dump(db: &Connection) -> rusqlite::Result<()> {
    for (table, columns) in TABLES {
        let all = ["id", "version", "deleted"]
            .iter()
            .chain(columns)
            .copied()
            .collect::<Vec<_>>();
        let mut statement = db.prepare(&format!(
            "SELECT {} FROM {table} ORDER BY id",
            all.join(", ")
        ))?;
        let mut rows = statement.query([])?;
        println!("{table}:");
        while let Some(row) = rows.next()? {
            let mut line = String::from(" ");
            for (i, name) in all.iter().enumerate() {
                let text = match row.get::<_, SqlValue>(i)? {
                    SqlValue::Null => "NULL".to_owned(),
                    SqlValue::Integer(n) => n.to_string(),
                    SqlValue::Text(t) => t,
                    other => format!("{other:?}"),
                };
                line.push_str(&format!(" {name}={text}"));
            }
            println!("{line}");
        }
    }
    let mut statement =
        db.prepare("SELECT consumer, sequence FROM clerk_cursor ORDER BY consumer")?;
    let mut rows = statement.query([])?;
    println!("clerk_cursor:");
    while let Some(row) = rows.next()? {
        let (consumer, sequence): (String, i64) = (row.get(0)?, row.get(1)?);
        println!("  consumer={consumer} sequence={sequence}");
    }
    Ok(())
}

/// Between half and all of `backoff`, so restarted consumers do not reconnect in step.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
