#!/usr/bin/env python3
"""What keeping a webhook id stored once for 72 hours costs on JetStream, three ways.

Each way gets a fresh single nats-server (JetStream, file storage) and N events of about 3 KB with
distinct ids, published one after the other (as one bridge connection would, waiting for each
acknowledgement); then every id again, which must be refused as a duplicate. Printed per way:
publish rate, the rate of the duplicate round, and the server's resident memory after both.

  window   what clerk-bridge does: Nats-Msg-Id, duplicate_window = 72h: the server keeps every id
           of the last 72 hours in memory, and answers a duplicate with the first copy's sequence.
  kv       a key-value bucket (TTL 72h): create(id) first, then publish; two writes per event,
           and a crash between them leaves the id claimed with no event stored.
  subject  one subject per id, published with Nats-Expected-Last-Subject-Sequence: 0: holds while
           the event is retained, but the server indexes every retained event's subject.

Usage: python3 examples/bench/dedup_cost.py [N]   (needs nats-py and NATS_SERVER_BIN or
target/nats-server/2.15.1/bin/nats-server)
"""
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

import nats
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import BadRequestError, KeyWrongLastSequenceError

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
BODY = b"x" * 3000
HOURS_72 = 72 * 3600
BINARY = os.environ.get("NATS_SERVER_BIN", "target/nats-server/2.15.1/bin/nats-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def window(js):
    await js.add_stream(StreamConfig(name="W", subjects=["W"], duplicate_window=HOURS_72))

    async def publish(i):
        ack = await js.publish("W", BODY, headers={"Nats-Msg-Id": f"msg_{i}"})
        return ack.duplicate

    return publish


async def kv(js):
    await js.add_stream(StreamConfig(name="E", subjects=["E"]))
    bucket = await js.create_key_value(KeyValueConfig(bucket="IDS", ttl=HOURS_72))

    async def publish(i):
        try:
            await bucket.create(f"msg_{i}", b"")
        except KeyWrongLastSequenceError:
            return True
        await js.publish("E", BODY)
        return False

    return publish


async def subject(js):
    await js.add_stream(StreamConfig(name="S", subjects=["S.>"]))

    async def publish(i):
        try:
            await js.publish(f"S.id.msg_{i}", BODY, headers={"Nats-Expected-Last-Subject-Sequence": "0"})
            return False
        except BadRequestError as e:
            if "wrong last sequence" in str(e):
                return True
            raise

    return publish


async def measure(name, setup):
    with tempfile.TemporaryDirectory() as store:
        port = free_port()
        server = subprocess.Popen(
            [BINARY, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    nc = await nats.connect(f"nats://127.0.0.1:{port}")
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            js = nc.jetstream()
            publish = await setup(js)
            base = rss_mib(server.pid)
            started = time.perf_counter()
            for i in range(N):
                assert not await publish(i)
            stored = N / (time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(N):
                assert await publish(i), f"{name}: msg_{i} stored twice"
            refused = N / (time.perf_counter() - started)
            await nc.close()
            print(f"| {name} | {stored:,.0f}/s | {refused:,.0f}/s | {rss_mib(server.pid) - base:,.1f} MiB |")
        finally:
            server.kill()
            server.wait()


async def main():
    print(f"{N:,} events of 3 KB, one connection, each publish acknowledged before the next")
    print("| way | store | refuse duplicates | server memory added |")
    print("|---|---|---|---|")
    for name, setup in [("window: 72h Nats-Msg-Id (clerk-bridge)", window), ("kv create, then publish", kv), ("subject per id", subject)]:
        await measure(name, setup)


asyncio.run(main())
