"""A call's timeline as a sequence diagram: who sent what to whom, from the journal.

A *call* here is one scenario run (one journal run).  Its lanes, left to right:

* ``app backend`` -- the application server: its CometQL queries (``cometql query``/``answer``)
  and an operator's ESL commands (``esl command``);
* ``comet server`` -- the CppComet side (WebSocket push, CometQL, the directory endpoint);
* one ``browser`` lane per page (the scenario's actors: doctor, patient, ...; two actors on one user
  id share a lane) -- the WebSocket frames of that user (``comet frame`` in/out), its SIP messages
  (the actor is the ``client`` name a SIP WebSocket was opened with, ``sip ws_open``), and as notes
  the page's latency marks, app callbacks and page-side records (``bench mark``/``callback``, and
  any record of service ``browser`` or ``page`` that a real-browser driver adds);
* ``FreeSWITCH`` -- SIP answers, conference events (notes), media starting to flow (an arrow to
  the browser), directory lookups (an arrow to the comet server).

Steps of the story are separators across the diagram.  Server acknowledgements of ``web_pipe2``
frames (event ``answer``) and the callPipe heartbeat (``ping``/``pong``) are left out: they would
fill the page and say nothing.  A diagram stops after :data:`MAX_ROWS` rows with a note of how
many were left out.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Row", "Diagram", "read_diagram", "MAX_ROWS", "BACKEND", "COMET", "FREESWITCH"]

MAX_ROWS = 90
BACKEND, COMET, FREESWITCH = "app backend", "comet server", "FreeSWITCH"
LABEL_LIMIT = 64
_NOISY_EVENTS = {"ping", "pong"}


@dataclass
class Row:
    t: float                     # seconds since the call's journal run started
    kind: str                    # arrow | note | step
    src: str
    dst: str = ""
    label: str = ""
    detail: str = ""             # full text (tooltip)
    style: str = ""              # sip | comet | cometql | media | mark | callback | fault | failure


@dataclass
class Diagram:
    run_id: str
    lanes: list[str]
    rows: list[Row]
    omitted: int = 0
    title: str = ""
    t0: float = 0.0
    browser_lanes: dict[str, str] = field(default_factory=dict)  # lane -> role description


def _clip(text: str, limit: int = LABEL_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(data: str) -> dict:
    try:
        value = json.loads(data)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _frame_label(direction: str, data: str) -> tuple[str | None, str]:
    """The label of a comet frame, or None to leave it out."""
    if direction == "in":
        parts = data.split("\n")
        command = parts[0] if parts else data
        if command == "web_pipe2" and len(parts) >= 3:
            if parts[2] in _NOISY_EVENTS:
                return None, data
            return f"web_pipe2 {parts[2]} → {parts[1][:24]}", data
        if command == "subscription" and len(parts) >= 2:
            return f"subscription {', '.join(p[:24] for p in parts[1:3])}", data
        return command[:40], data
    frame = _json(data)
    event = frame.get("event")
    if event == "answer" or event in _NOISY_EVENTS:
        return None, data
    sys = (frame.get("data") or {}).get("sys") if isinstance(frame.get("data"), dict) else None
    if isinstance(sys, dict):
        return f"push sys_sipCall ({sys.get('conference_name', '?')})", data
    pipe = frame.get("pipe", "")
    return f"{event or 'frame'}" + (f" [{pipe[:28]}]" if pipe else ""), data


_SIP_FIRST = re.compile(r"^(SIP/2\.0 \d+ [^|]*|[A-Z]+ [^ ]+)")


def _sip_label(data: str) -> str:
    m = _SIP_FIRST.match(data)
    text = m.group(1).strip() if m else data
    if text.startswith(("INVITE", "REGISTER", "ACK", "BYE", "CANCEL", "OPTIONS")):
        text = text.split(" ")[0] + " " + text.split(" ")[1].split("@")[0] if " " in text else text
    return text


def read_diagram(journal: str | Path | sqlite3.Connection, run_id: str, *, max_rows: int = MAX_ROWS,
                 title: str = "") -> Diagram:
    """The sequence diagram of one journal run (see the module docstring)."""
    own = not isinstance(journal, sqlite3.Connection)
    conn = journal if isinstance(journal, sqlite3.Connection) else sqlite3.connect(f"file:{journal}?mode=ro",
                                                                                    uri=True)
    try:
        rows = conn.execute("SELECT t, service, kind, direction, dev_id, user_id, conn_id, data FROM entries "
                            "WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    finally:
        if own:
            conn.close()
    return build_diagram(run_id, rows, max_rows=max_rows, title=title)


def build_diagram(run_id: str, rows: Iterable[tuple], *, max_rows: int = MAX_ROWS, title: str = "") -> Diagram:
    rows = list(rows)
    user_actors: dict[int, list[str]] = {}
    actor_user: dict[str, int] = {}
    for _t, service, kind, _direction, _dev_id, user_id, _conn_id, data in rows:
        if (service in ("bench", "browser", "page") and kind in ("mark", "callback")) or service in ("browser", "page"):
            actor = _json(data).get("actor")
            if actor and user_id is not None:
                actor_user.setdefault(actor, user_id)
    for actor, user in actor_user.items():
        user_actors.setdefault(user, []).append(actor)

    def browser(user_id: int | None, actor: str | None = None) -> str | None:
        if actor and actor in actor_user:
            user_id = actor_user[actor]
        if user_id is None:
            return f"{actor} (browser)" if actor else None
        names = user_actors.get(user_id)
        return f"{'/'.join(names)} (browser)" if names else f"user {user_id} (browser)"

    sip_lane: dict[int, str] = {}
    t0 = rows[0][0] if rows else 0.0
    out: list[Row] = []
    lanes_seen: list[str] = []

    def add(row: Row) -> None:
        out.append(row)
        for lane in (row.src, row.dst):
            if lane and lane not in lanes_seen:
                lanes_seen.append(lane)

    for t, service, kind, direction, _dev_id, user_id, conn_id, data in rows:
        data = data or ""
        rel = (t or t0) - t0
        if service == "bench":
            info = _json(data)
            if kind == "step":
                add(Row(rel, "step", "", label=_clip(info.get("step", ""), 90), detail=info.get("step", "")))
            elif kind == "mark":
                lane = browser(user_id, info.get("actor"))
                if lane:
                    add(Row(rel, "note", lane, label=info.get("mark", "mark"), detail=data, style="mark"))
            elif kind == "callback":
                lane = browser(user_id, info.get("actor"))
                if lane:
                    label = info.get("callback", "callback") + (f" {info['status']}" if info.get("status") else "")
                    add(Row(rel, "note", lane, label=label, detail=data, style="callback"))
            elif kind == "fault":
                add(Row(rel, "arrow", BACKEND, FREESWITCH, _clip(f"fault: {info.get('command', data)}"), data, "fault"))
            elif kind == "expectation" and info.get("passed") is False:
                add(Row(rel, "step", "", label=_clip(f"expectation failed: {info.get('expectation', '')}", 90),
                        detail=data, style="failure"))
        elif service in ("browser", "page"):
            info = _json(data)
            lane = browser(user_id, info.get("actor"))
            if lane:
                add(Row(rel, "note", lane, label=_clip(info.get("mark") or kind, 32), detail=data, style="mark"))
        elif service == "cometql":
            if kind == "query":
                add(Row(rel, "arrow", BACKEND, COMET, _clip(data), data, "cometql"))
            elif kind == "answer":
                add(Row(rel, "arrow", COMET, BACKEND, _clip(data, 40), data, "cometql"))
        elif service == "comet":
            if kind == "frame" and user_id:
                label, detail = _frame_label(direction, data)
                if label is None:
                    continue
                lane = browser(user_id)
                assert lane is not None   # a user id always has a lane
                if direction == "in":
                    add(Row(rel, "arrow", lane, COMET, _clip(label), detail, "comet"))
                else:
                    add(Row(rel, "arrow", COMET, lane, _clip(label), detail, "comet"))
            elif kind in ("connect", "disconnect") and user_id:
                lane = browser(user_id)
                assert lane is not None
                if kind == "connect":
                    add(Row(rel, "arrow", lane, COMET, "WebSocket open (" + _clip(data, 30) + ")", data, "comet"))
                else:
                    add(Row(rel, "arrow", lane, COMET, "WebSocket closed", data, "comet"))
        elif service == "conference" and kind == "invite":
            add(Row(rel, "note", COMET, label=_clip("invite " + data.split(" ")[0], 32), detail=data, style="cometql"))
        elif service == "directory" and kind == "lookup":
            add(Row(rel, "arrow", FREESWITCH, COMET, "directory lookup", data, "sip"))
        elif service == "sip":
            if kind == "ws_open":
                client = data.split(" ")[1].split(":")[0] if " " in data else ""
                lane = browser(None, client) if client else None
                if lane and conn_id is not None:
                    sip_lane[conn_id] = lane
                    add(Row(rel, "arrow", lane, FREESWITCH, "SIP WebSocket open", data, "sip"))
            elif kind == "message" and conn_id in sip_lane:
                label = _clip(_sip_label(data), 40)
                if direction == "in":
                    add(Row(rel, "arrow", sip_lane[conn_id], FREESWITCH, label, data, "sip"))
                else:
                    add(Row(rel, "arrow", FREESWITCH, sip_lane[conn_id], label, data, "sip"))
        elif service == "esl" and kind == "command":
            add(Row(rel, "arrow", BACKEND, FREESWITCH, _clip("ESL " + data, 40), data, "fault"))
        elif service == "freeswitch":
            if kind == "event":
                name = data.split(" ")[0]
                if name.startswith(("add-member", "del-member", "floor-change", "mute-member", "unmute-member",
                                    "kick-member", "conference-create", "conference-destroy")):
                    add(Row(rel, "note", FREESWITCH, label=_clip(name + (" " + data.split("member=")[1].split()[0]
                                                                         if "member=" in data else ""), 32),
                            detail=data, style="sip"))
            elif kind == "media":
                lane = browser(user_id)
                if lane:
                    add(Row(rel, "arrow", FREESWITCH, lane, _clip("media " + data, 40), data, "media"))
            elif kind in ("refused", "signalling_lost"):
                add(Row(rel, "note", FREESWITCH, label=kind, detail=data, style="failure"))
    omitted = max(0, len(out) - max_rows)
    out = out[:max_rows]
    lanes_used = [lane for lane in lanes_seen if any(lane in (r.src, r.dst) for r in out)]
    # browsers in the order their actors first appear in bench records (doctor, patient, ...)
    first_seen = {browser(None, actor): i for i, actor in enumerate(actor_user)}
    browsers = sorted((lane for lane in lanes_used if lane.endswith("(browser)")),
                      key=lambda lane: (first_seen.get(lane, len(first_seen)), lanes_seen.index(lane)))
    order = [lane for lane in (BACKEND, COMET) if lane in lanes_used] + browsers + \
        ([FREESWITCH] if FREESWITCH in lanes_used else [])
    return Diagram(run_id, order, out, omitted, title, t0)


def diagram_json(diagram: Diagram) -> dict[str, Any]:
    return {"run_id": diagram.run_id, "lanes": diagram.lanes, "omitted": diagram.omitted,
            "rows": [{"t": round(r.t, 6), "kind": r.kind, "from": r.src, "to": r.dst, "label": r.label}
                     for r in diagram.rows]}
