"""A SIP user agent that behaves like JsSIP 2.0.6 over SIP/WSS -- the protocol side, sans-IO.

This is the one SIP client of the project: the virtual video client (``bench/clients/video.py``)
uses it through the trio driver in ``bench/clients/sip_ua.py``, and tests use it instead of
hand-made phones.  What it reproduces comes from the captures of the real JsSIP 2.0.6 in Chromium
156 (real-video-client.md sections 4 and 6) and from video-call-flow.md 2.5-2.7 and 6.1:

* **Transport recovery** -- after a transport close (or a failed connect) the next attempt comes
  ``k`` seconds later, ``k = floor(random() * 2**n) + 1`` for the n-th attempt in a row, clamped to
  ``[recovery_min_interval, recovery_max_interval]`` (JsSIP's defaults 2 and 30).  With ``None``
  limits there is no clamp: cometVideoApi passes ``undefined`` limits, so the real client waits a
  random integer in ``[1, 2**n]`` seconds (observed 2, 3, 6, 16, 8, 38 s; real-video-client.md 4.1).
  A successful connect resets ``n``.  A stopped UA never reconnects.
* **REGISTER** -- ``REGISTER sip:<registrar>`` with JsSIP's header order and values (Via
  ``SIP/2.0/WSS <random>.invalid;branch=z9hG4bK<7 digits>``, Max-Forwards 69, a From tag per
  request, one Call-ID per UA, CSeq counting up, Contact ``<sip:<random>@<via host>;transport=ws>
  ;+sip.ice;reg-id=1;+sip.instance="<urn:uuid:...>";expires=600``, Expires 600, Allow, ``Supported:
  path,gruu,outbound``, ``User-Agent: JsSIP 2.0.6``); a 401/407 is answered once with digest
  credentials (CSeq + 1, new branch, same From tag); a second challenge fails the registration
  ("Authentication Error") unless it is ``stale=true``.  The 200 must carry a Contact whose user is
  ours, else it is ignored (no ``registered``, the call hangs, as in run r16).  The expiry comes from
  that Contact's ``expires``, else the Expires header, else 600; the refresh is sent ``expires - 3``
  seconds later **without credentials, with a new From tag and Expires 600** (run r12), so every
  refresh is challenged again.  ``registered`` is emitted only on the unregistered -> registered
  transition; a transport close emits ``unregistered`` and the next connect registers again (which
  emits ``registered`` again: the trigger of cometVideoApi's duplicate join, video-call-flow.md 6.1).
  Timer F (32 s without a final answer) fails it with "Request Timeout" (run r7).
* **INVITE** -- sent once the driver hands over the (non-trickle) offer; 407/401 is ACKed on the
  INVITE's branch with the challenge's To tag, then the INVITE goes again with CSeq + 1 and
  Proxy-Authorization; 100 stops Timer B (after a 1xx JsSIP waits without limit, run r3); a 2xx
  creates the dialog (remote target = the 200's Contact, route set = reversed Record-Route) and asks
  the driver to apply the answer (``answer`` event, then :meth:`UserAgent.remote_description_applied`),
  after which the ACK goes to the 200's Contact URI with a new branch and ``Supported: outbound``;
  a final error is ACKed and fails the session with JsSIP's cause for that status; Timer B (32 s
  without any answer) fails it with cause "Canceled", as observed (run r10: no CANCEL is sent).
* **CANCEL** -- :meth:`terminate` before the answer: before any 1xx the CANCEL waits for one (RFC
  3261 9.1); after a 1xx it goes at once (same branch, ``CSeq n CANCEL``); the session fails
  "Canceled" immediately; the 487 is ACKed.  A 2xx that crosses the CANCEL is ACKed and BYEd.
* **BYE** both ways: our BYE (CSeq + 1, to the remote target) ends the session at once
  ("Terminated"); a server BYE is answered ``200 OK`` (Via/From/To/Call-ID/CSeq echoed, ``Supported:
  outbound``) and ends it with originator ``remote``.
* **Hold** -- :meth:`hold` / :meth:`unhold` emit ``hold`` / ``unhold`` at once (as JsSIP 2.0.6
  does) and send a re-INVITE with the offer the driver makes (``a=sendonly`` / ``a=sendrecv``); the
  2xx is ACKed.  Holding a held call (or resuming an active one) does nothing.  Mute is local only
  (no SIP), as in JsSIP.
* **Transport close** -- pending client transactions fail with "Connection Error" (a REGISTER in
  flight gives ``registrationFailed``, an INVITE in flight ``failed``); a confirmed session survives
  and later in-dialog requests use the next transport.

The sans-IO contract: every input method takes ``now`` (seconds on the driver's clock); outputs are
drained with :meth:`UserAgent.data_to_send` (one SIP message per WebSocket message),
:meth:`UserAgent.transport_requests` (``"connect"`` / ``"disconnect"``) and :meth:`UserAgent.events`;
timers are explicit: :meth:`UserAgent.next_deadline` says when to call
:meth:`UserAgent.handle_timers`.  Randomness comes only from the ``random.Random`` given; there is
no clock, task or socket in this module.

Deliberate simplifications: reliable transport only (no retransmissions, Timers D and K are zero);
one registration per UA; an incoming new INVITE is answered 180 and, after ``no_answer_timeout``,
408 (cometVideoApi never answers incoming calls); no UPDATE, REFER, MESSAGE, INFO or session timers
(the client runs with ``session_timers: false``).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from emulator.wire import sip
from emulator.wire.sip import T1

__all__ = [
    "JSSIP_USER_AGENT", "ALLOW", "UAConfig", "UserAgent", "Session", "Event", "InvalidStateError",
    "SessionStatus", "TransportStatus", "TransactionState",
    "SIP_ERROR_CAUSES", "cause_for_status", "T1", "TIMER_B", "TIMER_F",
]

JSSIP_USER_AGENT = "JsSIP 2.0.6"
ALLOW = "INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO"
MAX_FORWARDS = 69
TIMER_B = 64 * T1   # INVITE without any answer
TIMER_F = 64 * T1   # non-INVITE without a final answer
_TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # JsSIP's createRandomToken (base 32)

#: JsSIP_C.SIP_ERROR_CAUSES: final statuses -> the session's / registration's failure cause.
SIP_ERROR_CAUSES: dict[str, tuple[int, ...]] = {
    "Redirected": (300, 301, 302, 305, 380),
    "Busy": (486, 600),
    "Rejected": (403, 603),
    "Not Found": (404, 604),
    "Unavailable": (480, 410, 408, 430),
    "Address Incomplete": (484, 424),
    "Incompatible SDP": (488, 606),
    "Authentication Error": (401, 407),
}


def cause_for_status(status: int) -> str:
    for cause, statuses in SIP_ERROR_CAUSES.items():
        if status in statuses:
            return cause
    return "SIP Failure Code"


class InvalidStateError(Exception):
    """An operation the session's state does not allow (JsSIP's INVALID_STATE_ERROR)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"Invalid status: {status}")
        self.status = status


@dataclass
class UAConfig:
    """The ``new JsSIP.UA(configuration)`` of cometVideoApi's ``_sipRegister`` (video-call-flow.md 2.5).

    ``uri``: ``sip:<devId6><user>@<serverName>``; ``password``: the users_auth hash;
    ``authorization_user`` and ``display_name`` default to the URI's user; ``registrar_server``
    defaults to ``sip:<uri host>``.  ``recovery_min_interval`` / ``recovery_max_interval`` of
    ``None`` mean "no clamp" (what cometVideoApi actually passes).  ``sdp_filter(originator, type,
    sdp) -> sdp`` is the ``sdp`` event listener that may rewrite every local offer and remote answer.
    """

    uri: str
    password: str
    authorization_user: str | None = None
    display_name: str | None = None
    registrar_server: str | None = None
    register: bool = True
    register_expires: int = 600
    via_transport: str = "WSS"
    user_agent: str = JSSIP_USER_AGENT
    recovery_min_interval: float | None = 2
    recovery_max_interval: float | None = 30
    no_answer_timeout: float = 120.0
    sdp_filter: Callable[[str, str, str], str] | None = None

    def __post_init__(self) -> None:
        parsed = sip.parse_uri(self.uri)
        if parsed.user is None:
            raise ValueError(f"the UA's uri needs a user part: {self.uri!r}")
        self.parsed_uri = parsed
        if self.authorization_user is None:
            self.authorization_user = parsed.user
        if self.display_name is None:
            self.display_name = parsed.user
        if self.registrar_server is None:
            self.registrar_server = f"sip:{parsed.hostport}"
        if self.register_expires <= 0:
            raise ValueError("register_expires must be > 0")


class TransportStatus(StrEnum):
    """The UA's WebSocket transport."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


class TransactionState(StrEnum):
    """A client transaction: calling -> proceeding -> (accepted | completed) -> terminated."""

    CALLING = "calling"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class SessionStatus(StrEnum):
    """An RTCSession's status, as JsSIP names its C.STATUS_* values."""

    NULL = "null"
    WAITING_OFFER = "waiting_offer"          # created; the driver has not handed over the offer yet
    INVITE_SENT = "invite_sent"
    PROVISIONAL = "1xx_received"
    WAITING_ANSWER = "waiting_answer"        # an incoming INVITE that is never answered
    ANSWERED = "answered"
    CONFIRMED = "confirmed"
    CANCELED = "canceled"
    TERMINATED = "terminated"


@dataclass
class Event:
    """Something the UA reports (JsSIP's UA and RTCSession events, by name).

    UA: ``connecting``, ``connected``, ``disconnected``, ``registered``, ``unregistered``,
    ``registrationFailed``, ``newRTCSession``.  Session: ``sending`` (the INVITE left), ``progress``,
    ``answer`` (a 2xx carried this remote SDP: apply it, then call ``remote_description_applied``),
    ``accepted``, ``confirmed``, ``ended``, ``failed``, ``hold``, ``unhold``, ``muted``, ``unmuted``,
    ``reinviteFailed``.
    """

    name: str
    session: Session | None = None
    originator: str | None = None     # "local", "remote", "system"
    cause: str | None = None
    response: sip.SipResponse | None = None
    request: sip.SipRequest | None = None
    sdp: str | None = None
    data: dict = field(default_factory=dict)


@dataclass(eq=False)
class _Timer:
    at: float
    fn: Callable[[float], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class _ClientTransaction:
    request: sip.SipRequest
    branch: str
    method: str
    on_response: Callable[[_ClientTransaction, sip.SipResponse, float], None]
    on_timeout: Callable[[float], None]
    on_transport_error: Callable[[float], None]
    timer: _Timer | None = None
    state: TransactionState = TransactionState.CALLING


@dataclass(eq=False)
class Session:
    """One RTCSession (outgoing unless ``direction == "incoming"``)."""

    id: str
    target: str
    call_id: str
    local_tag: str
    direction: str = "outgoing"
    status: SessionStatus = SessionStatus.NULL
    invite: sip.SipRequest | None = None
    invite_cseq: int = 0
    local_seqnum: int = 0
    remote_tag: str | None = None
    remote_target: str | None = None
    route_set: list[str] = field(default_factory=list)
    local_sdp: str | None = None
    remote_sdp: str | None = None
    is_canceled: bool = False
    cancel_sent: bool = False
    challenged: bool = False
    muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    local_hold: bool = False
    reinvite: _ClientTransaction | None = None
    reinvite_hold: bool | None = None
    ack_for: sip.SipResponse | None = None
    incoming: sip.SipRequest | None = None
    no_answer_timer: _Timer | None = None
    end_cause: str | None = None
    end_originator: str | None = None

    @property
    def established(self) -> bool:
        return self.status == SessionStatus.CONFIRMED

    @property
    def terminated(self) -> bool:
        return self.status in (SessionStatus.TERMINATED, SessionStatus.CANCELED)

    def is_muted(self) -> dict[str, bool]:
        return dict(self.muted)

    def is_on_hold(self) -> dict[str, bool]:
        return {"local": self.local_hold, "remote": False}


class UserAgent:
    """One ``JsSIP.UA``: transport recovery, registrator, client/server transactions, RTCSessions."""

    def __init__(self, config: UAConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.via_host = _random_token(rng, 12) + ".invalid"
        self.contact_user = _random_token(rng, 8)
        self.instance_id = _uuid4(rng)
        self.contact_uri = f"sip:{self.contact_user}@{self.via_host};transport=ws"
        # transport
        self.transport_status = TransportStatus.DISCONNECTED
        self.recover_attempts = 0
        self.close_requested = False
        self.stopped = False
        self.started = False
        self.reconnect_delays: list[int] = []    # every recovery delay chosen, in seconds
        self._reconnect_timer: _Timer | None = None
        # registrator
        self.registered = False
        self.registering = False
        self._reg_call_id = _random_token(rng, 22)
        self._reg_cseq = 0
        self._reg_expires = config.register_expires
        self._reg_timer: _Timer | None = None
        self._reg_transaction: _ClientTransaction | None = None
        self._unregistering = False
        # transactions, sessions
        self._transactions: dict[tuple[str, str], _ClientTransaction] = {}
        self.sessions: dict[str, Session] = {}
        self._session_ids = itertools.count(1)
        # outputs
        self._out: list[bytes] = []
        self._transport_requests: list[str] = []
        self._events: list[Event] = []
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self.log: list[tuple[float, str]] = []
        self.sent: list[sip.SipMessage] = []        # every message handed to the transport
        self.received: list[sip.SipMessage] = []

    # =============================================================================================
    # driver interface
    # =============================================================================================
    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def transport_requests(self) -> list[str]:
        out, self._transport_requests = self._transport_requests, []
        return out

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def handle_timers(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                timer.cancelled = True
                timer.fn(now)

    @property
    def is_connected(self) -> bool:
        return self.transport_status == TransportStatus.CONNECTED

    @property
    def is_registered(self) -> bool:
        return self.registered

    # =============================================================================================
    # lifecycle and transport
    # =============================================================================================
    def start(self, now: float) -> None:
        """``ua.start()``: connect the transport (registration follows the connect)."""
        if self.stopped:
            raise InvalidStateError("stopped")
        if self.started:
            return
        self.started = True
        self._connect(now)

    def stop(self, now: float) -> None:
        """``ua.stop()``: un-REGISTER if registered, end sessions, close the transport, never reconnect."""
        if self.stopped:
            return
        self.stopped = True
        for session in list(self.sessions.values()):
            if not session.terminated:
                try:
                    self.terminate(session, now)
                except InvalidStateError:
                    pass
        if self.registered and self.is_connected:
            self.unregister(now)
        if self._reg_timer is not None:
            self._reg_timer.cancel()
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
        self.close_requested = True
        self.recover_attempts = 0
        for transaction in list(self._transactions.values()):  # answers will not be read any more
            self._drop_transaction(transaction)
        if self.transport_status != TransportStatus.DISCONNECTED:
            self._transport_requests.append("disconnect")
            self.transport_status = TransportStatus.DISCONNECTED
            self._emit(Event("disconnected", data={"error": False}))
            self._registrator_transport_closed()

    def _connect(self, now: float) -> None:
        if self.transport_status != TransportStatus.DISCONNECTED or self.stopped:
            return
        self.close_requested = False
        self.transport_status = TransportStatus.CONNECTING
        self._emit(Event("connecting", data={"attempts": self.recover_attempts}))
        self._transport_requests.append("connect")

    def transport_connected(self, now: float) -> None:
        """The WebSocket is open (subprotocol ``sip`` negotiated)."""
        if self.stopped or self.transport_status != TransportStatus.CONNECTING:
            return
        self.recover_attempts = 0
        self.transport_status = TransportStatus.CONNECTED
        if self._reconnect_timer is not None:
            self._reconnect_timer.cancel()
        self._emit(Event("connected"))
        if self.config.register:
            self.register(now)

    def transport_closed(self, now: float, *, error: bool = True) -> None:
        """The WebSocket closed, or a connect attempt failed."""
        if self.transport_status == TransportStatus.DISCONNECTED:
            return
        self.transport_status = TransportStatus.DISCONNECTED
        for transaction in list(self._transactions.values()):
            self._drop_transaction(transaction)
            transaction.on_transport_error(now)
        self._emit(Event("disconnected", data={"error": error}))
        self._registrator_transport_closed()
        if self.close_requested or self.stopped:
            return
        self._schedule_reconnect(now)

    def _schedule_reconnect(self, now: float) -> None:
        self.recover_attempts += 1
        k = math.floor(self.rng.random() * 2 ** self.recover_attempts + 1)
        low, high = self.config.recovery_min_interval, self.config.recovery_max_interval
        if low is not None and k < low:
            k = low
        elif high is not None and k > high:
            k = high
        self.reconnect_delays.append(k)
        self.log.append((now, f"reconnection attempt {self.recover_attempts} in {k} s"))
        self._reconnect_timer = self._at(now + k, self._connect)

    # =============================================================================================
    # incoming messages
    # =============================================================================================
    def receive(self, data: bytes | str, now: float) -> None:
        """One WebSocket message from the server."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if sip.is_keepalive(raw):
            return
        try:
            message = sip.parse_message(raw)
        except sip.SipParseError as exc:
            self.log.append((now, f"dropped an unparseable message: {exc}"))
            return
        self.received.append(message)
        try:
            if isinstance(message, sip.SipResponse):
                self._on_response(message, now)
            else:
                self._on_request(message, now)
        except (sip.SipParseError, ValueError, KeyError) as exc:  # a message we cannot act on
            self.log.append((now, f"dropped a message it cannot act on: {exc}"))

    def _on_response(self, response: sip.SipResponse, now: float) -> None:
        key = (response.branch or "", response.cseq.method)
        transaction = self._transactions.get(key)
        if transaction is None:
            self._stray_response(response, now)
            return
        transaction.on_response(transaction, response, now)

    def _stray_response(self, response: sip.SipResponse, now: float) -> None:
        """A retransmitted 2xx to an INVITE whose transaction is gone: ACK it again."""
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            for session in self.sessions.values():
                if (session.call_id == response.call_id and session.remote_tag == response.to_tag
                        and session.ack_for is not None and not session.terminated):
                    self._send_ack_2xx(session, response.cseq.number)
                    return
        self.log.append((now, f"response without a transaction: {response.start_line}"))

    def _on_request(self, request: sip.SipRequest, now: float) -> None:
        method = request.method
        if method == "ACK":
            return
        session = self._dialog_of(request) if request.to_tag else None
        if request.to_tag and session is None:
            if method != "ACK":
                self._reply(request, 481)
            return
        if method == "BYE":
            assert session is not None
            self._reply(request, 200, headers=[("Supported", "outbound")])
            if not session.terminated:
                self._ended(session, "remote", "Terminated", request=request)
        elif method == "INVITE":
            if session is not None:  # a re-INVITE: answer with what we send
                self._reply(request, 200, headers=[("Contact", f"<{self.contact_uri};ob>"),
                                                   ("Content-Type", "application/sdp"),
                                                   ("Supported", "outbound")],
                            body=(session.local_sdp or "").encode())
            else:
                self._incoming_invite(request, now)
        elif method == "OPTIONS":
            self._reply(request, 200, to_tag=None if request.to_tag else _random_token(self.rng, 10),
                        headers=[("Allow", ALLOW), ("Accept", "application/sdp, application/dtmf-relay"),
                                 ("Supported", "outbound")])
        elif method == "CANCEL":
            incoming = next((s for s in self.sessions.values() if s.incoming is not None
                             and s.incoming.branch == request.branch and not s.terminated), None)
            if incoming is None:
                self._reply(request, 481, to_tag=_random_token(self.rng, 10))
                return
            self._reply(request, 200, to_tag=incoming.local_tag)
            assert incoming.incoming is not None   # found by its incoming INVITE
            self._reply(incoming.incoming, 487, to_tag=incoming.local_tag)
            self._failed(incoming, "remote", "Canceled")
        else:
            self._reply(request, 405, to_tag=None if request.to_tag else _random_token(self.rng, 10),
                        headers=[("Allow", ALLOW)])

    def _incoming_invite(self, request: sip.SipRequest, now: float) -> None:
        session = Session(f"in{next(self._session_ids)}", request.headers["From"], request.call_id,
                          _random_token(self.rng, 10), direction="incoming", status=SessionStatus.WAITING_ANSWER,
                          incoming=request, remote_tag=request.from_tag)
        self.sessions[session.id] = session
        self._reply(request, 180, to_tag=session.local_tag)
        self._emit(Event("newRTCSession", session, originator="remote", request=request))

        def no_answer(t: float) -> None:
            if session.status == SessionStatus.WAITING_ANSWER:
                self._reply(request, 408, to_tag=session.local_tag)
                self._failed(session, "system", "No Answer")

        session.no_answer_timer = self._at(now + self.config.no_answer_timeout, no_answer)

    def _dialog_of(self, request: sip.SipRequest) -> Session | None:
        for session in self.sessions.values():
            if (session.call_id == request.call_id and session.local_tag == request.to_tag
                    and session.remote_tag == request.from_tag):
                return session
        return None

    def _reply(self, request: sip.SipRequest, status: int, *, to_tag: str | None = None,
               headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        """Answer an incoming request; like JsSIP's 200 to a BYE (``Supported: outbound`` and
        nothing else, real-video-client.md 4.2) unless ``headers`` say more."""
        response = sip.make_response(request, status, to_tag=to_tag, headers=list(headers or []), body=body)
        self._send_message(response)

    # =============================================================================================
    # registrator
    # =============================================================================================
    def register(self, now: float) -> None:
        """``registrator.register()``: a fresh REGISTER (new From tag, no credentials)."""
        if self.registering or self.stopped:
            return
        self._unregistering = False
        self._send_register(now, expires=self._reg_expires_config())

    def unregister(self, now: float) -> None:
        """``ua.unregister()``: REGISTER with ``Expires: 0``."""
        if self._reg_timer is not None:
            self._reg_timer.cancel()
        if not self.registered:
            return
        self._unregistering = True
        self._send_register(now, expires=0)

    def _reg_expires_config(self) -> int:
        return self.config.register_expires

    def _send_register(self, now: float, *, expires: int) -> None:
        cfg = self.config
        self._reg_cseq += 1
        from_tag = _random_token(self.rng, 10)
        aor = f"sip:{cfg.parsed_uri.user}@{cfg.parsed_uri.hostport}"
        contact = (f"<{self.contact_uri}>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:{self.instance_id}>\""
                   f";expires={expires}")
        assert cfg.registrar_server is not None   # UAConfig defaults it
        request = sip.make_request(
            "REGISTER", cfg.registrar_server, via=self._via(), from_=f"{sip.quote_string(cfg.display_name or '')} "
            f"<{aor}>;tag={from_tag}", to=f"<{aor}>", call_id=self._reg_call_id, cseq=self._reg_cseq,
            max_forwards=MAX_FORWARDS, contact=contact,
            headers=[("Expires", str(expires)), ("Allow", ALLOW), ("Supported", "path,gruu,outbound"),
                     ("User-Agent", cfg.user_agent)])
        self.registering = True
        state = {"challenged": False, "staled": False}

        def on_response(tr: _ClientTransaction, response: sip.SipResponse, t: float) -> None:
            if response.status < 200:
                return
            self._drop_transaction(tr)
            if response.status in (401, 407):
                credentials = self._credentials(tr.request, response, state)
                if credentials is not None:
                    self._reg_cseq += 1
                    again = _with(tr.request, cseq=self._reg_cseq, via=self._via(), auth=credentials)
                    self._reg_transaction = self._client_transaction(again, t, on_response, on_timeout,
                                                                     on_transport_error)
                    return
            self._registrator_response(response, t)

        def on_timeout(t: float) -> None:
            self._registration_failure(None, "Request Timeout", t)

        def on_transport_error(t: float) -> None:
            self._registration_failure(None, "Connection Error", t)

        self._reg_transaction = self._client_transaction(request, now, on_response, on_timeout,
                                                         on_transport_error)

    def _registrator_response(self, response: sip.SipResponse, now: float) -> None:
        self.registering = False
        self._reg_transaction = None
        status = response.status
        if 200 <= status < 300:
            if self._unregistering:
                self._unregistering = False
                if self.registered:
                    self.registered = False
                    self._emit(Event("unregistered", response=response))
                return
            contacts = response.contacts
            if not contacts:
                self.log.append((now, "no Contact header in response to REGISTER, response ignored"))
                return
            ours = next((c for c in contacts if c.uri.user == self.contact_user), None)
            if ours is None:
                self.log.append((now, "no Contact header pointing to us, response ignored"))
                return
            expires_text = ours.params.get("expires") or response.headers.get("Expires")
            try:
                expires = int(expires_text) if expires_text is not None else self._reg_expires
            except ValueError:
                expires = self._reg_expires
            self._reg_expires = self.config.register_expires
            if self._reg_timer is not None:
                self._reg_timer.cancel()
            # Re-register before expiry: JsSIP 2.0.6 subtracts 3 seconds.
            self._reg_timer = self._at(now + max(expires - 3, 0), self._refresh)
            if not self.registered:
                self.registered = True
                self._emit(Event("registered", response=response))
            return
        if status == 423 and (response.headers.get("Min-Expires") or "").isdigit():
            self._reg_expires = int(response.headers["Min-Expires"])
            self._send_register(now, expires=self._reg_expires)
            return
        self._registration_failure(response, cause_for_status(status), now)

    def _refresh(self, now: float) -> None:
        self._reg_timer = None
        if self.is_connected:
            self.register(now)

    def _registration_failure(self, response: sip.SipResponse | None, cause: str, now: float) -> None:
        self.registering = False
        self._reg_transaction = None
        if self.registered:
            self.registered = False
            self._emit(Event("unregistered", response=response, cause=cause))
        self._emit(Event("registrationFailed", response=response, cause=cause))

    def _registrator_transport_closed(self) -> None:
        self.registering = False
        self._reg_transaction = None
        if self._reg_timer is not None:
            self._reg_timer.cancel()
            self._reg_timer = None
        if self.registered:
            self.registered = False
            self._emit(Event("unregistered", cause="Connection Error"))

    # =============================================================================================
    # sessions
    # =============================================================================================
    def call(self, target: str, now: float, *, offer: str | bytes | None = None) -> Session:
        """``ua.call(target)``: a new outgoing session.  The INVITE leaves when the offer is given
        (here or later with :meth:`send_offer`), as JsSIP sends it only once ICE gathering is done."""
        if self.stopped:
            raise InvalidStateError("UA stopped")
        sip.parse_uri(target)
        session = Session(f"s{next(self._session_ids)}", target, _random_token(self.rng, 22),
                          _random_token(self.rng, 10), status=SessionStatus.WAITING_OFFER)
        self.sessions[session.id] = session
        self._emit(Event("newRTCSession", session, originator="local"))
        if offer is not None:
            self.send_offer(session, offer, now)
        return session

    def send_offer(self, session: Session, offer: str | bytes, now: float) -> None:
        """The local description is complete: filter it (``sdp`` event) and send the INVITE.

        An offer given as bytes is a test's arbitrary body (the SDP fuzzer's, tests/fuzz/sipua.py):
        it goes byte for byte, unfiltered -- a browser's offer is always text."""
        if session.status != SessionStatus.WAITING_OFFER:
            return  # terminated meanwhile (JsSIP checks the status after gathering)
        if isinstance(offer, bytes):
            body = offer
            offer = offer.decode("utf-8", "replace")
        else:
            if self.config.sdp_filter is not None:
                offer = self.config.sdp_filter("local", "offer", offer)
            body = offer.encode()
        session.local_sdp = offer
        cfg = self.config
        session.invite_cseq = self.rng.randrange(10000)   # JsSIP: Math.floor(Math.random() * 10000)
        aor = f"sip:{cfg.parsed_uri.user}@{cfg.parsed_uri.hostport}"
        request = sip.make_request(
            "INVITE", session.target, via=self._via(),
            from_=f"{sip.quote_string(cfg.display_name or '')} <{aor}>;tag={session.local_tag}",
            to=f"<{session.target}>", call_id=session.call_id, cseq=session.invite_cseq,
            max_forwards=MAX_FORWARDS, contact=f"<{self.contact_uri};ob>",
            headers=[("Content-Type", "application/sdp"), ("Allow", ALLOW),
                     ("Supported", "ice,replaces,outbound"), ("User-Agent", cfg.user_agent)],
            body=body)
        session.status = SessionStatus.INVITE_SENT
        self._send_invite(session, request, now)
        self._emit(Event("sending", session, request=request))

    def _send_invite(self, session: Session, request: sip.SipRequest, now: float) -> None:
        session.invite = request
        session.local_seqnum = request.cseq.number
        state = {"challenged": session.challenged, "staled": False}

        def on_response(tr: _ClientTransaction, response: sip.SipResponse, t: float) -> None:
            self._invite_response(session, tr, response, t, state)

        def on_timeout(t: float) -> None:
            # Timer B: observed as `failed` with cause "Canceled" (real-video-client.md 3.3, run r10)
            if session.status in (SessionStatus.INVITE_SENT, SessionStatus.PROVISIONAL):
                self._failed(session, "system", "Canceled")

        def on_transport_error(t: float) -> None:
            if session.status in (SessionStatus.INVITE_SENT, SessionStatus.PROVISIONAL):
                self._failed(session, "system", "Connection Error")
            elif session.status == SessionStatus.CANCELED:
                session.status = SessionStatus.TERMINATED

        self._client_transaction(request, now, on_response, on_timeout, on_transport_error, invite=True)

    def _invite_response(self, session: Session, tr: _ClientTransaction, response: sip.SipResponse,
                         now: float, state: dict) -> None:
        status = response.status
        if status < 200:
            if tr.state == TransactionState.CALLING:
                tr.state = TransactionState.PROCEEDING
                if tr.timer is not None:
                    tr.timer.cancel()   # Timer B only runs until the first answer
            if session.is_canceled and not session.cancel_sent:
                self._send_cancel(session, now)
                return
            if session.status == SessionStatus.INVITE_SENT:
                session.status = SessionStatus.PROVISIONAL
            if status > 100 and session.status == SessionStatus.PROVISIONAL:
                self._emit(Event("progress", session, originator="remote", response=response))
            return
        if status >= 300:
            self._drop_transaction(tr)
            self._send_ack_non2xx(tr.request, response)
            if status in (401, 407) and not session.is_canceled and session.status in (SessionStatus.INVITE_SENT,
                                                                                      SessionStatus.PROVISIONAL):
                credentials = self._credentials(tr.request, response, state)
                if credentials is not None:
                    session.challenged = True
                    again = _with(tr.request, cseq=tr.request.cseq.number + 1, via=self._via(),
                                  auth=credentials)
                    self._send_invite(session, again, now)
                    return
            if session.status in (SessionStatus.INVITE_SENT, SessionStatus.PROVISIONAL):
                self._failed(session, "remote", cause_for_status(status), response=response)
            elif session.status == SessionStatus.CANCELED:
                session.status = SessionStatus.TERMINATED
            return
        # 2xx
        tr.state = TransactionState.ACCEPTED
        self._drop_transaction(tr)
        if session.ack_for is not None:  # a retransmission or a forked 2xx
            self._send_ack_2xx(session, response.cseq.number)
            return
        if session.is_canceled or session.status == SessionStatus.CANCELED:   # crossed our CANCEL
            self._create_dialog(session, response)
            session.ack_for = response
            self._send_ack_2xx(session, response.cseq.number)
            self._send_in_dialog(session, "BYE", now)
            session.status = SessionStatus.TERMINATED
            return
        if session.status not in (SessionStatus.INVITE_SENT, SessionStatus.PROVISIONAL):
            return
        if not response.contacts:
            self._failed(session, "remote", "Dialog Error", response=response)
            return
        self._create_dialog(session, response)
        session.ack_for = response
        answer = response.body.decode("utf-8", "replace")
        if self.config.sdp_filter is not None:
            answer = self.config.sdp_filter("remote", "answer", answer)
        session.remote_sdp = answer
        session.status = SessionStatus.ANSWERED
        self._emit(Event("answer", session, originator="remote", response=response, sdp=answer))

    def remote_description_applied(self, session: Session, now: float, *, ok: bool = True) -> None:
        """The browser applied (or refused) the answer of the ``answer`` event: ACK and confirm, or
        ACK, BYE and fail with "Bad Media Description"."""
        if session.status != SessionStatus.ANSWERED or session.ack_for is None:
            return
        self._send_ack_2xx(session, session.ack_for.cseq.number)
        if not ok:
            self._send_in_dialog(session, "BYE", now)
            self._failed(session, "remote", "Bad Media Description", response=session.ack_for)
            return
        session.status = SessionStatus.CONFIRMED
        self._emit(Event("accepted", session, originator="remote", response=session.ack_for))
        self._emit(Event("confirmed", session, originator="local"))

    def _create_dialog(self, session: Session, response: sip.SipResponse) -> None:
        session.remote_tag = response.to_tag
        contacts = response.contacts
        session.remote_target = str(contacts[0].uri) if contacts else session.target
        session.route_set = list(reversed(response.headers.get_all("Record-Route")))

    def terminate(self, session: Session, now: float, *, cause: str = "") -> None:
        """``session.terminate()``: CANCEL before the answer, BYE after it.  ``cause`` ends an
        established session with that cause instead of "Terminated" (JsSIP's ICE failure passes
        "RTP Timeout" and puts it in the BYE's Reason header).

        Raises :class:`InvalidStateError` on an ended session (cometVideoApi catches it and logs
        ``INVALID_STATE_ERROR "Invalid status: 8"``)."""
        status = session.status
        if status in (SessionStatus.TERMINATED, SessionStatus.CANCELED):
            raise InvalidStateError("8")
        if status == SessionStatus.WAITING_ANSWER:  # an incoming call we never answered
            self._reply(session.incoming, 486, to_tag=session.local_tag)  # type: ignore[arg-type]
            self._failed(session, "local", "Rejected")
            return
        if status in (SessionStatus.NULL, SessionStatus.WAITING_OFFER, SessionStatus.INVITE_SENT):
            session.is_canceled = True
            self._failed(session, "local", "Canceled", status=SessionStatus.CANCELED)
            return
        if status == SessionStatus.PROVISIONAL:
            self._send_cancel(session, now)
            self._failed(session, "local", "Canceled", status=SessionStatus.CANCELED)
            return
        if status == SessionStatus.ANSWERED:   # the ACK is still owed: JsSIP ACKs, then BYEs
            self._send_ack_2xx(session, session.ack_for.cseq.number)  # type: ignore[union-attr]
        extra = [("Reason", f'SIP ;cause=408 ;text="{cause}"')] if cause else []
        self._send_in_dialog(session, "BYE", now, extra=extra)
        self._ended(session, "local", cause or "Terminated")

    def _send_cancel(self, session: Session, now: float) -> None:
        invite = session.invite
        if invite is None or session.cancel_sent:
            return
        session.cancel_sent = True
        h = invite.headers
        cancel = sip.make_request("CANCEL", invite.uri, via=h["Via"], from_=h["From"], to=h["To"],
                                  call_id=invite.call_id, cseq=invite.cseq.number, max_forwards=MAX_FORWARDS)

        def on_response(tr: _ClientTransaction, response: sip.SipResponse, t: float) -> None:
            if response.status >= 200:
                self._drop_transaction(tr)

        self._client_transaction(cancel, now, on_response, lambda t: None, lambda t: None)

    def hold(self, session: Session, offer: str, now: float) -> bool:
        """``session.hold()``: a re-INVITE with ``offer`` (the driver's ``a=sendonly`` offer)."""
        return self._reinvite(session, offer, True, now)

    def unhold(self, session: Session, offer: str, now: float) -> bool:
        """``session.unhold()``: a re-INVITE with the ``a=sendrecv`` offer."""
        return self._reinvite(session, offer, False, now)

    def _reinvite(self, session: Session, offer: str, hold: bool, now: float) -> bool:
        """JsSIP 2.0.6's hold()/unhold(): nothing when already in that state or not confirmed;
        ``hold``/``unhold`` is emitted at once, then the re-INVITE goes out."""
        if session.status != SessionStatus.CONFIRMED or session.reinvite is not None or session.local_hold == hold:
            return False
        if self.config.sdp_filter is not None:
            offer = self.config.sdp_filter("local", "offer", offer)
        session.local_sdp = offer
        request = self._in_dialog_request(session, "INVITE", body=offer.encode(), extra=[
            ("Contact", f"<{self.contact_uri};ob>"), ("Content-Type", "application/sdp"), ("Allow", ALLOW),
            ("Supported", "outbound"), ("User-Agent", self.config.user_agent)])
        session.reinvite_hold = hold
        session.local_hold = hold
        self._emit(Event("hold" if hold else "unhold", session, originator="local"))

        def on_response(tr: _ClientTransaction, response: sip.SipResponse, t: float) -> None:
            if response.status < 200:
                return
            self._drop_transaction(tr)
            session.reinvite = None
            if response.status >= 300:
                self._send_ack_non2xx(tr.request, response)
                if response.status in (408, 481):
                    self._ended(session, "remote", "Dialog Error", response=response)
                else:
                    self._emit(Event("reinviteFailed", session, originator="remote", response=response))
                return
            self._send_ack_2xx(session, response.cseq.number)
            answer = response.body.decode("utf-8", "replace")
            if answer and self.config.sdp_filter is not None:
                answer = self.config.sdp_filter("remote", "answer", answer)
            session.remote_sdp = answer or session.remote_sdp

        def on_error(t: float) -> None:
            session.reinvite = None
            if not session.terminated:
                self._ended(session, "system", "Connection Error")

        def on_timeout(t: float) -> None:
            session.reinvite = None
            if not session.terminated:
                self._ended(session, "system", "Request Timeout")

        session.reinvite = self._client_transaction(request, now, on_response, on_timeout, on_error, invite=True)
        return True

    def mute(self, session: Session, *, audio: bool = False, video: bool = False) -> None:
        """Local only: disables the sent tracks, no SIP (JsSIP ``session.mute``)."""
        changed = {k: True for k, v in (("audio", audio), ("video", video)) if v and not session.muted[k]}
        session.muted.update(changed)
        if changed:
            self._emit(Event("muted", session, originator="local", data=changed))

    def unmute(self, session: Session, *, audio: bool = False, video: bool = False) -> None:
        changed = {k: False for k, v in (("audio", audio), ("video", video)) if v and session.muted[k]}
        session.muted.update(changed)
        if changed:
            self._emit(Event("unmuted", session, originator="local", data={k: True for k in changed}))

    def _send_in_dialog(self, session: Session, method: str, now: float, *,
                        extra: list[tuple[str, str]] | None = None) -> None:
        request = self._in_dialog_request(session, method, extra=[
            *(extra or []), ("Allow", ALLOW), ("Supported", "outbound"), ("User-Agent", self.config.user_agent)])

        def on_response(tr: _ClientTransaction, response: sip.SipResponse, t: float) -> None:
            if response.status >= 200:
                self._drop_transaction(tr)

        self._client_transaction(request, now, on_response, lambda t: None, lambda t: None)

    def _in_dialog_request(self, session: Session, method: str, *, extra: list[tuple[str, str]],
                           body: bytes = b"") -> sip.SipRequest:
        session.local_seqnum += 1
        return self._dialog_message(session, method, session.local_seqnum, extra=extra, body=body)

    def _dialog_message(self, session: Session, method: str, cseq: int, *, extra: list[tuple[str, str]],
                        body: bytes = b"") -> sip.SipRequest:
        cfg = self.config
        aor = f"sip:{cfg.parsed_uri.user}@{cfg.parsed_uri.hostport}"
        to = f"<{session.target}>" + (f";tag={session.remote_tag}" if session.remote_tag else "")
        return sip.make_request(
            method, session.remote_target or session.target, via=self._via(),
            from_=f"{sip.quote_string(cfg.display_name or '')} <{aor}>;tag={session.local_tag}", to=to,
            call_id=session.call_id, cseq=cseq, max_forwards=MAX_FORWARDS, routes=session.route_set,
            headers=extra, body=body)

    def _send_ack_2xx(self, session: Session, cseq: int) -> None:
        ack = self._dialog_message(session, "ACK", cseq, extra=[
            ("Allow", ALLOW), ("Supported", "outbound"), ("User-Agent", self.config.user_agent)])
        self._send_message(ack)

    def _send_ack_non2xx(self, request: sip.SipRequest, response: sip.SipResponse) -> None:
        """RFC 3261 17.1.1.3: same Request-URI, Call-ID, From, top Via (branch), CSeq number; To
        from the response."""
        h = request.headers
        ack = sip.make_request("ACK", request.uri, via=h["Via"], from_=h["From"], to=response.headers["To"],
                               call_id=request.call_id, cseq=request.cseq.number, max_forwards=MAX_FORWARDS,
                               routes=h.get_all("Route"),
                               headers=[("Allow", ALLOW), ("Supported", "outbound"),
                                        ("User-Agent", self.config.user_agent)])
        self._send_message(ack)

    def _failed(self, session: Session, originator: str, cause: str, *, response: sip.SipResponse | None = None,
                status: SessionStatus = SessionStatus.TERMINATED) -> None:
        session.status = status
        session.end_cause, session.end_originator = cause, originator
        if session.no_answer_timer is not None:
            session.no_answer_timer.cancel()
        self._emit(Event("failed", session, originator=originator, cause=cause, response=response))

    def _ended(self, session: Session, originator: str, cause: str, *, response: sip.SipResponse | None = None,
               request: sip.SipRequest | None = None) -> None:
        session.status = SessionStatus.TERMINATED
        session.end_cause, session.end_originator = cause, originator
        self._emit(Event("ended", session, originator=originator, cause=cause, response=response,
                         request=request))

    # =============================================================================================
    # transactions and sending
    # =============================================================================================
    def _client_transaction(self, request: sip.SipRequest, now: float, on_response, on_timeout,
                            on_transport_error, *, invite: bool = False) -> _ClientTransaction:
        branch = request.branch or ""
        tr = _ClientTransaction(request, branch, request.method, on_response, on_timeout, on_transport_error)

        def timeout(t: float) -> None:
            if self._transactions.get((branch, request.method)) is tr:
                self._drop_transaction(tr)
                tr.on_timeout(t)

        tr.timer = self._at(now + (TIMER_B if invite else TIMER_F), timeout)
        self._transactions[(branch, request.method)] = tr
        if not self._send_message(request):
            self._drop_transaction(tr)
            tr.on_transport_error(now)
        return tr

    def _drop_transaction(self, tr: _ClientTransaction) -> None:
        if tr.timer is not None:
            tr.timer.cancel()
        key = (tr.branch, tr.method)
        if self._transactions.get(key) is tr:
            del self._transactions[key]

    def _send_message(self, message: sip.SipMessage) -> bool:
        if not self.is_connected:
            return False
        self.sent.append(message)
        self._out.append(message.encode())
        return True

    def _credentials(self, request: sip.SipRequest, response: sip.SipResponse, state: dict) -> tuple[str, str] | None:
        """Digest credentials for a 401/407, or None when JsSIP would give up (second challenge)."""
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        value = response.headers.get(header)
        if value is None:
            return None
        try:
            challenge = sip.parse_digest_params(value)
        except sip.SipParseError:
            return None
        stale = challenge.get("stale", "").lower() == "true"
        if state["challenged"] and not (stale and not state["staled"]):
            return None
        if state["challenged"]:
            state["staled"] = True
        state["challenged"] = True
        if "realm" not in challenge or "nonce" not in challenge:
            return None
        auth = sip.make_digest_authorization(challenge, username=self.config.authorization_user or "",
                                             password=self.config.password, method=request.method,
                                             uri=request.uri, cnonce=_random_token(self.rng, 12))
        return ("Authorization" if response.status == 401 else "Proxy-Authorization", auth)

    def _via(self) -> str:
        branch = sip.BRANCH_MAGIC_COOKIE + str(math.floor(self.rng.random() * 10_000_000))
        return f"SIP/2.0/{self.config.via_transport} {self.via_host};branch={branch}"

    def _at(self, when: float, fn: Callable[[float], None]) -> _Timer:
        timer = _Timer(when, fn)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def _emit(self, event: Event) -> None:
        self._events.append(event)


def _with(request: sip.SipRequest, *, cseq: int, via: str, auth: tuple[str, str]) -> sip.SipRequest:
    """The same request again with a new CSeq number, a new Via and credentials (JsSIP's RequestSender)."""
    headers = request.headers.copy()
    headers.set("Via", via)
    headers.set("CSeq", f"{cseq} {request.method}")
    name, value = auth
    headers.remove(name)
    # JsSIP sets the credentials on the request's own headers, written right after CSeq and before
    # the extra headers (Contact, Expires, Allow ...).
    items = headers.items()
    index = next((i for i, (n, _) in enumerate(items) if n.lower() == "cseq"), len(items) - 1)
    headers.insert(index + 1, name, value)
    return sip.SipRequest(request.method, request.uri, request.version, headers, request.body)


def _random_token(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(_TOKEN_ALPHABET) for _ in range(size))


def _uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"
