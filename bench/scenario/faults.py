"""Fault and link actions a story calls: ``s.faults.esl_kick(patient)``, ``s.link(patient).partition(10)``.

What exists now is implemented:

* :meth:`Faults.esl` -- any ``api`` command over a real event-socket connection (client ``ops``):
  what an operator or an app with ESL access does (the comet server never does it);
* :meth:`Faults.esl_kick` / :meth:`Faults.esl_mute` -- ``conference <name> kick|mute|unmute <id>``
  for an actor's current member;
* the page-level faults are actor actions: ``patient.refresh()`` (connections vanish without a
  goodbye), ``patient.close_tab()``, ``patient.go_offline()`` / ``go_online()`` (the browser's
  ``navigator.onLine``).

The rest -- restarting the comet server or FreeSWITCH, a slow CometQL, and every link condition
(latency, jitter, loss, bandwidth, partition, reset, a named profile) -- is the same interface,
raising :class:`~bench.scenario.errors.NotAvailable` with a message saying what it needs until that
machinery is merged.  Every action goes on the timeline as ``fault.<action>`` / ``link.<action>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.clients.esl import EslClient
from bench.scenario.errors import NEEDS_FAULTS, NEEDS_LINKS, NotAvailable, ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from bench.scenario.actors import Actor
    from bench.scenario.story import Scenario

__all__ = ["Faults", "Link"]


class Faults:
    """Server-side faults of the in-process stack."""

    def __init__(self, scenario: Scenario) -> None:
        self._s = scenario

    async def esl(self, command: str) -> str:
        """``api <command>`` over the event socket; the reply text."""
        stack = self._s.stack
        if stack is None or stack.esl is None:
            raise ScenarioError("this stack runs no FreeSWITCH node: no event socket to talk to")
        config = stack.config
        async with await EslClient.connect(self._s.network, config.host, stack.ports["esl"],
                                           password=config.esl_password, client="ops") as esl:
            self._s.timeline.add("fault", "esl", {"command": command})
            reply = await esl.api(command)
        self._s._journal("fault", {"action": "esl", "command": command, "reply": reply.strip()})
        return reply

    async def esl_kick(self, actor: Actor, room: str | None = None) -> str:
        """Kick the actor's member out of the room's conference (FreeSWITCH then sends BYE)."""
        member = actor.member(room)
        if member is None:
            raise ScenarioError(f"{actor.name} has no member in the conference of room {room or actor.room!r}")
        self._s.timeline.add("fault", "esl_kick", {"actor": actor.name, "member": member.id})
        return await self._member_command("kick", member)

    async def esl_mute(self, actor: Actor, mute: bool = True, room: str | None = None) -> str:
        """``conference <name> mute|unmute <id>``: FreeSWITCH's own mute flag (others stop hearing
        the member); the browser is not told."""
        member = actor.member(room)
        if member is None:
            raise ScenarioError(f"{actor.name} has no member in the conference of room {room or actor.room!r}")
        return await self._member_command("mute" if mute else "unmute", member)

    async def _member_command(self, verb: str, member: Any) -> str:
        return await self.esl(f"conference {member.conference.name} {verb} {member.id}")

    async def restart_freeswitch(self) -> None:
        """Every SIP flow and member gone, as a real FreeSWITCH restart."""
        raise NotAvailable(f"restart_freeswitch {NEEDS_FAULTS}")

    async def restart_comet(self) -> None:
        """Every comet connection dropped, state kept."""
        raise NotAvailable(f"restart_comet {NEEDS_FAULTS}")

    async def slow_cometql(self, delay: float) -> None:
        """Every CometQL query answered ``delay`` seconds late."""
        raise NotAvailable(f"slow_cometql {NEEDS_FAULTS}")


class Link:
    """One actor's links to the servers (``s.link(patient)``; ``s.link(patient, "sip")`` for one
    protocol: comet, cometql, sip, media, directory, esl)."""

    PROTOCOLS = ("*", "comet", "cometql", "sip", "media", "directory", "esl")

    def __init__(self, scenario: Scenario, actor: Actor, protocol: str = "*") -> None:
        if protocol not in self.PROTOCOLS:
            raise ScenarioError(f"unknown protocol {protocol!r}; protocols: {', '.join(self.PROTOCOLS)}")
        self._s = scenario
        self.actor = actor
        self.protocol = protocol

    def _needs(self, action: str) -> NotAvailable:
        which = "" if self.protocol == "*" else f", {self.protocol!r}"
        return NotAvailable(f"link({self.actor.name}{which}).{action} {NEEDS_LINKS}")

    async def partition(self, seconds: float | None = None) -> None:
        """Everything the actor sends or receives is dropped (for ``seconds``, or until healed)."""
        raise self._needs("partition")

    async def reset(self) -> None:
        """Every connection of the actor is reset (RST)."""
        raise self._needs("reset")

    async def heal(self) -> None:
        raise self._needs("heal")

    async def half_open(self) -> None:
        """The actor's existing connections stop carrying anything, and neither end is told."""
        raise self._needs("half_open")

    async def latency(self, ms: float, jitter_ms: float = 0.0) -> None:
        raise self._needs("latency")

    async def loss(self, fraction: float) -> None:
        raise self._needs("loss")

    async def bandwidth(self, kbps: float) -> None:
        raise self._needs("bandwidth")

    async def profile(self, name: str) -> None:
        """Switch the actor's links to a named network profile (``loopback``: no conditions)."""
        from bench.scenario.network import check_network

        try:
            check_network(name)
        except NotAvailable:
            raise self._needs(f"profile({name!r})") from None
        self._s.timeline.add("link", "profile", {"actor": self.actor.name, "profile": name})
