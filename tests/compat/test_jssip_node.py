"""The fake FreeSWITCH's registrar against a real SIP stack: JsSIP 3.x in node over WSS.

``jssip_node_client.mjs`` runs an unmodified ``JsSIP.UA`` (npm ``jssip@3``) with the ``ws``
package as its global ``WebSocket``; TLS is verified against the emulator's local CA through
``NODE_EXTRA_CA_CERTS``.  The UA is configured as cometVideoApi configures it
(video-call-flow.md 2.5 step 6; real-video-client.md 4 and 6.2): SIP user = 6-digit dev_id +
user_id, password = the users_auth hash, ``registrar_server sip:<host>``, subprotocol ``sip``.

Covered: REGISTER → 401 digest → 200 (``registered``, and the binding in ``stack.sip``);
refresh before expiry; a wrong password (403 → ``registrationFailed``); a closed WebSocket
(no un-REGISTER, as a closed page) removes the binding.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.compat.conftest import NODE_MODULES, JsonLinesProcess, require_tool

pytestmark = pytest.mark.compat

SCRIPT = Path(__file__).with_name("jssip_node_client.mjs")
TIMEOUT = 10
DEV, USER, HASH = 15, 503, "PassForUser503"
STACK_USERS = [(DEV, USER, HASH)]   # users_auth rows of the conftest `stack` fixture
SIP_USER = f"{DEV:06d}{USER}"  # "000015503"


def jssip3_available() -> bool:
    if shutil.which("node") is None or not (NODE_MODULES / "ws" / "package.json").is_file():
        return False
    meta = NODE_MODULES / "jssip" / "package.json"
    return meta.is_file() and json.loads(meta.read_text())["version"].startswith("3.")


@pytest.fixture
def node() -> str:
    require_tool("node + npm packages jssip@3 and ws", jssip3_available,
                 "run `npm install` at the repository root")
    return shutil.which("node")  # type: ignore[return-value]




def start_line(text: str) -> str:
    return text.split("\r\n", 1)[0]


def header(text: str, name: str) -> str | None:
    m = re.search(rf"^{name}:[ \t]*(.*?)\r?$", text.split("\r\n\r\n", 1)[0], re.IGNORECASE | re.MULTILINE)
    return m.group(1) if m else None


def cseq(text: str) -> int:
    return int((header(text, "CSeq") or "0").split()[0])


class JsSipNode(JsonLinesProcess):
    """One ``node jssip_node_client.mjs`` process: JSON commands in, JSON events out."""

    async def wait_for(self, predicate, what: str, timeout: float = TIMEOUT) -> dict:
        return await super().wait_for(predicate, what, timeout)

    async def wait_ua(self, name: str, timeout: float = TIMEOUT) -> dict:
        return await self.wait_for(lambda e: e["ev"] == "ua" and e["name"] == name, f"UA event {name!r}", timeout)

    def sip(self, direction: str) -> list[str]:
        return [e["text"] for e in self.events if e["ev"] == f"sip_{direction}"]

    async def start(self, port: int, *, password: str = HASH, register_expires: int = 600) -> None:
        await self.do("start", ws_url=f"wss://127.0.0.1:{port}", uri=f"sip:{SIP_USER}@127.0.0.1",
                      password=password, authorization_user=SIP_USER, display_name=SIP_USER,
                      registrar_server="sip:127.0.0.1", register_expires=register_expires)


@asynccontextmanager
async def jssip(node: str, stack, *, trust_ca: bool = True):
    """A running JsSIP node process, ended (and reaped) when the block exits."""
    env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"}
    env["JSSIP_CLIENT_DEADLINE_MS"] = "30000"
    if trust_ca:
        env["NODE_EXTRA_CA_CERTS"] = str(stack.certificates.ca_cert)
    process = await trio.lowlevel.open_process([node, str(SCRIPT)], stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, env=env)
    client = JsSipNode(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read)
            try:
                await client.wait_for(lambda e: e["ev"] == "ready", "ready")
                yield client
            finally:
                with trio.CancelScope(shield=True):
                    try:
                        await client.do("exit")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    with trio.move_on_after(3):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()


async def until(condition, what: str, timeout: float = TIMEOUT) -> None:
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


AOR = f"{SIP_USER}@127.0.0.1"


# --- tests ----------------------------------------------------------------------------------------


async def test_register_over_wss_with_digest_auth(node, stack):
    async with jssip(node, stack) as ua:
        await ua.start(stack.ports["sip_ws"])
        await ua.wait_ua("registered")
        opened = await ua.wait_for(lambda e: e["ev"] == "ws_open", "ws_open")
        assert opened["protocol"] == "sip"  # the 101 echoed the subprotocol

        sent = [t for t in ua.sip("out") if t.startswith("REGISTER ")]
        got = [t for t in ua.sip("in") if cseq(t) and "REGISTER" in (header(t, "CSeq") or "")]
        assert start_line(sent[0]) == "REGISTER sip:127.0.0.1 SIP/2.0"
        assert header(sent[0], "Authorization") is None
        assert [start_line(t) for t in got[:2]] == ["SIP/2.0 401 Unauthorized", "SIP/2.0 200 OK"]
        challenge = header(got[0], "WWW-Authenticate")
        assert challenge and challenge.startswith("Digest ") and 'realm="127.0.0.1"' in challenge
        authorization = header(sent[1], "Authorization")
        assert authorization and f'username="{SIP_USER}"' in authorization
        assert cseq(sent[1]) == cseq(sent[0]) + 1
        assert header(sent[1], "Call-ID") == header(sent[0], "Call-ID")
        # JsSIP accepts the 200 only because it echoes its Contact (matched by +sip.instance/reg-id)
        contact_sent = header(sent[1], "Contact")
        contact_got = header(got[1], "Contact")
        assert contact_sent and contact_got
        instance = re.search(r'\+sip\.instance="[^"]+"', contact_sent).group(0)
        assert instance in contact_got and ";expires=600" in contact_got

        bindings = stack.sip.registrations(AOR)
        assert len(bindings) == 1
        assert bindings[0].flow.transport == "WSS"
        assert bindings[0].call_id == header(sent[1], "Call-ID")
        assert bindings[0].uri in contact_sent


async def test_refresh_before_expiry_keeps_the_binding(node, stack):
    """register_expires=10: JsSIP 3 refreshes at expires - 5 s (it clamps anything under 10 s up to
    10, so a shorter expiry would leave a gap in the binding)."""
    async with jssip(node, stack) as ua:
        started = trio.current_time()
        await ua.start(stack.ports["sip_ws"], register_expires=10)
        await ua.wait_ua("registered")
        first = stack.sip.registrations(AOR)
        assert len(first) == 1
        first_expiry = first[0].expires_at
        assert 9 <= first_expiry - started <= 11

        def refreshed_ok(e: dict) -> bool:
            return (e["ev"] == "sip_in" and start_line(e["text"]) == "SIP/2.0 200 OK"
                    and "REGISTER" in (header(e["text"], "CSeq") or "") and cseq(e["text"]) > 2)

        await ua.wait_for(refreshed_ok, "the refresh REGISTER's 200", timeout=9)
        elapsed = trio.current_time() - started
        assert 4 <= elapsed <= 8, elapsed

        registers = [t for t in ua.sip("out") if t.startswith("REGISTER ")]
        assert len(registers) == 4  # first + authorized, refresh + authorized (no cached credentials)
        assert len({header(t, "Call-ID") for t in registers}) == 1
        assert [cseq(t) for t in registers] == [1, 2, 3, 4]
        assert header(registers[2], "Authorization") is None
        assert header(registers[3], "Authorization") is not None

        bindings = stack.sip.registrations(AOR)
        assert len(bindings) == 1  # the refresh replaced the binding, it did not add one
        assert bindings[0].expires_at > first_expiry + 3
        assert not any(e["ev"] == "ua" and e["name"] in ("unregistered", "registrationFailed")
                       for e in ua.events)


async def test_wrong_password_is_rejected(node, stack):
    async with jssip(node, stack) as ua:
        await ua.start(stack.ports["sip_ws"], password="not-the-hash")
        failed = await ua.wait_ua("registrationFailed")
        assert failed["status"] == 403
        assert failed["cause"] == "Rejected"
        assert not any(e["ev"] == "ua" and e["name"] == "registered" for e in ua.events)
        assert stack.sip.registrations() == []
        statuses = [start_line(t) for t in ua.sip("in")]
        assert statuses == ["SIP/2.0 401 Unauthorized", "SIP/2.0 403 Forbidden"]


async def test_closing_the_socket_removes_the_binding(node, stack):
    """The real client never un-REGISTERs: a binding must go with its WebSocket, and only that one
    (a page registers the same user once per accepted call, real-video-client.md 6.2)."""
    async with jssip(node, stack) as ua, jssip(node, stack) as other:
        await ua.start(stack.ports["sip_ws"])
        await other.start(stack.ports["sip_ws"])
        await ua.wait_ua("registered")
        await other.wait_ua("registered")
        bindings = stack.sip.registrations(AOR)
        assert len(bindings) == 2 and bindings[0].flow is not bindings[1].flow
        dropped_call_id = header([t for t in ua.sip("out") if t.startswith("REGISTER ")][-1], "Call-ID")

        await ua.do("drop", code=1001)
        await ua.wait_for(lambda e: e["ev"] == "dropped", "the socket to close", timeout=5)
        await until(lambda: len(stack.sip.registrations(AOR)) == 1, "the binding to vanish", timeout=5)
        assert stack.sip.registrations(AOR)[0].call_id != dropped_call_id  # the other UA's binding stays
        assert not any("expires=0" in t for t in ua.sip("out"))  # no un-REGISTER was sent


async def test_tls_is_verified_against_the_local_ca(node, stack):
    """Without NODE_EXTRA_CA_CERTS the emulator's certificate is not trusted: the handshake fails
    and nothing is registered (so the passing tests above really verified TLS)."""
    async with jssip(node, stack, trust_ca=False) as ua:
        await ua.start(stack.ports["sip_ws"])
        error = await ua.wait_for(lambda e: e["ev"] == "ws_error", "a TLS error", timeout=5)
        assert re.search(r"certificate|self[- ]signed|verify", error["message"], re.IGNORECASE), error
        assert not ua.sip("out")
        assert stack.sip.stats["registers"] == 0
