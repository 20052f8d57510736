"""The project's SIP client (bench/clients/sip.py, the JsSIP-like sans-IO UA) wired to a SIP core without I/O.

:class:`CorePhone` is a UA whose transport is a :class:`~emulator.freeswitch.flow.Flow` straight
into a :class:`~emulator.freeswitch.sip_core.SipCore`, for tests of the core that need no sockets.
What the core sends is kept, in order, for :meth:`CorePhone.take` to return.  During one of the
phone's own actions (:meth:`register`, :meth:`invite`, :meth:`ack`, :meth:`bye`, :meth:`cancel`,
:meth:`reinvite`) the UA also reads what arrives and answers it, as JsSIP would (a challenge is
answered with credentials, a final error ACKed); outside them the UA reads nothing, so a test
sees exactly what the core does on its own (a kick's BYE, a retransmission) and answers it itself.

Requests a browser never sends (an OPTIONS, a BYE for a dialog that does not exist) are built
with the SIP codec (:func:`emulator.wire.sip.make_request`) by :meth:`CorePhone.raw`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bench.clients.sip import Session, UAConfig, UserAgent
from emulator.freeswitch.flow import Flow
from emulator.freeswitch.sip_core import SipCore
from emulator.net.network import Endpoint
from emulator.wire import sip

__all__ = ["CorePhone"]


class CorePhone:
    """One JsSIP-like UA talking to ``core`` through a flow of ``transport`` (WSS, WS, TCP or UDP)."""

    count = 0

    def __init__(self, core: SipCore, *, user: str, password: str, transport: str = "WSS",
                 now: Callable[[], float] | None = None, seed: int | None = None) -> None:
        CorePhone.count += 1
        self.core = core
        self.user = user
        self.now = now or core.clock
        self.inbox: list[sip.SipMessage] = []     # everything the core sent, in order
        self._unread: list[bytes] = []            # what the UA has not read yet
        self.flow = Flow(transport, Endpoint("10.0.0.7", 50000), Endpoint("127.0.0.1", 7443),
                         send_bytes=self._from_core)
        self.rng = random.Random(CorePhone.count if seed is None else seed)
        config = UAConfig(uri=f"sip:{user}@127.0.0.1", password=password, register=False,
                          via_transport=transport)
        self.ua = UserAgent(config, self.rng)
        self.ua.start(self.now())
        assert self.ua.transport_requests() == ["connect"]
        self.ua.transport_connected(self.now())
        self.session: Session | None = None
        self.ok: sip.SipResponse | None = None     # the 2xx of the last INVITE

    # -- the wire ------------------------------------------------------------------------------------
    @property
    def contact(self) -> str:
        """The Contact the UA registers (``<sip:...;transport=ws>``)."""
        return f"<{self.ua.contact_uri}>"

    @property
    def tag(self) -> str:
        """The local tag of the current call (the From tag of its INVITE)."""
        assert self.session is not None
        return self.session.local_tag

    def _from_core(self, data: bytes) -> None:
        self.inbox.append(sip.parse_message(data))
        self._unread.append(data)

    def take(self) -> list[sip.SipMessage]:
        """Everything the core sent since the last take."""
        out, self.inbox = self.inbox, []
        return out

    def _pump(self) -> None:
        """Until both sides are quiet: the UA's messages to the core, the core's to the UA."""
        while True:
            out = self.ua.data_to_send()
            for data in out:
                self.core.receive(self.flow, data)
            unread, self._unread = self._unread, []
            for data in unread:
                self.ua.receive(data, self.now())
            if not out and not unread:
                self.ua.events()
                return

    def _act(self, action: Callable[[], object]) -> None:
        self._unread.clear()   # what came before this action stays unread by the UA
        action()
        self._pump()

    def read_arrived(self) -> None:
        """Let the UA read what the core sent on its own since the last action (an answer that came
        later, as the real-media endpoint's does) and answer it, as JsSIP would."""
        self._pump()

    def raw(self, method: str, uri: str, *, to_tag: str | None = None, call_id: str | None = None) -> sip.SipRequest:
        """A request a browser would not send, straight to the core; returns it."""
        to = f"<{uri}>" + (f";tag={to_tag}" if to_tag else "")
        request = sip.make_request(method, uri, via=f"SIP/2.0/{self.flow.transport} {self.ua.via_host};branch="
                                   f"{sip.generate_branch(self.rng)}",
                                   from_=f'"{self.user}" <sip:{self.user}@127.0.0.1>;tag={sip.generate_tag(self.rng)}',
                                   to=to, call_id=call_id or sip.generate_call_id(self.rng), cseq=1,
                                   contact=self.contact)
        self.core.receive(self.flow, request.encode())
        return request

    # -- what a browser does -------------------------------------------------------------------------
    def register(self) -> list[sip.SipMessage]:
        """REGISTER, answered challenge; the answers to the authenticated REGISTER."""
        self._act(lambda: self.ua.register(self.now()))
        challenge, *rest = self.take()
        assert isinstance(challenge, sip.SipResponse) and challenge.status == 401, challenge
        params = sip.parse_digest_params(challenge.headers["WWW-Authenticate"])
        assert params["realm"] == "127.0.0.1"
        return rest

    def invite(self, number: str = "15*101*video", body: bytes | str = b"") -> list[sip.SipMessage]:
        """INVITE ``<number>@127.0.0.1`` with ``body`` as the offer; after the 407 (which the UA
        ACKs and answers with credentials), what the core answered the authenticated INVITE.  A
        ``bytes`` body goes byte for byte (a fuzzer's), a ``str`` one as the UA's text offer."""
        offer = body

        def call() -> None:
            self.session = self.ua.call(f"sip:{number}@127.0.0.1", self.now(), offer=offer)

        self._act(call)
        challenge, *rest = self.take()
        assert isinstance(challenge, sip.SipResponse) and challenge.status == 407, challenge
        finals = [m for m in rest if isinstance(m, sip.SipResponse) and m.status >= 200]
        self.ok = finals[-1] if finals and finals[-1].status < 300 else None
        return rest

    def ack(self) -> None:
        """The answer is applied: the UA ACKs the 2xx."""
        assert self.session is not None
        session = self.session
        self._act(lambda: self.ua.remote_description_applied(session, self.now()))

    def bye(self) -> list[sip.SipMessage]:
        """Hang up the call; the core's answers."""
        assert self.session is not None
        session = self.session
        self._act(lambda: self.ua.terminate(session, self.now()))
        return self.take()

    def cancel(self) -> list[sip.SipMessage]:
        """Hang up before the answer (a CANCEL); the core's answers."""
        return self.bye()

    def reinvite(self, offer: str, *, hold: bool) -> list[sip.SipMessage]:
        """Hold (a re-INVITE with ``offer``, sendonly) or resume; the core's answers."""
        assert self.session is not None
        session = self.session
        self._act(lambda: (self.ua.hold if hold else self.ua.unhold)(session, offer, self.now()))
        return self.take()
