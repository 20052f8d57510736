"""``/metrics``: the running emulator in the Prometheus text exposition format (version 0.0.4).

Gauges are read from the live state when scraped (connections, tenants, pipes, conferences,
members -- talking and muted among them --, SIP registrations and dialogs); counters come from the
hub's own statistics (frames in and out, connects, publishes) and from a journal tap
(:meth:`emulator.journal.Journal.add_tap`) that counts records per service and kind (CometQL
queries, SIP messages, conference invitations, ...).

**The server-side join latency** -- ``cometbench_join_seconds`` is a Prometheus histogram of the
time from ``INSERT INTO conference`` pushing a call to a user (journal record ``conference
invite``) to that user's media flowing through the conference (``freeswitch media``): the part of
a join the servers see, without the page's own work before the INSERT.  A user invited again before
their media flowed is timed from the latest invitation; an invitation whose media never flows is
forgotten after :data:`PENDING_LIMIT` newer ones.  Times are the emulator's clock (virtual seconds
in virtual time).

Nothing is computed per request beyond walking the live objects once; a scrape of a stack with
1,000 participants costs about a millisecond (docs/performance.md).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from emulator.stack import Stack

__all__ = ["Telemetry", "JOIN_BUCKETS", "PENDING_LIMIT"]

JOIN_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
PENDING_LIMIT = 100_000
TAIL_SIZE = 2000


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append(f'{name}_bucket{{le="{_num(bound)}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {_num(self.sum)}")
        out.append(f"{name}_count {self.count}")
        return out


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Telemetry:
    """The control plane's view of traffic over time: record counters, join timing, a journal tail."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], int] = {}
        self.join = Histogram(JOIN_BUCKETS)
        self._pending: OrderedDict[tuple[int | None, int | None], float] = OrderedDict()
        self.tail: list[dict] = []
        self.tail_seq = 0

    def tap(self, t: float, service: str, kind: str, direction: str, dev_id: Any, user_id: Any, conn_id: Any,
            data: Any) -> None:
        key = (service, kind)
        self.records[key] = self.records.get(key, 0) + 1
        if service == "conference" and kind == "invite":
            ident = (dev_id, user_id)
            self._pending.pop(ident, None)
            self._pending[ident] = t
            if len(self._pending) > PENDING_LIMIT:
                self._pending.popitem(last=False)
        elif service == "freeswitch" and kind == "media":
            started = self._pending.pop((dev_id, user_id), None)
            if started is not None:
                self.join.observe(max(0.0, t - started))
        if (service == "comet" and kind == "frame") or (service == "sip" and kind == "message"):
            return  # the dashboard's tail shows events, not every frame (the journal has them)
        self.tail_seq += 1
        if not isinstance(data, str):
            data = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else repr(data)
        self.tail.append({"seq": self.tail_seq, "t": t, "service": service, "kind": kind, "direction": direction,
                          "dev_id": dev_id, "user_id": user_id, "conn_id": conn_id, "data": data[:300]})
        if len(self.tail) > TAIL_SIZE:
            del self.tail[: len(self.tail) - TAIL_SIZE]

    def tail_after(self, after: int, limit: int) -> list[dict]:
        if not self.tail or after >= self.tail_seq:
            return []
        first = self.tail[0]["seq"]
        start = max(0, after - first + 1)
        return self.tail[start:start + limit]

    def exposition(self, stack: Stack) -> str:
        """The text of ``/metrics``."""
        hub = stack.hub
        lines: list[str] = []

        def metric(name: str, kind: str, text: str, samples: list[tuple[str, Any]]) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lines.append(f"{name}{labels} {_num(value)}")

        per_tenant: dict[int, int] = {}
        for conn in hub.connections.values():
            per_tenant[conn.dev_id] = per_tenant.get(conn.dev_id, 0) + 1
        metric("cometbench_comet_connections", "gauge", "Open comet WebSocket connections, per tenant (dev_id).",
               [(f'{{dev_id="{d}"}}', n) for d, n in sorted(per_tenant.items())] or [("", 0)])
        metric("cometbench_comet_users_online", "gauge", "Users with an authorised connection, per tenant.",
               [(f'{{dev_id="{t.dev_id}"}}', len(t.users)) for t in sorted(hub.tenants.values(),
                                                                         key=lambda t: t.dev_id)] or [("", 0)])
        metric("cometbench_comet_pipes", "gauge", "Pipes with at least one subscriber.",
               [("", sum(1 for t in hub.tenants.values() for subs in t.pipes.values() if subs))])
        stats = hub.stats
        metric("cometbench_comet_connects_total", "counter", "Comet WebSocket logins.", [("", stats["connects"])])
        metric("cometbench_comet_frames_total", "counter", "Comet WebSocket frames (messages), by direction.",
               [('{direction="in"}', stats["frames_in"]), ('{direction="out"}', stats["frames_out"])])
        metric("cometbench_comet_published_total", "counter", "Messages published to pipes.",
               [("", stats["published"])])
        confs = list(stack.bridge.conferences.values()) if stack.bridge is not None else []
        members = [m for c in confs for m in c.members]
        metric("cometbench_conferences", "gauge", "Conferences of the fake FreeSWITCH.", [("", len(confs))])
        metric("cometbench_conference_members", "gauge", "Conference members, by state.",
               [('{state="all"}', len(members)), ('{state="talking"}', sum(1 for m in members if m.talking)),
                ('{state="muted"}', sum(1 for m in members if not m.can_speak)),
                ('{state="media_flowing"}', sum(1 for m in members if m.media == "flowing"))])
        sip = stack.sip.snapshot() if stack.sip is not None else {"registrations": 0, "dialogs": 0}
        metric("cometbench_sip_registrations", "gauge", "SIP registrations (bindings).",
               [("", sip.get("registrations", 0))])
        metric("cometbench_calls", "gauge", "Calls in progress (SIP dialogs of the fake FreeSWITCH).",
               [("", sip.get("dialogs", 0))])
        metric("cometbench_call_invites_total", "counter", "Calls pushed by INSERT INTO conference.",
               [("", self.records.get(("conference", "invite"), 0))])
        metric("cometbench_cometql_queries_total", "counter", "CometQL statements received.",
               [("", self.records.get(("cometql", "query"), 0))])
        metric("cometbench_sip_messages_total", "counter", "SIP messages, by direction (journal records).",
               [("", self.records.get(("sip", "message"), 0))])
        metric("cometbench_journal_records_total", "counter", "Journal records by service and kind.",
               [(f'{{service="{_label(s)}",kind="{_label(k)}"}}', n) for (s, k), n in sorted(self.records.items())]
               or [('{service="",kind=""}', 0)])
        lines.append("# HELP cometbench_join_seconds Server-side join latency: INSERT INTO conference pushed the "
                     "call -> that member's media flowing.")
        lines.append("# TYPE cometbench_join_seconds histogram")
        lines.extend(self.join.lines("cometbench_join_seconds"))
        return "\n".join(lines) + "\n"
