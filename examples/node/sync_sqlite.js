#!/usr/bin/env node
// Keeps a SQLite database in sync with Clerk through a clerk-bridge: tables `users`, `organizations`
// and `organization_memberships`, as your application would keep its own. The same consumer as
// `examples/sync_sqlite.rs` (Rust) and `examples/python/sync_sqlite.py`, with @grpc/grpc-js,
// @grpc/proto-loader (reading ../../proto at run time) and better-sqlite3.
//
//   node sync_sqlite.js --db app.db [--grpc-addr 127.0.0.1:50051] [--consumer sync-sqlite-node]
//   node sync_sqlite.js --db app.db --dump
//
// - Each event is applied by the rule in the README ("Applying events to your database"): upsert
//   keyed by `object_id` when `object_version` is greater than the stored one, a delete also when it
//   is equal; a delete leaves a tombstone (`deleted = 1`, data cleared) so a late create or update
//   cannot bring the object back.
// - The cursor (sequence of the last event handled) is written in the same transaction as the
//   change, so a crash never skips or double-applies an event; on start the stream resumes after it.
// - With no cursor yet, or when the bridge refuses it with OUT_OF_RANGE (retention deleted the events
//   after it), the stream starts from a snapshot of the bridge's state, tombstones included. Its
//   events go through the same rule but leave the cursor alone; at `snapshot_end` the cursor moves to
//   the snapshot's sequence S, S is committed, and the events after S follow. A crash before that
//   bootstraps again, which the rule makes harmless.
// - The stream belongs to a named durable consumer; each sequence is committed to the bridge after
//   the transaction (the bridge's lag and retention), and the bridge allows one stream per name.
// - A lost stream is reopened with exponential backoff and jitter.
// Sequences and versions are 64-bit: they travel as strings and are bound as BigInt.
'use strict';

const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const Database = require('better-sqlite3');

const EVENT_TYPES = ['user.*', 'organization.*', 'organizationMembership.*'];
const FIRST_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 10_000;
const MAX_VERSION = (1n << 63n) - 1n;
// Status codes that another try will not fix: a bad consumer name, a request always refused.
const FATAL_CODES = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.PERMISSION_DENIED]);

const SCHEMA = `
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
);`;

// Data columns of each table (after id, version, deleted).
const TABLES = {
  users: ['first_name', 'last_name', 'username', 'email'],
  organizations: ['name', 'slug'],
  organization_memberships: ['organization_id', 'user_id', 'role'],
};

const log = (message) => process.stderr.write(`${message}\n`);

function loadService(protoDir) {
  const definition = protoLoader.loadSync('clerk/bridge/v1/service.proto', {
    includeDirs: [protoDir],
    keepCase: true, // field names as in the proto: object_id, object_version, ...
    longs: String, // uint64 as decimal strings: no precision lost
    enums: String,
    defaults: false, // unset proto3 `optional` fields stay undefined (SQL NULL)
    oneofs: true, // `payload` / `change` / `message` name the member that is set
  });
  return grpc.loadPackageDefinition(definition).clerk.bridge.v1.EventStream;
}

function openDb(file) {
  const db = new Database(file, { timeout: 5000 });
  db.pragma('journal_mode = WAL'); // --dump can read while the sync writes
  db.exec(SCHEMA);
  return db;
}

// The sequence of the last event handled (a BigInt), or null before the first.
function readCursor(db, consumer) {
  const row = db.prepare('SELECT sequence FROM clerk_cursor WHERE consumer = ?').safeIntegers(true).get(consumer);
  return row ? row.sequence : null;
}

const orNull = (value) => (value === undefined || value === null ? null : value);
const orEmpty = (value) => (value === undefined || value === null ? '' : value);

function userValues(user) {
  const primary = orNull(user.primary_email_address_id);
  const email = (user.email_addresses || []).find((e) => primary !== null && orEmpty(e.id) === primary);
  return [orNull(user.first_name), orNull(user.last_name), orNull(user.username), email ? orEmpty(email.email_address) : null];
}

// {table, id, version, deleted, values} for an event this consumer keeps, else null.
function rowOf(event) {
  let table;
  let values = null;
  if (event.payload === 'user') {
    table = 'users';
    const change = event.user.change;
    if (change === 'created' || change === 'updated') values = userValues(event.user[change]);
  } else if (event.payload === 'organization') {
    table = 'organizations';
    const change = event.organization.change;
    if (change === 'created' || change === 'updated') {
      const org = event.organization[change];
      values = [orEmpty(org.name), orEmpty(org.slug)];
    }
  } else if (event.payload === 'organization_membership') {
    table = 'organization_memberships';
    const change = event.organization_membership.change;
    if (change) {
      const m = event.organization_membership[change];
      values = [orEmpty(m.organization_id), orEmpty(m.user_id), orEmpty(m.role)];
    }
  } else {
    return null;
  }
  const deleted = event.deleted === true;
  if (deleted || values === null) values = TABLES[table].map(() => null);
  const version = BigInt(event.object_version || '0');
  return { table, id: orEmpty(event.object_id), version: version > MAX_VERSION ? MAX_VERSION : version, deleted, values };
}

// The rule: insert, or overwrite only a strictly older version (or the same version by a delete).
function upsertStatement(db, table) {
  const columns = TABLES[table];
  const updates = columns.map((c) => `, ${c} = excluded.${c}`).join('');
  return db.prepare(
    `INSERT INTO ${table} (id, version, deleted, ${columns.join(', ')}) VALUES (?, ?, ?, ${columns.map(() => '?').join(', ')}) ` +
      `ON CONFLICT (id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted${updates} ` +
      `WHERE excluded.version > ${table}.version OR (excluded.deleted AND excluded.version = ${table}.version)`,
  );
}

// {apply, moveCursor} for this database and consumer.
function makeWriters(db, consumer) {
  const upserts = Object.fromEntries(Object.keys(TABLES).map((t) => [t, upsertStatement(db, t)]));
  const cursorStatement = db.prepare(
    'INSERT INTO clerk_cursor (consumer, sequence) VALUES (?, ?) ON CONFLICT (consumer) DO UPDATE SET sequence = excluded.sequence',
  );
  const moveCursor = (sequence) => cursorStatement.run(consumer, BigInt(sequence));
  // Applies the event, and moves the cursor to it unless it is a snapshot's, in one transaction.
  // Says what happened.
  const apply = db.transaction((event, movesCursor) => {
    const row = rowOf(event);
    let outcome = 'skipped (not a synced type)';
    if (row) {
      const changed = upserts[row.table].run(row.id, row.version, row.deleted ? 1 : 0, ...row.values).changes;
      outcome = changed > 0 ? 'applied' : 'ignored (not newer than the stored version)';
    }
    if (movesCursor) moveCursor(event.sequence);
    return outcome;
  });
  return { apply, moveCursor };
}

const call = (client, method, request) =>
  new Promise((resolve, reject) => client[method](request, (err, response) => (err ? reject(err) : resolve(response))));

// After the cursor; or the bridge's state first (a snapshot, tombstones included) when there is no
// cursor yet or the bridge no longer holds the events after it.
function subscribeRequest(consumer, cursor, behind) {
  const request = { consumer, event_types: EVENT_TYPES };
  if (cursor !== null && !behind) {
    return { ...request, start: 'START_POSITION_AFTER_SEQUENCE', after_sequence: cursor.toString() };
  }
  log(`bootstrapping from a snapshot (${cursor === null ? 'database empty' : `position ${cursor} no longer retained`})`);
  return { ...request, start: 'START_POSITION_SNAPSHOT', include_tombstones: true };
}

async function streamOnce(args, db, client, writers, state) {
  const request = subscribeRequest(args.consumer, readCursor(db, args.consumer), state.behind);
  // Until snapshot_end, events are the snapshot's: they leave the cursor where it is.
  let inSnapshot = request.start === 'START_POSITION_SNAPSHOT';
  const stream = client.Subscribe(request);
  try {
    for await (const response of stream) {
      if (response.message === 'event') {
        const event = response.event;
        const outcome = writers.apply(event, !inSnapshot);
        process.stdout.write(`#${event.sequence} ${event.type} ${event.object_id}: ${outcome}\n`);
        if (!inSnapshot) {
          await call(client, 'Commit', { consumer: args.consumer, sequence: event.sequence });
          state.backoff = FIRST_BACKOFF_MS;
        }
      } else if (response.message === 'snapshot_end') {
        const end = response.snapshot_end;
        writers.moveCursor(end.sequence || '0'); // the state now holds everything up to S
        await call(client, 'Commit', { consumer: args.consumer, sequence: end.sequence || '0' });
        inSnapshot = state.behind = false;
        log(`snapshot applied: ${end.objects || 0} objects, consistent at #${end.sequence || 0}`);
      } else if (response.message === 'start') {
        const s = response.start;
        log(`streaming after #${s.after_sequence || 0} as consumer "${args.consumer}" (the log holds #${s.first_retained_sequence || 0}..#${s.head_sequence || 0})`);
      } else if (response.message === 'caught_up') {
        state.backoff = FIRST_BACKOFF_MS;
        log(`caught up at #${response.caught_up.head_sequence || 0}; waiting for new events`);
      }
    }
  } finally {
    stream.cancel();
  }
  return 'the bridge ended the stream';
}

async function sync(args, db) {
  const EventStream = loadService(args.protoDir);
  const address = args.grpcAddr.replace(/^[a-z]+:\/\//, '');
  const client = new EventStream(address, grpc.credentials.createInsecure());
  const writers = makeWriters(db, args.consumer);
  // behind: set by OUT_OF_RANGE (retention deleted events not applied yet), cleared by a snapshot.
  const state = { backoff: FIRST_BACKOFF_MS, behind: false };
  for (;;) {
    let reason;
    try {
      reason = await streamOnce(args, db, client, writers, state);
    } catch (err) {
      if (err.code === undefined) throw err; // not a gRPC error: a database error, a bug
      if (FATAL_CODES.has(err.code)) {
        log(`sync_sqlite.js: ${grpc.status[err.code]}: ${err.details}`);
        process.exit(1);
      }
      if (err.code === grpc.status.OUT_OF_RANGE) state.behind = true;
      reason = `${grpc.status[err.code]}: ${err.details}`;
    }
    const pause = Math.round(state.backoff * (0.5 + Math.random() / 2));
    log(`stream lost (${reason}); reconnecting in ${pause} ms`);
    await new Promise((resolve) => setTimeout(resolve, pause));
    state.backoff = Math.min(state.backoff * 2, MAX_BACKOFF_MS);
  }
}

function dump(db) {
  for (const [table, columns] of Object.entries(TABLES)) {
    const names = ['id', 'version', 'deleted', ...columns];
    process.stdout.write(`${table}:\n`);
    const rows = db.prepare(`SELECT ${names.join(', ')} FROM ${table} ORDER BY id`).safeIntegers(true).raw().all();
    for (const values of rows) {
      const cells = names.map((n, i) => `${n}=${values[i] === null ? 'NULL' : values[i]}`).join(' ');
      process.stdout.write(`  ${cells}\n`);
    }
  }
  process.stdout.write('clerk_cursor:\n');
  const cursors = db.prepare('SELECT consumer, sequence FROM clerk_cursor ORDER BY consumer').safeIntegers(true).all();
  for (const { consumer, sequence } of cursors) process.stdout.write(`  consumer=${consumer} sequence=${sequence}\n`);
}

function main() {
  const { values } = parseArgs({
    options: {
      'grpc-addr': { type: 'string', default: process.env.CLERK_BRIDGE_GRPC_ADDR || '127.0.0.1:50051' },
      db: { type: 'string', default: 'app.db' },
      consumer: { type: 'string', default: 'sync-sqlite-node' },
      proto: { type: 'string', default: path.join(__dirname, '..', '..', 'proto') },
      dump: { type: 'boolean', default: false },
    },
  });
  const args = { grpcAddr: values['grpc-addr'], db: values.db, consumer: values.consumer, protoDir: values.proto };
  const db = openDb(args.db);
  if (values.dump) {
    dump(db);
    return;
  }
  // Ctrl-C and SIGTERM end the program between transactions (better-sqlite3 runs each one
  // synchronously, so a signal never lands inside one).
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
  sync(args, db).catch((err) => {
    log(`sync_sqlite.js: ${err.stack || err}`);
    process.exit(1);
  });
}

main();
