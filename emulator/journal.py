"""The journal: every wire message, connect, disconnect, auth result and state change, in SQLite.

Recording is cheap: :meth:`Journal.record` appends a tuple to an in-memory batch; a flusher task
(owned by the stack's nursery) writes batches with one ``executemany`` per transaction.  On
shutdown the remaining batch is flushed.  ``Journal(enabled=False)`` records nothing and costs one
attribute check per call site.

When the flusher wakes: under the real clock, every ``interval`` (0.25 s) while something is
pending, and at once when a batch fills; it sleeps without a deadline while nothing is pending.  In
virtual time (``clock="virtual"``) it flushes when a batch fills and otherwise
:data:`VIRTUAL_IDLE_FLUSH` simulated seconds after the first pending record, never on a 0.25 s trio
deadline: a virtual-time timer every 0.25 simulated seconds would make the MockClock jump four times
per simulated second, which was most of what an idle simulated hour cost.  Nothing in virtual time
may depend on the real clock: waking the flusher when some real time had passed (an earlier version
did) changes which tasks trio finds ready together, and with them the seeded scheduling order, so
two runs with one seed journalled frames of the same instant in different orders
(tests/integration/test_scenario_determinism.py).  Readers -- :meth:`entries`, :meth:`sha256`,
:meth:`close` -- flush first anyway.  When the flushes happen never changes what is stored: rows
keep the order of :meth:`record` calls.

Schema (table ``entries``): seq, run_id, t (wall/virtual Unix time, float), service, kind,
direction ("in"/"out"/""), dev_id, user_id, conn_id, data (text).  Table ``runs``: run_id, seed,
profile, started, clock ("real"/"virtual").  Reports, replays and run diffs read these tables;
``cometbench journal`` prints them.  Every kind that is recorded is listed in README.md (a test
compares that list with the ``record`` calls of the code).

Taps: :meth:`Journal.add_tap` hands every record, as it is recorded, to a function (the control
plane counts traffic and times joins for ``/metrics`` that way, and tails the journal for the
dashboard); a journal with a tap records even when it stores nothing (``enabled`` turns true), so
the call sites produce their records.  :meth:`Journal.new_run` starts a new journal run in the same
file (the control plane's reset between tests).

Run ids: a virtual run's id comes from its seed (equal seeds, equal journals -- the id is part of the
digest), so a second virtual run with the same seed in the same journal file would reuse an id the
file holds.  That is refused with :class:`JournalError` naming the file, the run and the ways out
(another file, removing it, another seed or ``run_id``) instead of SQLite's bare UNIQUE error; the
old run is never overwritten (a journal loses nothing), and a fresh id would break "same seed, same
digest".

Echo: when the logger ``cometbench.journal`` is enabled for INFO at construction (``cometbench serve
-v``), every entry is also logged as it is recorded, even with the journal itself off: the traffic
kinds of :data:`TRAFFIC_KINDS` at DEBUG (``-vv``), everything else at INFO.  Without it the cost is
one attribute check per record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time as _time
import uuid as _uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils
import trio

#: In virtual time, the longest (simulated) time a pending record waits for its flush when records
#: stop coming: without it a quiet run kept its last records in memory until the next burst or a
#: reader.  One timer per flush cycle -- at most one clock jump per simulated second -- costs little.
VIRTUAL_IDLE_FLUSH = 1.0

COLUMNS = ("run_id", "t", "service", "kind", "direction", "dev_id", "user_id", "conn_id", "data")
LOGGER = logging.getLogger("cometbench.journal")
TRAFFIC_KINDS = frozenset({"frame", "message", "event", "media"})  # one per frame or packet: -vv
ECHO_DATA_LIMIT = 300  # characters of ``data`` an echoed entry shows


class JournalError(Exception):
    """The journal cannot be opened as asked (a run id the file already holds)."""


class Journal:
    def __init__(self, path: str | Path = ":memory:", *, enabled: bool = True, seed: int = 0,
                 profile: str = "", clock: str = "real", now: Callable[[], float] | None = None,
                 batch: int = 2000, run_id: str | None = None) -> None:
        self.stored = enabled
        self._echo = LOGGER if LOGGER.isEnabledFor(logging.INFO) else None
        # call sites skip work when nothing would be kept or shown (``if journal.enabled:``)
        self.enabled = enabled or self._echo is not None
        self.path = str(path)
        self.run_id = run_id or _uuid.uuid4().hex[:12]   # a virtual run passes a seeded one
        self._now = now or _time.time
        self._pending: list[tuple] = []
        self._batch = batch
        self._wakeup = trio.Event()
        self._virtual = clock == "virtual"
        self._interval = 0.25           # seconds between timed flushes (real time only)
        self.dropped = 0
        self._taps: list[Callable[..., None]] = []
        self._meta = {"seed": seed, "profile": profile, "clock": clock}
        self.db: sqlite_utils.Database | None = None
        if not self.stored:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # a journal is diagnostics; speed first
        self._conn = conn
        self.db = sqlite_utils.Database(conn)
        self.db.table("runs").create({"run_id": str, "seed": int, "profile": str, "started": float, "clock": str},
                               pk="run_id", if_not_exists=True)
        self.db.table("entries").create(
            {"seq": int, "run_id": str, "t": float, "service": str, "kind": str, "direction": str,
             "dev_id": int, "user_id": int, "conn_id": int, "data": str}, pk="seq", if_not_exists=True)
        self.db.table("entries").create_index(["run_id", "seq"], if_not_exists=True)
        if run_id is not None and conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (self.run_id,)).fetchone():
            conn.close()
            raise JournalError(
                f"the journal {self.path} already holds run {self.run_id} (a virtual run's id comes from its "
                f"seed: the same seed was recorded in this file before); use another journal file, remove "
                f"this one, or change the seed or run_id")
        self.db.table("runs").insert({"run_id": self.run_id, "seed": seed, "profile": profile,
                                "started": self._now(), "clock": clock})

    def set_clock(self, now: Callable[[], float]) -> None:
        self._now = now

    def add_tap(self, tap: Callable[..., None]) -> Callable[[], None]:
        """Call ``tap(t, service, kind, direction, dev_id, user_id, conn_id, data)`` for every record
        from now on (``data`` as the call site gave it: text, bytes or an object); returns the
        function that removes the tap.  A tap must be quick and must not raise."""
        self._taps.append(tap)
        self.enabled = True

        def remove() -> None:
            if tap in self._taps:
                self._taps.remove(tap)
            self.enabled = self.stored or self._echo is not None or bool(self._taps)

        return remove

    def new_run(self) -> str:
        """Start a new journal run (a new run_id, a row in ``runs``) in the same file; its id."""
        self.flush()
        self.run_id = _uuid.uuid4().hex[:12]
        if self.stored and self.db is not None:
            self.db.table("runs").insert({"run_id": self.run_id, "started": self._now(), **self._meta})
        return self.run_id

    def record(self, service: str, kind: str, *, direction: str = "", dev_id: int | None = None,
               user_id: int | None = None, conn_id: int | None = None, data: Any = "") -> None:
        if not self.enabled:
            return
        if self._taps:
            now = self._now()
            for tap in self._taps:
                tap(now, service, kind, direction, dev_id, user_id, conn_id, data)
        if self._echo is not None:
            self._log(self._echo, service, kind, direction, dev_id, user_id, conn_id, data)
        if not self.stored:
            return
        if not isinstance(data, str):
            data = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else repr(data)
        elif not data.isascii():  # lone surrogates (undecodable bytes) cannot be stored in SQLite
            data = data.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        pending = self._pending
        pending.append((self.run_id, self._now(), service, kind, direction, dev_id, user_id, conn_id, data))
        if len(pending) == 1 or len(pending) >= self._batch:
            self._wakeup.set()   # the flusher counts its interval from the first pending record

    @staticmethod
    def _log(echo: logging.Logger, service: str, kind: str, direction: str, dev_id: int | None,
             user_id: int | None, conn_id: int | None, data: Any) -> None:
        level = logging.DEBUG if kind in TRAFFIC_KINDS else logging.INFO
        if not echo.isEnabledFor(level):
            return
        ids = " ".join(f"{name}={value}" for name, value in (("dev", dev_id), ("user", user_id), ("conn", conn_id))
                       if value is not None)
        if not isinstance(data, str):
            data = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else repr(data)
        text = data if len(data) <= ECHO_DATA_LIMIT else data[:ECHO_DATA_LIMIT] + f"... ({len(data)} chars)"
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        echo.log(level, "%s %s%s%s%s", service, kind, f" {direction}" if direction else "",
                       f" {ids}" if ids else "", f": {text}" if text else "")

    def flush(self) -> None:
        if not self.stored or not self._pending:
            return
        pending, self._pending = self._pending, []
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", pending)

    async def run_flusher(self, interval: float = 0.25,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush ``interval`` seconds after the first pending record or when a batch fills (see the
        module docstring for virtual time); flush once more on cancellation.  A journal that stores
        nothing needs no flusher: the task ends at once."""
        self._interval = interval
        task_status.started()
        if not self.stored:
            return
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                if self._pending and len(self._pending) < self._batch:
                    # more records join this batch meanwhile; in virtual time the wait is
                    # VIRTUAL_IDLE_FLUSH simulated seconds (or until the batch fills)
                    with trio.move_on_after(VIRTUAL_IDLE_FLUSH if self._virtual else interval):
                        await self._wakeup.wait()
                    self._wakeup = trio.Event()
                self.flush()
        finally:
            self.flush()

    def entries(self, **where: Any) -> list[dict]:
        """Entries of this run, oldest first (flushes first).  ``where`` filters on columns."""
        if not self.stored:
            return []
        self.flush()
        clauses, params = ["run_id = ?"], [self.run_id]
        for key, value in where.items():
            if key not in COLUMNS:
                raise KeyError(key)
            clauses.append(f"{key} = ?")
            params.append(value)
        rows = self._conn.execute(
            f"SELECT seq, {', '.join(COLUMNS)} FROM entries WHERE {' AND '.join(clauses)} ORDER BY seq", params)
        return [dict(zip(("seq", *COLUMNS), r)) for r in rows]

    def read(self, *, run: str | None = None, after: int = 0, limit: int = 100,
             filters: dict[str, list] | None = None) -> list[dict]:
        """Entries after ``seq`` ``after``, oldest first, at most ``limit`` (paging: pass the last
        seq as the next ``after``); ``run``: this run by default, a run id, or ``"all"``;
        ``filters``: column -> accepted values."""
        if not self.stored:
            return []
        self.flush()
        clauses: list[str] = ["seq > ?"]
        params: list[object] = [after]
        if run != "all":
            clauses.append("run_id = ?")
            params.append(run or self.run_id)
        for column, values in (filters or {}).items():
            if column not in COLUMNS:
                raise KeyError(column)
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        rows = self._conn.execute(f"SELECT seq, {', '.join(COLUMNS)} FROM entries WHERE {' AND '.join(clauses)} "
                                  "ORDER BY seq LIMIT ?", [*params, limit])
        return [dict(zip(("seq", *COLUMNS), r)) for r in rows]

    def runs(self) -> list[dict]:
        """Every run in the journal file, oldest first."""
        if not self.stored:
            return []
        rows = self._conn.execute("SELECT run_id, seed, profile, started, clock FROM runs ORDER BY started, rowid")
        return [dict(zip(("run_id", "seed", "profile", "started", "clock"), r)) for r in rows]

    def sha256(self) -> str:
        """SHA-256 of this run's entries in seq order: for each entry, the JSON array ``[seq, run_id,
        t, service, kind, direction, dev_id, user_id, conn_id, data]`` (compact separators, floats as
        Python writes them) and a newline.  Nothing is left out, so two virtual runs with the same seed
        compare equal only if their journals are the same byte for byte.  (Journal off: the hash of
        nothing.)"""
        h = hashlib.sha256()
        if self.stored:
            self.flush()
            rows = self._conn.execute(f"SELECT seq, {', '.join(COLUMNS)} FROM entries WHERE run_id = ? ORDER BY seq",
                                      (self.run_id,))
            for row in rows:
                h.update(json.dumps(list(row), separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
                h.update(b"\n")
        return h.hexdigest()

    def close(self) -> None:
        if self.stored:
            self.flush()
            self._conn.close()
