"""The JsSIP-like phone (bench/clients/sip_ua.py over bench/clients/sip.py) against the fake
FreeSWITCH: register, call, hold, BYE over TLS WebSockets on both networks, plain ws, a server that
refuses the ``sip`` subprotocol, an untrusted certificate, a broken transport and a clean stop."""

from __future__ import annotations

import random
import ssl

import pytest
import trio
from trio_websocket import wrap_server_stream

from bench.clients.sip import UAConfig
from bench.clients.sip_ua import SipPhone, client_ssl_context
from emulator.net.network import OSNetwork, VirtualNetwork
from tests.actorkit import CONF, stack_and_target, until

USER, HASH = "000015503", "PassForUser503"
AOR = f"{USER}@127.0.0.1"
TARGET = "sip:15*101*video@127.0.0.1"


def phone_for(stack, network, nursery, *, seed: int = 1, secure: bool = True, context=None, port=None, **config):
    cfg = UAConfig(uri=f"sip:{USER}@127.0.0.1", password=HASH, **config)
    return SipPhone(network, "127.0.0.1", port or stack.ports["sip_ws"], cfg, nursery=nursery,
                    rng=random.Random(seed), name="phone", secure=secure,
                    ssl_context=context if context is not None else (
                        stack.certificates.client_context() if secure else None))


async def register_call_hold_bye(network) -> None:
    async with stack_and_target(network) as (stack, target):
        stack.hub.set_hash(15, 503, HASH)
        async with trio.open_nursery() as nursery:
            phone = phone_for(stack, network, nursery)
            phone.start()
            await phone.wait_event("registered")
            assert [b.aor for b in stack.sip.registrations()] == [AOR]
            session = phone.call(TARGET)
            await phone.wait_event("confirmed")
            (member,) = stack.bridge.members(CONF)
            assert member.channel.caller_id_name == USER
            names = [e.name for _, e in phone.events_log]
            assert names.index("addstream") < names.index("accepted")   # onaddstream before SRD success
            assert phone.hold(session)
            await until(lambda: member.hold)
            await until(lambda: session.reinvite is None)   # the re-INVITE was answered
            assert phone.unhold(session)
            await until(lambda: not member.hold)
            phone.terminate(session)
            await phone.wait_event("ended")
            await until(lambda: stack.bridge.conferences == {})
            phone.stop()
            await until(lambda: stack.sip.registrations() == [])
            nursery.cancel_scope.cancel()


async def test_register_call_hold_bye_virtual(autojump_clock):
    await register_call_hold_bye(VirtualNetwork())


async def test_register_call_hold_bye_loopback():
    await register_call_hold_bye(OSNetwork())


async def test_plain_ws(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net, sip_tls=False) as (stack, target):
        stack.hub.set_hash(15, 503, HASH)
        async with trio.open_nursery() as nursery:
            phone = phone_for(stack, net, nursery, secure=False)
            assert phone.ws_url.startswith("ws://")
            phone.start()
            await phone.wait_event("registered")
            nursery.cancel_scope.cancel()


async def test_a_server_without_the_sip_subprotocol_is_a_failed_connect(autojump_clock):
    net = VirtualNetwork()
    listener = await net.listen("fake", "127.0.0.1", 0)
    async with trio.open_nursery() as nursery:
        async def serve() -> None:
            while True:
                stream = await listener.accept()
                request = await wrap_server_stream(nursery, stream)
                await request.accept()            # no subprotocol: Chrome aborts

        nursery.start_soon(serve)
        cfg = UAConfig(uri=f"sip:{USER}@127.0.0.1", password=HASH)
        phone = SipPhone(net, "127.0.0.1", listener.endpoint.port, cfg, nursery=nursery, rng=random.Random(1),
                         secure=False)
        phone.start()
        await phone.wait_for(lambda: len(phone.connections) >= 3, timeout=120)
        assert all("subprotocol" in c.outcome for c in phone.connections[:2])
        assert not phone.is_connected and "connected" not in [e.name for _, e in phone.events_log]
        nursery.cancel_scope.cancel()


async def test_an_untrusted_certificate_fails_tls_and_a_permissive_context_connects(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.hub.set_hash(15, 503, HASH)
        async with trio.open_nursery() as nursery:
            strict = phone_for(stack, net, nursery, context=ssl.create_default_context())
            strict.start()
            await strict.wait_for(lambda: len(strict.connections) >= 2, timeout=60)
            assert strict.connections[0].outcome.startswith("tls failed")
            permissive = phone_for(stack, net, nursery, seed=2, context=client_ssl_context(verify=False))
            permissive.start()
            await permissive.wait_event("registered")
            trusting = phone_for(stack, net, nursery, seed=3,
                                 context=client_ssl_context(str(stack.certificates.ca_cert)))
            trusting.start()
            await trusting.wait_event("registered")
            nursery.cancel_scope.cancel()


async def test_a_broken_transport_reconnects_registers_again_and_the_call_survives(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.hub.set_hash(15, 503, HASH)
        async with trio.open_nursery() as nursery:
            phone = phone_for(stack, net, nursery, seed=5)
            phone.start()
            await phone.wait_event("registered")
            session = phone.call(TARGET)
            await phone.wait_event("confirmed")
            mark = len(phone.events_log)
            t0 = trio.current_time()
            phone.drop_transport()
            await phone.wait_event("disconnected", since=mark)
            await phone.wait_event("registered", since=mark, timeout=60)
            delay = phone.ua.reconnect_delays[-1]
            assert trio.current_time() - t0 == pytest.approx(delay) and 2 <= delay <= 30
            assert session.established and len(phone.connections) == 2
            phone.terminate(session)       # the BYE goes over the new WebSocket
            await trio.sleep(0.5)
            assert stack.bridge.conferences == {}
            nursery.cancel_scope.cancel()


async def test_a_wrong_password_fails_the_registration(autojump_clock):
    net = VirtualNetwork()
    async with stack_and_target(net) as (stack, target):
        stack.hub.set_hash(15, 503, "something else")
        async with trio.open_nursery() as nursery:
            phone = phone_for(stack, net, nursery)
            phone.start()
            failed = await phone.wait_event("registrationFailed")
            assert failed.cause == "Rejected" and not phone.is_registered
            nursery.cancel_scope.cancel()
