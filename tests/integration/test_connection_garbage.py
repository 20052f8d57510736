"""Nothing left behind per connection: closing frees a connection's objects by reference counting.

For each of the SIP-over-TCP, SIP-over-WebSocket, ESL, CometQL and directory listeners, thousands
of connections are opened and closed (normal exchanges, malformed input, clients vanishing
mid-message, timeouts) with the cyclic garbage collector switched off.  Afterwards:

* ``gc.collect()`` finds (almost) nothing unreachable: a connection that left a reference cycle
  behind would show up here once per connection;
* the number of gc-tracked objects is back where it started, once the time-bounded caches have
  expired (the SIP transaction cache keeps answers 32 s; trio keeps a cancel scope's deadline
  until it passes) — virtual time jumps past them;
* the process RSS did not grow from one round to the next.

``gc.collect()`` runs once, before the baseline; the comet WebSocket listener has its own test.
"""

from __future__ import annotations

import gc
import resource

import pytest
import trio

from emulator.config import Config
from emulator.net.network import VirtualNetwork, release_ssl_stream
from emulator.stack import open_stack
from tests.hostile import Ports, upgrade_request
from tests.rawmysql import RawMySQL
from tests.rawws import RawWS

ROUNDS = 3
PER_ROUND = 700   # connections per listener and round: 2,100 per listener in all
TLS_PER_ROUND = 150  # TLS handshakes (both ends in this process) cost ~10 ms each

REQUEST = ("{method} sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} client.invalid;branch=z9hG4bK{n}\r\n"
           "Max-Forwards: 70\r\nTo: <sip:000001015@127.0.0.1>\r\nFrom: <sip:000001015@127.0.0.1>;tag=t{n}\r\n"
           "Call-ID: c{n}\r\nCSeq: 1 {method}\r\nContact: <sip:u@client.invalid>\r\nContent-Length: 0\r\n\r\n")


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover


async def drain(stream) -> None:
    with trio.move_on_after(30):
        while await stream.receive_some(65536):
            pass


async def sip_tcp(net, port: int, n: int) -> None:
    stream = await net.connect("127.0.0.1", port)
    variant = n % 4
    if variant == 0:    # REGISTER (401 challenge) and OPTIONS, then close
        await stream.send_all(REQUEST.format(method="REGISTER", transport="TCP", n=n).encode())
        await stream.receive_some(65536)
        await stream.send_all(REQUEST.format(method="OPTIONS", transport="TCP", n=n).encode())
        await stream.receive_some(65536)
    elif variant == 1:  # malformed: 400 and the server closes
        request = REQUEST.format(method="OPTIONS", transport="TCP", n=n)
        await stream.send_all(request.replace("CSeq: 1", "CSeq: x").encode())
        await drain(stream)
    elif variant == 2:  # vanish mid-message
        await stream.send_all(REQUEST.format(method="OPTIONS", transport="TCP", n=n).encode()[:50])
    else:               # keep-alive pings only
        await stream.send_all(b"\r\n\r\n")
        await stream.receive_some(65536)
    await stream.aclose()


async def sip_ws(net, port: int, n: int) -> None:
    ws = await RawWS.open(net, port, "/", "Sec-WebSocket-Protocol: sip\r\n")
    if n % 3 == 0:
        await ws.send(REQUEST.format(method="OPTIONS", transport="WS", n=n))
        await ws.recv_raw()
    elif n % 3 == 1:
        await ws.send(REQUEST.format(method="OPTIONS", transport="WS", n=n).replace("Call-ID", "X"))
        await ws.recv_raw()
    else:
        await ws.stream.send_all(b"\x81\xfe\x01")  # a frame header cut short
    await ws.aclose()


async def sip_wss(net, port: int, n: int) -> None:
    """SIP over secure WebSocket: TLS (trio.SSLStream on both ends), upgrade, OPTIONS."""
    tls = await Ports(net, {"sip_ws": port}, sip_tls=True).connect("sip_ws")
    ws = RawWS(tls)
    try:
        await tls.send_all(upgrade_request("/", "Sec-WebSocket-Protocol: sip\r\n"))
        await ws.read_until(b"\r\n\r\n")
        if n % 2:
            await ws.send(REQUEST.format(method="OPTIONS", transport="WSS", n=n))
            await ws.recv_raw()
    finally:
        await trio.aclose_forcefully(tls)
        release_ssl_stream(tls)  # the client's own SSLStream (this process holds both ends)


async def esl(net, port: int, n: int) -> None:
    stream = await net.connect("127.0.0.1", port)
    await stream.receive_some(65536)
    if n % 3 == 0:
        await stream.send_all(b"auth ClueCon\n\nevent plain ALL\n\napi status\n\nexit\n\n")
        await drain(stream)
    elif n % 3 == 1:
        await stream.send_all(b"auth nope\n\n")
        await drain(stream)
    else:
        await stream.send_all(b"auth ClueCon\n\napi conf")
    await stream.aclose()


async def cometql(net, port: int, n: int) -> None:
    client = await RawMySQL.open(net, port)
    if n % 3 == 0:
        await client.login()
        await client.query("SELECT * FROM users_auth WHERE id = 5")
    elif n % 3 == 1:
        await client.login(password="wrong")
        await drain(client.stream)
    else:
        await client.greeting()
        await client.stream.send_all(b"\xff\x00\x00\x01garbage")
    await client.stream.aclose()


async def directory(net, port: int, n: int) -> None:
    stream = await net.connect("127.0.0.1", port)
    requests = [b"GET /directory?a=1&user=000001015&domain=d HTTP/1.1\r\nHost: x\r\n\r\n",
                b"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /directory?a=1&user=%s&d HTTP/1.1\r\nHost: x\r\n\r\n" % (b"9" * 70),  # closed, no answer
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
    await stream.send_all(requests[n % len(requests)])
    await drain(stream)
    await stream.aclose()


async def idle_out(net, port: int) -> None:
    """A connection that says nothing and waits for the listener's timeout (or a minute)."""
    stream = await net.connect("127.0.0.1", port)
    with trio.move_on_after(60):
        await drain(stream)
    await stream.aclose()


VISITS = {"sip": sip_tcp, "sip_ws": sip_ws, "sip_wss": sip_wss, "esl": esl, "cometql": cometql,
          "directory": directory}


@pytest.mark.slow
@pytest.mark.parametrize("service", sorted(VISITS))
async def test_closing_connections_frees_them_without_the_cyclic_collector(autojump_clock, service):
    visit = VISITS[service]
    cfg = Config(sip_tls=service == "sip_wss", journal=False)
    cfg.free_ports()
    net = VirtualNetwork()
    async with open_stack(cfg, network=net) as stack:
        stack.hub.set_hash(1, 15, "secret")
        port = stack.ports["sip_ws" if service == "sip_wss" else service]
        for n in range(60):  # warm up: first-use caches, imports, interned strings
            await visit(net, port, n)
        await trio.sleep(2000)
        gc.collect()
        baseline = len(gc.get_objects())
        rss: list[int] = []
        per_round = TLS_PER_ROUND if service == "sip_wss" else PER_ROUND
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for r in range(ROUNDS):
                for n in range(per_round):
                    await visit(net, port, r * per_round + n)
                async with trio.open_nursery() as nursery:  # and a few that only time out
                    for _ in range(20):
                        nursery.start_soon(idle_out, net, port)
                await trio.sleep(2000)  # past every timeout and cache lifetime
                rss.append(rss_kib())
            grown = len(gc.get_objects()) - baseline
            unreachable = gc.collect()
        finally:
            if was_enabled:
                gc.enable()
    total = ROUNDS * (per_round + 20)
    assert unreachable < 50, f"{unreachable} objects in reference cycles after {total} connections"
    assert grown < 300, f"{grown} more tracked objects after {total} connections"
    assert rss[-1] - rss[0] < 2048, f"RSS grew {rss[-1] - rss[0]} KiB over rounds 2..{ROUNDS}: {rss}"
