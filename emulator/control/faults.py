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
* ``network`` -- ``{"user": ..., "protocol": ..., "profile": "3g"}`` and ``restart`` --
  ``{"service": "comet"|"freeswitch", "downtime": S}``: the link conditions and server restarts of
  ``stack.links`` / ``stack.faults`` (:mod:`emulator.net.links`, :mod:`emulator.faults`); in a build
  without them the answer is 501 and says so.

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
    stack: "Stack"
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
            known = ", ".join(sorted(self.stack.bridge.conferences)) or "none"
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
        reply = self.stack.bridge.api(f"conference {conf.name} kick {member.id}")
        return self._done("kick", {"conference": conf.name, "member": member.id, "reply": reply.strip()})

    async def _fault_mute(self, body: dict, verb: str = "mute") -> dict:
        conf, member = self._member(body)
        reply = self.stack.bridge.api(f"conference {conf.name} {verb} {member.id}")
        return self._done(verb, {"conference": conf.name, "member": member.id, "reply": reply.strip()})

    async def _fault_unmute(self, body: dict) -> dict:
        return await self._fault_mute(body, "unmute")

    async def _fault_conference_limit(self, body: dict) -> dict:
        conf = self._conference(body)
        limit = self._int(body, "max_members", minimum=0)
        before, conf.max_members = conf.max_members, limit
        return self._done("conference_limit", {"conference": conf.name, "max_members": limit, "before": before})

    async def _fault_network(self, body: dict) -> dict:
        links = getattr(self.stack, "links", None)
        if links is None:
            raise ActionError(501, "link conditions are not in this build of the emulator (emulator/net/links.py)")
        raise ActionError(501, "network faults are not wired to this build's link table yet")

    async def _fault_restart(self, body: dict) -> dict:
        faults = getattr(self.stack, "faults", None)
        if faults is None:
            raise ActionError(501, "server restarts are not in this build of the emulator (emulator/faults.py)")
        raise ActionError(501, "restarts are not wired to this build's faults yet")

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
