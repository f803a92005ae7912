#!/usr/bin/env python3
"""Convergence check of the three example consumers (Rust, Python, Node).

Starts a clerk-bridge on free ports with a temporary data dir, drives it with `clerk-bridge trigger`
through a scripted story (users created, updated several times, deleted, re-created under a new id;
organizations and memberships changing), delivered with Svix redeliveries, replays and in shuffled
order, while the consumers run: each is killed with SIGKILL in the middle and restarted, and the
bridge itself is restarted once. Near the end the consumers are killed again, and the bridge is
restarted with a retention cap that deletes every stored event: they come back below retention
(OUT_OF_RANGE) and bootstrap from the bridge's snapshot, and so does a second consumer of each
language started only then, with an empty database. At the end the six SQLite databases must be
identical to each other and to the state the story leads to (computed here from the story, in the
order it happened), every cursor must be at the last relevant event (or at the sequence of its last
snapshot, when that is later), and the bridge's committed positions must match.

Prints one line per failed expectation and a closing line `convergence: N passed, M failed`; exits 0
only when nothing failed. Run from anywhere; stdlib only (the consumers' own dependencies are
installed into examples/python/.venv and examples/node/node_modules when missing).

    python3 examples/convergence/check.py [--bin target/release/clerk-bridge] [--seed N] [--no-build]
"""
import argparse
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SYNCED_PREFIXES = ("user.", "organization.", "organizationMembership.")
TABLES = {
    "users": ["first_name", "last_name", "username", "email"],
    "organizations": ["name", "slug"],
    "organization_memberships": ["organization_id", "user_id", "role"],
}
PATIENCE = float(os.environ.get("CONVERGENCE_PATIENCE_SECS", "60"))
# The age cap of the bridge's last run: every event stored before it is older than this by then.
RETENTION_MAX_AGE_SECS = 1
# Stored while the consumers are down before retention runs, so that every cursor is behind the head
# (a session event: no table changes).
RETENTION_MARKER = ("msg_retention_marker", {"type": "session.created", "sets": {"data.user_id": "user_ada"}})
SNAPSHOT_APPLIED = re.compile(r"snapshot applied: \d+ objects, consistent at #(\d+)")
RESULTS = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    if ok:
        RESULTS["passed"] += 1
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {what}" + (f"\n{detail}" if detail else ""), flush=True)
    return ok


def say(message):
    print(f"convergence: {message}", flush=True)


def run(cmd, **kw):
    """Runs a setup command, failing the check with its output if it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        sys.exit(f"convergence: setup failed: {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# === the story ===


class Story:
    """What happened, in order: each step is one Clerk event, with the `--set` edits that make the
    built-in sample say it, and its effect on the expected tables."""

    def __init__(self):
        self.steps = []
        self.clock = int(time.time() * 1000) - 3_600_000  # an hour ago, one second per step
        self.expected = {table: {} for table in TABLES}

    def _tick(self):
        self.clock += 1000
        return self.clock

    def _add(self, event_type, sets, table=None, object_id=None, values=None):
        t = self._tick()
        deleted = event_type.endswith(".deleted")
        sets = dict(sets, timestamp=t)
        if not deleted:
            sets["data.updated_at"] = t
        self.steps.append({"type": event_type, "sets": sets})
        if table:
            row = [None] * len(TABLES[table]) if deleted else values
            self.expected[table][object_id] = (object_id, t, 1 if deleted else 0, *row)

    def user(self, action, uid, first=None, last=None, username=None, email=None):
        if action == "deleted":
            return self._add("user.deleted", {"data.id": uid}, "users", uid)
        sets = {
            "data.id": uid,
            "data.first_name": json.dumps(first),
            "data.last_name": json.dumps(last),
            "data.username": json.dumps(username),
            "data.email_addresses.0.email_address": email,
        }
        self._add(f"user.{action}", sets, "users", uid, [first, last, username, email])

    def org(self, action, oid, name=None, slug=None):
        if action == "deleted":
            return self._add("organization.deleted", {"data.id": oid, "data.slug": slug}, "organizations", oid)
        sets = {"data.id": oid, "data.name": name, "data.slug": slug}
        self._add(f"organization.{action}", sets, "organizations", oid, [name, slug])

    def membership(self, action, mid, oid, uid, role):
        sets = {"data.id": mid, "data.organization.id": oid, "data.public_user_data.user_id": uid, "data.role": role}
        self._add(f"organizationMembership.{action}", sets, "organization_memberships", mid, [oid, uid, role])

    def noise(self, event_type, uid):
        """An event the consumers do not subscribe to."""
        self._add(event_type, {"data.user_id": uid})


def build_story():
    s = Story()
    s.org("created", "org_acme", "Acme", "acme")
    s.org("created", "org_globex", "Globex", "globex")
    s.user("created", "user_ada", "Ada", "Lovelace", None, "ada@example.com")
    s.user("created", "user_grace", "Grace", "Hopper", None, "grace@example.com")
    s.user("created", "user_alan", "Alan", "Turing", None, "alan@example.com")
    s.membership("created", "orgmem_ada_acme", "org_acme", "user_ada", "org:member")
    s.noise("session.created", "user_ada")
    s.user("updated", "user_ada", "Augusta", "Lovelace", None, "ada@example.com")
    s.user("created", "user_edsger", "Edsger", "Dijkstra", "ewd", "ewd@example.com")
    s.membership("created", "orgmem_grace_acme", "org_acme", "user_grace", "org:member")
    s.user("updated", "user_grace", "Grace", "Brewster Hopper", None, "grace@example.com")
    s.membership("updated", "orgmem_ada_acme", "org_acme", "user_ada", "org:admin")
    s.user("created", "user_barbara", "Barbara", "Liskov", None, "barbara@example.com")
    s.user("updated", "user_ada", "Augusta Ada", "King", "ada", "ada@example.com")
    s.membership("created", "orgmem_edsger_globex", "org_globex", "user_edsger", "org:member")
    s.user("deleted", "user_alan")
    s.user("created", "user_alan2", "Alan", "Turing", "alan", "alan@example.com")  # re-created, new id
    s.org("updated", "org_acme", "Acme Inc", "acme")
    s.user("updated", "user_barbara", "Barbara", "Liskov", "barbara", "barbara@example.com")
    s.noise("session.ended", "user_grace")
    s.membership("created", "orgmem_alan2_acme", "org_acme", "user_alan2", "org:member")
    s.membership("updated", "orgmem_edsger_globex", "org_globex", "user_edsger", "org:admin")
    s.user("updated", "user_edsger", "Edsger W.", "Dijkstra", "ewd", "ewd@cs.utexas.edu")
    s.membership("deleted", "orgmem_grace_acme", "org_acme", "user_grace", "org:member")
    s.user("deleted", "user_grace")
    s.user("updated", "user_barbara", "Barbara", "Liskov", "liskov", "liskov@example.com")
    s.user("created", "user_linus", "Linus", "Torvalds", None, "linus@example.com")
    s.membership("created", "orgmem_linus_globex", "org_globex", "user_linus", "org:member")
    s.user("updated", "user_ada", "Ada", "Lovelace", "ada", "ada@analytical.example")
    s.membership("deleted", "orgmem_edsger_globex", "org_globex", "user_edsger", "org:admin")
    s.membership("deleted", "orgmem_linus_globex", "org_globex", "user_linus", "org:member")
    s.org("deleted", "org_globex", slug="globex")
    s.user("updated", "user_alan2", "Alan M.", "Turing", "alan", "alan@example.com")
    s.user("deleted", "user_barbara")
    s.noise("session.created", "user_linus")
    return s


def deliveries(story, rng):
    """Every step once under its own message id, plus Svix redeliveries (the same id: stored once)
    and replays (a new id: stored again, so the consumers see the same version twice); shuffled."""
    out = []
    for i, step in enumerate(story.steps):
        msg_id = f"msg_story_{i:03d}"
        out.append((msg_id, step))
        if rng.random() < 0.3:
            out.append((msg_id, step))
        if rng.random() < 0.3:
            out.append((f"msg_story_{i:03d}_replay", step))
    rng.shuffle(out)
    return out


# === processes ===


class Bridge:
    def __init__(self, binary, workdir):
        self.binary, self.workdir = binary, workdir
        self.data_dir = os.path.join(workdir, "data")
        self.http, self.grpc = free_port(), free_port()
        while self.grpc == self.http:
            self.grpc = free_port()
        self.proc = None

    @property
    def grpc_addr(self):
        return f"127.0.0.1:{self.grpc}"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http}/webhooks/clerk"

    def start(self, retention_max_age=None):
        """Starts the bridge; with `retention_max_age` (seconds), retention runs at once and deletes
        every event stored longer ago than that."""
        env = dict(os.environ, CLERK_WEBHOOK_SIGNING_SECRET=SECRET, RUST_LOG="warn")
        log = open(os.path.join(self.workdir, "bridge.log"), "ab")
        retention = ["--retention-max-age", f"{retention_max_age}s"] if retention_max_age else []
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--http-addr", f"127.0.0.1:{self.http}", "--grpc-addr", self.grpc_addr,
             "--data-dir", self.data_dir, "--heartbeat-interval", "1s", *retention],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.time() + PATIENCE
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"convergence: the bridge exited with {self.proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=1):
                    socket.create_connection(("127.0.0.1", self.grpc), timeout=1).close()
                    return
            except OSError:
                time.sleep(0.05)
        sys.exit("convergence: the bridge did not start")

    def first_retained(self):
        """The log's first retained sequence, from the `/metrics` gauge."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as page:
            for line in page.read().decode().splitlines():
                if line.startswith("clerk_bridge_log_first_retained_sequence "):
                    return int(line.split()[1])
        sys.exit("convergence: /metrics has no clerk_bridge_log_first_retained_sequence")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return None


class Consumer:
    def __init__(self, name, argv, workdir, cwd):
        self.name, self.cwd = name, cwd
        self.argv = argv + ["--consumer", f"sync-sqlite-{name}"]
        self.db = os.path.join(workdir, f"{name}.db")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc = None
        self.starts = 0

    def start(self, grpc_addr):
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"--- start {self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.argv + ["--db", self.db, "--grpc-addr", grpc_addr],
                                     cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def kill(self):
        self.proc.kill()  # SIGKILL: no chance to finish anything
        self.proc.wait()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=15):
        return "".join(self.log_text().splitlines(keepends=True)[-lines:])

    def since_start(self):
        """What it logged since it was last started."""
        return self.log_text().rpartition(f"--- start {self.starts}\n")[2]

    def snapshot_sequence(self):
        """The sequence of the last snapshot it applied (0: none)."""
        found = SNAPSHOT_APPLIED.findall(self.log_text())
        return int(found[-1]) if found else 0


def consumers(workdir, suffix=""):
    py = os.path.join(ROOT, "examples", "python")
    node = os.path.join(ROOT, "examples", "node")
    return [
        Consumer(f"rust{suffix}", [os.path.join(ROOT, "target", "release", "examples", "sync_sqlite")], workdir, ROOT),
        Consumer(f"python{suffix}", [os.path.join(py, ".venv", "bin", "python"), os.path.join(py, "sync_sqlite.py")],
                 workdir, py),
        Consumer(f"node{suffix}", ["node", os.path.join(node, "sync_sqlite.js")], workdir, node),
    ]


def prepare(args):
    """Builds the Rust consumer and installs the Python and Node dependencies when missing."""
    if not args.no_build:
        say("building the bridge and the Rust consumer (cargo build --release)")
        run(["cargo", "build", "--release", "--locked", "--bin", "clerk-bridge", "--example", "sync_sqlite"], cwd=ROOT)
    py = os.path.join(ROOT, "examples", "python")
    venv_python = os.path.join(py, ".venv", "bin", "python")
    ready = os.path.exists(venv_python) and subprocess.run(
        [venv_python, "-c", "import grpc, grpc_tools"], capture_output=True).returncode == 0
    if not ready:
        say("installing the Python consumer's requirements (examples/python/.venv)")
        run([sys.executable, "-m", "venv", ".venv"], cwd=py)
        run([venv_python, "-m", "pip", "install", "-q", "-r", "requirements.txt"], cwd=py)
    # Always regenerated, so the stubs match the proto of this checkout.
    protos = sorted(os.path.join("..", "..", "proto", "clerk", "bridge", "v1", f)
                    for f in os.listdir(os.path.join(ROOT, "proto", "clerk", "bridge", "v1")) if f.endswith(".proto"))
    os.makedirs(os.path.join(py, "gen"), exist_ok=True)
    run([venv_python, "-m", "grpc_tools.protoc", "-I", "../../proto", "--python_out=gen", "--grpc_python_out=gen", *protos], cwd=py)
    node = os.path.join(ROOT, "examples", "node")
    probe = "require('better-sqlite3'); require('@grpc/grpc-js'); require('@grpc/proto-loader')"
    if subprocess.run(["node", "-e", probe], cwd=node, capture_output=True).returncode != 0:
        say("installing the Node consumer's dependencies (npm ci in examples/node)")
        run(["npm", "ci", "--no-audit", "--no-fund"], cwd=node)


# === driving ===


def trigger(binary, bridge, msg_id, step):
    """Sends one story step with `clerk-bridge trigger`; the bridge's answer."""
    argv = [binary, "trigger", step["type"], "--url", bridge.url, "--id", msg_id]
    for path, value in step["sets"].items():
        argv += ["--set", f"{path}={value}"]
    result = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, CLERK_WEBHOOK_SIGNING_SECRET=SECRET))
    line = result.stdout.strip()
    if result.returncode != 0 or not line.startswith("200 "):
        sys.exit(f"convergence: trigger failed ({result.returncode}): {' '.join(argv)}\n{line}\n{result.stderr}")
    return json.loads(line[line.index("{"):])


class Sender:
    """Sends deliveries, recording the sequence each message id was stored at."""

    def __init__(self, binary, bridge, sequences):
        self.binary, self.bridge, self.sequences = binary, bridge, sequences
        self.last_stored_at = 0.0  # when the bridge last answered (every event before is stored)

    def send(self, batch):
        for msg_id, step in batch:
            answer = trigger(self.binary, self.bridge, msg_id, step)
            self.last_stored_at = time.time()
            self.sequences[msg_id] = (answer["sequence"], step["type"])


def read_db(path):
    """Every table's rows (sorted) and the cursor, or None if the database is not readable yet."""
    if not os.path.exists(path):
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            tables = {}
            for table, columns in TABLES.items():
                names = ", ".join(["id", "version", "deleted", *columns])
                tables[table] = db.execute(f"SELECT {names} FROM {table} ORDER BY id").fetchall()
            cursor = db.execute("SELECT max(sequence) FROM clerk_cursor").fetchone()[0] or 0
            return tables, cursor
        finally:
            db.close()
    except sqlite3.Error:
        return None


def expected_tables(story):
    return {table: sorted(rows.values()) for table, rows in story.expected.items()}


def diff(got, want):
    lines = []
    for table in TABLES:
        g, w = set(got.get(table, [])), set(want[table])
        lines += [f"    {table} missing:    {row}" for row in sorted(w - g)]
        lines += [f"    {table} unexpected: {row}" for row in sorted(g - w)]
    return "\n".join(lines)


def committed_positions(binary, bridge):
    result = subprocess.run([binary, "consumers", "--grpc-addr", bridge.grpc_addr, "list"], capture_output=True, text=True)
    positions = {}
    for line in result.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            positions[fields[0]] = int(fields[1])
    return positions


def logged_events(binary, bridge):
    """(sequence, message id) of every event the log still holds, in log order."""
    logged = subprocess.run([binary, "tail", "--grpc-addr", bridge.grpc_addr, "--from", "1", "--no-follow", "--json"],
                            capture_output=True, text=True)
    return [(e["sequence"], e["event_id"]) for e in map(json.loads, logged.stdout.splitlines())]


def bridge_state(binary, bridge):
    """(object id, version, deleted) of every synced object in the bridge's state, sorted."""
    result = subprocess.run([binary, "snapshot", "--grpc-addr", bridge.grpc_addr, "--json", "--tombstones",
                             "--types", "user.*,organization.*,organizationMembership.*"], capture_output=True, text=True)
    objects = map(json.loads, result.stdout.splitlines())
    return sorted((o["object_id"], o["object_version"], 1 if o["deleted"] else 0) for o in objects)


def wait_for(condition):
    """Polls `condition` until it holds or PATIENCE runs out; returns whether it held."""
    deadline = time.time() + PATIENCE
    while not condition():
        if time.time() >= deadline:
            return False
        time.sleep(0.1)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "clerk-bridge"))
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    parser.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    prepare(args)
    rng = random.Random(args.seed)
    story = build_story()
    plan = deliveries(story, rng)
    say(f"seed {args.seed} (rerun with --seed {args.seed}): {len(story.steps)} events, {len(plan)} deliveries")

    workdir = tempfile.mkdtemp(prefix="clerk-bridge-convergence-")
    bridge = Bridge(binary, workdir)
    bridge.start()
    team = consumers(workdir)
    late = consumers(workdir, "-late")  # started only once retention has deleted every early event
    everyone = team + late
    sequences = {}
    sender = Sender(binary, bridge, sequences)
    cut = [int(len(plan) * f) for f in (0.3, 0.45, 0.6, 0.75, 0.85, 0.93)]
    batches = [plan[a:b] for a, b in zip([0, *cut], [*cut, len(plan)])]
    started = time.time()
    try:
        sender.send(batches[0])  # stored before any consumer runs: they bootstrap from the snapshot
        for consumer in team:
            consumer.start(bridge.grpc_addr)
        # Running before the first kill: an interpreter that is still starting has nothing to lose.
        check(wait_for(lambda: all("snapshot applied" in c.since_start() for c in team)),
              "the first three bootstrapped from a snapshot before the kills",
              "\n".join(f"  {c.name}:\n{c.log_tail()}" for c in team))
        # Each consumer is killed right after an event is stored (so most likely while it applies
        # or commits it), stays down for the rest of the batch, and comes back; the bridge restarts
        # between the second and third kill.
        for consumer, batch in zip(team, batches[1:4]):
            k = rng.randrange(1, max(2, len(batch) // 2))
            sender.send(batch[:k])
            consumer.kill()
            sender.send(batch[k:])
            consumer.start(bridge.grpc_addr)
            if consumer.name == "python":
                say("restarting the bridge")
                bridge.stop()
                bridge.start()
        sender.send(batches[4])
        stored = max(seq for seq, t in sequences.values() if t.startswith(SYNCED_PREFIXES))
        check(wait_for(lambda: all((read_db(c.db) or ({}, 0))[1] >= stored for c in team)),
              f"every consumer applied #{stored} before the second kill",
              "\n".join(f"  {c.name}:\n{c.log_tail()}" for c in team))

        # The consumers go down again while more events arrive (and a session event, so the head is
        # past every cursor); then the bridge comes back with an age cap that every stored event is
        # past, so its first retention pass, at start, deletes them all.
        say("killing the consumers; restarting the bridge with retention")
        for consumer in team:
            consumer.kill()
        sender.send(batches[5] + [RETENTION_MARKER])
        ids = [msg_id for _, msg_id in logged_events(binary, bridge)]
        check(sorted(ids) == sorted(sequences), "the log holds every message id once",
              f"  {len(ids)} events logged, {len(sequences)} distinct ids sent")
        head = max(seq for seq, _ in sequences.values())
        bridge.stop()
        # Not a pause for something else to happen: the cap is measured against this clock.
        while time.time() < sender.last_stored_at + RETENTION_MAX_AGE_SECS + 0.1:
            time.sleep(0.05)
        bridge.start(retention_max_age=RETENTION_MAX_AGE_SECS)
        check(wait_for(lambda: bridge.first_retained() > head),
              f"retention deleted #1..#{head} before the consumers came back",
              f"  first retained: #{bridge.first_retained()}")

        # All six bootstrap from the snapshot (the first three because the bridge refuses their
        # positions, the late ones because their databases are empty), then get the last events on
        # the same stream.
        for consumer in everyone:
            consumer.start(bridge.grpc_addr)
        check(wait_for(lambda: all("snapshot applied" in c.since_start() for c in everyone)),
              "every consumer applied a snapshot after retention",
              "\n".join(f"  {c.name}:\n{c.log_tail()}" for c in everyone))
        sender.send(batches[6])

        relevant = [seq for seq, event_type in sequences.values() if event_type.startswith(SYNCED_PREFIXES)]
        last = max(relevant)
        head = max(seq for seq, _ in sequences.values())
        want = expected_tables(story)

        def cursor_wanted(c):
            """The last relevant event, or the sequence of a later snapshot (no relevant event since)."""
            return max(last, c.snapshot_sequence())

        states = {}

        def caught_up():
            states.update({c.name: read_db(c.db) for c in everyone})
            return all(states[c.name] is not None and states[c.name][1] >= cursor_wanted(c) for c in everyone)

        wait_for(caught_up)
        say(f"{head} events stored, the last relevant one is #{last}; "
            f"consumers caught up after {time.time() - started:.1f} s")

        for c in everyone:
            state, cursor = states.get(c.name), cursor_wanted(c)
            if not check(state is not None and state[1] == cursor, f"{c.name}: cursor at #{cursor}",
                         f"  cursor: {state and state[1]}\n{c.log_tail()}"):
                continue
            check(state[0] == want, f"{c.name}: tables equal the story's final state", diff(state[0], want))
            check(c.alive(), f"{c.name}: still running at the end", c.log_tail())
        got = [states[c.name][0] for c in everyone if states.get(c.name)]
        check(len(got) == len(everyone) and all(g == got[0] for g in got), "the six databases are identical")
        for c in everyone:
            check("bootstrapping from a snapshot (database empty)" in c.log_text(),
                  f"{c.name}: bootstrapped its empty database from a snapshot", c.log_tail())
        for c in team:
            check(re.search(r"bootstrapping from a snapshot \(position \d+ no longer retained\)", c.since_start()),
                  f"{c.name}: bootstrapped again once its position was no longer retained", c.log_tail())
        want_objects = sorted(row[:3] for rows in want.values() for row in rows)
        check(bridge_state(binary, bridge) == want_objects, "the bridge's state (clerk-bridge snapshot) is the story's")

        # The bridge's positions follow the databases (commits come after each transaction).
        positions = {}

        def committed():
            positions.update(committed_positions(binary, bridge))
            return all(positions.get(f"sync-sqlite-{c.name}", 0) >= cursor_wanted(c) for c in everyone)

        wait_for(committed)
        for c in everyone:
            name, cursor = f"sync-sqlite-{c.name}", cursor_wanted(c)
            check(positions.get(name) == cursor, f"{name}: committed #{cursor} at the bridge", f"  listed: {positions}")

        # What retention left is the tail of what was stored, each message id once. (A redelivery of
        # an id whose event retention deleted is stored again, under a new sequence: `sequences`
        # holds the latest.)
        logged = logged_events(binary, bridge)
        first = logged[0][0] if logged else head + 1
        check([seq for seq, _ in logged] == sorted({seq for seq, _ in sequences.values() if seq >= first})
              and all(sequences[msg_id][0] == seq for seq, msg_id in logged),
              "the retained log holds every later message id once", f"  logged: {logged}")
        check(all(c.starts == 3 for c in team) and all(c.starts == 1 for c in late),
              "each consumer was killed and restarted twice (the late ones started once)")
    finally:
        for c in everyone:
            if c.alive():
                c.proc.terminate()
                try:
                    c.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    c.kill()
        bridge.stop()

    if RESULTS["failed"]:
        print(f"logs and databases kept in {workdir}", flush=True)
    else:
        subprocess.run(["rm", "-rf", workdir])
    print(f"convergence: {RESULTS['passed']} passed, {RESULTS['failed']} failed", flush=True)
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
