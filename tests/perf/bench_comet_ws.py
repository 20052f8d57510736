"""Benchmark of the comet WebSocket service of one emulator process.

Run:  .venv/bin/python tests/perf/bench_comet_ws.py [--connections 5000] [--subscribers 1000] [--messages 100]

The emulator runs as a subprocess (``cometbench serve --free-ports --state :memory: --no-journal``,
127.0.0.1 only); the load clients live in this process as raw trio sockets with a minimal
hand-written WebSocket handshake and frame reader, so the client side stays light.

Figures:

(a) memory: the server's VmRSS (``/proc/<pid>/status``) before and after holding N concurrent
    authorised (JWT) connections idle; KB per idle connection (target <= 25 KB);
(b) connect rate: full connects per second during the ramp (TCP connect, upgrade, JWT check,
    serverInfo received), with connect-latency percentiles, and an anonymous connect/close churn;
(c) fan-out: one ``web_`` pipe with S subscribers (taken from the idle connections, so the server
    still holds all N); one more client publishes M messages with ``web_pipe2`` one after the other;
    per message, the time from the publisher's send to the LAST subscriber's receipt; p50/p99
    (target p99 <= 50 ms).  The receipt time is taken in this process, so it includes the client
    side's own reading of S sockets; the spread first->last receipt is printed too.
(d) the delivery hot path, fed by CometQL (issue 14's harness): a fresh emulator, S WebSocket
    subscribers on one pipe, M ``INSERT INTO pipes_messages`` over a raw MySQL connection, one at a
    time (the next after every subscriber has the previous frame).  Printed: server CPU per
    delivered frame (user + system time of the emulator process from /proc over the phase, divided
    by S x M frames: robust to other load on the machine), and the time from the INSERT's OK to
    the LAST subscriber's receipt, p50/p99.  Every subscriber checks it got every frame once, in
    order.  Run with the journal off and again with it on (a journal file in a temporary directory).
(e) per-connection garbage: a fresh emulator, R rounds of N authorised connections opened,
    subscribed and closed (FIN); the server's VmRSS after each round once the server has let go of
    them (target: the last round within 10 % of the first).

Every step has a timeout and the whole run a deadline; the server is terminated on the way out.
``--phases`` picks phases (default all: ``abc,d,e``).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jwt
import trio
from emulator_process import HOST, ROOT, pct, start_emulator, stop_emulator
from pymysql._auth import scramble_native_password

DEV = 1
PASSWORD = "CometQLPassword"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x00\x00\x00\x00"  # a valid mask; zero keeps client-side framing free
DEADLINE = 600  # seconds for the whole benchmark

warnings.filterwarnings("ignore", message="The HMAC key is")  # the server password is short, as in production


# --- process helpers ----------------------------------------------------------------------------


def raise_nofile(need: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = need if hard == resource.RLIM_INFINITY else min(max(need, soft), hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def start_server(gc_threshold: str | None, journal: str | None = None) -> tuple[subprocess.Popen, dict]:
    command = None
    if gc_threshold:
        # diagnostic: the same CLI with the collector's thresholds changed first
        code = (f"import gc, sys; gc.set_threshold({gc_threshold}); from bench.cli import main; "
                f"sys.exit(main(sys.argv[1:]))")
        command = [sys.executable, "-P", "-c", code]
    elif os.environ.get("PYTHONPATH"):
        # --emulator-root: not this checkout's console script; -P keeps the working directory (this
        # checkout) off sys.path
        command = [sys.executable, "-P", "-m", "bench.cli"]
    return start_emulator(command=command, journal=journal)


# --- a minimal WebSocket client ---------------------------------------------------------------------


def client_frame(text: str) -> bytes:
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", n)
    return head + MASK + data  # XOR with a zero mask leaves the payload as is


class Client:
    __slots__ = ("buf", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def frame(self) -> bytes | None:
        """The next server frame's payload (server frames: FIN, unmasked, 7/16-bit length)."""
        buf = self.buf
        while True:
            if len(buf) >= 2:
                n, off = buf[1] & 0x7F, 2
                if n == 126 and len(buf) >= 4:
                    n, off = (buf[2] << 8) | buf[3], 4
                if n != 126 and len(buf) >= off + n:
                    payload = bytes(buf[off:off + n])
                    del buf[:off + n]
                    return payload
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            buf += chunk

    async def send(self, text: str) -> None:
        await self.stream.send_all(client_frame(text))


async def connect(port: int, key: str, user_id: int | str, uuid: str) -> tuple[Client, dict]:
    stream = await trio.open_tcp_stream(HOST, port)
    target = f"/ws/sesion={key}&myid={user_id}&devid={DEV}&v=4.08&uuid={uuid}&api=js"
    await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                          f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    c = Client(stream)
    while b"\r\n\r\n" not in c.buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        c.buf += chunk
    end = c.buf.index(b"\r\n\r\n") + 4
    if not c.buf.startswith(b"HTTP/1.1 101 "):
        raise ConnectionError(bytes(c.buf[:80]))
    del c.buf[:end]
    payload = await c.frame()
    if payload is None:
        raise ConnectionError("closed before serverInfo")
    return c, json.loads(payload)





# --- the phases --------------------------------------------------------------------------------------


async def ramp(port: int, n: int, concurrency: int) -> tuple[list[Client], float, list[float]]:
    tokens = [jwt.encode({"user_id": i + 1, "exp": 9_983_311_200}, f"{PASSWORD}{DEV}", algorithm="HS256")
              for i in range(n)]
    clients: list[Client | None] = [None] * n
    latencies: list[float] = []
    limiter = trio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            t0 = time.perf_counter()
            c, info = await connect(port, tokens[i], i + 1, f"{i:032d}")
            latencies.append(time.perf_counter() - t0)
            if info.get("authorized") is not True:
                raise AssertionError(f"connection {i} not authorised: {info}")
            clients[i] = c

    t0 = time.perf_counter()
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    elapsed = time.perf_counter() - t0
    return [c for c in clients if c is not None], elapsed, latencies


async def churn(port: int, n: int, concurrency: int) -> float:
    """Anonymous connect -> serverInfo -> close, n times."""
    limiter = trio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            c, info = await connect(port, "undefined", "undefined", f"c{i:031d}")
            assert info.get("authorized") is False
            await c.stream.aclose()

    t0 = time.perf_counter()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    return n / (time.perf_counter() - t0)


async def fan_out(subscribers: list[Client], publisher: Client, messages: int, pid: int
                  ) -> tuple[list[float], list[float], float]:
    pipe = "web_bench"
    n = len(subscribers)
    first_seen: dict[int, float] = {}
    last_seen: dict[int, float] = {}
    counts: dict[int, int] = {}
    done: dict[int, trio.Event] = {}
    counted = -1  # the last pipe_count answer

    async def reader(c: Client) -> None:
        while (payload := await c.frame()) is not None:
            now = time.perf_counter()
            i = payload.find(b'"data":"')
            if i < 0:
                continue
            seq = int(payload[i + 8:payload.index(b'"', i + 8)])
            counts[seq] = counts.get(seq, 0) + 1
            first_seen.setdefault(seq, now)
            if counts[seq] == n:
                last_seen[seq] = now
                done[seq].set()

    async def answer_reader() -> None:
        nonlocal counted
        while (payload := await publisher.frame()) is not None:
            if b'"user_in_pipe",' in payload:
                counted = int(payload.split(b'"user_in_pipe",')[1].split(b"]")[0])

    async with trio.open_nursery() as nursery:
        for c in subscribers:
            nursery.start_soon(reader, c)
            await c.send(f"subscription\n{pipe}")
        nursery.start_soon(answer_reader)
        # the subscriptions are silent: probe with pipe_count until the server counts them all
        with trio.fail_after(60):
            while True:
                await publisher.send(f"pipe_count\n{pipe}\n1234567890\n")
                await trio.sleep(0.2)
                if counted == n:
                    break
        latencies, spreads = [], []
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for seq in range(1, messages + 1):
            done[seq] = trio.Event()
            t0 = time.perf_counter()
            await publisher.send(f"web_pipe2\n{pipe}\nev\n*\n{seq}")
            with trio.fail_after(10):
                await done[seq].wait()
            latencies.append(last_seen[seq] - t0)
            spreads.append(last_seen[seq] - first_seen[seq])
            await trio.sleep(0.02)
        server_cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - wall0)
        nursery.cancel_scope.cancel()
    return latencies, spreads, server_cpu


# --- (d) CometQL-fed fan-out: the delivery hot path ---------------------------------------------------


class MySQL:
    """Just enough of a MySQL client for ``INSERT`` statements (login, COM_QUERY, read the OK)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def packet(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                n = self.buf[0] | self.buf[1] << 8 | self.buf[2] << 16
                if len(self.buf) >= 4 + n:
                    payload = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return payload
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("CometQL closed the connection")
            self.buf += chunk

    async def send(self, payload: bytes, seq: int) -> None:
        await self.stream.send_all(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

    @classmethod
    async def login(cls, port: int, user: str = str(DEV), password: str = PASSWORD) -> MySQL:
        c = cls(await trio.open_tcp_stream(HOST, port))
        greeting = await c.packet()
        end = greeting.index(b"\0", 1)
        pos = end + 1
        scramble = greeting[pos + 4:pos + 12] + greeting[pos + 31:pos + 43]
        token = scramble_native_password(password.encode(), scramble)
        caps = 0x000FA68D
        await c.send(struct.pack("<IIB", caps, 1 << 24, 33) + b"\0" * 23 + user.encode() + b"\0"
                     + bytes([len(token)]) + token + b"CometQL_v1\0mysql_native_password\0", 1)
        ok = await c.packet()
        if ok[:1] != b"\x00":
            raise ConnectionError(f"CometQL login failed: {ok!r}")
        return c

    async def execute(self, sql: str) -> bytes:
        await self.send(b"\x03" + sql.encode(), 0)
        answer = await self.packet()
        if answer[:1] != b"\x00":
            raise RuntimeError(f"{sql!r}: {answer!r}")
        return answer


async def anonymous_clients(port: int, n: int, concurrency: int, tag: str) -> list[Client]:
    clients: list[Client] = []
    limiter = trio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            c, info = await connect(port, "undefined", "undefined", f"{tag}{i:031d}"[:32])
            assert info.get("authorized") is False, info
            clients.append(c)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    return clients


async def wait_for_count(probe: Client, pipe: str, n: int, timeout: float = 60) -> None:
    """Probe with ``pipe_count`` until the server counts ``n`` subscribers (subscriptions are silent)."""
    with trio.fail_after(timeout):
        while True:
            await probe.send(f"pipe_count\n{pipe}\n1234567890\n")
            while True:
                payload = await probe.frame()
                if payload is None:
                    raise ConnectionError("the probe connection closed")
                if b'"user_in_pipe",' in payload:
                    break
            if int(payload.split(b'"user_in_pipe",')[1].split(b"]")[0]) == n:
                return
            await trio.sleep(0.05)


async def subscriber_worker(args: argparse.Namespace) -> None:
    """The subscribers of (d), in their own process (``--worker``), so that the process timing the
    INSERT's OK is not busy reading 1,000 sockets when the OK arrives.

    Prints ``ready`` once the server counts every subscriber, then per published sequence number
    ``<seq> <first receipt> <last receipt>`` (``time.perf_counter``: CLOCK_MONOTONIC, the same
    clock in both processes) once every subscriber has it; on stdin's end a JSON summary of
    frames missing, repeated or out of order.
    """
    pipe, n = args.pipe, args.subscribers
    clients = await anonymous_clients(args.ws_port, n + 1, 100, "q")
    probe, subs = clients[0], clients[1:]
    expected = [1] * n          # the next sequence number each subscriber must see
    problems: list[str] = []
    received: dict[int, int] = {}
    first_seen: dict[int, float] = {}
    out = sys.stdout

    async def reader(k: int, c: Client) -> None:
        while (payload := await c.frame()) is not None:
            now = time.perf_counter()
            i = payload.find(b'"data":"m')
            if i < 0:
                continue
            seq = int(payload[i + 9:payload.index(b'"', i + 9)])
            if seq <= 0:
                continue  # warm-up
            if seq != expected[k]:
                problems.append(f"subscriber {k}: got {seq}, expected {expected[k]}")
            expected[k] = seq + 1
            count = received[seq] = received.get(seq, 0) + 1
            if count == 1:
                first_seen[seq] = now
            if count == n:
                out.write(f"{seq} {first_seen[seq]!r} {now!r}\n")
                out.flush()

    async with trio.open_nursery() as nursery:
        for c in subs:
            await c.send(f"subscription\n{pipe}")
        await wait_for_count(probe, pipe, n)
        for k, c in enumerate(subs):
            nursery.start_soon(reader, k, c)
        out.write("ready\n")
        out.flush()
        await trio.to_thread.run_sync(sys.stdin.read)  # until the main process closes our stdin
        await trio.sleep(0.2)  # anything delivered twice shows up by now
        nursery.cancel_scope.cancel()
    duplicates = sum(1 for count in received.values() if count > n)
    out.write(json.dumps({"problems": problems[:20], "n_problems": len(problems), "duplicates": duplicates}) + "\n")
    out.flush()


class Lines:
    """Lines from a trio receive stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def next(self) -> str:
        while b"\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("the subscriber worker ended")
            self.buf += chunk
        i = self.buf.index(b"\n")
        line = bytes(self.buf[:i]).decode()
        del self.buf[:i + 1]
        return line


async def cometql_fan_out(ports: dict, pid: int, subscribers: int, inserts: int) -> dict:
    pipe = "web_cql"
    worker = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--worker", "--ws-port", str(ports["ws"]), "--pipe", pipe,
         "--subscribers", str(subscribers)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert worker.stdout is not None and worker.stdin is not None
    try:
        lines = Lines(worker.stdout)
        with trio.fail_after(180):
            assert await lines.next() == "ready"
        db = await MySQL.login(int(ports["cometql"]))
        for w in range(5):  # warm-up, not measured
            await db.execute(f"INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', 'ev', 'm-{w}')")
        await trio.sleep(0.3)
        after_ok, after_send, spread = [], [], []
        cpu0 = cpu_seconds(pid)
        for seq in range(1, inserts + 1):
            t0 = time.perf_counter()
            await db.execute(f"INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', 'ev', 'm{seq}')")
            t_ok = time.perf_counter()
            with trio.fail_after(10):
                got, first, last = (await lines.next()).split()
            assert int(got) == seq, (got, seq)
            after_ok.append(float(last) - t_ok)
            after_send.append(float(last) - t0)
            spread.append(float(last) - float(first))
            await trio.sleep(0.02)
        cpu = cpu_seconds(pid) - cpu0
        await db.stream.aclose()
        await worker.stdin.aclose()
        with trio.fail_after(30):
            summary = json.loads(await lines.next())
    finally:
        with trio.CancelScope(shield=True):
            if worker.returncode is None:
                worker.kill()
            await worker.wait()
    return {"frames": subscribers * inserts, "cpu": cpu, "after_ok": after_ok, "after_send": after_send,
            "spread": spread, **summary}


def print_fan_out(label: str, r: dict) -> None:
    ok = [x * 1000 for x in r["after_ok"]]
    sent = [x * 1000 for x in r["after_send"]]
    spread = [x * 1000 for x in r["spread"]]
    print(f"(d) {label}: server CPU per delivered frame: {r['cpu'] / r['frames'] * 1e6:.1f} us "
          f"({r['cpu']:.2f} s user+system for {r['frames']} frames)  (target <= 19 us)")
    print(f"    INSERT's OK -> last subscriber's receipt: p50 {pct(ok, 50):.1f} ms, p99 {pct(ok, 99):.1f} ms, "
          f"max {max(ok):.1f} ms  (target p99 <= 140 ms)")
    print(f"    INSERT sent -> last receipt: p50 {pct(sent, 50):.1f} ms, p99 {pct(sent, 99):.1f} ms; "
          f"first -> last receipt: p50 {pct(spread, 50):.1f} ms, p99 {pct(spread, 99):.1f} ms")
    print(f"    frames missing/out of order: {r['n_problems']}{' ' + str(r['problems'][:5]) if r['problems'] else ''}, "
          f"delivered twice: {r['duplicates']}")


async def phase_d(args: argparse.Namespace) -> None:
    s, m = args.subscribers, args.inserts
    print(f"\n== (d) CometQL fan-out: 1 web_ pipe, {s} WebSocket subscribers (in a separate process), "
          f"{m} INSERT INTO pipes_messages one at a time (fresh emulator per run)")
    with tempfile.TemporaryDirectory(prefix="cometbench-bench-") as tmp:
        runs = [("journal off", None)] * args.runs + [("journal on", str(Path(tmp) / "journal.sqlite"))]
        for label, journal in runs:
            proc, ready = start_server(args.gc_threshold, journal=journal)
            try:
                with trio.fail_after(DEADLINE):
                    r = await cometql_fan_out(ready, proc.pid, s, m)
            finally:
                stop_emulator(proc)
            print_fan_out(f"{label}, load average {os.getloadavg()[0]:.2f}", r)


# --- (e) per-connection garbage -----------------------------------------------------------------------


async def phase_e(args: argparse.Namespace) -> None:
    rounds, n = args.rounds, args.round_connections
    print(f"\n== (e) {rounds} rounds of {n} authorised connections opened, subscribed and closed "
          f"(fresh emulator, journal off)")
    proc, ready = start_server(args.gc_threshold)
    pid, port = proc.pid, int(ready["ws"])
    try:
        with trio.fail_after(DEADLINE):
            probe = (await anonymous_clients(port, 1, 1, "p"))[0]
            figures = []
            for r in range(rounds):
                clients, _, _ = await ramp(port, n, 200)
                for c in clients:
                    await c.send("subscription\nweb_rss")
                await wait_for_count(probe, "web_rss", n)
                async with trio.open_nursery() as nursery:
                    for c in clients:
                        nursery.start_soon(c.stream.aclose)
                del clients
                await wait_for_count(probe, "web_rss", 0)
                await trio.sleep(0.5)
                figures.append(rss_kb(pid))
                print(f"    round {r + 1}: server VmRSS {figures[-1]} KB")
            growth = (figures[-1] - figures[0]) / figures[0] * 100
            print(f"(e) VmRSS after round 1: {figures[0]} KB, after round {rounds}: {figures[-1]} KB "
                  f"({growth:+.1f} %; target within 10 %), "
                  f"{(figures[-1] - figures[0]) / max(1, rounds - 1) / 1024:+.2f} MB a round")
    finally:
        stop_emulator(proc)


async def phase_abc(args: argparse.Namespace) -> None:
    proc, ready = start_server(args.gc_threshold)
    pid, port = proc.pid, int(ready["ws"])
    try:
        with trio.fail_after(DEADLINE):
            print(f"\nemulator pid {pid}, ws 127.0.0.1:{port}, profile cppcomet-4.09, state :memory:, journal off"
                  + (f", server gc.set_threshold({args.gc_threshold})" if args.gc_threshold else ""))

            # warm-up: a few connections so that one-time allocations are not counted per connection
            warm, _, _ = await ramp(port, 20, 10)
            for c in warm:
                await c.stream.aclose()
            await trio.sleep(1.0)
            before = rss_kb(pid)

            print(f"\n== (a)+(b) {args.connections} concurrent authorised connections (JWT), "
                  f"{args.concurrency} connecting at a time")
            clients, elapsed, lat = await ramp(port, args.connections, args.concurrency)
            await trio.sleep(2.0)
            after = rss_kb(pid)
            n = len(clients)
            print(f"server VmRSS before: {before} KB, after {n} idle connections: {after} KB")
            print(f"(a) KB per idle connection: {(after - before) / n:.1f} KB  (target <= 25 KB)")
            print(f"(b) connects per second (ramp, JWT auth): {n / elapsed:.0f}/s  "
                  f"({n} in {elapsed:.2f} s; connect->serverInfo p50 {pct(lat, 50) * 1000:.1f} ms, "
                  f"p99 {pct(lat, 99) * 1000:.1f} ms)")
            rate = await churn(port, args.churn, 50)
            print(f"(b) anonymous connect/serverInfo/close churn: {rate:.0f}/s ({args.churn} connections, "
                  f"50 at a time, {n} idle connections still held)")

            s = args.subscribers
            print(f"\n== (c) fan-out: 1 web_ pipe, {s} subscribers, {args.messages} web_pipe2 messages "
                  f"sent one after the other ({n} connections held)")
            subscribers, publisher = clients[:s], clients[s]
            latencies, spreads, cpu = await fan_out(subscribers, publisher, args.messages, pid)
            ms = [x * 1000 for x in latencies]
            print(f"(c) send -> last subscriber receipt: p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, "
                  f"max {max(ms):.1f} ms, mean {statistics.mean(ms):.1f} ms  (target p99 <= 50 ms)")
            slow = [round(x) for x in ms if x > 100]
            print(f"    messages over 100 ms: {len(slow)}/{len(ms)} {slow if slow else ''}")
            sp = [x * 1000 for x in spreads]
            print(f"    first -> last receipt spread: p50 {pct(sp, 50):.1f} ms, p99 {pct(sp, 99):.1f} ms; "
                  f"server CPU during the phase: {cpu * 100:.0f}% of one core")
            print(f"    server VmRSS now: {rss_kb(pid)} KB")

            for c in clients:
                await c.stream.aclose()
    finally:
        stop_emulator(proc)
    print(f"emulator exit code {proc.returncode}")


async def main(args: argparse.Namespace) -> None:
    print("== machine")
    print(f"nproc: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))}), kernel: {platform.release()}, "
          f"{platform.machine()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"python {platform.python_version()}, trio {version('trio')}, trio-websocket {version('trio-websocket')}, "
          f"wsproto {version('wsproto')}, PyJWT {version('PyJWT')}, cometbench {version('cometbench')}")
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "emulator", "bench"],
                           capture_output=True, text=True).stdout.strip()
    print(f"emulator commit {git.stdout.strip() or '?'}{' + uncommitted changes' if dirty else ''}"
          + (f"; emulator run from {args.emulator_root}" if args.emulator_root else ""))
    print(f"RLIMIT_NOFILE (both processes): {resource.getrlimit(resource.RLIMIT_NOFILE)}")
    phases = set(args.phases.split(","))
    if "abc" in phases:
        await phase_abc(args)
    if "d" in phases:
        await phase_d(args)
    if "e" in phases:
        await phase_e(args)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=200, help="connects in flight during the ramp")
    p.add_argument("--churn", type=int, default=2000, help="anonymous connect/close cycles")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--messages", type=int, default=100)
    p.add_argument("--inserts", type=int, default=100, help="(d) CometQL inserts per run")
    p.add_argument("--runs", type=int, default=3, help="(d) runs with the journal off (one more runs with it on)")
    p.add_argument("--rounds", type=int, default=10, help="(e) rounds of connections opened and closed")
    p.add_argument("--round-connections", type=int, default=3000, help="(e) connections per round")
    p.add_argument("--phases", default="abc,d,e", help="which phases to run: abc, d, e (comma-separated)")
    p.add_argument("--emulator-root", metavar="DIR",
                   help="run the emulator from another source tree (e.g. `git archive` of an older commit) "
                        "for before/after figures")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # (d)'s subscriber process
    p.add_argument("--ws-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--pipe", help=argparse.SUPPRESS)
    p.add_argument("--gc-threshold", metavar="A,B,C",
                   help="diagnostic: start the emulator with gc.set_threshold(A, B, C) (e.g. 100000,50,100)")
    args = p.parse_args()
    if args.worker:
        return args
    if args.subscribers >= args.connections:
        p.error("--subscribers must be smaller than --connections (one more connection publishes)")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        raise_nofile(arguments.subscribers + 1024)
        trio.run(subscriber_worker, arguments)
        sys.exit(0)
    if arguments.emulator_root:
        # the child emulator imports `emulator` and `bench` from there (PYTHONPATH wins over the
        # editable install of this checkout)
        os.environ["PYTHONPATH"] = str(Path(arguments.emulator_root).resolve())
    # before spawning, so the emulator inherits it; each process holds one end of every connection
    raise_nofile(max(arguments.connections + arguments.churn, arguments.round_connections * 2) + 1024)
    trio.run(main, arguments)
