"""Benchmark of the CometQL (MySQL-protocol) service of one emulator process.

Run:  .venv/bin/python tests/perf/bench_cometql.py [--seconds 3] [--connections 50] [--inserts 1000]

The emulator runs as a subprocess (``cometbench serve --free-ports --no-journal --profile lenient``,
127.0.0.1 only; the ports come from the JSON ready line, its first stdout line).  Clients are
pymysql connections (``ssl_disabled=True, autocommit=True``) logged in as dev_id 1.

Figures:

(a) simple queries per second on ONE connection, back to back: ``SELECT * FROM users_auth WHERE
    id = 1`` (one row) and ``SHOW DATABASES``; target >= 5,000/s.  The server's CPU time per query
    (from /proc/<pid>/stat) is printed too, to tell client cost from server cost.
    Repeated against the faithful profile (``--profile cppcomet-4.09``), whose greeting carries
    the version ``CppComet community 4.09 (AGPL license)``: pymysql (``int()`` of the first dotted
    part) and mysql-connector-python (``_check_server_version`` regex) both refuse it, so that run
    uses pymysql with a two-line subclass that prefixes ``5.5.2-`` to the version it parsed.
(b) aggregate queries per second over N concurrent connections (default 50): P worker processes
    x T threads, one connection each, all connected before a common start time, running the same
    two queries alternately for a fixed time; per-query latency percentiles and server CPU use.
    The emulator is one trio process (one core at most) and the load clients share the machine
    with it, so on a small box the figure is bounded by CPU, not by the protocol.
(c) publish latency: one raw WebSocket client (plain socket, reader thread) subscribed to
    ``web_bench``; M times, ``INSERT INTO pipes_messages`` from pymysql, timed from just before
    ``cursor.execute`` to the arrival of the frame at the subscriber's socket (time taken by the
    reader thread right after ``recv`` returns); one insert at a time on an otherwise idle
    system; p50/p99 (target p99 <= 5 ms).  The INSERT's own OK round trip is shown beside it.

Every phase is bounded in time, the whole run has a deadline (SIGALRM), and the server and the
worker processes are terminated on the way out.
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata as md
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
import pymysql.connections
from emulator_process import HOST, pct, start_emulator, stop_emulator

DEV = 1
PASSWORD = "CometQLPassword"
DEADLINE = 300  # seconds for the whole benchmark
QUERIES = ("SELECT * FROM users_auth WHERE id = 1", "SHOW DATABASES")
PIPE = "web_bench"


# --- process helpers ----------------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(profile: str) -> tuple[subprocess.Popen, dict]:
    proc, ready = start_emulator("--profile", profile, stderr=subprocess.DEVNULL)
    assert ready.get("profile") == profile, ready
    return proc, ready


# --- clients ------------------------------------------------------------------------------------


class VersionTolerantConnection(pymysql.connections.Connection):
    """pymysql, except that a server version not starting with a number is accepted.

    pymysql computes ``int(server_version.split(".", 1)[0])`` during authentication; CppComet's
    ``CppComet community 4.09 (AGPL license)`` makes that raise ValueError.  Nothing else in the
    client looks at the version.
    """

    def _get_server_information(self):
        super()._get_server_information()
        if not self.server_version[:1].isdigit():
            self.server_version = "5.5.2-" + self.server_version


def connect(port: int, *, tolerant: bool = False) -> pymysql.connections.Connection:
    cls = VersionTolerantConnection if tolerant else pymysql.connections.Connection
    return cls(host=HOST, port=port, user=str(DEV), password=PASSWORD, database="CometQL_v1",
               ssl_disabled=True, autocommit=True, connect_timeout=5, read_timeout=10, write_timeout=10)


def seed(port: int, *, tolerant: bool = False) -> None:
    conn = connect(port, tolerant=tolerant)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO users_auth (id, hash) VALUES (1, 'benchhash')")
        cur.execute(QUERIES[0])
        assert cur.fetchall() == (("1", "benchhash"),)
    conn.close()


# --- (a) one connection -------------------------------------------------------------------------


def single_connection(port: int, pid: int, seconds: float, *, tolerant: bool = False) -> dict[str, dict]:
    conn = connect(port, tolerant=tolerant)
    cur = conn.cursor()
    out = {}
    for sql in QUERIES:
        for _ in range(200):  # warm-up
            cur.execute(sql)
            cur.fetchall()
        n = 0
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        end = t0 + seconds
        while True:
            for _ in range(100):
                cur.execute(sql)
                cur.fetchall()
            n += 100
            now = time.perf_counter()
            if now >= end:
                break
        elapsed, cpu = now - t0, cpu_seconds(pid) - cpu0
        out[sql] = {"n": n, "qps": n / elapsed, "server_us": cpu / n * 1e6, "server_cpu": cpu / elapsed}
    conn.close()
    return out


# --- (b) many connections -----------------------------------------------------------------------


def _worker(port: int, threads: int, start_at: float, seconds: float, results: mp.Queue) -> None:
    conns: list = [None] * threads
    errors: list[str] = []

    def open_one(i: int) -> None:
        try:
            conns[i] = connect(port)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"connect: {exc!r}")

    openers = [threading.Thread(target=open_one, args=(i,)) for i in range(threads)]
    for t in openers:
        t.start()
    for t in openers:
        t.join(10)
    counts = [0] * threads
    lat: list[list[float]] = [[] for _ in range(threads)]

    def run(i: int) -> None:
        conn = conns[i]
        if conn is None:
            return
        cur = conn.cursor()
        end = start_at + seconds
        k = i
        delay = start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            while True:
                t0 = time.monotonic()
                if t0 >= end:
                    break
                cur.execute(QUERIES[k & 1])
                cur.fetchall()
                lat[i].append(time.monotonic() - t0)
                counts[i] += 1
                k += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(f"query: {exc!r}")
        finally:
            conn.close()

    runners = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in runners:
        t.start()
    for t in runners:
        t.join(seconds + (start_at - time.monotonic()) + 15)
    results.put({"connected": sum(c is not None for c in conns), "count": sum(counts),
                 "lat": [x for xs in lat for x in xs[::4]], "errors": errors[:5]})


def many_connections(port: int, pid: int, connections: int, processes: int, seconds: float) -> dict:
    ctx = mp.get_context("fork")
    results: mp.Queue = ctx.Queue()
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    start_at = time.monotonic() + 3.0  # time to connect everything first
    procs = [ctx.Process(target=_worker, args=(port, n, start_at, seconds, results), daemon=True) for n in per]
    for p in procs:
        p.start()
    while time.monotonic() < start_at:
        time.sleep(0.01)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu = cpu_seconds(pid) - cpu0
    elapsed = time.monotonic() - t0
    got: list[Any] = []
    deadline = time.monotonic() + seconds + 30
    while len(got) < len(procs) and time.monotonic() < deadline:
        try:
            got.append(results.get(timeout=1))
        except Exception:  # noqa: BLE001 - queue.Empty
            pass
    for p in procs:
        p.join(2)
        if p.is_alive():
            p.terminate()
    lat = [x for g in got for x in g["lat"]]
    total = sum(g["count"] for g in got)
    return {"connected": sum(g["connected"] for g in got), "total": total, "qps": total / seconds,
            "server_cpu": cpu / elapsed, "server_us": cpu / total * 1e6 if total else 0.0,
            "p50": pct(lat, 50) if lat else 0.0, "p99": pct(lat, 99) if lat else 0.0,
            "errors": [e for g in got for e in g["errors"]], "workers": len(got)}


# --- (c) INSERT -> WebSocket delivery -------------------------------------------------------------


class WSSubscriber:
    """A raw WebSocket client on a plain socket; a reader thread timestamps every text frame."""

    def __init__(self, port: int, pipe: str) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        target = f"/ws/sesion=undefined&myid=undefined&devid={DEV}&v=4.08&uuid={'b' * 32}&api=js"
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the WebSocket handshake")
            self.buf += chunk
        end = self.buf.index(b"\r\n\r\n") + 4
        if not self.buf.startswith(b"HTTP/1.1 101 "):
            raise ConnectionError(bytes(self.buf[:80]))
        del self.buf[:end]
        info = self._frame_blocking()
        assert json.loads(info).get("event") == "serverInfo" or b"serverInfo" in info, info
        body = f"subscription\n{pipe}".encode()
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x81, 0x80 | len(body)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
        self.arrivals: dict[int, float] = {}
        self.cond = threading.Condition()
        self.stop = False
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._reader, daemon=True)

    def _parse(self) -> bytes | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        n, off = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, off = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, off = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < off + n:
            return None
        payload = bytes(buf[off:off + n])
        del buf[:off + n]
        return payload

    def _frame_blocking(self) -> bytes:
        while (payload := self._parse()) is None:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        return payload

    def _reader(self) -> None:
        while not self.stop:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            now = time.perf_counter()
            if not chunk:
                return
            self.buf += chunk
            while (payload := self._parse()) is not None:
                try:
                    data = json.loads(payload)["data"]
                except (ValueError, KeyError, TypeError):
                    continue
                if isinstance(data, str) and data.startswith("m"):
                    with self.cond:
                        self.arrivals[int(data[1:])] = now
                        self.cond.notify_all()

    def wait_for(self, i: int, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: i in self.arrivals, timeout)
            return self.arrivals.get(i)

    def close(self) -> None:
        self.stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def publish_latency(ports: dict, inserts: int) -> dict:
    sub = WSSubscriber(ports["ws"], PIPE)
    conn = connect(ports["cometql"])
    cur = conn.cursor()
    deadline = time.monotonic() + 5
    while True:  # the subscription has no answer: wait until the server counts the subscriber
        cur.execute(f"SELECT users FROM pipes WHERE name = '{PIPE}'")
        if cur.fetchall() == (("1",),):
            break
        if time.monotonic() > deadline:
            raise SystemExit("the WebSocket subscription never showed up in `pipes`")
        time.sleep(0.01)
    sub.thread.start()
    for i in range(-50, 0):  # warm-up, not measured
        cur.execute(f"INSERT INTO pipes_messages (name, event, message) VALUES ('{PIPE}', 'bench', 'w{-i}')")
    time.sleep(0.2)
    delivery, ok_rtt, lost = [], [], 0
    for i in range(inserts):
        time.sleep(0.001)  # idle between messages: one insert in flight at a time
        sql = f"INSERT INTO pipes_messages (name, event, message) VALUES ('{PIPE}', 'bench', 'm{i}')"
        t0 = time.perf_counter()
        cur.execute(sql)
        t_ok = time.perf_counter()
        arrived = sub.wait_for(i, 2.0)
        ok_rtt.append(t_ok - t0)
        if arrived is None:
            lost += 1
        else:
            delivery.append(arrived - t0)
    conn.close()
    sub.close()
    return {"n": len(delivery), "lost": lost, "delivery": delivery, "ok_rtt": ok_rtt,
            "frame_before_ok": sum(1 for d, o in zip(delivery, ok_rtt) if d < o)}


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time of (a) per query and of (b)")
    ap.add_argument("--connections", type=int, default=50, help="concurrent connections in (b)")
    ap.add_argument("--processes", type=int, default=5, help="client processes sharing the connections in (b)")
    ap.add_argument("--inserts", type=int, default=1000, help="measured inserts in (c)")
    args = ap.parse_args()

    def on_alarm(signum, frame):
        raise SystemExit(f"benchmark deadline of {DEADLINE} s exceeded")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(DEADLINE)
    sys.setswitchinterval(0.0005)  # the WS reader thread must not wait long for the GIL in (c)
    ncpu = os.cpu_count()
    affinity = len(os.sched_getaffinity(0))
    print(f"python {platform.python_version()} ({platform.python_implementation()}), trio {version('trio')}, "
          f"pymysql {version('PyMySQL')}, mysql-connector-python {version('mysql-connector-python')}")
    print(f"nproc {affinity} (os.cpu_count {ncpu}), {platform.platform()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("server: cometbench serve --free-ports --no-journal --profile <profile> --host 127.0.0.1 --state :memory:")
    print()

    rows: list[tuple[str, str, str, str]] = []
    proc, ready = start_server("lenient")
    try:
        pid = proc.pid
        seed(ready["cometql"])
        a = single_connection(ready["cometql"], pid, args.seconds)
        for sql, r in a.items():
            rows.append(("(a) 1 connection, lenient", sql, f"{r['qps']:,.0f} q/s",
                         f"server {r['server_us']:.0f} us CPU/query, {r['server_cpu']:.0%} of a core; "
                         f"target >= 5,000/s {'MET' if r['qps'] >= 5000 else 'NOT MET'}"))
        b = many_connections(ready["cometql"], pid, args.connections, args.processes, args.seconds)
        rows.append((f"(b) {b['connected']}/{args.connections} connections, lenient",
                     "both queries alternately", f"{b['qps']:,.0f} q/s",
                     f"latency p50 {b['p50'] * 1e3:.1f} ms p99 {b['p99'] * 1e3:.1f} ms; server "
                     f"{b['server_us']:.0f} us CPU/query, {b['server_cpu']:.0%} of a core; "
                     f"{args.processes} client processes" + (f"; errors {b['errors']}" if b["errors"] else "")))
        c = publish_latency(ready, args.inserts)
        d, o = c["delivery"], c["ok_rtt"]
        if d:
            rows.append(("(c) INSERT -> WS frame, lenient", f"{c['n']} inserts, {c['lost']} lost",
                         f"p50 {pct(d, 50) * 1e3:.2f} ms p99 {pct(d, 99) * 1e3:.2f} ms",
                         f"max {max(d) * 1e3:.2f} ms; INSERT OK round trip p50 {pct(o, 50) * 1e3:.2f} ms "
                         f"p99 {pct(o, 99) * 1e3:.2f} ms; frame before OK {c['frame_before_ok']}x; "
                         f"target p99 <= 5 ms {'MET' if pct(d, 99) <= 0.005 else 'NOT MET'}"))
        else:
            rows.append(("(c) INSERT -> WS frame, lenient", f"{c['lost']} lost", "no frame arrived", ""))
    finally:
        stop_emulator(proc)

    proc, ready = start_server("cppcomet-4.09")
    try:
        try:
            import mysql.connector
            mysql.connector.connect(host=HOST, port=ready["cometql"], user=str(DEV), password=PASSWORD,
                                    database="CometQL_v1", use_pure=True, ssl_disabled=True, autocommit=True,
                                    connection_timeout=5).close()
            connector_note = "mysql-connector-python (use_pure) connects"
        except Exception as exc:  # noqa: BLE001
            connector_note = f"mysql-connector-python (use_pure) refuses: {type(exc).__name__}: {exc}"
        seed(ready["cometql"], tolerant=True)
        a = single_connection(ready["cometql"], proc.pid, args.seconds, tolerant=True)
        for sql, r in a.items():
            rows.append(("(a) 1 connection, cppcomet-4.09", sql, f"{r['qps']:,.0f} q/s",
                         f"server {r['server_us']:.0f} us CPU/query, {r['server_cpu']:.0%} of a core; "
                         f"pymysql + version shim; target >= 5,000/s {'MET' if r['qps'] >= 5000 else 'NOT MET'}"))
    finally:
        stop_emulator(proc)

    w0 = max(len(row[0]) for row in rows)
    w1 = max(len(row[1]) for row in rows)
    w2 = max(len(row[2]) for row in rows)
    for row in rows:
        print(f"{row[0]:<{w0}}  {row[1]:<{w1}}  {row[2]:>{w2}}  {row[3]}")
    print()
    print(f"faithful profile: {connector_note}")
    signal.alarm(0)


if __name__ == "__main__":
    main()
