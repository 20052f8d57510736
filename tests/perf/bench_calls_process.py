"""Benchmark: many concurrent two-party calls in real time with the emulator in its own process.

``bench_calls.py`` runs the emulator and all the virtual clients in one process; at 500 calls that
process is CPU-bound by the clients' own work and what it measures is mostly the clients.  Here the
emulator is a ``cometbench serve`` child (journal on, in a file) and the clients (comet client,
cometVideoApi, JsSIP-like UA over TLS, CometQL backend) run in ``--workers`` other processes, each
with a share of the calls; this process only coordinates, reads the emulator's journal and
``/proc``, and drives faults through the control plane.

**The join latency the emulator adds** (what the p99 <= 50 ms target is about) is defined here as the
*server residence* of a join: for each participant, the sum, over every request its clients send on
the way into the call, of the time from the emulator recording the request as received (journal
record, direction ``in``) to the emulator recording its first reply on the same connection (the next
``out`` record on that connection).  The requests are the backend's CometQL login and ``INSERT INTO
conference`` (its own connection), and the SIP REGISTERs and INVITEs of the participant's UA (the
challenge and the final answer each end one residence).  It leaves out what is not the emulator:
the loopback network, the clients' own CPU (TLS, framing, JSON in the client processes), the
modelled device delays and the waits for the other side.  Residences come from the journal the
emulator writes (``t`` is its clock, recorded when the message is handed over / parsed), read after
the joins.  For comparison the script also prints the client-observed signalling stages (what
``bench_calls.py`` calls the added latency), which include the clients and the network.

Then **a drop storm**: every link connection reset at once through the control plane (``POST
/api/faults/network {"action": "reset"}``), the clients reconnect and register again, every call is
hung up and every page closed, and the script checks the emulator's state (no connection, member,
registration or dialog left) and its RSS against the level before the calls (``/proc/PID/status``
of the child), sampled 1 s, 12 s and ``--settle`` seconds (default 60: the SIP core keeps its answers
for retransmitted requests 32 s, and the housekeeping's second pass comes 40-45 s after the fall)
after the last client left.  The emulator's CPU
(``/proc/PID/stat``) is printed per phase.  ``--env NAME=VALUE`` runs the emulator under other
environment settings, e.g. ``--env PYTHONMALLOC=malloc`` (glibc's allocator instead of CPython's)
or ``--env PYTHONMALLOC=malloc --env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2``, to
compare how much of a storm's memory each allocator gives back (docs/performance.md).

``bench_control_polling.py`` reuses the pieces (``start_serve``, ``warm_up``, ``Clients``,
``open_and_join``) to run the joins with the control plane off, idle or polled.

Run: ``.venv/bin/python tests/perf/bench_calls_process.py [--calls 500] [--workers 2] [--ramp 10]
[--settle 60] [--env NAME=VALUE ...]``.
The machine matters: say how loaded it was (``uptime``) next to the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from emulator_process import CLI, HOST, pct, start_emulator, stop_emulator

DEV = 15
SIGNALLING = ("backend_invite", "push", "sip_transport", "register", "call_setup")
TOKEN = "bench-calls-process"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------
# the emulator child, seen from outside
# ------------------------------------------------------------------------------------------------

def child_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child_memory_kb(pid: int) -> dict[str, int]:
    """The child's resident memory by kind of mapping (``/proc/PID/smaps``): ``heap`` (glibc's main
    heap: C allocations and Python blocks over 512 bytes), ``anon`` (anonymous mappings: CPython's
    1 MiB pymalloc arenas, glibc's mmapped large blocks) and ``files`` (code and libraries)."""
    kinds = {"heap": 0, "anon": 0, "files": 0}
    kind = "files"
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                parts = line.split()
                name = parts[5] if len(parts) > 5 else ""
                kind = ("heap" if name == "[heap]" else "anon" if not name
                        else "files" if name.startswith("/") else "other")
            elif head == "Rss:":
                kinds[kind] = kinds.get(kind, 0) + int(line.split()[1])
    return kinds


def memory_text(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k} {v / 1024:.1f}" for k, v in kinds.items()) + " MB"


def child_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime, stime


def control(ready: dict, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{HOST}:{ready['control']}{path}", data=data,
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def server_residences(journal: str, since: float, until: float) -> tuple[dict[int, float], dict[str, list[float]]]:
    """From the journal: per user, the summed server residence of its join's requests; and every
    residence by request (seconds).

    Pairing: CometQL answers one query at a time per connection, so a query (``in``) ends at the
    next ``out`` record on its connection.  A SIP request ends at the first *final* response
    (status >= 200) with its Call-ID on its connection (the INVITE's 100 Trying is not the answer the
    UA waits for); ACKs have no response and are skipped.  Users: a CometQL connection belongs to the
    user of its ``INSERT INTO conference`` (the backend's invite opens a connection of its own); a
    SIP connection to the user of its ``registered`` record (AOR ``<dev_id in 6 digits><user_id>``).
    """
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=30)
    rows = db.execute("SELECT t, service, kind, direction, conn_id, data FROM entries "
                      "WHERE t >= ? AND t <= ? AND service IN ('cometql', 'sip') ORDER BY seq",
                      (since, until)).fetchall()
    db.close()
    pending: dict[tuple, tuple[float, str]] = {}
    owner: dict[tuple[str, str], int] = {}
    per_conn: dict[tuple[str, str], float] = defaultdict(float)
    by_kind: dict[str, list[float]] = defaultdict(list)
    for t, service, kind, direction, conn_id, data in rows:
        conn = (service, str(conn_id))
        data = data or ""
        if service == "cometql":
            if kind == "query" and direction == "in":
                user = _conference_user(data)
                if user is not None:
                    owner[conn] = user
                    pending[conn] = (t, "cometql INSERT INTO conference")
            elif direction == "out" and conn in pending:
                started, name = pending.pop(conn)
                per_conn[conn] += t - started
                by_kind[name].append(t - started)
            continue
        if kind == "registered":
            try:
                owner[conn] = int(data.split("@", 1)[0][6:])
            except ValueError:
                pass
            continue
        if kind != "message":
            continue
        first, _, call_id = data.partition(" | ")
        if direction == "in":
            method = first.split(" ", 1)[0]
            if method in ("REGISTER", "INVITE"):
                pending[(conn, call_id)] = (t, f"sip {method}")
        elif direction == "out" and first.startswith("SIP/2.0 "):
            try:
                status = int(first.split(" ", 2)[1])
            except (IndexError, ValueError):
                continue
            if status >= 200 and (conn, call_id) in pending:
                started, name = pending.pop((conn, call_id))
                per_conn[conn] += t - started
                by_kind[name].append(t - started)
    per_user: dict[int, float] = defaultdict(float)
    for conn, seconds in per_conn.items():
        if conn in owner:
            per_user[owner[conn]] += seconds
    return dict(per_user), dict(by_kind)


def _conference_user(query: str) -> int | None:
    """The user_id of ``INSERT INTO conference (name, user_id, ...) VALUES ('room', 17, ...)``."""
    head = query[:300]
    if not head.upper().startswith("INSERT INTO CONFERENCE"):
        return None
    try:
        columns = [c.strip() for c in head.split("(", 1)[1].split(")", 1)[0].split(",")]
        values = head.upper().split("VALUES", 1)[1].split("(", 1)[1].split(",")
        return int(values[columns.index("user_id")].strip(" '\""))
    except (IndexError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------
# a client worker: its share of the participants, in a trio run of its own
# ------------------------------------------------------------------------------------------------

def worker(conn, ready: dict, number: int, workers: int, calls: int, ramp: float) -> None:
    import gc

    import trio

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    trio.run(_worker, conn, ready, number, workers, calls, ramp)


async def _worker(conn, ready: dict, number: int, workers: int, calls: int, ramp: float) -> None:
    import random  # noqa: F401 - imported before the participants
    import ssl

    import trio

    from bench.actors.participant import Participant, Target
    from emulator.net.network import OSNetwork

    target = Target(HOST, ready["ws"], HOST, ready["cometql"], DEV,
                    ssl_context=ssl.create_default_context(cafile=ready["ca_cert"]))
    network = OSNetwork()
    mine = list(range(number, calls, workers))

    async def command() -> str:
        return await trio.to_thread.run_sync(conn.recv)

    async with trio.open_nursery() as nursery:
        people = {}
        for n in mine:
            for k, role in enumerate(("doctor", "patient")):
                people[(n, k)] = Participant(target, network, user_id=10_000 + 2 * n + k, role=role,
                                             actor=f"{role}-{n}", seed=n, nursery=nursery, history=32)
        assert await command() == "open"
        async with trio.open_nursery() as opening:
            for p in people.values():
                opening.start_soon(p.open_page)
        conn.send("opened")
        assert await command() == "join"
        failed: list[str] = []

        async def one_call(n: int) -> None:
            doctor, patient = people[(n, 0)], people[(n, 1)]
            try:
                async with trio.open_nursery() as both:
                    both.start_soon(doctor.join, f"room-{n}")
                    both.start_soon(patient.join, f"room-{n}")
                await doctor.wait_mark("first_remote_frame", timeout=180)
                await patient.wait_mark("first_remote_frame", timeout=180)
            except Exception as exc:   # noqa: BLE001 - a call that did not come up is a figure
                failed.append(f"{type(exc).__name__}: {exc}"[:160])

        async with trio.open_nursery() as joining:
            for n in mine:   # call n starts at n / ramp seconds, whichever worker has it
                joining.start_soon(one_call, n)
                await trio.sleep(workers / ramp)
        stages = {p.user_id: {s: p.stages()[s] for s in (*SIGNALLING, "join_total")}
                  for p in people.values() if "first_remote_frame" in p.marks}
        conn.send({"failed": failed, "stages": stages})
        next_command = await command()
        if next_command == "storm":   # then "recover"; a run that measures only the joins skips both
            opens = {key: len(p.comet.opens) for key, p in people.items()}
            conn.send("ready")
            assert await command() == "recover"
            with trio.move_on_after(180):
                while not all(len(p.comet.opens) > opens[key] and p.video.phone is not None
                              and p.video.phone.is_registered for key, p in people.items()):
                    await trio.sleep(0.2)
            conn.send({"back": sum(1 for key, p in people.items() if len(p.comet.opens) > opens[key]),
                       "registered": sum(1 for p in people.values()
                                         if p.video.phone is not None and p.video.phone.is_registered)})
            next_command = await command()
        assert next_command == "leave"
        for p in people.values():
            p.hangup()
        await trio.sleep(3)
        for p in people.values():
            p.close()
        nursery.cancel_scope.cancel()
    conn.send("left")


# ------------------------------------------------------------------------------------------------
# the coordinator
# ------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500, help="concurrent two-party calls (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--ramp", type=float, default=10.0, help="calls started per second (default 10)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the calls are held (default 10)")
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds after the last client left at which RSS is compared with the level "
                             "before the calls (default 60: after the housekeeping's second pass)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="run the emulator with this environment variable (repeatable), e.g. "
                             "PYTHONMALLOC=malloc to compare allocators")
    args = parser.parse_args()
    proc, ready, journal = start_serve(env=args.env)
    try:
        run(args, ready, proc.pid, journal)
    finally:
        stop_emulator(proc)


def start_serve(*extra: str, env: list[str] | None = None) -> tuple[subprocess.Popen, dict, str]:
    """``cometbench serve`` as this benchmark runs it (journal in a file of a new temporary
    directory, control token ``TOKEN``, RTP timeout 5 s) plus ``extra`` arguments, under ``env``
    (``NAME=VALUE`` settings, through ``env(1)``); returns the process, its ready line and the
    journal's path."""
    tmp = tempfile.mkdtemp(prefix="bench-calls-")
    config = pathlib.Path(tmp, "cometbench.toml")
    config.write_text(f'control_token = "{TOKEN}"\nrtp_timeout = 5.0\nhandshake_timeout = 60.0\n')
    journal = str(pathlib.Path(tmp, "journal.sqlite"))
    command = ["env", *env, CLI] if env else None
    proc, ready = start_emulator("--config", str(config), *extra, journal=journal, stderr=open(os.devnull, "w"),
                                 command=command)
    return proc, ready, journal


def warm_up(ready: dict) -> None:
    """One call first (imports, the first TLS handshakes, first-use costs), as a user would see;
    then its members' RTP timeout (5 s) passes."""
    warm = subprocess.run([CLI, "call", "--target", f"ws={HOST}:{ready['ws']},cometql={HOST}:{ready['cometql']},"
                           f"dev_id={DEV},ca={ready['ca_cert']}", "--duration", "1"],
                          capture_output=True, text=True, timeout=120)
    if warm.returncode != 0:
        raise SystemExit(f"the warm-up call failed: {warm.stdout.strip()} {warm.stderr.strip()[-300:]}")
    time.sleep(8)


class Clients:
    """The ``--workers`` client processes and the commands the coordinator sends them all."""

    def __init__(self, ready: dict, workers: int, calls: int, ramp: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        for number in range(workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker, args=(child, ready, number, workers, calls, ramp), daemon=True)
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)

    def all_(self, message: str) -> list:
        for pipe in self.pipes:
            pipe.send(message)
        return [pipe.recv() for pipe in self.pipes]

    def leave(self) -> None:
        self.all_("leave")
        for p in self.procs:
            p.join(30)


def open_and_join(clients: Clients, calls: int, pid: int, journal: str) -> dict:
    """Every page logged in, then every call joined (at the ramp); prints and returns the figures:
    ``residence`` (ms per participant, from the journal), ``by_kind`` (s per request), ``stages``
    (client-observed, per user), ``failed``, ``join_wall``, ``join_cpu`` (the emulator's)."""
    cpu0, wall0 = child_cpu(pid), time.perf_counter()
    clients.all_("open")
    print(f"{2 * calls} pages logged in: {time.perf_counter() - wall0:.1f} s; "
          f"emulator CPU {child_cpu(pid) - cpu0:.1f} s, RSS {child_rss_kb(pid) / 1024:.0f} MB")
    since = time.time()
    cpu0, wall0 = child_cpu(pid), time.perf_counter()
    results = clients.all_("join")
    join_wall, join_cpu = time.perf_counter() - wall0, child_cpu(pid) - cpu0
    failed = [f for r in results for f in r["failed"]]
    stages = {int(u): s for r in results for u, s in r["stages"].items()}
    print(f"  {calls - len(failed)} of {calls} calls up in {join_wall:.1f} s; emulator CPU "
          f"{join_cpu:.1f} s ({100 * join_cpu / join_wall:.0f} % of a core)"
          + (f"; failed: {failed[0]}" if failed else ""))
    time.sleep(1)   # the journal's flusher (every 0.25 s)
    per_user, by_kind = server_residences(journal, since, time.time())
    residence = [1000 * per_user[u] for u in stages if u in per_user]
    if residence:
        print(f"  server residence of a join (the emulator's share; {len(residence)} participants), ms: "
              f"p50 {pct(residence, 50):.2f}, p99 {pct(residence, 99):.2f}, max {max(residence):.2f}"
              f"  (target p99 <= 50)")
        print("    per request, p50 / p99 ms: " + ", ".join(
            f"{k} {1000 * pct(v, 50):.2f} / {1000 * pct(v, 99):.2f} (n={len(v)})"
            for k, v in sorted(by_kind.items()) if len(v) >= 10))
    added = [sum(s[k] for k in SIGNALLING) for s in stages.values()]
    if added:
        print(f"  client-observed signalling stages ({'+'.join(SIGNALLING)}; clients and loopback "
              f"included), ms: p50 {pct(added, 50):.1f}, p99 {pct(added, 99):.1f}")
        joins = [s["join_total"] for s in stages.values()]
        print(f"    join_total, ms: p50 {pct(joins, 50):.0f}, p99 {pct(joins, 99):.0f}")
    return {"residence": residence, "by_kind": by_kind, "stages": stages, "failed": failed,
            "join_wall": join_wall, "join_cpu": join_cpu}


def run(args, ready: dict, pid: int, journal: str) -> None:
    warm_up(ready)
    rss_before, cpu_start = child_rss_kb(pid), child_cpu(pid)
    memory_before = child_memory_kb(pid)
    print(f"emulator pid {pid} up: RSS {rss_before / 1024:.0f} MB; {args.calls} calls, "
          f"{args.workers} client processes")
    clients = Clients(ready, args.workers, args.calls, args.ramp)
    all_ = clients.all_
    open_and_join(clients, args.calls, pid, journal)
    cpu0 = child_cpu(pid)
    time.sleep(args.hold)
    state = control(ready, "/api/state")
    print(f"  held {args.hold:g} s: emulator CPU {100 * (child_cpu(pid) - cpu0) / args.hold:.0f} % of a core, "
          f"RSS {child_rss_kb(pid) / 1024:.0f} MB; {state['connections']} comet connections, "
          f"{state['members']} members, {state['sip_registrations']} registrations")

    all_("storm")
    cpu0, wall0 = child_cpu(pid), time.perf_counter()
    # per protocol of the participants: a reset of "*" would also reset the control plane's own
    # HTTP connection that asks for it
    reset = sum(control(ready, "/api/faults/network", {"action": "reset", "protocol": protocol})
                .get("connections", 0) for protocol in ("comet", "cometql", "sip"))
    recovered = all_("recover")
    print(f"  drop storm: {reset} connections reset at once; after "
          f"{time.perf_counter() - wall0:.1f} s {sum(r['back'] for r in recovered)}/{2 * args.calls} comet "
          f"clients back, {sum(r['registered'] for r in recovered)}/{2 * args.calls} SIP agents registered; "
          f"emulator CPU {child_cpu(pid) - cpu0:.1f} s, RSS {child_rss_kb(pid) / 1024:.0f} MB")
    clients.leave()
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        state = control(ready, "/api/state")
        if not (state["connections"] or state["members"] or state["sip_registrations"] or state["sip_dialogs"]):
            break
        time.sleep(0.5)
    left_at = time.monotonic()
    samples: list[tuple[float, int]] = []
    # the emulator's memory housekeeping (emulator/housekeeping.py) looks every 5 s; the SIP core
    # keeps its answers for retransmissions 32 s (RFC 3261's 64*T1)
    for at in sorted({1.0, 12.0, args.settle}):
        time.sleep(max(0.0, left_at + at - time.monotonic()))
        samples.append((at, child_rss_kb(pid)))
    pipes_left = control(ready, "/api/pipes")
    rss_after = samples[-1][1]
    memory_after = child_memory_kb(pid)
    left = {"comet connections": state["connections"], "conference members": state["members"],
            "SIP registrations": state["sip_registrations"], "SIP dialogs": state["sip_dialogs"],
            "pipes": len(pipes_left) if isinstance(pipes_left, list) else pipes_left.get("count", pipes_left)}
    print("  left over: " + ", ".join(f"{k} {v}" for k, v in left.items()))
    print(f"emulator RSS: before the calls {rss_before / 1024:.0f} MB; after the last client left: "
          + ", ".join(f"{at:g} s {kb / 1024:.0f} MB" for at, kb in samples)
          + f" ({100 * (rss_after - rss_before) / rss_before:+.1f} %); emulator CPU in all "
          f"{child_cpu(pid) - cpu_start:.1f} s")
    print(f"  emulator resident memory by mapping: before {memory_text(memory_before)}; "
          f"after {memory_text(memory_after)}")
    print("drop storm check: RSS back within 10 % of the level before the calls: "
          + ("yes" if rss_after <= rss_before * 1.10 else "no"))


if __name__ == "__main__":
    main()
