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

from bench.clients.sip import UAConfig
from bench.clients.sip_ua import SipPhone
from emulator.config import Config
from emulator.net.network import VirtualNetwork
from emulator.stack import open_stack
from emulator.wire import sip
from tests.rawmysql import RawMySQL, err_of, rows_of
from tests.rawws import RawWS
from tests.unit.wire.test_sdp import CHROME_OFFER

DEV, USER, HASH = 15, 503, "PassForUser503"
SIP_USER = f"{DEV:06d}{USER}"


def wss_phone(stack, nursery, *, register: bool = True, seed: int = 1) -> SipPhone:
    """The project's JsSIP-like phone (bench/clients/sip_ua.py) over a real TLS WebSocket."""
    config = UAConfig(uri=f"sip:{SIP_USER}@127.0.0.1", password=HASH, register=register)
    return SipPhone(stack.network, "127.0.0.1", stack.ports["sip_ws"], config, nursery=nursery,
                    rng=random.Random(seed), name="browser", ssl_context=stack.certificates.client_context())


def responses(phone: SipPhone, method: str) -> list[sip.SipResponse]:
    return [m for m in phone.ua.received if isinstance(m, sip.SipResponse) and m.cseq.method == method]


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
            phone = wss_phone(stack, nursery)
            phone.start()
            await phone.wait_event("registered")
            challenge, ok = responses(phone, "REGISTER")
            assert challenge.status == 401
            assert ok.status == 200 and phone.ua.contact_uri in ok.headers["Contact"]
            assert [b.aor for b in stack.sip.registrations()] == [f"{SIP_USER}@127.0.0.1"]
            uri = f"sip:{sys['sipNumber']}@{sys['serverName']}"
            session = phone.call(uri, offer=CHROME_OFFER)
            await phone.wait_event("confirmed")   # 407, INVITE with credentials, 100, 200, ACK
            challenge, trying, answered = responses(phone, "INVITE")
            assert challenge.status == 407
            assert (trying.status, answered.status) == (100, 200)
            assert b"a=fingerprint:sha-256 " + stack.certificates.media_fingerprint.encode() in answered.body
            assert [m.method for m in phone.ua.sent if isinstance(m, sip.SipRequest)][-1] == "ACK"

            # the backend and an ESL client see the member
            members = rows_of(await db.query("SELECT * FROM conference_members WHERE name = '101'"))
            assert [(r[0], r[1]) for r in members] == [("101", str(USER))]
            assert "000015503" in stack.bridge.api("conference list")
            await trio.sleep(30)  # the media model starts its media after the computed delay
            assert stack.bridge.members("15*101-FSdefaultDomain")[0].media == "flowing"

            phone.terminate(session)
            with trio.fail_after(10):
                while not responses(phone, "BYE"):
                    await trio.sleep(0.01)
            assert responses(phone, "BYE")[0].status == 200
            assert stack.bridge.conferences == {}
            assert rows_of(await db.query("SELECT * FROM conference_members WHERE name = '101'")) == []
            kinds = {e["kind"] for e in stack.journal.entries(service="sip")}
            assert {"message"} <= kinds
            phone.stop()
            nursery.cancel_scope.cancel()


async def test_websocket_dying_mid_invite_leaves_nothing(autojump_clock):
    async with open_stack(_config(sip_answer_delay=5.0), network=VirtualNetwork()) as stack:
        db, browser, sys = await _comet_setup(stack)
        async with trio.open_nursery() as nursery:
            phone = wss_phone(stack, nursery)
            phone.start()
            await phone.wait_event("registered")
            uri = f"sip:{sys['sipNumber']}@127.0.0.1"
            phone.call(uri, offer=CHROME_OFFER)
            with trio.fail_after(10):
                while [r.status for r in responses(phone, "INVITE")] != [407, 100]:
                    await trio.sleep(0.01)
            assert responses(phone, "INVITE")[-1].status == 100
            phone.close()  # the tab dies before the answer
            await trio.sleep(10)
            assert stack.sip.snapshot()["dialogs"] == 0 and stack.sip.pending == {}
            assert stack.sip.registrations() == [] and stack.bridge.conferences == {}
            nursery.cancel_scope.cancel()


async def test_websocket_dying_in_the_call_leaves_a_ghost_until_the_media_timeout(autojump_clock):
    async with open_stack(_config(rtp_timeout=300.0), network=VirtualNetwork()) as stack:
        db, browser, sys = await _comet_setup(stack)
        async with trio.open_nursery() as nursery:
            phone = wss_phone(stack, nursery, register=False)
            phone.start()
            uri = f"sip:{sys['sipNumber']}@127.0.0.1"
            phone.call(uri, offer=CHROME_OFFER)
            await phone.wait_event("confirmed")  # answered and ACKed
            await trio.sleep(1)
            phone.close()  # page refresh: no BYE
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
                phone = wss_phone(stack, nursery, register=False)
                phone.start()
                uri = f"sip:{sys['sipNumber']}@127.0.0.1"
                phone.call(uri, offer=CHROME_OFFER)
                await phone.wait_event("answer")
                delays[link] = stack.bridge.members("15*101-FSdefaultDomain")[0].channel.media_delay
                nursery.cancel_scope.cancel()
    assert delays["loopback"] < 1.0 < 3.0 < delays["3g"] < 15.0
