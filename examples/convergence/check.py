#!/usr/bin/env python3
"""Convergence check of the three example consumers (Rust, Python, Node).

Starts a clerk-bridge on free ports with a temporary data dir, drives it with `clerk-bridge trigger`
through a scripted story (users created, updated several times, deleted, re-created under a new id;
organizations and memberships changing), delivered with Svix redeliveries, replays and in shuffled
order, while the consumers run: each is killed with SIGKILL in the middle and restarted, and the
bridge itself is restarted once. At the end the three SQLite databases must be identical to each
other and to the state the story leads to (computed here from the story, in the order it happened),
every cursor must be at the last relevant event, and the bridge's committed positions must match.

Prints one line per failed expectation and a closing line `convergence: N passed, M failed`; exits 0
only when nothing failed. Run from anywhere; stdlib only (the consumers' own dependencies are
installed into examples/python/.venv and examples/node/node_modules when missing).

    python3 examples/convergence/check.py [--bin target/release/clerk-bridge] [--seed N] [--no-build]
"""
import argparse
import json
import os
import random
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

    def start(self):
        env = dict(os.environ, CLERK_WEBHOOK_SIGNING_SECRET=SECRET, RUST_LOG="warn")
        log = open(os.path.join(self.workdir, "bridge.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--http-addr", f"127.0.0.1:{self.http}", "--grpc-addr", self.grpc_addr,
             "--data-dir", self.data_dir, "--heartbeat-interval", "1s"],
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
        self.name, self.argv, self.cwd = name, argv, cwd
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

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def consumers(workdir):
    py = os.path.join(ROOT, "examples", "python")
    node = os.path.join(ROOT, "examples", "node")
    return [
        Consumer("rust", [os.path.join(ROOT, "target", "release", "examples", "sync_sqlite")], workdir, ROOT),
        Consumer("python", [os.path.join(py, ".venv", "bin", "python"), os.path.join(py, "sync_sqlite.py")], workdir, py),
        Consumer("node", ["node", os.path.join(node, "sync_sqlite.js")], workdir, node),
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

    def send(self, batch):
        for msg_id, step in batch:
            answer = trigger(self.binary, self.bridge, msg_id, step)
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
    sequences = {}
    sender = Sender(binary, bridge, sequences)
    cut = [int(len(plan) * f) for f in (0.3, 0.45, 0.6, 0.75, 0.9)]
    batches = [plan[:cut[0]], plan[cut[0]:cut[1]], plan[cut[1]:cut[2]], plan[cut[2]:cut[3]], plan[cut[3]:cut[4]], plan[cut[4]:]]
    started = time.time()
    try:
        sender.send(batches[0])  # stored before any consumer runs: they catch up from disk
        for consumer in team:
            consumer.start(bridge.grpc_addr)
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
        sender.send(batches[5])

        relevant = [seq for seq, event_type in sequences.values() if event_type.startswith(SYNCED_PREFIXES)]
        last = max(relevant)
        stored = len({seq for seq, _ in sequences.values()})
        want = expected_tables(story)
        deadline = time.time() + PATIENCE
        states = {}
        while time.time() < deadline:
            states = {c.name: read_db(c.db) for c in team}
            if all(s is not None and s[1] >= last for s in states.values()):
                break
            time.sleep(0.1)
        say(f"{stored} events stored, the last relevant one is #{last}; consumers caught up after "
            f"{time.time() - started:.1f} s")

        for c in team:
            state = states.get(c.name)
            if not check(state is not None and state[1] == last, f"{c.name}: cursor at #{last}",
                         f"  cursor: {state and state[1]}\n{c.log_tail()}"):
                continue
            check(state[0] == want, f"{c.name}: tables equal the story's final state", diff(state[0], want))
            check(c.alive(), f"{c.name}: still running at the end", c.log_tail())
        got = [states[c.name][0] for c in team if states.get(c.name)]
        check(len(got) == len(team) and all(g == got[0] for g in got), "the three databases are identical")

        # The bridge's positions follow the databases (commits come after each transaction).
        names = {f"sync-sqlite-{c.name}" for c in team}
        deadline = time.time() + PATIENCE
        positions = {}
        while time.time() < deadline:
            positions = committed_positions(binary, bridge)
            if all(positions.get(n, 0) >= last for n in names):
                break
            time.sleep(0.1)
        for n in sorted(names):
            check(positions.get(n) == last, f"{n}: committed #{last} at the bridge", f"  listed: {positions}")

        # The log holds each message id once: redeliveries were answered as duplicates.
        logged = subprocess.run([binary, "tail", "--grpc-addr", bridge.grpc_addr, "--from", "1", "--no-follow", "--json"],
                                capture_output=True, text=True)
        ids = [json.loads(line)["event_id"] for line in logged.stdout.splitlines()]
        check(sorted(ids) == sorted({m for m, _ in plan}), "the log holds every message id once",
              f"  {len(ids)} events logged, {len({m for m, _ in plan})} distinct ids sent")
        check(all(c.starts == 2 for c in team), "each consumer was killed and restarted once")
    finally:
        for c in team:
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
