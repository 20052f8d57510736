"""The comet side of video calls: the CometQL tables ``conference`` and ``conference_members``.

:class:`ConferenceService` is the :class:`~emulator.cometql.tables.ConferenceTables` provider the
executor calls.  It is core code (no I/O of its own), following CppComet 4.09's
``MySql_connection.cpp`` as the spec describes it (video-call-flow.md 2.2, 2.3, 4; cometql.md 9.10,
9.11):

* ``INSERT INTO conference`` never talks to FreeSWITCH.  It picks a node by hashing dev_id and room
  name, computes the deterministic callPipe and a fresh callKey, REPLACEs the invitation row into
  the state store's ``conference`` table and pushes ``msg.sys_sipCall`` to every live connection of
  the invited user, or queues it like ``users_messages`` when the user is offline.
* ``SELECT FROM conference`` reads the invitations back; ``DELETE`` removes them (no hangup).
* ``SELECT FROM conference_members`` asks a node for ``api conference xml_list`` through the
  ``xml_list`` callable (the fake FreeSWITCH supplies it) and parses the XML with the real server's
  rules, traps included (:func:`parse_xml_list`).

The pure helpers (:func:`call_pipe`, :func:`node_index`, :func:`sys_sipcall_data`,
:func:`parse_xml_list`) are what the unit tests pin down.
"""

from __future__ import annotations

import base64
import hashlib
import uuid as _uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emulator.cometql.tables import E_NO_FREESWITCH, E_USER_ID_NEGATIVE, SqlError
from emulator.wire import comet as w
from emulator.wire.cnum import c_int, leading_int, scan_int, stoi

if TYPE_CHECKING:  # pragma: no cover
    from emulator.comet.hub import Hub

DEFAULT_PIPESALT = "0000000"  # the shipped comet.ini; the code default is "pipesalt"
DEFAULT_PROFILE = "default"
CALL_PIPE_PREFIX = "web_syscall_v1_"


# --- configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreeswitchNode:
    """One ``[sip] freeswitch = Server=..,Pwd=..,Port=..,WSport=..,WShost=..`` entry (spec 1.1).

    Defaults are the parser's: Server ``localhost``, Pwd ``CueCon`` (sic), Port 0, WSport 7443,
    WShost = Server.
    """

    server: str = "localhost"   # ESL host (Server=)
    esl_port: int = 0           # Port=
    esl_password: str = "CueCon"  # Pwd=
    ws_port: int = 7443         # WSport=: the SIP over WSS port browsers dial
    ws_host: str = ""           # WShost=: the host browsers dial; "" = server

    def __post_init__(self) -> None:
        if not self.ws_host:
            object.__setattr__(self, "ws_host", self.server)

    @property
    def esl_id(self) -> str:
        """The comet server's own id for its ESL link: ``<Server>:<WSport>``."""
        return f"{self.server}:{self.ws_port}"

    @property
    def db_node(self) -> str:
        """What the ``conference.node`` column stores: ``<WShost>:<WSport>``."""
        return f"{self.ws_host}:{self.ws_port}"

    @classmethod
    def from_config(cls, entry: dict | FreeswitchNode) -> FreeswitchNode:
        if isinstance(entry, FreeswitchNode):
            return entry
        known = {"server", "esl_port", "esl_password", "ws_port", "ws_host"}
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} in a [[freeswitch]] node; known: {sorted(known)}")
        kw: dict = {}
        for key, value in entry.items():
            kw[key] = int(value) if key in ("esl_port", "ws_port") else str(value)
        return cls(**kw)


def nodes_from_config(entries: Iterable[dict | FreeswitchNode]) -> list[FreeswitchNode]:
    return [FreeswitchNode.from_config(e) for e in entries]


# --- the pure rules ----------------------------------------------------------------------------------


def sip_number(dev_id: int, name: str, profile: str) -> str:
    """``<dev_id>*<name>*<profile>``, dev_id not padded (2.3.1)."""
    return f"{dev_id}*{name}*{profile}"


def node_index(dev_id: int, name: str, count: int) -> int:
    """The FreeSWITCH node for a room (2.3.2): ``n = dev_id*1000000 + sum(name[i]*10*i)``, ``n mod count``.

    ``name[i]`` is a C ``char`` (signed: UTF-8 bytes >= 0x80 count negative) and ``n % count`` is
    computed as ``long % size_t``, i.e. on ``n`` converted to unsigned 64 bits.  Not reproduced: the
    original multiplies ``dev_id*1000000`` in 32 bits, which overflows for dev_id >= 2148.
    """
    if count <= 0:
        raise ValueError("no FreeSWITCH node")
    n = dev_id * 1000000
    for i, byte in enumerate(name.encode("utf-8", "surrogateescape")):
        n += (byte - 256 if byte >= 128 else byte) * 10 * i
    return (n % 2**64) % count


def call_pipe(sip: str, server_name: str, server_port: int, dev_id: int, pipesalt: str) -> str:
    """The callPipe (2.3.4): SHA-1 of ``"%64s_%64s_%d_%d_%32s"``, base64, prefixed, every char
    outside ASCII ``'A'..'z'`` replaced by ``'A'`` (so always ``web_syscall_vA_`` + 28 chars)."""
    source = b"%64s_%64s_%d_%d_%32s" % (
        sip.encode("utf-8", "surrogateescape"), server_name.encode("utf-8", "surrogateescape"), server_port,
        dev_id, pipesalt.encode("utf-8", "surrogateescape"))
    text = CALL_PIPE_PREFIX + base64.b64encode(hashlib.sha1(source).digest()).decode("ascii")
    return "".join(c if "A" <= c <= "z" else "A" for c in text)


def call_key() -> str:
    """A fresh time-based UUID (libuuid ``uuid_generate_time``): 36 chars, lower-case hex."""
    return str(_uuid.uuid1())


def sys_sipcall_data(*, message: str, key: str, pipe: str, caller_id: int, name: str, profile: str,
                     server_name: str, server_port: int, sip: str, stream: int) -> dict:
    """``data`` of the ``msg.sys_sipCall`` frame (2.3.6): ``conference`` is the *string* "true";
    ``caller_id``, ``serverPort`` and ``stream`` are numbers; no ``type`` field."""
    return {"message": message,
            "sys": {"callKey": key, "callPipe": pipe, "caller_id": caller_id, "conference": "true",
                    "conference_name": name, "mode": profile, "serverName": server_name,
                    "serverPort": server_port, "sipNumber": sip, "stream": stream}}


def sys_sipcall_frame(data: dict) -> dict:
    return {"data": data, "event": "sys_sipCall", "pipe": "msg"}


def valid_room(name: str) -> bool:
    """Room names SELECT/DELETE accept: 1..64 chars of ``[A-Za-z0-9_-]``; others are skipped."""
    return 1 <= len(name) <= w.MAX_NAME and w.valid_name_chars(name)


# --- xml_list parsing (conference_members) ------------------------------------------------------------


def scan_caller_id(text: str) -> tuple[int, int]:
    """``sscanf(caller_id_name, "%6d%d", &dev, &user)`` with both starting at 0: ``000015123`` ->
    (15, 123); a failed conversion leaves its variable (and the following ones) at 0."""
    first = scan_int(text, 0, 6)
    if first is None:
        return 0, 0
    second = scan_int(text, first[1], None)
    return first[0], 0 if second is None else second[0]


def _text(member: ET.Element, tag: str) -> str | None:
    """tinyxml2 ``FirstChildElement(tag)->GetText()``: None when missing or without leading text."""
    element = member.find(tag)
    if element is None:
        return None
    return element.text


def parse_xml_list(body: str | None, dev_id: int, room: str | None = None) -> list[list[str]]:
    """Rows ``[name, user_id, join_time, last_talking]`` from an ``api conference xml_list`` body, read
    the way CppComet reads it (spec 4.2):

    * every child element of the root is a conference; its ``name`` attribute gives the dev id (text
      before the first ``*``, ``std::stoi``, must equal ``dev_id``) and the room (text after it up to
      the next ``*`` or ``-``; empty when neither follows), so a room with ``-`` is cut short;
    * with ``room``, only conferences whose room equals it;
    * the FIRST child element of ``<conference>`` is taken as ``<members>`` (FreeSWITCH 1.10 puts
      ``<variables>`` first, so nothing is found there);
    * members with ``type="caller"`` only; ``caller_id_name`` is read with ``%6d%d``: the 6-digit dev
      must equal ``dev_id``, the rest is the user id; ``join_time`` and ``last_talking`` are copied as
      text (``last_talking`` may be ``N/A``).

    A body that is missing or not XML gives no rows.  Where the original crashes (a conference
    without a name or without children, a caller without ``join_time``/``last_talking``) the
    conference is skipped or the value left empty.
    """
    if not body:
        return []
    try:
        root = ET.fromstring(body.lstrip())
    except ET.ParseError:
        return []
    rows: list[list[str]] = []
    for conference in root:
        name = conference.get("name")
        if name is None:
            continue
        star = name.find("*")
        if star < 0:
            continue  # stoi("") throws
        conference_dev = stoi(name[:star])
        if conference_dev is None or conference_dev != dev_id:
            continue
        rest = name[star + 1:]
        cuts = [i for i in (rest.find("*"), rest.find("-")) if i >= 0]
        room_name = rest[:min(cuts)] if cuts else ""
        if room is not None and room_name != room:
            continue
        members = next(iter(conference), None)
        if members is None:
            continue
        for member in members:
            if member.get("type") != "caller":
                continue
            caller_id_name = _text(member, "caller_id_name")
            if caller_id_name is None:
                continue
            member_dev, member_user = scan_caller_id(caller_id_name)
            if member_dev != dev_id:
                continue
            rows.append([room_name, str(member_user), _text(member, "join_time") or "",
                         _text(member, "last_talking") or ""])
    return rows


# --- the provider --------------------------------------------------------------------------------------


XmlList = Callable[[FreeswitchNode], "str | None"]


class ConferenceService:
    """``conference`` / ``conference_members`` for the executor (tables.ConferenceTables).

    ``xml_list(node)`` returns the body of ``api conference xml_list`` from that node, or None when
    the node cannot be reached; the fake FreeSWITCH sets it (``bridge.api("conference xml_list")``).
    Until then, and for nodes it cannot answer for, conference_members is empty, as with an
    unreachable FreeSWITCH.
    """

    def __init__(self, hub: Hub, nodes: Sequence[FreeswitchNode | dict] = (), *,
                 pipesalt: str = DEFAULT_PIPESALT, xml_list: XmlList | None = None,
                 new_call_key: Callable[[], str] = call_key) -> None:
        self.hub = hub
        self.nodes = nodes_from_config(nodes)
        self.pipesalt = pipesalt
        self.xml_list = xml_list
        self.new_call_key = new_call_key

    # -- INSERT ------------------------------------------------------------------------------------
    def insert_conference(self, dev_id: int, values: dict[str, str]) -> None:
        if not self.nodes:
            raise SqlError(*E_NO_FREESWITCH)
        user_id = c_int(leading_int(values["user_id"]))
        if user_id < 0:  # the executor checked the unwrapped value; a 32-bit wrap can still go negative
            raise SqlError(*E_USER_ID_NEGATIVE)
        name = values["name"]
        message = values["message"]
        caller_id = c_int(leading_int(values.get("caller_id", "")))
        profile = values.get("profile", DEFAULT_PROFILE)
        stream = c_int(leading_int(values.get("stream", "")))  # absent: the original reads garbage; 0 here

        node = self.nodes[node_index(dev_id, name, len(self.nodes))]
        sip = sip_number(dev_id, name, profile)
        data = sys_sipcall_data(
            message=message, key=self.new_call_key(), pipe=call_pipe(sip, node.ws_host, node.ws_port, dev_id,
                                                                     self.pipesalt),
            caller_id=caller_id, name=name, profile=profile, server_name=node.ws_host, server_port=node.ws_port,
            sip=sip, stream=stream)
        hub, store = self.hub, self.hub.store
        now = hub.now()
        store.replace_conference(dev_id, name, user_id, caller_id, message, profile, "", node.db_node, now)
        delivered = hub.push_to_user(dev_id, user_id, sys_sipcall_frame(data))
        if not delivered:
            store.queue_message(dev_id, user_id, hub.new_uuid(), now, "sys_sipCall", w.dumps(data))
        if hub.journal.enabled:
            hub.journal.record("conference", "invite", dev_id=dev_id, user_id=user_id,
                               data=f"{sip} node={node.db_node} callPipe={data['sys']['callPipe']} "
                                    f"delivered={delivered}")

    # -- SELECT / DELETE ---------------------------------------------------------------------------
    def select_conference(self, dev_id: int, names: list[str]) -> list[list[str]]:
        out = []
        for name in names:
            if not valid_room(name):
                continue
            for r in self.hub.store.conference_rows(dev_id, name):
                out.append([name, str(r["user_id"]), str(r["caller_id"]), r["message"], r["profile"], r["stream"],
                            r["node"]])
        return out

    def delete_conference(self, dev_id: int, pairs: list[tuple[str, int | None]]) -> None:
        """Delete invitation rows only: nobody is hung up or told.  ``(name, None)`` (a DELETE without a
        ``user_id`` condition, undefined in the original) deletes every invitation of that room."""
        store = self.hub.store
        for name, user_id in pairs:
            if valid_room(name):
                store.delete_conference(dev_id, name, None if user_id is None else c_int(user_id))

    # -- conference_members ------------------------------------------------------------------------
    def select_members(self, dev_id: int, names: list[str] | None) -> list[list[str]]:
        if not self.nodes:
            return []
        if names is None:  # the original's loop breaks after the first node
            return parse_xml_list(self._xml_list(self.nodes[0]), dev_id)
        rows: list[list[str]] = []
        for name in names:
            if not valid_room(name):
                continue
            for stored in self.hub.store.conference_nodes(dev_id, name):
                # the stored id is <WShost>:<WSport>, the link's <Server>:<WSport>: equal only when WShost == Server
                link = next((n for n in self.nodes if n.esl_id == stored), None)
                if link is not None:
                    rows.extend(parse_xml_list(self._xml_list(link), dev_id, name))
        return rows

    def _xml_list(self, node: FreeswitchNode) -> str | None:
        if self.xml_list is None:
            return None
        try:
            return self.xml_list(node)
        except (OSError, ConnectionError, EOFError) as exc:
            if self.hub.journal.enabled:
                self.hub.journal.record("conference", "xml_list_failed", data=f"{node.esl_id}: {exc!r}")
            return None
