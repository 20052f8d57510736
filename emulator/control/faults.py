"""The fault and reset actions of the control plane: what ``POST /api/faults/<name>`` and
``POST /api/reset`` do to a running stack.

Each fault checks its request body first and raises :class:`ActionError` (HTTP 400, or 404 for an
unknown user, conference or member) with a sentence naming the field; a fault the stack cannot do
(no FreeSWITCH node, link conditions not in this build) raises it with HTTP 409/501.  Every fault
applied is journaled (service ``control``, kind ``fault``) and kept in :attr:`Actions.history`.

Faults:

* ``drop_client`` -- ``{"dev_id": D, "user_id": U}``: every comet WebSocket connection of that user
  drops at once (no close frame: the page sees the network vanish, and reconnects);
* ``kick`` -- ``{"conference": NAME, "member": ID}``: ``conference NAME kick ID`` (the member leaves,
  its browser gets a BYE);
* ``mute`` / ``unmute`` -- ``{"conference": NAME, "member": ID}``: FreeSWITCH's own mute flag, as an
  operator's ESL command sets it;
* ``conference_limit`` -- ``{"conference": NAME, "max_members": N}``: a live conference's limit
  (the next joiner past it is refused, as with max-members in its profile);
* ``network`` -- ``{"client": NAME, "protocol": P, "profile": "3g"}`` or an ``action``
  (``partition`` with ``duration``, ``heal``, ``reset``, ``half_open``, ``clear``): the link
  conditions of ``stack.links`` (:mod:`emulator.net.links`); a client is the name its connections
  were opened with (an actor's name), ``*`` for all;
* ``restart`` -- ``{"service": "comet"|"freeswitch", "downtime": S}``: the server restarts of
  ``stack.faults`` (:mod:`emulator.faults`); the request returns when the service listens again.

Resets (``{"what": ["state", "journal", "conferences"]}``, all three by default):

* ``conferences`` -- every member of every conference is hung up (``conference NAME hup all``);
* ``state`` -- every comet connection drops and the stored state (users_auth, users_data, queued
  messages, pipe history, pipes_settings, revoked tokens, conference rows) is forgotten;
* ``journal`` -- a new journal run begins, so a test reads only its own entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:  # pragma: no cover
    from emulator.stack import Stack

__all__ = ["Actions", "ActionError", "FAULTS", "RESETS"]

FAULTS = {
    "drop_client": "drop every comet WebSocket connection of a user (no close frame)",
    "kick": "kick a conference member (FreeSWITCH sends BYE)",
    "mute": "mute a conference member (FreeSWITCH's flag, as over ESL)",
    "unmute": "unmute a conference member",
    "conference_limit": "set a live conference's max-members",
    "network": "apply a network profile (link conditions) to a user's or a protocol's connections",
    "restart": "restart the comet server or the FreeSWITCH node",
}
RESETS = ("conferences", "state", "journal")


class ActionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Actions:
    stack: Stack
    history: list[dict] = field(default_factory=list)

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _int(body: dict, key: str, *, minimum: int | None = None) -> int:
        if key not in body:
            raise ActionError(400, f"missing field {key!r}")
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            else:
                raise ActionError(400, f"{key!r} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ActionError(400, f"{key!r} must be at least {minimum}, got {value}")
        return value

    @staticmethod
    def _str(body: dict, key: str) -> str:
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise ActionError(400, f"missing field {key!r} (a string)" if value is None else
                              f"{key!r} must be a non-empty string, got {value!r}")
        return value

    def _bridge(self) -> Any:
        if self.stack.bridge is None:
            raise ActionError(409, "this emulator runs no FreeSWITCH node (--no-freeswitch)")
        return self.stack.bridge

    def _conference(self, body: dict) -> Any:
        name = self._str(body, "conference")
        conf = self._bridge().conference(name)
        if conf is None:
            known = ", ".join(sorted(self._bridge().conferences)) or "none"
            raise ActionError(404, f"no conference {name!r} (conferences now: {known})")
        return conf

    def _member(self, body: dict) -> tuple[Any, Any]:
        conf = self._conference(body)
        member_id = self._int(body, "member", minimum=1)
        for member in conf.members:
            if member.id == member_id:
                return conf, member
        raise ActionError(404, f"conference {conf.name!r} has no member {member_id} "
                               f"(members: {', '.join(str(m.id) for m in conf.members) or 'none'})")

    def _done(self, fault: str, detail: dict) -> dict:
        record = {"fault": fault, "t": self.stack.clock.now(), **detail}
        self.history.append(record)
        self.stack.journal.record("control", "fault", data=json.dumps(record, sort_keys=True, default=str))
        return record

    # -- faults -----------------------------------------------------------------------------------
    async def apply(self, name: str, body: dict) -> dict:
        if name not in FAULTS:
            raise ActionError(404, f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        if not isinstance(body, dict):
            raise ActionError(400, "the request body must be a JSON object")
        return await getattr(self, f"_fault_{name}")(body)

    async def _fault_drop_client(self, body: dict) -> dict:
        dev_id, user_id = self._int(body, "dev_id", minimum=0), self._int(body, "user_id", minimum=1)
        conns = [c for c in self.stack.hub.connections.values() if c.dev_id == dev_id and c.user_id == user_id]
        if not conns:
            raise ActionError(404, f"user {user_id} of dev_id {dev_id} has no open connection")
        for conn in conns:
            conn.drop()
        await trio.lowlevel.checkpoint()
        return self._done("drop_client", {"dev_id": dev_id, "user_id": user_id, "connections": [c.id for c in conns]})

    async def _fault_kick(self, body: dict) -> dict:
        conf, member = self._member(body)
        reply = self._bridge().api(f"conference {conf.name} kick {member.id}")
        return self._done("kick", {"conference": conf.name, "member": member.id, "reply": reply.strip()})

    async def _fault_mute(self, body: dict, verb: str = "mute") -> dict:
        conf, member = self._member(body)
        reply = self._bridge().api(f"conference {conf.name} {verb} {member.id}")
        return self._done(verb, {"conference": conf.name, "member": member.id, "reply": reply.strip()})

    async def _fault_unmute(self, body: dict) -> dict:
        return await self._fault_mute(body, "unmute")

    async def _fault_conference_limit(self, body: dict) -> dict:
        conf = self._conference(body)
        limit = self._int(body, "max_members", minimum=0)
        before, conf.max_members = conf.max_members, limit
        return self._done("conference_limit", {"conference": conf.name, "max_members": limit, "before": before})

    async def _fault_network(self, body: dict) -> dict:
        """``{"client": NAME or "*", "protocol": P or "*", "profile": NAME}`` sets a link profile;
        ``"action"`` ``partition`` (with ``duration``), ``heal``, ``reset``, ``half_open`` or ``clear``
        does that instead.  ``user`` is accepted for ``client`` (the name the page's connections
        were opened with: an actor's name)."""
        links = getattr(self.stack, "links", None)
        if links is None:
            raise ActionError(501, "link conditions are not in this build of the emulator (emulator/net/links.py)")
        from emulator.net.links import PROTOCOLS, LinkError, profile_names

        client = body.get("client", body.get("user", "*"))
        protocol = body.get("protocol", "*")
        if not isinstance(client, str) or not client:
            raise ActionError(400, f"'client' must be a client name or *, got {client!r}")
        if protocol != "*" and protocol not in PROTOCOLS:
            raise ActionError(400, f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)} or *")
        action = body.get("action", "set")
        actions = ("set", "partition", "heal", "reset", "half_open", "clear")
        if action not in actions:
            raise ActionError(400, f"unknown network action {action!r}; known: {', '.join(actions)}")
        if client != "*":
            known = {c.get("client") for c in links.connections()}
            if client not in known and not links.rules().get((client, protocol)):
                names = ", ".join(sorted(n for n in known if n)) or "none"
                raise ActionError(404, f"no client {client!r} has a connection (clients now: {names})")
        detail: dict = {"client": client, "protocol": protocol, "action": action}
        try:
            if action == "set":
                profile = self._str(body, "profile")
                if profile not in profile_names():
                    raise ActionError(404, f"unknown network profile {profile!r}; known: {', '.join(profile_names())}")
                links.set(profile, client=client, protocol=protocol)
                detail["profile"] = profile
            elif action == "partition":
                duration = body.get("duration")
                if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                             or duration <= 0):
                    raise ActionError(400, f"'duration' must be a positive number of seconds, got {duration!r}")
                links.partition(client=client, protocol=protocol, duration=duration)
                detail["duration"] = duration
            elif action == "heal":
                links.heal(client=client, protocol=protocol)
            elif action == "reset":
                detail["connections"] = links.reset(client=client, protocol=protocol)
            elif action == "half_open":
                detail["connections"] = links.half_open(client=client, protocol=protocol)
            else:
                links.clear(client=client, protocol=protocol)
        except LinkError as exc:
            raise ActionError(400, str(exc)) from None
        return self._done("network", detail)

    async def _fault_restart(self, body: dict) -> dict:
        """``{"service": "comet" | "freeswitch", "downtime": S}``: the process restarts (every
        connection of it drops) and listens again ``downtime`` seconds later (at most 600)."""
        faults = getattr(self.stack, "faults", None)
        if faults is None:
            raise ActionError(501, "server restarts are not in this build of the emulator (emulator/faults.py)")
        service = self._str(body, "service")
        if service not in ("comet", "freeswitch"):
            raise ActionError(400, f"unknown service {service!r} to restart; known: comet, freeswitch")
        downtime = body.get("downtime", 0.0)
        if isinstance(downtime, bool) or not isinstance(downtime, (int, float)) or not 0 <= downtime <= 600:
            raise ActionError(400, f"'downtime' must be 0-600 seconds, got {downtime!r}")
        if service == "freeswitch" and self.stack.bridge is None:
            raise ActionError(409, "this emulator runs no FreeSWITCH node (--no-freeswitch)")
        from emulator.faults import FaultError

        try:
            if service == "comet":
                await faults.restart_comet(downtime=float(downtime))
            else:
                await faults.restart_freeswitch(downtime=float(downtime))
        except FaultError as exc:
            raise ActionError(409, str(exc)) from None
        return self._done("restart", {"service": service, "downtime": downtime})

    # -- resets -----------------------------------------------------------------------------------
    async def reset(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise ActionError(400, "the request body must be a JSON object, e.g. {\"what\": [\"state\"]}")
        what = body.get("what", list(RESETS))
        if isinstance(what, str):
            what = [what]
        if not isinstance(what, list) or not what or not all(isinstance(w, str) for w in what):
            raise ActionError(400, f"'what' must be a list of {', '.join(RESETS)}, got {what!r}")
        unknown = [w for w in what if w not in RESETS]
        if unknown:
            raise ActionError(400, f"unknown reset {unknown[0]!r}; known: {', '.join(RESETS)}")
        done: dict[str, Any] = {}
        if "conferences" in what and self.stack.bridge is not None:
            names = sorted(self.stack.bridge.conferences)
            for name in names:
                self.stack.bridge.api(f"conference {name} hup all")
            done["conferences"] = names
        if "state" in what:
            conns = list(self.stack.hub.connections.values())
            for conn in conns:
                conn.drop()
            self.stack.store.reset()
            done["state"] = {"connections_dropped": len(conns)}
        await trio.lowlevel.checkpoint()
        if "journal" in what:
            done["journal"] = {"run_id": self.stack.journal.new_run()}
        self.stack.journal.record("control", "reset", data=json.dumps({"what": what}, sort_keys=True))
        return {"reset": what, **done}
