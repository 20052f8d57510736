"""Fuzzing the fake FreeSWITCH through its transports (virtual network, virtual time).

* Authenticated INVITEs whose SDP offer is mutated or random: the body reaches ``parse_sdp`` and
  the answer builder end to end (407, digest, INVITE again).  Every one ends in 200 with an SDP
  answer that parses, or 488; the core never fails, no dialog or conference member is left
  behind.
* Mutated SIP messages over UDP, TCP and WebSocket at once: afterwards each transport still
  answers a normal OPTIONS, and the core never failed (no ``core_error``/``error`` record).

The long profile (``COMETBENCH_FUZZ=long``) runs many more examples; ``tests/fuzz/campaign.py``
runs the same checks by the hundred thousand without hypothesis.
"""

from __future__ import annotations

import random

import pytest
import trio
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.config import Config
from emulator.net.network import Endpoint, VirtualNetwork
from emulator.stack import open_stack
from emulator.wire import sdp as s
from tests.fuzz.corpus import SDP
from tests.fuzz.sipua import InviteClient
from tests.fuzzing import fuzz_settings
from tests.hostile import HASH, PROBES, USER, Ports
from tests.rawws import RawWS
from tests.unit.wire.test_sdp import mutated_offer
from tests.unit.wire.test_sip import mutated

SETTINGS = fuzz_settings(40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("certs"))


def config(certs_dir: str) -> Config:
    cfg = Config(sip_tls=False, certs_dir=certs_dir)
    cfg.free_ports()
    return cfg


def _mutate_bytes(data: bytes, seed: int) -> bytes:
    from tests.fuzz.mutate import Mutator
    return Mutator(random.Random(seed), SDP).mutate(data)


OFFERS = st.one_of(mutated_offer().map(str.encode), st.binary(max_size=600),
                   st.tuples(st.sampled_from(SDP), st.integers(0, 2**32)).map(lambda t: _mutate_bytes(*t)))


@pytest.mark.fuzz("sdp")
@SETTINGS
@given(offers=st.lists(OFFERS, min_size=1, max_size=4))
async def test_authenticated_invites_carry_fuzzed_sdp_to_the_parser(offers, autojump_clock, certs_dir):
    net = VirtualNetwork()
    async with open_stack(config(certs_dir), network=net) as stack:
        stack.hub.set_hash(1, USER, HASH)
        client = InviteClient(await net.connect("127.0.0.1", stack.ports["sip"]), password=HASH,
                              rng=random.Random(len(offers)))
        for body in offers:
            status, answer = await client.invite(body)
            assert status in (200, 488), status
            if status == 200:
                assert s.parse_sdp(answer).media
        await trio.sleep(1)
        assert stack.sip.dialogs == {} and stack.sip.pending == {}
        assert stack.bridge.api("conference list") .startswith(("No active conferences", "+OK No active"))
        kinds = {e["kind"] for e in stack.journal.entries(service="sip")}
        assert not kinds & {"core_error", "error", "bad_stream"}, kinds


@pytest.mark.fuzz("sip")
@SETTINGS
@given(messages=st.lists(mutated(), min_size=1, max_size=5))
async def test_mutated_sip_over_udp_tcp_and_ws_leaves_every_transport_serving(messages, autojump_clock, certs_dir):
    net = VirtualNetwork()
    async with open_stack(config(certs_dir), network=net) as stack:
        p = Ports(net, stack.ports)
        udp = await net.udp_socket("fuzz", "127.0.0.1", 0)
        tcp = await net.connect("127.0.0.1", stack.ports["sip"])
        ws = await RawWS.open(net, stack.ports["sip_ws"], "/", "Sec-WebSocket-Protocol: sip\r\n")
        for data in messages:
            await udp.sendto(data, Endpoint("127.0.0.1", stack.ports["sip"]))
            await ws.send(data, opcode=0x2)
            try:
                await tcp.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server closed after a malformed message: as it should
        await trio.sleep(1)
        for name in ("sip", "sip_udp", "sip_ws"):
            with trio.fail_after(5):
                await PROBES[name](p)
        kinds = {e["kind"] for e in stack.journal.entries(service="sip")}
        assert not kinds & {"core_error", "error"}, kinds
        await udp.aclose()


async def test_the_invite_client_reaches_the_sdp_parser(autojump_clock, certs_dir):
    """The harness itself: a real offer is answered 200 with SDP, garbage 488 (so the fuzz test above
    really exercises the parser, not the challenge)."""
    net = VirtualNetwork()
    async with open_stack(config(certs_dir), network=net) as stack:
        stack.hub.set_hash(1, USER, HASH)
        client = InviteClient(await net.connect("127.0.0.1", stack.ports["sip"]), password=HASH, rng=random.Random(1))
        status, answer = await client.invite(SDP[0])
        assert status == 200 and b"a=fingerprint:sha-256 " in answer
        assert (await client.invite(b"v=0\r\nnot sdp"))[0] == 488
        assert (await client.invite(SDP[1]))[0] == 200  # plain RTP/AVP (sipp)
        assert [e["kind"] for e in stack.journal.entries(service="sip")].count("bad_sdp") == 1
