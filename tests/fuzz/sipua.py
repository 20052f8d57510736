"""Authenticated INVITEs carrying fuzzed SDP, sent by the project's SIP client over SIP/TCP.

The fake FreeSWITCH challenges every INVITE (407), so an SDP body only reaches ``parse_sdp`` in a
second, digest-authenticated INVITE.  :class:`InviteClient` drives the project's one SIP client
(bench/clients/sip.py, the JsSIP-like sans-IO UA) over one SIP-over-TCP connection (any
:class:`~emulator.net.network.Network`): the UA sends the INVITE, ACKs the 407, sends it again with
Proxy-Authorization and ACKs the final answer; after a 200 it sends a BYE, which must be answered
200, so the conference does not fill up.  The SIP around the body is always the UA's well-formed
SIP; only the SDP is fuzzed (the UA sends a ``bytes`` offer byte for byte, unfiltered).

What this adds to the UA is the stream: SIP over TCP frames messages by Content-Length
(:class:`emulator.wire.sip.SipStreamParser`), where the UA's own driver reads one message per
WebSocket message.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import trio

from bench.clients.sip import Event, Session, UAConfig, UserAgent
from emulator.wire import sip

SIP_USER = "000001015"


class InviteClient:
    def __init__(self, stream: trio.abc.Stream, *, password: str, rng: random.Random, room: str = "101",
                 host: str = "127.0.0.1", transport: str = "TCP") -> None:
        self.stream = stream
        self.uri = f"sip:1*{room}*video@{host}"
        self.parser = sip.SipStreamParser()
        self.sent = 0
        self.ua = UserAgent(UAConfig(uri=f"sip:{SIP_USER}@{host}", password=password, register=False,
                                     via_transport=transport), rng)
        self.ua.start(trio.current_time())
        assert self.ua.transport_requests() == ["connect"]
        self.ua.transport_connected(trio.current_time())   # the stream is already open

    async def _flush(self) -> None:
        for data in self.ua.data_to_send():
            await self.stream.send_all(data)

    async def _receive(self) -> None:
        """Read until at least one whole message reached the UA."""
        while True:
            got = False
            while (message := self.parser.next_message()) is not None:
                self.ua.receive(message.encode(), trio.current_time())
                got = True
            if got:
                return
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError("the server closed the SIP connection")
            self.parser.receive_data(chunk)

    def _finals(self, session: Session, method: str) -> list[sip.SipResponse]:
        """The final answers received so far to ``method`` requests of the session's Call-ID."""
        return [m for m in self.ua.received if isinstance(m, sip.SipResponse) and m.status >= 200
                and m.headers.get("Call-ID") == session.call_id and m.cseq.method == method]

    async def _until(self, done: Callable[[list[Event]], bool]) -> list[Event]:
        events: list[Event] = []
        while True:
            await self._flush()
            events += self.ua.events()
            if done(events):
                return events
            await self._receive()

    async def invite(self, body: bytes) -> tuple[int, bytes]:
        """One authenticated INVITE carrying ``body``: (final status, body of the final answer)."""
        self.sent += 1
        session = self.ua.call(self.uri, trio.current_time(), offer=body)
        events = await self._until(lambda evs: any(e.session is session and e.name in ("answer", "failed")
                                                   for e in evs))
        finals = self._finals(session, "INVITE")
        assert finals and finals[0].status == 407, [f.start_line for f in finals]
        rest = finals[1:]
        assert rest, ("no final answer to the authenticated INVITE: "
                      f"{[(e.name, e.cause) for e in events if e.session is session]}")
        final = rest[-1]
        if any(e.name == "answer" for e in events if e.session is session):
            self.ua.remote_description_applied(session, trio.current_time())   # the ACK
            self.ua.terminate(session, trio.current_time())                     # the BYE
            await self._until(lambda evs: bool(self._finals(session, "BYE")))
            bye = self._finals(session, "BYE")[0]
            assert bye.status == 200, bye.start_line
        else:
            await self._flush()   # the ACK of the final error
        return final.status, final.body
