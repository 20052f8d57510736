"""JSON views of a running stack's live state, for the control plane's REST API and dashboard.

Each function reads the objects the stack already keeps (the comet hub's tenants and connections,
the fake FreeSWITCH's conferences and members, the SIP core's registrations) and returns plain
JSON-able data; nothing here changes state.  Ids are the emulator's own: a connection id is the
hub's (``conn_id`` in the journal), a member id is mod_conference's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from emulator.stack import Stack

__all__ = ["tenants", "users", "connections", "pipes", "conferences", "conference", "member_user", "summary"]


def member_user(caller_id_name: str) -> tuple[int | None, int | None]:
    """``000015961670`` (the SIP user: 6 digits of dev_id, then the user id) -> (15, 961670)."""
    if len(caller_id_name) > 6 and caller_id_name.isdigit():
        return int(caller_id_name[:6]), int(caller_id_name[6:])
    return None, None


def _connection(conn: Any) -> dict[str, Any]:
    return {"id": conn.id, "dev_id": conn.dev_id, "user_id": conn.user_id, "authorized": conn.authorized,
            "auth": conn.auth_method, "pipes": list(conn.pipes), "ip": conn.ip, "user_agent": conn.user_agent,
            "origin": conn.origin, "open": conn.open}


def connections(stack: Stack, *, dev_id: int | None = None, user_id: int | None = None) -> list[dict]:
    out = [_connection(c) for c in stack.hub.connections.values()
           if (dev_id is None or c.dev_id == dev_id) and (user_id is None or c.user_id == user_id)]
    return sorted(out, key=lambda c: c["id"])


def tenants(stack: Stack) -> list[dict]:
    counts: dict[int, int] = {}
    for conn in stack.hub.connections.values():
        counts[conn.dev_id] = counts.get(conn.dev_id, 0) + 1
    out = []
    for dev_id in sorted(set(stack.hub.tenants) | set(counts)):
        tenant = stack.hub.tenants.get(dev_id)
        out.append({"dev_id": dev_id, "connections": counts.get(dev_id, 0),
                    "users_online": len(tenant.users) if tenant else 0,
                    "pipes": len(tenant.pipes) if tenant else 0,
                    "messages": tenant.messages if tenant else 0})
    return out


def users(stack: Stack, dev_id: int) -> list[dict]:
    tenant = stack.hub.tenants.get(dev_id)
    if tenant is None:
        return []
    return [{"dev_id": dev_id, "user_id": uid, "connections": sorted(conns)}
            for uid, conns in sorted(tenant.users.items()) if conns]


def pipes(stack: Stack, *, dev_id: int | None = None) -> list[dict]:
    out = []
    for tid, tenant in sorted(stack.hub.tenants.items()):
        if dev_id is not None and tid != dev_id:
            continue
        for name, subs in sorted(tenant.pipes.items()):
            if subs:
                out.append({"dev_id": tid, "pipe": name, "subscribers": len(subs),
                            "users": sorted({c.user_id for c in subs.values() if c.user_id})})
    return out


def _member(m: Any) -> dict[str, Any]:
    dev_id, user_id = member_user(m.channel.caller_id_name)
    return {"id": m.id, "dev_id": dev_id, "user_id": user_id, "caller_id": m.channel.caller_id_number,
            "uuid": m.uuid, "talking": m.talking, "muted": not m.can_speak, "deaf": not m.can_hear,
            "video_muted": not m.can_be_seen, "floor": m.has_floor, "video_floor": m.has_video_floor,
            "moderator": m.moderator, "media": m.media, "hold": m.hold, "signalling_lost": m.signalling_lost,
            "energy": m.score if m.talking else 0, "joined_at": m.joined_at}


def _conference(conf: Any) -> dict[str, Any]:
    dev, _, rest = conf.name.partition("*")
    room = rest.rsplit("-", 1)[0] if rest else conf.name
    return {"name": conf.name, "dev_id": int(dev) if dev.isdigit() else None, "room": room,
            "profile": conf.profile_name, "max_members": conf.max_members, "count": conf.count,
            "recording": bool(conf.recordings), "members": [_member(m) for m in reversed(conf.members)]}


def conferences(stack: Stack) -> list[dict]:
    if stack.bridge is None:
        return []
    return [_conference(c) for _, c in sorted(stack.bridge.conferences.items())]


def conference(stack: Stack, name: str) -> dict | None:
    if stack.bridge is None:
        return None
    conf = stack.bridge.conference(name)
    return _conference(conf) if conf is not None else None


def summary(stack: Stack) -> dict[str, Any]:
    confs = stack.bridge.conferences.values() if stack.bridge is not None else []
    members = [m for c in confs for m in c.members]
    sip = stack.sip.snapshot() if stack.sip is not None else {}
    return {"profile": stack.profile.name, "ports": dict(stack.ports), "journal_run": stack.journal.run_id,
            "journal_stored": stack.journal.stored, "connections": len(stack.hub.connections),
            "tenants": len(stack.hub.tenants), "conferences": len(list(confs)), "members": len(members),
            "talking": sum(1 for m in members if m.talking), "muted": sum(1 for m in members if not m.can_speak),
            "sip_registrations": sip.get("registrations", 0), "sip_dialogs": sip.get("dialogs", 0),
            "comet": dict(stack.hub.stats)}
