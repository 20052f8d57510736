"""The synchronised start: shards prepare, wait at a barrier, and start at one shared instant.

Every shard of a run prepares what it can before the start (it loads its scenarios, imports the
stack and the actors, checks that a target answers, writes its run directory's first report.json),
then **arrives** at the barrier.  When the last shard arrives, the barrier fixes the start at that
moment plus a lead (``--start-lead``, 1 s by default: long enough for the answer to reach every
shard) and tells every shard.  Each shard sleeps until the instant, records how late it actually
began (its **start skew**, in ms) and goes.  A shard whose skew exceeds the tolerance
(``--start-tolerance``, 0.5 s by default) makes the run fail: its load did not overlap the others'
the way the run meant (see :mod:`bench.distributed.shard`).

Three ways to the instant:

* :class:`TcpBarrierServer` / :class:`TcpBarrier` -- a barrier on a TCP port (one JSON line each
  way), run by ``cometbench run --shards N --executor local`` for its subprocesses;
* :class:`BarrierActor` / :class:`RayBarrier` -- a named Ray actor (asyncio: it only coordinates and
  runs no trio code), created by ``--executor ray``; the shards, plain Ray tasks, block on it;
* :class:`FixedStart` -- ``--start-at TIME``, an instant fixed when the run was submitted (the
  Kubernetes Indexed Job of deploy/k8s/): no coordination, every pod sleeps until it.

Clocks: the barrier's instant is in the barrier's clock.  A shard on another machine estimates the
offset of its own clock from the barrier's (Cristian's method: the barrier's time, asked a few times;
the answer with the shortest round trip, its midpoint) and sleeps until the instant in its own
clock, so the skew is measured against the barrier's clock to within half that round trip (recorded
as ``clock_uncertainty_ms``).  A fixed ``--start-at`` relies on the machines' clocks (NTP) instead.

:class:`BarrierState` is the bookkeeping of every barrier, without I/O: who arrived, the instant, or
why the start was called off -- a shard that says another shard count, or that arrives twice (a
retried shard would double its load), or one that the executor saw die before arriving.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BarrierState", "StartSignal", "StartAborted", "FixedStart", "TcpBarrierServer", "TcpBarrier",
           "BarrierActor", "RayBarrier", "estimate_offset", "sleep_until", "parse_barrier", "DEFAULT_LEAD",
           "DEFAULT_TOLERANCE", "DEFAULT_BARRIER_TIMEOUT"]

DEFAULT_LEAD = 1.0               # seconds from the last arrival to the start
DEFAULT_TOLERANCE = 0.5          # seconds of start skew a shard may have
DEFAULT_BARRIER_TIMEOUT = 300.0  # seconds a shard waits at the barrier for the others


class StartAborted(Exception):
    """The shared start did not happen: the message says why (a shard missing, a duplicate ...)."""


@dataclass(frozen=True)
class StartSignal:
    """The shared start as one shard sees it."""

    start_at: float              # the instant, Unix seconds in the barrier's clock
    local_start_at: float        # the same instant in this machine's clock
    barrier: str                 # how it was agreed: tcp, ray, fixed
    offset: float = 0.0          # barrier clock - local clock, seconds
    uncertainty: float = 0.0     # half the best round trip of the offset estimate, seconds


class BarrierState:
    """Arrivals of ``count`` shards; the start is ``lead`` seconds after the last one."""

    def __init__(self, count: int, lead: float = DEFAULT_LEAD) -> None:
        if count < 1:
            raise ValueError("a barrier needs at least one shard")
        self.count = count
        self.lead = lead
        self.arrived: dict[int, float] = {}
        self.start_at: float | None = None
        self.aborted: str | None = None

    @property
    def done(self) -> bool:
        return self.start_at is not None or self.aborted is not None

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self.arrived]

    def abort(self, reason: str) -> None:
        if self.start_at is None and self.aborted is None:
            self.aborted = reason

    def arrive(self, index: int, count: int, now: float) -> dict[str, Any] | None:
        """Record an arrival; a refusal for this caller alone (``{"abort": why}``) when the start is
        fixed already and this shard is a second copy of one that arrived (a retried shard)."""
        if index in self.arrived and self.start_at is not None:
            return {"abort": f"shard {index} arrived again after the start was fixed (a retried or duplicated "
                             "shard would double its load)"}
        if self.done:
            return None
        if count != self.count:
            self.abort(f"shard {index} was started as one of {count} shards, but the run has {self.count}")
        elif not 0 <= index < self.count:
            self.abort(f"shard index {index} is not in 0..{self.count - 1}")
        elif index in self.arrived:
            self.abort(f"shard {index} arrived twice (a retried or duplicated shard would double its load)")
        else:
            self.arrived[index] = now
            if len(self.arrived) == self.count:
                self.start_at = now + self.lead
        return None

    def outcome(self) -> dict[str, Any]:
        if self.aborted is not None:
            return {"abort": self.aborted}
        if self.start_at is not None:
            return {"start_at": self.start_at}
        return {"waiting": self.missing()}

    def status(self) -> dict[str, Any]:
        return {"count": self.count, "arrived": sorted(self.arrived), "missing": self.missing(),
                "start_at": self.start_at, "aborted": self.aborted}


def estimate_offset(ask: Callable[[], float], *, rounds: int = 5) -> tuple[float, float]:
    """(offset, uncertainty) of a remote clock: ``ask()`` returns the remote time; the offset is
    remote - local at the midpoint of the round trip, from the round with the shortest trip."""
    best: tuple[float, float] | None = None
    for _ in range(max(1, rounds)):
        t0 = time.time()
        remote = float(ask())
        t1 = time.time()
        trip = t1 - t0
        if best is None or trip < best[1] * 2:
            best = (remote - (t0 + t1) / 2, trip / 2)
    assert best is not None
    return best


def sleep_until(instant: float, *, spin: float = 0.002) -> float:
    """Sleep until Unix time ``instant`` (the last ``spin`` seconds in a busy loop: a plain sleep
    overshoots by the scheduler's granularity); returns the time it woke."""
    while True:
        left = instant - time.time()
        if left <= 0:
            return time.time()
        if left > spin:
            time.sleep(left - spin)


class FixedStart:
    """``--start-at``: an instant fixed in advance (machines' clocks assumed in step, e.g. NTP)."""

    description = "fixed"

    def __init__(self, start_at: float) -> None:
        self.start_at = start_at

    def arrive(self, index: int, count: int, timeout: float) -> StartSignal:
        return StartSignal(self.start_at, self.start_at, "fixed")


# --- over TCP (the local executor) -----------------------------------------------------------------


class TcpBarrierServer:
    """A barrier on a TCP port of this machine (127.0.0.1 unless told otherwise); serves in threads.
    Each shard connects and sends ``{"op": "arrive", "shard": i, "count": N}``; once all have
    arrived (or the start is called off) each gets ``{"start_at": t}`` or ``{"abort": why}``.
    ``{"op": "time"}`` is answered at once with ``{"now": t}`` (the offset estimate)."""

    def __init__(self, count: int, *, lead: float = DEFAULT_LEAD, host: str = "127.0.0.1") -> None:
        self.state = BarrierState(count, lead)
        self._lock = threading.Condition()
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.2)
        self.host, self.port = self._sock.getsockname()[:2]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="cometbench-barrier", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"tcp:{self.host}:{self.port}"

    def abort(self, reason: str) -> None:
        with self._lock:
            self.state.abort(reason)
            self._lock.notify_all()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self.state.status()

    def close(self) -> None:
        self._closed = True
        self.abort("the run is over")
        self._thread.join(timeout=2)
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                try:
                    request = json.loads(line)
                    op = request.get("op")
                except (ValueError, AttributeError):
                    return
                if op == "time":
                    answer: dict[str, Any] = {"now": time.time()}
                elif op == "arrive":
                    with self._lock:
                        try:
                            refusal = self.state.arrive(int(request["shard"]), int(request["count"]), time.time())
                        except (KeyError, TypeError, ValueError):
                            return
                        self._lock.notify_all()
                        while refusal is None and not self.state.done:
                            self._lock.wait(0.5)
                        answer = refusal or self.state.outcome()
                else:
                    return
                try:
                    stream.write(json.dumps(answer).encode() + b"\n")
                    stream.flush()
                except OSError:
                    return


class TcpBarrier:
    """A shard's side of :class:`TcpBarrierServer` (``--barrier tcp:HOST:PORT``)."""

    description = "tcp"

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def arrive(self, index: int, count: int, timeout: float) -> StartSignal:
        try:
            conn = socket.create_connection((self.host, self.port), timeout=10)
        except OSError as exc:
            raise StartAborted(f"the barrier at {self.host}:{self.port} does not answer ({exc})") from None
        with conn, conn.makefile("rwb") as stream:
            def ask(request: dict[str, Any]) -> dict[str, Any]:
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                line = stream.readline()
                if not line:
                    raise StartAborted(f"the barrier at {self.host}:{self.port} closed the connection")
                return json.loads(line)

            try:
                offset, uncertainty = estimate_offset(lambda: ask({"op": "time"})["now"])
                conn.settimeout(timeout)
                answer = ask({"op": "arrive", "shard": index, "count": count})
            except TimeoutError:
                raise StartAborted(f"waited {timeout:g} s at the barrier for the other shards") from None
            except (OSError, ValueError) as exc:
                raise StartAborted(f"the barrier at {self.host}:{self.port} failed ({exc})") from None
        return _signal(answer, offset, uncertainty, "tcp")


def _signal(answer: dict[str, Any], offset: float, uncertainty: float, how: str) -> StartSignal:
    if "abort" in answer:
        raise StartAborted(f"the start was called off: {answer['abort']}")
    start_at = float(answer["start_at"])
    return StartSignal(start_at, start_at - offset, how, offset, uncertainty)


# --- on Ray (the ray executor) ---------------------------------------------------------------------


class BarrierActor:
    """The barrier as a Ray actor (wrapped with ``ray.remote`` by the executor and named, so shards
    find it with ``ray.get_actor``).  Its methods are coroutines: Ray runs it as an asyncio actor, so
    every shard's ``arrive`` can wait at once.  Plain asyncio here coordinates only; the shards run
    trio in their own tasks."""

    def __init__(self, count: int, lead: float = DEFAULT_LEAD) -> None:
        self.state = BarrierState(count, lead)
        self._event: Any = None

    def _done_event(self) -> Any:
        import asyncio

        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    async def now(self) -> float:
        return time.time()

    async def arrive(self, index: int, count: int) -> dict[str, Any]:
        event = self._done_event()
        refusal = self.state.arrive(index, count, time.time())
        if refusal is not None:
            return refusal
        if self.state.done:
            event.set()
        await event.wait()
        return self.state.outcome()

    async def abort(self, reason: str) -> None:
        self.state.abort(reason)
        self._done_event().set()

    async def status(self) -> dict[str, Any]:
        return self.state.status()


class RayBarrier:
    """A shard's side of :class:`BarrierActor` (``--barrier ray:NAME``), inside a Ray task."""

    description = "ray"

    def __init__(self, name: str, namespace: str | None = None) -> None:
        self.name, self.namespace = name, namespace

    def arrive(self, index: int, count: int, timeout: float) -> StartSignal:
        import ray
        from ray.exceptions import GetTimeoutError

        try:
            actor: Any = ray.get_actor(self.name, namespace=self.namespace)  # methods' .remote are untyped
        except ValueError:
            raise StartAborted(f"no barrier actor named {self.name!r} in the Ray cluster") from None
        def actor_now() -> float:
            return float(ray.get(actor.now.remote()))

        offset, uncertainty = estimate_offset(actor_now)
        try:
            answer: dict[str, Any] = ray.get(actor.arrive.remote(index, count), timeout=timeout)
        except GetTimeoutError:
            status: dict[str, Any] = ray.get(actor.status.remote())
            missing = status["missing"]
            raise StartAborted(f"waited {timeout:g} s at the barrier; shard(s) {missing} never arrived") from None
        return _signal(answer, offset, uncertainty, "ray")


def parse_barrier(text: str) -> TcpBarrier | RayBarrier:
    """``tcp:HOST:PORT`` or ``ray:NAME`` (what an executor passes to its shards as ``--barrier``)."""
    kind, _, rest = text.partition(":")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit():
            return TcpBarrier(host, int(port))
    elif kind == "ray" and rest:
        return RayBarrier(rest)
    raise ValueError(f"--barrier expects tcp:HOST:PORT or ray:NAME, got {text!r}")
