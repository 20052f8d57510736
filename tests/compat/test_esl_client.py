"""A third-party ESL client (npm ``modesl``, node) against the fake FreeSWITCH's event socket.

``tests/compat/esl_modesl_client.mjs`` connects to ``stack.ports["esl"]``; modesl answers the
``auth/request`` itself and subscribes ``event <plain|json> CUSTOM conference::maintenance``.  The
test drives it over stdin/stdout (one JSON object per line) while it changes the bridge in-process:

* ``api conference list`` with no conference, then with one member;
* a member joins (``stack.bridge.join`` with a :class:`Channel`, as the SIP layer does on a 200):
  ``conference-create`` and ``add-member`` arrive with the spec's headers (video-call-flow.md 5.6);
* ``api conference <name> mute <id>``: FreeSWITCH 1.6's reply ``OK mute <id>`` and a ``mute-member``
  event with ``Speak: false``; an unknown member id gets 1.6's ``Non-Existant ID``;
* the member leaves (``stack.bridge.leave``): ``del-member`` then ``conference-destroy``;
* the same in each event format modesl reads: ``plain``, ``json`` and ``xml``;
* a wrong password: modesl sees ``-ERR invalid``, then the disconnect notice, then the close (5.8).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import urllib.parse
from typing import Any

import pytest
import trio

from emulator.freeswitch.conference import Channel
from tests.compat.conftest import NODE_MODULES, ROOT, require_tool

pytestmark = pytest.mark.compat

SCRIPT = ROOT / "tests" / "compat" / "esl_modesl_client.mjs"
CONFERENCE = "15*101-FSdefaultDomain"
CALLER = "000015503"
TIMEOUT = 15

# video-call-flow.md 5.6: on every conference event / added on member events
CONFERENCE_HEADERS = ("Conference-Name", "Conference-Domain", "Conference-Size", "Conference-Ghosts",
                      "Conference-Profile-Name", "Conference-Unique-ID")
MEMBER_HEADERS = ("Floor", "Video", "Hear", "See", "Speak", "Talking", "Mute-Detect", "Member-ID", "Member-Type",
                  "Energy-Level", "Current-Energy", "Unique-ID", "Caller-Caller-ID-Name",
                  "Caller-Caller-ID-Number", "Action")


def modesl_available() -> bool:
    return shutil.which("node") is not None and (NODE_MODULES / "modesl" / "package.json").is_file()


@pytest.fixture
def node() -> str:
    require_tool("node + npm package modesl", modesl_available, "run `npm install` at the repository root")
    return shutil.which("node")  # type: ignore[return-value]




class Client:
    """The node process: JSON lines out (``send``), JSON lines in (``next``)."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.buffer = b""
        self.seen: list[dict] = []        # everything received, in order
        self.pending: list[dict] = []     # received and not yet taken by next()
        self._ids = iter(range(1, 1_000_000))

    @staticmethod
    def _matches(msg: dict, kind: str | None, match: dict[str, Any]) -> bool:
        if kind is not None and msg["type"] != kind:
            return False
        fields = msg.get("h", {}) if msg["type"] == "event" else msg
        return all(fields.get(k) == v for k, v in match.items())

    async def next(self, kind: str | None = None, **match: Any) -> dict:
        """The first message not yet taken of ``kind`` (an ``event`` whose headers include ``match``).

        Others stay pending: an event may come before or after the api reply of the command that caused it.
        """
        with trio.fail_after(TIMEOUT):
            while True:
                for i, msg in enumerate(self.pending):
                    if self._matches(msg, kind, match):
                        return self.pending.pop(i)
                while b"\n" not in self.buffer:
                    assert self.proc.stdout is not None
                    data = await self.proc.stdout.receive_some(65536)
                    if not data:
                        raise AssertionError(f"modesl client ended; waiting for {kind} {match}; saw {self.seen}")
                    self.buffer += data
                line, self.buffer = self.buffer.split(b"\n", 1)
                msg = json.loads(line)
                if msg["type"] == "event":
                    msg["raw"] = dict(msg["headers"])
                    # FreeSWITCH url-encodes header values in XML events too (add_xml_header ->
                    # switch_url_encode); modesl decodes them for plain only
                    xml = msg["contentType"] == "text/event-xml"
                    msg["h"] = {k: urllib.parse.unquote(v) if xml else v for k, v in msg["raw"].items()}
                self.seen.append(msg)
                self.pending.append(msg)

    async def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all((json.dumps(obj) + "\n").encode())

    async def api(self, command: str) -> str:
        ident = next(self._ids)
        await self.send({"api": command, "id": ident})
        return (await self.next("api", id=ident))["body"]


async def start_client(nursery: trio.Nursery, node: str, stack, password: str, fmt: str) -> Client:
    proc = await nursery.start(functools.partial(
        trio.run_process, [node, str(SCRIPT), "127.0.0.1", str(stack.ports["esl"]), password, fmt], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False))
    return Client(proc)


def channel(n: int = 1) -> Channel:
    return Channel(uuid=f"00000000-0000-4000-8000-{n:012d}", caller_id_name=CALLER, caller_id_number=CALLER,
                   destination_number="15*101*video", username=CALLER, media_delay=None)


def check_member_event(h: dict, action: str, member_id: int, size: int) -> None:
    missing = [k for k in CONFERENCE_HEADERS + MEMBER_HEADERS if k not in h]
    assert not missing, f"{action}: missing {missing}"
    assert h["Event-Name"] == "CUSTOM" and h["Event-Subclass"] == "conference::maintenance"
    assert h["Action"] == action
    assert h["Conference-Name"] == CONFERENCE and h["Conference-Domain"] == "FSdefaultDomain"
    assert h["Conference-Profile-Name"] == "video" and h["Conference-Size"] == str(size)
    assert h["Member-ID"] == str(member_id) and h["Member-Type"] == "member"
    assert h["Caller-Caller-ID-Name"] == CALLER and h["Caller-Caller-ID-Number"] == CALLER
    assert h["Unique-ID"] == channel().uuid
    for flag in ("Floor", "Video", "Hear", "See", "Speak", "Talking", "Mute-Detect"):
        assert h[flag] in ("true", "false"), (flag, h[flag])


@pytest.mark.parametrize("fmt", ["plain", "json", "xml"])
async def test_modesl_api_and_conference_events(node, stack, fmt):
    async with trio.open_nursery() as nursery:
        client = await start_client(nursery, node, stack, "ClueCon", fmt)
        auth = await client.next("auth")
        assert auth["ok"] is True
        sub = await client.next("subscribed")
        assert sub["reply"] == f"+OK event listener enabled {fmt}"

        # FreeSWITCH 1.6 (fs_reply_without_plus): no "+OK" prefix
        plus = "+OK " if stack.bridge.plus_replies else ""
        assert (await client.api("conference list")).strip() == f"{plus}No active conferences."

        member = stack.bridge.join(CONFERENCE, "video", channel())
        create = await client.next("event", Action="conference-create")
        assert create["contentType"] == f"text/event-{fmt}"
        assert all(k in create["h"] for k in CONFERENCE_HEADERS), create["h"]
        add = await client.next("event", Action="add-member")
        check_member_event(add["h"], "add-member", member.id, 1)
        assert add["h"]["Video"] == "true" and add["h"]["Speak"] == "true" and add["h"]["Hear"] == "true"
        assert add["h"]["Conference-Unique-ID"] == create["h"]["Conference-Unique-ID"]

        listing = await client.api("conference list")
        assert listing.startswith(f"+OK Conference {CONFERENCE} (1 member") or \
            listing.startswith(f"Conference {CONFERENCE} (1 member"), listing
        row = listing.splitlines()[1].split(";")
        assert row[0] == str(member.id) and row[2] == channel().uuid and row[3] == CALLER and row[4] == CALLER, row
        assert "hear" in row[5] and "speak" in row[5], row

        reply = await client.api(f"conference {CONFERENCE} mute {member.id}")
        assert reply == (f"+OK mute {member.id}\n" if plus else f"OK mute {member.id}\n")
        mute = await client.next("event", Action="mute-member")
        check_member_event(mute["h"], "mute-member", member.id, 1)
        assert mute["h"]["Speak"] == "false"
        assert not stack.bridge.member(member.id).can_speak

        unknown = await client.api(f"conference {CONFERENCE} mute 9999")
        assert unknown == ("-ERR Member: 9999 not found.\n" if plus else "Non-Existant ID 9999\n")

        assert stack.bridge.leave(member.id)
        gone = await client.next("event", Action="del-member")
        check_member_event(gone["h"], "del-member", member.id, 0)
        destroy = await client.next("event", Action="conference-destroy")
        assert destroy["h"]["Conference-Unique-ID"] == create["h"]["Conference-Unique-ID"]
        assert (await client.api("conference list")).strip() == f"{plus}No active conferences."

        # exactly the conference::maintenance events, in order (CHANNEL_* were not subscribed)
        actions = [m["h"].get("Action") for m in client.seen if m["type"] == "event"]
        assert actions[0] == "conference-create" and actions[-1] == "conference-destroy", actions
        assert actions.index("add-member") < actions.index("mute-member") < actions.index("del-member")
        assert {m["h"]["Event-Subclass"] for m in client.seen if m["type"] == "event"} == {"conference::maintenance"}

        await client.send({"exit": True})
        await client.next("end")
        assert client.proc.returncode in (None, 0)


async def test_event_values_are_encoded_as_freeswitch_does(node, stack):
    """modesl hands XML event values over undecoded, so the test sees FreeSWITCH's encoding as sent."""
    async with trio.open_nursery() as nursery:
        client = await start_client(nursery, node, stack, "ClueCon", "xml")
        await client.next("subscribed")
        stack.bridge.join(CONFERENCE, "video", channel())
        add = await client.next("event", Action="add-member")
        raw = add["raw"]
        assert raw["Event-Subclass"] == "conference%3A%3Amaintenance"        # ':' is unsafe
        assert raw["Caller-Channel-Name"] == f"sofia/internal/{CALLER}%40127.0.0.1", raw["Caller-Channel-Name"]
        assert raw["Conference-Name"] == CONFERENCE, raw["Conference-Name"]   # video-call-flow.md 5.6 sample
        nursery.cancel_scope.cancel()


async def test_modesl_wrong_password_is_refused(node, stack):
    async with trio.open_nursery() as nursery:
        client = await start_client(nursery, node, stack, "not-ClueCon", "plain")
        auth = await client.next("auth")
        assert auth == {"type": "auth", "ok": False, "reply": "-ERR invalid"}
        notice = await client.next("disconnect")
        assert notice["body"].startswith("Disconnected, goodbye.")
        await client.next("end")
    assert client.proc.returncode == 0
    assert not any(m["type"] == "subscribed" for m in client.seen)
    failed = stack.journal.entries(service="esl", kind="auth_failed")
    assert len(failed) == 1
