"""Fault and link actions a story calls: ``s.faults.restart_comet()``, ``s.link(patient).lose_network(60)``.

Both sit on the in-process stack's own controls -- :attr:`stack.faults <emulator.faults.Faults>` for
what the servers do when they fail, :attr:`stack.links <emulator.net.links.Links>` for what the
network does -- and put every action on the story's timeline, so expectations can be scoped by them:

* ``fault.<action>`` when a fault starts (``fault.restart_comet``, ``fault.restart_freeswitch``,
  ``fault.slow_cometql``, ``fault.esl``, ``fault.esl_kick``), ``fault.comet_up`` /
  ``fault.freeswitch_up`` when a restarted server listens again;
* ``link.<change>`` for every change of an actor's links, whoever made it (a story, a scheduled
  heal): ``link.set`` (a profile or a field changed), ``link.partition``, ``link.heal``,
  ``link.half_open``, ``link.reset``, ``link.offline`` / ``link.online`` (a lost network), each with
  ``actor`` and ``protocol``.

:class:`Faults` (``s.faults``):

* :meth:`Faults.restart_comet` -- the CppComet process restarts: every WebSocket and CometQL
  connection drops (no Close frame), state in MySQL is kept, the listeners are back after
  ``downtime`` seconds;
* :meth:`Faults.restart_freeswitch` -- the FreeSWITCH node restarts: every SIP flow, registration and
  conference member gone without a BYE, media endpoints gone (the browsers' ICE fails), the comet
  server's ESL link dead until it restarts itself (quirk ``comet_esl_link_not_restored``);
* :meth:`Faults.slow_cometql` / :meth:`Faults.clear_slow_cometql` -- every CometQL query waits;
* :meth:`Faults.esl`, :meth:`Faults.esl_kick`, :meth:`Faults.esl_mute` -- ``api`` commands over a real
  event-socket connection (client ``ops``), what an operator or an app with ESL access does (the comet
  server never does).  The connection is the project's one ESL client
  (:class:`emulator.freeswitch.esl_client.EslClient`, the same the comet server's link uses).

:class:`Link` (``s.link(actor)``, ``s.link(actor, "sip")`` for one protocol): :meth:`Link.profile`,
:meth:`Link.latency`, :meth:`Link.loss`, :meth:`Link.bandwidth`, :meth:`Link.clear`,
:meth:`Link.partition` (a silent blackhole: nobody is told, bytes arrive late when it heals),
:meth:`Link.heal`, :meth:`Link.half_open`, :meth:`Link.reset`, and :meth:`Link.lose_network` (the
device's own network goes: the page goes offline, its connections fail on its side, the servers are
not told; :meth:`Link.regain_network`).  Every action returns at once; ``seconds=`` schedules the end.

Each needs the in-process stack; against an external target (``--target``) it raises
:class:`~bench.scenario.errors.NotAvailable` naming what it needs (a scenario file declares such
needs in ``NEEDS``, and the runner skips it against a target before it starts).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

from bench.scenario.errors import ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from bench.scenario.actors import Actor
    from bench.scenario.story import Scenario

__all__ = ["Faults", "Link", "LINK_EVENTS", "FAULT_EVENTS"]

#: The ``fault.<what>`` events of the timeline.
FAULT_EVENTS = frozenset({"esl", "esl_kick", "esl_mute", "restart_comet", "comet_up", "restart_freeswitch",
                          "freeswitch_up", "slow_cometql"})
#: The ``link.<what>`` events of the timeline (the link table's changes, emulator.net.links.LinkChange).
LINK_EVENTS = frozenset({"set", "partition", "heal", "half_open", "reset", "offline", "online"})


def _required_seconds(value: Any, what: str) -> float:
    seconds = _seconds(value, what, allow_none=False)
    assert seconds is not None   # allow_none=False gives a number or raises
    return seconds


def _seconds(value: Any, what: str, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0 \
            or math.isinf(value):
        raise ScenarioError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)


class Faults:
    """Server-side faults of the in-process stack (see the module docstring)."""

    def __init__(self, scenario: Scenario) -> None:
        self._s = scenario

    def _stack(self, action: str, power: str = "faults") -> Any:
        self._s.require(power, action)
        return self._s.stack

    # -- restarts ----------------------------------------------------------------------------------
    async def restart_comet(self, *, downtime: float = 0.0) -> None:
        """Restart the comet server; returns once it listens again (``downtime`` seconds later)."""
        stack = self._stack("s.faults.restart_comet()")
        downtime = _required_seconds(downtime, "downtime")
        self._s.timeline.add("fault", "restart_comet", {"downtime": downtime})
        self._s._journal("fault", {"action": "restart_comet", "downtime": downtime})
        await stack.faults.restart_comet(downtime=downtime)
        self._s.timeline.add("fault", "comet_up")

    async def restart_freeswitch(self, *, downtime: float = 0.0) -> None:
        """Restart the FreeSWITCH node; returns once it listens again (``downtime`` seconds later)."""
        stack = self._stack("s.faults.restart_freeswitch()")
        downtime = _required_seconds(downtime, "downtime")
        if stack.bridge is None:
            raise ScenarioError("this stack runs no FreeSWITCH node (freeswitch_emulated is off)")
        self._s.timeline.add("fault", "restart_freeswitch", {"downtime": downtime})
        self._s._journal("fault", {"action": "restart_freeswitch", "downtime": downtime})
        self._s._member_actor.clear()          # member ids start again at 1
        await stack.faults.restart_freeswitch(downtime=downtime)
        self._s.timeline.add("fault", "freeswitch_up")

    # -- CometQL ------------------------------------------------------------------------------------
    def slow_cometql(self, delay: float) -> None:
        """Every CometQL query waits ``delay`` seconds before it runs, until :meth:`clear_slow_cometql`
        (or ``slow_cometql(0)``)."""
        stack = self._stack("s.faults.slow_cometql()")
        delay = _required_seconds(delay, "the CometQL delay")
        self._s.timeline.add("fault", "slow_cometql", {"delay": delay})
        self._s._journal("fault", {"action": "slow_cometql", "delay": delay})
        stack.faults.slow_cometql(delay)

    def clear_slow_cometql(self) -> None:
        self.slow_cometql(0.0)

    # -- ESL -----------------------------------------------------------------------------------------
    async def esl(self, command: str) -> str:
        """``api <command>`` over the event socket; the reply text."""
        from emulator.freeswitch.esl_client import EslClient, EslConnectionError

        stack = self._stack(f"s.faults.esl({command!r})", "freeswitch")
        if stack.esl is None:
            raise ScenarioError("this stack runs no FreeSWITCH node: no event socket to talk to")
        if not isinstance(command, str) or not command.strip() or "\n" in command or "\r" in command:
            raise ScenarioError(f"an ESL command is one non-empty line, not {command!r}")
        config = stack.config
        self._s.timeline.add("fault", "esl", {"command": command})
        try:
            async with await EslClient.connect(self._s.network, config.host, stack.ports["esl"],
                                               config.esl_password, client="ops") as esl:
                reply = await esl.api(command)
        except EslConnectionError as exc:
            raise ScenarioError(f"ESL command {command!r} failed: {exc}") from None
        self._s._journal("fault", {"action": "esl", "command": command, "reply": reply.strip()})
        return reply

    async def esl_kick(self, actor: Actor, room: str | None = None) -> str:
        """Kick the actor's member out of the room's conference (FreeSWITCH then sends BYE)."""
        member = self._member(actor, room, "esl_kick")
        self._s.timeline.add("fault", "esl_kick", {"actor": actor.name, "member": member.id})
        return await self.esl(f"conference {member.conference.name} kick {member.id}")

    async def esl_mute(self, actor: Actor, mute: bool = True, room: str | None = None) -> str:
        """``conference <name> mute|unmute <id>``: FreeSWITCH's own mute flag (others stop hearing
        the member); the browser is not told."""
        member = self._member(actor, room, "esl_mute")
        self._s.timeline.add("fault", "esl_mute", {"actor": actor.name, "member": member.id, "mute": mute})
        return await self.esl(f"conference {member.conference.name} {'mute' if mute else 'unmute'} {member.id}")

    def _member(self, actor: Actor, room: str | None, action: str) -> Any:
        self._s.require("freeswitch", f"s.faults.{action}({actor.name})")
        member = actor.member(room)
        if member is None:
            raise ScenarioError(f"{actor.name} has no member in the conference of room {room or actor.room!r}")
        return member


class Link:
    """One actor's links to the servers (``s.link(patient)``; ``s.link(patient, "sip")`` for one
    protocol: comet, cometql, sip, media, directory, esl).  See the module docstring."""

    PROTOCOLS = ("*", "comet", "cometql", "sip", "media", "directory", "esl")

    def __init__(self, scenario: Scenario, actor: Actor, protocol: str = "*") -> None:
        if protocol not in self.PROTOCOLS:
            raise ScenarioError(f"unknown protocol {protocol!r}; protocols: {', '.join(self.PROTOCOLS)}")
        self._s = scenario
        self.actor = actor
        self.protocol = protocol

    def __repr__(self) -> str:
        which = "" if self.protocol == "*" else f", {self.protocol!r}"
        return f"link({self.actor.name}{which})"

    def _links(self, action: str) -> Any:
        self._s.require("links", f"{self!r}.{action}")
        return self._s.stack.links

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from emulator.net.links import LinkError

        try:
            return fn(*args, **kwargs)
        except LinkError as exc:
            raise ScenarioError(f"{self!r}.{action}: {exc}") from None

    # -- conditions ---------------------------------------------------------------------------------
    def profile(self, name: str) -> None:
        """Switch the actor's links to a named network profile (fixtures/network_profiles.toml;
        ``loopback``: no conditions)."""
        from emulator.net.links import profile_names

        links = self._links(f"profile({name!r})")
        if name not in profile_names():
            raise ScenarioError(f"unknown network profile {name!r}; known: {', '.join(profile_names())}")
        self._call("profile", links.set, name, client=self.actor.name, protocol=self.protocol)

    def latency(self, rtt_ms: float, jitter_ms: float | None = None) -> None:
        """Round-trip time (and jitter) of the actor's links, in milliseconds."""
        links = self._links("latency")
        changes = {"rtt_ms": rtt_ms, **({"jitter_ms": jitter_ms} if jitter_ms is not None else {})}
        self._call("latency", links.update, client=self.actor.name, protocol=self.protocol, **changes)

    def loss(self, fraction: float) -> None:
        """Packet loss, 0..1 (a TCP stall of one retransmission timeout per lost segment)."""
        links = self._links("loss")
        self._call("loss", links.update, client=self.actor.name, protocol=self.protocol, loss=fraction)

    def bandwidth(self, kbps: float) -> None:
        """Capacity per direction in kbit/s (0: unlimited)."""
        links = self._links("bandwidth")
        self._call("bandwidth", links.update, client=self.actor.name, protocol=self.protocol, bandwidth_kbps=kbps)

    def clear(self) -> None:
        """No conditions any more (the run's network profile no longer applies either)."""
        links = self._links("clear")
        self._call("clear", links.clear, client=self.actor.name, protocol=self.protocol)

    # -- events ------------------------------------------------------------------------------------
    def partition(self, seconds: float | None = None) -> None:
        """A silent blackhole: nothing the actor sends or receives arrives, and nobody is told (no
        FIN, no RST) -- for ``seconds``, or until :meth:`heal`.  Bytes written meanwhile arrive at the
        senders' next TCP retransmissions after the heal; datagrams and media are lost."""
        links = self._links("partition")
        seconds = _seconds(seconds, "partition seconds")
        self._call("partition", links.partition, client=self.actor.name, protocol=self.protocol, duration=seconds)

    def heal(self) -> None:
        links = self._links("heal")
        self._call("heal", links.heal, client=self.actor.name, protocol=self.protocol)

    def half_open(self) -> int:
        """The actor's existing connections stop carrying anything, and neither end is told; how many."""
        links = self._links("half_open")
        return self._call("half_open", links.half_open, client=self.actor.name, protocol=self.protocol)

    def reset(self) -> int:
        """Every connection of the actor is reset (both ends see ECONNRESET); how many."""
        links = self._links("reset")
        return self._call("reset", links.reset, client=self.actor.name, protocol=self.protocol)

    def lose_network(self, seconds: float | None = None) -> int:
        """The device's own network goes away (Wi-Fi drops, a tunnel) for ``seconds`` (or until
        :meth:`regain_network`): the page goes offline (``navigator.onLine`` false), its connections
        fail on its side at once (its WebSockets close uncleanly) and new ones fail while it is
        offline; the servers hear nothing -- their ends hang until the network is back, when they
        meet a reset -- and its media stops.  Returns how many connections it had."""
        if self.protocol != "*":
            raise ScenarioError(f"{self!r}.lose_network: a device loses its whole network; use s.link(actor) "
                                "without a protocol (or partition() for one protocol)")
        links = self._links("lose_network")
        seconds = _seconds(seconds, "lose_network seconds")
        self.actor.go_offline()
        hit = self._call("lose_network", links.lose_network, client=self.actor.name)
        if seconds is not None:
            async def comeback() -> None:
                await trio.sleep(seconds)
                self.regain_network()

            self._s._nursery.start_soon(comeback)
        return hit

    def regain_network(self) -> None:
        """The device's network is back: the page goes online, connections work again."""
        links = self._links("regain_network")
        if not links.offline(self.actor.name):
            return
        self._call("regain_network", links.regain_network, client=self.actor.name)
        self.actor.go_online()
