#!/usr/bin/env python3
"""Keeps a SQLite database in sync with Clerk through a clerk-bridge: tables `users`, `organizations`
and `organization_memberships`, as your application would keep its own. The same consumer as
`examples/sync_sqlite.rs` (Rust) and `examples/node/sync_sqlite.js`, with grpcio and sqlite3.

    python sync_sqlite.py --db app.db [--grpc-addr 127.0.0.1:50051] [--consumer sync-sqlite-python]
    python sync_sqlite.py --db app.db --dump

- Each event is applied by the rule in the README ("Applying events to your database"): upsert keyed
  by `object_id` when `object_version` is greater than the stored one, a delete also when it is equal;
  a delete leaves a tombstone (`deleted = 1`, data cleared) so a late create or update cannot bring the
  object back.
- The cursor (sequence of the last event handled) is written in the same transaction as the change,
  so a crash never skips or double-applies an event; on start the stream resumes after it.
- With no cursor yet, or when the bridge refuses it with OUT_OF_RANGE (retention deleted the events
  after it), the stream starts from a snapshot of the bridge's state, tombstones included. Its events
  go through the same rule but leave the cursor alone; at `snapshot_end` the cursor moves to the
  snapshot's sequence S, S is committed, and the events after S follow. A crash before that
  bootstraps again, which the rule makes harmless.
- The stream belongs to a named durable consumer; each sequence is committed to the bridge after the
  transaction (the bridge's lag and retention), and the bridge allows one stream per name.
- A lost stream is reopened with exponential backoff and jitter.

The gRPC stubs are generated from ../../proto into ./gen by grpcio-tools (see README.md).
"""
import argparse
import os
import random
import signal
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))

try:
    import grpc
    from clerk.bridge.v1 import service_pb2, service_pb2_grpc
except ImportError as e:
    sys.exit(f"sync_sqlite.py: {e}: install requirements.txt and generate the stubs into gen/ (README.md)")

EVENT_TYPES = ["user.*", "organization.*", "organizationMembership.*"]
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 10.0
MAX_VERSION = 2**63 - 1

SCHEMA = """
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
);
"""

# Data columns of each table (after id, version, deleted).
TABLES = {
    "users": ["first_name", "last_name", "username", "email"],
    "organizations": ["name", "slug"],
    "organization_memberships": ["organization_id", "user_id", "role"],
}

# Status codes that another try will not fix: a bad consumer name, a request always refused.
FATAL_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}


def log(message):
    print(message, file=sys.stderr, flush=True)


def open_db(path):
    # Autocommit mode: transactions are the explicit BEGIN/COMMIT below.
    db = sqlite3.connect(path, isolation_level=None, timeout=5)
    db.execute("PRAGMA journal_mode = WAL")  # --dump can read while the sync writes
    db.executescript(SCHEMA)
    return db


def read_cursor(db, consumer):
    """The sequence of the last event handled, or None before the first."""
    row = db.execute("SELECT sequence FROM clerk_cursor WHERE consumer = ?", (consumer,)).fetchone()
    return row[0] if row else None


def move_cursor(db, consumer, sequence):
    db.execute(
        "INSERT INTO clerk_cursor (consumer, sequence) VALUES (?, ?) "
        "ON CONFLICT (consumer) DO UPDATE SET sequence = excluded.sequence",
        (consumer, min(sequence, MAX_VERSION)),
    )


def optional(message, field):
    return getattr(message, field) if message.HasField(field) else None


def user_values(user):
    primary = optional(user, "primary_email_address_id")
    email = next((e.email_address for e in user.email_addresses if primary is not None and e.id == primary), None)
    return [optional(user, "first_name"), optional(user, "last_name"), optional(user, "username"), email]


def row(event):
    """(table, id, version, deleted, values) for an event this consumer keeps, else None."""
    kind = event.WhichOneof("payload")
    if kind == "user":
        change = event.user.WhichOneof("change")
        table = "users"
        values = user_values(getattr(event.user, change)) if change in ("created", "updated") else None
    elif kind == "organization":
        change = event.organization.WhichOneof("change")
        table = "organizations"
        org = getattr(event.organization, change) if change in ("created", "updated") else None
        values = [org.name, org.slug] if org is not None else None
    elif kind == "organization_membership":
        change = event.organization_membership.WhichOneof("change")
        table = "organization_memberships"
        m = getattr(event.organization_membership, change) if change else None
        values = [m.organization_id, m.user_id, m.role] if m is not None else None
    else:
        return None
    if event.deleted or values is None:
        values = [None] * len(TABLES[table])
    version = min(event.object_version, MAX_VERSION)
    return table, event.object_id, version, 1 if event.deleted else 0, values


def upsert(db, table, object_id, version, deleted, values):
    """The rule: insert, or overwrite only a strictly older version (or the same version by a delete).
    Returns the number of rows changed (0: the stored row is newer)."""
    columns = TABLES[table]
    names = ", ".join(columns)
    placeholders = ", ".join("?" for _ in columns)
    updates = "".join(f", {c} = excluded.{c}" for c in columns)
    sql = (
        f"INSERT INTO {table} (id, version, deleted, {names}) VALUES (?, ?, ?, {placeholders}) "
        f"ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted{updates} "
        f"WHERE excluded.version > {table}.version "
        f"OR (excluded.deleted AND excluded.version = {table}.version)"
    )
    return db.execute(sql, [object_id, version, deleted, *values]).rowcount


def apply(db, consumer, event, moves_cursor):
    """Applies the event, and moves the cursor to it unless it is a snapshot's, in one transaction.
    Says what happened."""
    db.execute("BEGIN")
    try:
        target = row(event)
        if target is None:
            outcome = "skipped (not a synced type)"
        elif upsert(db, *target) > 0:
            outcome = "applied"
        else:
            outcome = "ignored (not newer than the stored version)"
        if moves_cursor:
            move_cursor(db, consumer, event.sequence)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return outcome


class Retry(Exception):
    """The stream was lost; another try may work."""


def subscribe_request(consumer, cursor, behind):
    """After the cursor; or the bridge's state first (a snapshot, tombstones included) when there is
    no cursor yet or the bridge no longer holds the events after it."""
    if cursor is not None and not behind:
        return service_pb2.SubscribeRequest(consumer=consumer, event_types=EVENT_TYPES,
                                            start=service_pb2.START_POSITION_AFTER_SEQUENCE, after_sequence=cursor)
    why = "database empty" if cursor is None else f"position {cursor} no longer retained"
    log(f"bootstrapping from a snapshot ({why})")
    return service_pb2.SubscribeRequest(consumer=consumer, event_types=EVENT_TYPES,
                                        start=service_pb2.START_POSITION_SNAPSHOT, include_tombstones=True)


def stream_once(args, db, stub, state):
    request = subscribe_request(args.consumer, read_cursor(db, args.consumer), state["behind"])
    # Until snapshot_end, events are the snapshot's: they leave the cursor where it is.
    in_snapshot = request.start == service_pb2.START_POSITION_SNAPSHOT
    for response in stub.Subscribe(request):
        kind = response.WhichOneof("message")
        if kind == "event":
            event = response.event
            outcome = apply(db, args.consumer, event, moves_cursor=not in_snapshot)
            print(f"#{event.sequence} {event.type} {event.object_id}: {outcome}", flush=True)
            if not in_snapshot:
                stub.Commit(service_pb2.CommitRequest(consumer=args.consumer, sequence=event.sequence))
                state["backoff"] = FIRST_BACKOFF
        elif kind == "snapshot_end":
            end = response.snapshot_end
            move_cursor(db, args.consumer, end.sequence)  # the state now holds everything up to S
            stub.Commit(service_pb2.CommitRequest(consumer=args.consumer, sequence=end.sequence))
            in_snapshot = state["behind"] = False
            log(f"snapshot applied: {end.objects} objects, consistent at #{end.sequence}")
        elif kind == "start":
            s = response.start
            log(f"streaming after #{s.after_sequence} as consumer {args.consumer!r} "
                f"(the log holds #{s.first_retained_sequence}..#{s.head_sequence})")
        elif kind == "caught_up":
            state["backoff"] = FIRST_BACKOFF
            log(f"caught up at #{response.caught_up.head_sequence}; waiting for new events")
    raise Retry("the bridge ended the stream")


def sync(args, db):
    address = args.grpc_addr.split("://", 1)[-1]
    stub = service_pb2_grpc.EventStreamStub(grpc.insecure_channel(address))
    # behind: set by OUT_OF_RANGE (retention deleted events not applied yet), cleared by a snapshot.
    state = {"backoff": FIRST_BACKOFF, "behind": False}
    while True:
        try:
            stream_once(args, db, stub, state)
        except grpc.RpcError as e:
            if e.code() in FATAL_CODES:
                sys.exit(f"sync_sqlite.py: {e.code().name}: {e.details()}")
            if e.code() == grpc.StatusCode.OUT_OF_RANGE:
                state["behind"] = True
            reason = f"{e.code().name}: {e.details()}"
        except Retry as e:
            reason = str(e)
        pause = state["backoff"] * random.uniform(0.5, 1.0)
        log(f"stream lost ({reason}); reconnecting in {int(pause * 1000)} ms")
        time.sleep(pause)
        state["backoff"] = min(state["backoff"] * 2, MAX_BACKOFF)


def dump(db):
    for table, columns in TABLES.items():
        names = ["id", "version", "deleted", *columns]
        print(f"{table}:")
        for values in db.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY id"):
            cells = " ".join(f"{n}={'NULL' if v is None else v}" for n, v in zip(names, values))
            print(f"  {cells}")
    print("clerk_cursor:")
    for consumer, sequence in db.execute("SELECT consumer, sequence FROM clerk_cursor ORDER BY consumer"):
        print(f"  consumer={consumer} sequence={sequence}")


def main():
    parser = argparse.ArgumentParser(description="Keep users, organizations and memberships in a SQLite file in sync with Clerk")
    parser.add_argument("--grpc-addr", default=os.environ.get("CLERK_BRIDGE_GRPC_ADDR", "127.0.0.1:50051"),
                        help="the bridge's gRPC address (env CLERK_BRIDGE_GRPC_ADDR)")
    parser.add_argument("--db", default="app.db", help="the SQLite database file (created if missing)")
    parser.add_argument("--consumer", default="sync-sqlite-python", help="name of the durable consumer at the bridge")
    parser.add_argument("--dump", action="store_true", help="print the tables and the cursor, and exit")
    args = parser.parse_args()
    db = open_db(args.db)
    if args.dump:
        dump(db)
        return
    # SIGTERM ends the program like Ctrl-C: between transactions, or rolling back the open one.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        sync(args, db)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
