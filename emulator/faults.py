"""Server faults on a running stack (``stack.faults``): what the servers do when they fail.

Scenarios, the control plane and tests call these on the stack :func:`emulator.stack.open_stack`
returns; every fault is journaled (service ``stack``, kind ``fault``) and kept in
:attr:`Faults.history`.  Network faults (latency, loss, partitions, resets, half-open hangs) are the
link table's (``stack.links``, :mod:`emulator.net.links`).

* :meth:`Faults.restart_comet` -- the CppComet process restarts.  Every comet WebSocket connection and
  every CometQL connection drops (the clients see their sockets close without a WebSocket Close frame,
  as when a process dies, and the browser's client reconnects with its back-off), the directory
  endpoint restarts too, and ``downtime`` seconds later everything listens again on the same ports.
  What CppComet keeps in MySQL is kept (users_auth, queued messages, pipe history, conference rows);
  what it keeps in memory goes with the connections (subscriptions, presence).  The comet side's ESL
  link to FreeSWITCH is made again (it cures a dead link after a FreeSWITCH restart).
* :meth:`Faults.restart_freeswitch` -- the FreeSWITCH node restarts.  Every SIP connection, every
  registration, every channel and every conference member is gone at once; nothing is sent (no BYE
  reaches a browser: their WebSockets simply close), ESL connections drop, member ids start again at
  1, the media endpoints vanish (the browsers' ICE fails after its timeout, JsSIP ends the session:
  the stale-call trap of spec 6.4).  The comet server's ESL link stays dead (spec 4.2; quirk
  ``comet_esl_link_not_restored``), so ``conference_members`` is empty until the comet server restarts.
* :meth:`Faults.slow_cometql` -- every CometQL query waits ``delay`` seconds before it is executed,
  until :meth:`Faults.clear_slow_cometql`.
* :meth:`Faults.kick` -- ``conference <name> kick <id>``, over an ESL connection as an operator would
  (``via="esl"``, the default) or straight to the bridge (``via="api"``); the member leaves and its
  browser gets a BYE.

Each restart cancels the services in their own cancel scopes (:class:`emulator.stack.Service`) and
starts them again: no task is left behind, and a restarted service is bound to the same port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from emulator.freeswitch.esl_client import EslClient

if TYPE_CHECKING:  # pragma: no cover
    from emulator.stack import Stack

__all__ = ["Faults", "FaultRecord", "FaultError", "COMET_SERVICES", "FREESWITCH_SERVICES"]

#: The services a comet server restart takes down (one CppComet process).
COMET_SERVICES = ("ws", "cometql", "directory")
#: The services a FreeSWITCH restart takes down (one FreeSWITCH process).
FREESWITCH_SERVICES = ("sip_ws", "sip (TCP)", "sip (UDP)", "esl")


class FaultError(RuntimeError):
    """A fault that cannot be applied to this stack (no FreeSWITCH node, unknown conference ...)."""


@dataclass(frozen=True)
class FaultRecord:
    time: float        # trio time
    fault: str         # restart_comet, restart_freeswitch, slow_cometql, kick ...
    detail: str


class Faults:
    """The fault controls of one stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.history: list[FaultRecord] = []

    def _record(self, fault: str, detail: str = "") -> None:
        self.history.append(FaultRecord(trio.current_time(), fault, detail))
        self.stack.journal.record("stack", "fault", data=f"{fault} {detail}".strip())

    async def _restart(self, names: tuple[str, ...], downtime: float) -> None:
        if downtime < 0:
            raise FaultError(f"downtime must be >= 0 seconds, got {downtime!r}")
        services = [self.stack.services[n] for n in names if n in self.stack.services]
        for service in services:
            await service.stop()
        if downtime:
            await trio.sleep(downtime)
        for service in services:
            await service.start()

    # -- comet ---------------------------------------------------------------------------------------
    async def restart_comet(self, *, downtime: float = 0.0) -> None:
        """Restart the comet server (see the module docstring); returns once it listens again."""
        self._record("restart_comet", f"downtime={downtime:g}s")
        if self.stack.esl_links is not None:
            await self.stack.esl_links.close()   # the process's ESL connections die with it
        await self._restart(COMET_SERVICES, downtime)
        if self.stack.esl_links is not None:
            self.stack.esl_links.comet_restarted()
        conference = self.stack.conference
        link = getattr(conference, "xml_list", None) if conference is not None else None
        comet_restarted = getattr(link, "comet_restarted", None)   # the in-process node's link
        if comet_restarted is not None:
            comet_restarted()
        self._record("comet_up", f"ports ws={self.stack.ports.get('ws')} cometql={self.stack.ports.get('cometql')}")

    # -- FreeSWITCH ----------------------------------------------------------------------------------
    async def restart_freeswitch(self, *, downtime: float = 0.0) -> None:
        """Restart the fake FreeSWITCH node (see the module docstring); returns once it listens again."""
        stack = self.stack
        if stack.bridge is None or stack.sip is None:
            raise FaultError("this stack runs no FreeSWITCH node (freeswitch_emulated is off)")
        members = sum(len(c.members) for c in stack.bridge.conferences.values())
        self._record("restart_freeswitch", f"downtime={downtime:g}s members={members} "
                                           f"registrations={len(stack.sip.registrations())}")
        if stack.media_links is not None:
            stack.media_links.restart()          # the browsers' media endpoints vanish
        stack.bridge.restart()                   # no events: the process died
        stack.sip.restart()                      # no BYEs, no answers
        conference = stack.conference
        link = getattr(conference, "xml_list", None) if conference is not None else None
        freeswitch_restarted = getattr(link, "freeswitch_restarted", None)
        if freeswitch_restarted is not None:
            freeswitch_restarted()
        await self._restart(FREESWITCH_SERVICES, downtime)
        self._record("freeswitch_up", f"ports sip_ws={stack.ports.get('sip_ws')} esl={stack.ports.get('esl')}")

    # -- CometQL -------------------------------------------------------------------------------------
    def slow_cometql(self, delay: float) -> None:
        """Every CometQL query waits ``delay`` seconds before it runs (0 clears it)."""
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0 or delay != delay:
            raise FaultError(f"delay must be a number of seconds >= 0, got {delay!r}")
        self.stack.cometql.query_delay = float(delay)
        self._record("slow_cometql", f"delay={delay:g}s")

    def clear_slow_cometql(self) -> None:
        self.slow_cometql(0.0)

    @property
    def cometql_delay(self) -> float:
        return self.stack.cometql.query_delay

    # -- kick ----------------------------------------------------------------------------------------
    def conference_name(self, room: str, dev_id: int) -> str:
        bridge = self.stack.bridge
        if bridge is None:
            raise FaultError("this stack runs no FreeSWITCH node (freeswitch_emulated is off)")
        return bridge.conference_name(dev_id, room)

    async def kick(self, conference: str, member: int | str = "last", *, via: str = "esl",
                   dev_id: int | None = None) -> str:
        """``conference <name> kick <member>``; ``conference`` is the full name
        (``15*101-FSdefaultDomain``) or, with ``dev_id``, the room (``101``).  Returns FreeSWITCH's
        reply (``OK kicked 7``)."""
        stack = self.stack
        if stack.bridge is None:
            raise FaultError("this stack runs no FreeSWITCH node (freeswitch_emulated is off)")
        name = self.conference_name(conference, dev_id) if dev_id is not None else conference
        command = f"conference {name} kick {member}"
        self._record("kick", f"{name} {member} via={via}")
        if via == "api":
            return stack.bridge.api(command).strip()
        if via != "esl":
            raise FaultError(f"via must be 'esl' or 'api', not {via!r}")
        async with await EslClient.connect(stack.network, stack.config.host, stack.ports["esl"],
                                           stack.config.esl_password, client="operator") as esl:
            return (await esl.api(command)).strip()

    def snapshot(self) -> dict[str, Any]:
        return {"cometql_delay": self.cometql_delay,
                "history": [{"t": r.time, "fault": r.fault, "detail": r.detail} for r in self.history]}
