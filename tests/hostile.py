"""Normal and hostile clients for every listener, on any :class:`~emulator.net.network.Network`.

Shared by the slow/idle/flood test (``tests/integration/test_slowloris.py``) and the live-socket
fuzzer (``tests/fuzz/live_fuzz.py``):

* :data:`PROBES` — one normal exchange per listener (the comet WebSocket login and its
  ``serverInfo``, a CometQL login and query, a directory lookup, OPTIONS over SIP WS(S) / TCP /
  UDP, ESL ``auth`` + ``api status``); each returns when the answer is right and raises otherwise.
* :func:`slow` (slowloris: a plausible start of the protocol, one byte every few seconds),
  :func:`idle` (connect and say nothing) — both return how long the server took to close.

The user the probes log in as: dev_id 1, user 15, hash :data:`HASH` (``Ports.prepare`` writes it
through CometQL, so it works against a separate ``cometbench serve`` process too).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field

import trio

from emulator.net.network import Endpoint, Network, release_ssl_stream
from tests.rawmysql import RawMySQL
from tests.rawws import KEY, RawWS

HASH = "hostileprobehash15"
DEV, USER = 1, 15
SIP_USER = f"{DEV:06d}{USER}"
COMET_PATH = f"/ws/sesion={HASH}&myid={USER}&devid={DEV}&v=4.08&uuid={'p' * 32}&api=js"


@dataclass
class Ports:
    """Where the listeners are, and how to reach SIP over WebSocket (TLS or not)."""

    network: Network
    ports: dict[str, int]
    host: str = "127.0.0.1"
    sip_tls: bool = False
    counter: list[int] = field(default_factory=lambda: [0])

    def next(self) -> int:
        self.counter[0] += 1
        return self.counter[0]

    async def connect(self, service: str) -> trio.abc.Stream:
        stream = await self.network.connect(self.host, self.ports[service])
        if service == "sip_ws" and self.sip_tls:
            tls = trio.SSLStream(stream, insecure_client_context(), server_hostname=self.host)
            await tls.do_handshake()
            return tls
        return stream

    async def prepare(self) -> None:
        """Store the probe user's hash through CometQL (so SIP digest and the directory know it)."""
        client = RawMySQL(await self.network.connect(self.host, self.ports["cometql"]))
        try:
            await client.login()
            answer = await client.query(f"INSERT INTO users_auth (id, hash) VALUES ({USER}, '{HASH}')")
            assert answer[0][1][:1] == b"\x00", answer
        finally:
            await client.stream.aclose()


def insecure_client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def sip_options(transport: str, n: int) -> bytes:
    """A probe's OPTIONS as exact bytes (the slowloris trickles them, cut where it likes): not the
    project's SIP client, which sends no OPTIONS and writes whole messages."""
    return (f"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} probe.invalid;branch=z9hG4bKprobe{n}\r\n"
            f"Max-Forwards: 70\r\nTo: <sip:127.0.0.1>\r\nFrom: <sip:{SIP_USER}@127.0.0.1>;tag=p{n}\r\n"
            f"Call-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def upgrade_request(target: str, extra: str = "") -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


async def closed_within(stream, seconds: float) -> tuple[bool, bytes]:
    """Read until EOF or ``seconds`` pass: (closed, everything received)."""
    received = b""
    with trio.move_on_after(seconds):
        try:
            while chunk := await stream.receive_some(65536):
                received += chunk
        except trio.BrokenResourceError:
            pass
        return True, received
    return False, received


async def _read_all(stream: trio.abc.Stream) -> bytes:
    received = b""
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


# --- normal clients ---------------------------------------------------------------------------------


async def probe_comet_ws(p: Ports) -> None:
    ws = RawWS(await p.connect("ws"))
    try:
        await ws.stream.send_all(upgrade_request(COMET_PATH))
        ws.response = await ws.read_until(b"\r\n\r\n")
        assert ws.response.startswith(b"HTTP/1.1 101 "), ws.response
        info = json.loads((await ws.recv_raw())[1])
        assert info["event"] == "serverInfo" and info["authorized"] is True, info
    finally:
        await ws.aclose()


async def probe_cometql(p: Ports) -> None:
    client = RawMySQL(await p.connect("cometql"))
    try:
        assert (await client.login())[1][:1] == b"\x00"
        answer = await client.query(f"SELECT * FROM users_auth WHERE id = {USER}")
        assert any(HASH.encode() in payload for _, payload in answer), answer
    finally:
        await client.stream.aclose()


async def probe_directory(p: Ports) -> None:
    stream = await p.connect("directory")
    try:
        await stream.send_all(f"GET /directory?section=directory&user={SIP_USER}&domain=FSdefaultDomain "
                              f"HTTP/1.1\r\nHost: x\r\nUser-Agent: freeswitch-xml/1.0\r\n\r\n".encode())
        answer = await _read_all(stream)
        assert answer.startswith(b"HTTP/1.1 200 ") and HASH.encode() in answer, answer[:200]
    finally:
        await stream.aclose()


async def probe_sip_ws(p: Ports) -> None:
    ws = RawWS(await p.connect("sip_ws"))
    try:
        await ws.stream.send_all(upgrade_request("/", "Sec-WebSocket-Protocol: sip\r\n"))
        ws.response = await ws.read_until(b"\r\n\r\n")
        assert ws.response.startswith(b"HTTP/1.1 101 "), ws.response
        await ws.send(sip_options("WSS" if p.sip_tls else "WS", p.next()))
        answer = (await ws.recv_raw())[1]
        assert answer.startswith(b"SIP/2.0 200 OK\r\n"), answer[:200]
    finally:
        await ws.aclose()
        release_ssl_stream(ws.stream)


async def probe_sip_tcp(p: Ports) -> None:
    stream = await p.connect("sip")
    try:
        await stream.send_all(sip_options("TCP", p.next()))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = await stream.receive_some(65536)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"SIP/2.0 200 OK\r\n"), answer[:200]
    finally:
        await stream.aclose()


async def probe_sip_udp(p: Ports) -> None:
    endpoint = await p.network.udp_socket("probe", p.host, 0)
    try:
        n = p.next()
        server = Endpoint(p.host, p.ports["sip"])
        with trio.move_on_after(1.0):  # UDP: one retransmission if the first is lost
            await endpoint.sendto(sip_options("UDP", n), server)
            answer, _ = await endpoint.recvfrom()
            assert answer.startswith(b"SIP/2.0 200 OK\r\n"), answer[:200]
            return
        await endpoint.sendto(sip_options("UDP", n), server)
        answer, _ = await endpoint.recvfrom()
        assert answer.startswith(b"SIP/2.0 200 OK\r\n"), answer[:200]
    finally:
        await endpoint.aclose()


async def probe_esl(p: Ports) -> None:
    stream = await p.connect("esl")
    try:
        buffer = b""

        async def until(marker: bytes) -> None:
            nonlocal buffer
            while marker not in buffer:
                chunk = await stream.receive_some(65536)
                assert chunk, buffer
                buffer += chunk

        await until(b"auth/request\n\n")
        await stream.send_all(b"auth ClueCon\n\n")
        await until(b"+OK accepted")
        await stream.send_all(b"api status\n\n")
        await until(b"is ready")
    finally:
        await stream.aclose()


PROBES = {"ws": probe_comet_ws, "cometql": probe_cometql, "directory": probe_directory, "sip_ws": probe_sip_ws,
          "sip": probe_sip_tcp, "sip_udp": probe_sip_udp, "esl": probe_esl}


# --- hostile clients --------------------------------------------------------------------------------


def client_hello() -> bytes:
    """The first flight of a TLS client, to trickle at the SIP WSS port."""
    ctx = insecure_client_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def slow_start(service: str, tls: bool = False) -> bytes:
    """What a slowloris trickles at ``service``: a plausible, never-finished beginning."""
    if service == "ws":
        return upgrade_request(COMET_PATH) * 4
    if service == "sip_ws":
        return client_hello() if tls else upgrade_request("/", "Sec-WebSocket-Protocol: sip\r\n") * 4
    if service == "directory":
        return f"GET /directory?user={SIP_USER}&x=1 HTTP/1.1\r\n".encode() + b"X-Pad: " + b"a" * 500
    if service == "sip":
        return sip_options("TCP", 0).replace(b"Content-Length: 0\r\n\r\n", b"X-Pad: " + b"a" * 500)
    if service == "esl":
        return b"api status\n\n" * 40  # anything but auth
    if service == "cometql":
        return b"\x60\x00\x00\x01" + b"\x8d\xa6\x0f\x00" + b"\x00" * 92  # a HandshakeResponse, slowly
    raise KeyError(service)


async def slow(p: Ports, service: str, every: float = 2.0, limit: float = 120.0) -> float:
    """Slowloris: one byte every ``every`` seconds; seconds until the server closed (``limit`` if never)."""
    start = trio.current_time()
    stream = await p.network.connect(p.host, p.ports[service])
    data = slow_start(service, p.sip_tls)
    closed = trio.Event()

    async def watch() -> None:
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        closed.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            with trio.move_on_after(limit):
                for i in range(len(data)):
                    try:
                        await stream.send_all(data[i:i + 1])
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                    with trio.move_on_after(every):
                        await closed.wait()
                    if closed.is_set():
                        break
                await closed.wait()
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
    return trio.current_time() - start


async def idle(p: Ports, service: str, limit: float = 120.0) -> float:
    """Connect and say nothing; seconds until the server closed (``limit`` if it never did)."""
    start = trio.current_time()
    stream = await p.network.connect(p.host, p.ports[service])
    try:
        with trio.move_on_after(limit):
            try:
                while await stream.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
    finally:
        await trio.aclose_forcefully(stream)
    return trio.current_time() - start
