"""Just enough of a SIP UA to reach the SDP parser through the transport: authenticated INVITEs.

The fake FreeSWITCH challenges every INVITE (407), so an SDP body only reaches ``parse_sdp`` in a
second, digest-authenticated INVITE.  :class:`InviteClient` does that dance over one SIP-over-TCP
connection (any :class:`~emulator.net.network.Network`): INVITE, 407, ACK, INVITE with
Proxy-Authorization and the body to test, then ACK (and BYE after a 200, so the conference does
not fill up).  The SIP around the body is always well formed; only the SDP is fuzzed.

It is not the project's SIP client (bench/clients/sip.py): a fuzzed body is arbitrary bytes, not
the text offer a browser's UA sends, and the fuzzer needs SIP over a raw TCP stream.
"""

from __future__ import annotations

import random

import trio

from emulator.wire import sip

SIP_USER = "000001015"


class InviteClient:
    def __init__(self, stream: trio.abc.Stream, *, password: str, rng: random.Random, room: str = "101",
                 host: str = "127.0.0.1", transport: str = "TCP") -> None:
        self.stream = stream
        self.password = password
        self.rng = rng
        self.host = host
        self.transport = transport
        self.uri = f"sip:1*{room}*video@{host}"
        self.parser = sip.SipStreamParser()
        self.sent = 0

    async def _send(self, message: sip.SipRequest) -> None:
        await self.stream.send_all(message.encode())

    async def _final(self) -> sip.SipResponse:
        """Responses until a final one (provisional ones skipped)."""
        while True:
            for message in iter(self.parser.next_message, None):
                if isinstance(message, sip.SipResponse) and message.status >= 200:
                    return message
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError("the server closed the SIP connection")
            self.parser.receive_data(chunk)

    def _request(self, method: str, call_id: str, cseq: int, tag: str, *, to: str | None = None,
                 headers: list[tuple[str, str]] | None = None, body: bytes = b"", uri: str | None = None,
                 branch: str | None = None) -> sip.SipRequest:
        via = f"SIP/2.0/{self.transport} fuzz.invalid;branch={branch or sip.generate_branch(self.rng)}"
        return sip.make_request(method, uri or self.uri, via=via, from_=f"<sip:{SIP_USER}@{self.host}>;tag={tag}",
                                to=to or f"<{self.uri}>", call_id=call_id, cseq=cseq,
                                contact=f"<sip:fuzz@fuzz.invalid;transport={self.transport.lower()}>",
                                headers=headers or [], body=body,
                                content_type="application/sdp" if body else None)

    async def invite(self, body: bytes) -> tuple[int, bytes]:
        """One authenticated INVITE carrying ``body``: (final status, body of the final answer)."""
        self.sent += 1
        call_id = f"fuzz-{self.rng.getrandbits(64):x}"
        tag = sip.generate_tag(self.rng)
        first = self._request("INVITE", call_id, 1, tag, body=body)
        await self._send(first)
        challenge = await self._final()
        assert challenge.status == 407, challenge.start_line
        await self._send(self._request("ACK", call_id, 1, tag, to=challenge.headers["To"], branch=first.branch))
        params = sip.parse_digest_params(challenge.headers["Proxy-Authenticate"])
        auth = sip.make_digest_authorization(params, username=SIP_USER, password=self.password, method="INVITE",
                                             uri=self.uri, cnonce=f"{self.rng.getrandbits(32):08x}")
        second = self._request("INVITE", call_id, 2, tag, headers=[("Proxy-Authorization", auth)], body=body)
        await self._send(second)
        final = await self._final()
        to = final.headers["To"]
        if final.status < 300:
            contact = final.contacts[0].uri if final.contacts else self.uri
            await self._send(self._request("ACK", call_id, 2, tag, to=to, uri=str(contact)))
            await self._send(self._request("BYE", call_id, 3, tag, to=to, uri=str(contact)))
            bye = await self._final()
            assert bye.status == 200, bye.start_line
        else:
            await self._send(self._request("ACK", call_id, 2, tag, to=to, branch=second.branch))
        return final.status, final.body
