"""A whole video call through the emulator, on the virtual network under a mock clock.

The seed's procedure: the backend writes users_auth and conference over CometQL; the browser gets
``msg.sys_sipCall`` on its comet WebSocket; it registers and dials FreeSWITCH over SIP/WSS with the
users_auth hash as password; the conference has a member that CometQL's conference_members and ESL
both see; BYE empties it.  Then the failure paths: a WebSocket that dies mid-INVITE and one that dies
in the call leave no dialog, registration or member behind (the latter after the media timeout).
"""

from __future__ import annotations

import json
import random

import trio
import trio_websocket

from emulator.config import Config
from emulator.net.network import VirtualNetwork
from emulator.stack import open_stack
from emulator.wire import sip
from tests.rawmysql import RawMySQL, err_of, rows_of
from tests.rawws import RawWS
from tests.unit.wire.test_sdp import CHROME_OFFER

DEV, USER, HASH = 15, 503, "PassForUser503"
SIP_USER = f"{DEV:06d}{USER}"


class WssPhone:
    """Just enough of a JsSIP UA over a real TLS WebSocket to the emulator."""

    def __init__(self, ws, seed: int):
        self.ws = ws
        self.rng = random.Random(seed)
        self.tag = sip.generate_tag(self.rng)
        self.call_id = sip.generate_call_id(self.rng)
        self.cseq = 1
        self.contact = "<sip:v3vuq5sa@iusnucoqmctu.invalid;transport=ws>"

    @classmethod
    async def connect(cls, stack, nursery, seed=1):
        raw = await stack.network.connect("127.0.0.1", stack.ports["sip_ws"])
        tls = trio.SSLStream(raw, stack.certificates.client_context(), server_hostname="127.0.0.1")
        ws = await trio_websocket.wrap_client_stream(nursery, tls, "127.0.0.1", "/", subprotocols=["sip"])
        assert ws.subprotocol == "sip"
        return cls(ws, seed)

    async def send(self, method, uri, *, to_tag=None, auth=None, body=b"", branch=None):
        headers = [("User-Agent", "JsSIP 2.0.6")]
        if auth:
            headers.append(auth)
        user = uri.split(":", 1)[1].split("@")[0]
        to = f"<sip:{SIP_USER if method == 'REGISTER' else user}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        req = sip.make_request(method, uri, via=f"SIP/2.0/WSS iusnucoqmctu.invalid;branch="
                               f"{branch or sip.generate_branch(self.rng)}",
                               from_=f'"{SIP_USER}" <sip:{SIP_USER}@127.0.0.1>;tag={self.tag}', to=to,
                               call_id=self.call_id, cseq=self.cseq, contact=self.contact, headers=headers,
                               body=body, content_type="application/sdp" if body else None)
        await self.ws.send_message(req.encode().decode())
        return req

    async def receive(self):
        with trio.fail_after(10):
            return sip.parse_message((await self.ws.get_message()).encode())

    async def authed(self, method, uri, status, header, body=b""):
        first = await self.send(method, uri, body=body)
        challenge = await self.receive()
        assert challenge.status == status, challenge.start_line
        if method == "INVITE":
            await self.send("ACK", uri, to_tag=challenge.to_tag, branch=first.branch)
        params = sip.parse_digest_params(challenge.headers[header])
        self.cseq += 1
        auth = sip.make_digest_authorization(params, username=SIP_USER, password=HASH, method=method, uri=uri,
                                             cnonce="c0ffee")
        return await self.send(method, uri, body=body,
                               auth=("Authorization" if status == 401 else "Proxy-Authorization", auth))


async def _comet_setup(stack):
    net = stack.network
    db = await RawMySQL.open(net, stack.ports["cometql"])
    await db.login(str(DEV))
    assert (await db.query(f"INSERT INTO users_auth (id, hash)VALUES('{USER}', '{HASH}' );"))[0][1][0] == 0
    browser = await RawWS.open(net, stack.ports["ws"],
                               f"/ws/sesion={HASH}&myid={USER}&devid={DEV}&v=4.08&uuid={'b' * 32}&api=js")
    assert json.loads(await browser.recv())["authorized"] is True
    await trio.sleep(0.05)
    answer = await db.query("INSERT INTO conference (name, user_id, caller_id, message, profile)VALUES("
                            f"'101', '{USER}', '{USER}', '{{}}', 'video' );")
    assert err_of(answer[0]) is None
    push = json.loads(await browser.recv())
    assert push["pipe"] == "msg" and push["event"] == "sys_sipCall"
    return db, browser, push["data"]["sys"]


async def test_the_seed_call_procedure_end_to_end(autojump_clock):
    async with open_stack(_config(), network=VirtualNetwork()) as stack:
        db, browser, sys = await _comet_setup(stack)
        assert sys["serverName"] == "127.0.0.1" and sys["serverPort"] == stack.ports["sip_ws"]
        assert sys["sipNumber"] == "15*101*video" and sys["conference"] == "true"
        assert sys["callPipe"].startswith("web_syscall_vA_")
        async with trio.open_nursery() as nursery:
            phone = await WssPhone.connect(stack, nursery)
            await phone.authed("REGISTER", "sip:127.0.0.1", 401, "WWW-Authenticate")
            ok = await phone.receive()
            assert ok.status == 200 and phone.contact in ok.headers["Contact"]
            assert [b.aor for b in stack.sip.registrations()] == [f"{SIP_USER}@127.0.0.1"]
            uri = f"sip:{sys['sipNumber']}@{sys['serverName']}"
            phone.call_id = sip.generate_call_id(phone.rng)
            await phone.authed("INVITE", uri, 407, "Proxy-Authenticate", body=CHROME_OFFER.encode())
            trying, answered = await phone.receive(), await phone.receive()
            assert (trying.status, answered.status) == (100, 200)
            assert b"a=fingerprint:sha-256 " + stack.certificates.media_fingerprint.encode() in answered.body
            await phone.send("ACK", str(answered.contacts[0].uri), to_tag=answered.to_tag)

            # the backend and an ESL client see the member
            members = rows_of(await db.query("SELECT * FROM conference_members WHERE name = '101'"))
            assert [(r[0], r[1]) for r in members] == [("101", str(USER))]
            assert "000015503" in stack.bridge.api("conference list")
            await trio.sleep(30)  # the media model starts its media after the computed delay
            assert stack.bridge.members("15*101-FSdefaultDomain")[0].media == "flowing"

            phone.cseq += 1
            await phone.send("BYE", str(answered.contacts[0].uri), to_tag=answered.to_tag)
            assert (await phone.receive()).status == 200
            assert stack.bridge.conferences == {}
            assert rows_of(await db.query("SELECT * FROM conference_members WHERE name = '101'")) == []
            kinds = {e["kind"] for e in stack.journal.entries(service="sip")}
            assert {"message"} <= kinds
            await phone.ws.aclose()
            nursery.cancel_scope.cancel()


async def test_websocket_dying_mid_invite_leaves_nothing(autojump_clock):
    async with open_stack(_config(sip_answer_delay=5.0), network=VirtualNetwork()) as stack:
        db, browser, sys = await _comet_setup(stack)
        async with trio.open_nursery() as nursery:
            phone = await WssPhone.connect(stack, nursery)
            await phone.authed("REGISTER", "sip:127.0.0.1", 401, "WWW-Authenticate")
            await phone.receive()
            uri = f"sip:{sys['sipNumber']}@127.0.0.1"
            await phone.authed("INVITE", uri, 407, "Proxy-Authenticate", body=CHROME_OFFER.encode())
            assert (await phone.receive()).status == 100
            await phone.ws._stream.aclose()  # the tab dies before the answer
            await trio.sleep(10)
            assert stack.sip.snapshot()["dialogs"] == 0 and stack.sip.pending == {}
            assert stack.sip.registrations() == [] and stack.bridge.conferences == {}
            nursery.cancel_scope.cancel()


async def test_websocket_dying_in_the_call_leaves_a_ghost_until_the_media_timeout(autojump_clock):
    async with open_stack(_config(rtp_timeout=300.0), network=VirtualNetwork()) as stack:
        db, browser, sys = await _comet_setup(stack)
        async with trio.open_nursery() as nursery:
            phone = await WssPhone.connect(stack, nursery)
            uri = f"sip:{sys['sipNumber']}@127.0.0.1"
            await phone.authed("INVITE", uri, 407, "Proxy-Authenticate", body=CHROME_OFFER.encode())
            await phone.receive()
            answered = await phone.receive()
            await phone.send("ACK", str(answered.contacts[0].uri), to_tag=answered.to_tag)
            await trio.sleep(1)
            await phone.ws._stream.aclose()  # page refresh: no BYE
            await trio.sleep(60)
            assert len(stack.bridge.members("15*101-FSdefaultDomain")) == 1  # the ghost (faithful)
            assert len(rows_of(await db.query("SELECT * FROM conference_members WHERE name = '101'"))) == 1
            await trio.sleep(300)
            assert stack.bridge.conferences == {} and stack.sip.snapshot()["dialogs"] == 0
            nursery.cancel_scope.cancel()


def _config(**kw) -> Config:
    cfg = Config(**kw)
    cfg.free_ports()
    return cfg


async def test_media_link_preset_sets_the_media_start_delay(autojump_clock):
    delays = {}
    for link in ("loopback", "3g"):
        async with open_stack(_config(media_link=link), network=VirtualNetwork()) as stack:
            db, browser, sys = await _comet_setup(stack)
            async with trio.open_nursery() as nursery:
                phone = await WssPhone.connect(stack, nursery)
                uri = f"sip:{sys['sipNumber']}@127.0.0.1"
                await phone.authed("INVITE", uri, 407, "Proxy-Authenticate", body=CHROME_OFFER.encode())
                await phone.receive()
                await phone.receive()
                delays[link] = stack.bridge.members("15*101-FSdefaultDomain")[0].channel.media_delay
                nursery.cancel_scope.cancel()
    assert delays["loopback"] < 1.0 < 3.0 < delays["3g"] < 15.0
