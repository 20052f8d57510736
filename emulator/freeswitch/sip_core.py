"""The SIP side of the fake FreeSWITCH: registrar, digest auth, dialplan, dialogs, transactions.

What it models is mod_sofia's ``internal`` profile as the CppComet roles configure it
(video-call-flow.md 1.2, 2.6, 2.7; real-video-client.md 4 and 6):

* **REGISTER**: a 401 digest challenge (realm = the From host, ``challenge-realm auto_from``); the
  digest user must equal the From user (``inbound-reg-force-matching-username``); the password is
  the users_auth hash found through the comet server's directory lookup (unknown user: 403); the
  200 echoes the request's Contact with ``;expires=`` (JsSIP ignores a 200 without it); several
  bindings per address-of-record; bindings expire, and vanish when their WebSocket closes.
* **INVITE**: 407 challenge, then the dialplan of ``dialplan/default.xml`` (``<dev>*<room>*audio``
  and ``<dev>*<room>*<profile>``; anything else 404), ``100 Trying``, then ``answer``: a 200 with
  a To tag, a Contact and an SDP answer (WebRTC for browsers, plain RTP/AVP for sipp), and the
  channel joins conference ``<dev>*<room>-<domain>@<profile>``.  A full room is answered and then
  hung up with BYE, as mod_conference does.
* **In dialog**: ACK, BYE both ways (a kick/hup is a BYE to the caller's Contact), CANCEL (200 + 487),
  re-INVITE (hold), OPTIONS; unknown dialogs get 481, unsupported methods 405.
* **Transactions** (RFC 3261 17): retransmitted requests get the cached response again; over UDP
  the answers to INVITE (2xx and errors) are repeated (T1 doubling up to T2) until the ACK comes,
  and our BYE until the client answers, for at most 64*T1 (Timers G/H, E/F).  Reliable transports
  retransmit nothing.

Everything here is synchronous and I/O-free apart from :meth:`Flow.send`.  Timers (retransmissions,
cached answers, expiring registrations, a delayed answer) are on the node's
:class:`~emulator.clock.Timers`, shared with the bridge and run by the stack on trio's clock (so a
MockClock drives them too); every message and closed flow first runs what is due, and a test that
moves its clock by hand calls ``core.timers.run_due()``.
"""

from __future__ import annotations

import functools
import random
import re
import uuid as _uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import trio

from emulator.clock import Timer, Timers
from emulator.freeswitch.conference import Bridge
from emulator.freeswitch.flow import Flow
from emulator.freeswitch.media import QUALITY_PRESETS, LinkConditions, Quality, link_presets, media_start_delay
from emulator.freeswitch.model import Channel, HangupCause, Refusal
from emulator.freeswitch.real_media import MediaWorkerError, RealMedia
from emulator.journal import Journal
from emulator.wire import sdp as s
from emulator.wire import sip
from emulator.wire.sip import T1, T2

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY"
SUPPORTED = "timer, path, replaces"
USER_AGENT = "FreeSWITCH-mod_sofia/1.6.20 (cometbench)"
DEFAULT_EXPIRES = 3600
MAX_EXPIRES = 7200

# dialplan/default.xml of the CppComet FreeSWITCH role (video-call-flow.md 1.2)
AUDIO_EXTENSION = re.compile(r"^([0-9]{1,9}\*[0-9A-z\-_]+)\*audio$")
CONFERENCE_EXTENSION = re.compile(r"^([0-9]{1,9}\*[0-9A-z\-_]+)\*([0-9A-z\-_]+)$")


def route(destination: str, domain: str) -> tuple[str, str, bool] | None:
    """(conference name, profile, audio only) for a dialled number, or None (404)."""
    m = AUDIO_EXTENSION.match(destination)
    if m:
        return f"{m.group(1)}-{domain}", "audio", True
    m = CONFERENCE_EXTENSION.match(destination)
    if m:
        return f"{m.group(1)}-{domain}", m.group(2), False
    return None


def plain_answer(offer: s.SessionDescription, host: str, port: int, rng: random.Random) -> bytes:
    """An RTP/AVP answer for a non-WebRTC offer (sipp): PCMU if offered, else the first format."""
    lines = ["v=0", f"o=FreeSWITCH {rng.randrange(1, 2**31)} {rng.randrange(1, 2**31)} IN IP4 {host}",
             "s=FreeSWITCH", f"c=IN IP4 {host}", "t=0 0"]
    accepted = False
    for media in offer.media:
        formats = list(media.formats)
        if media.kind == "audio" and formats and not accepted:
            pt = "0" if "0" in formats else "8" if "8" in formats else formats[0]
            name = {"0": "PCMU/8000", "8": "PCMA/8000"}.get(pt)
            lines.append(f"m=audio {port} RTP/AVP {pt}")
            if name:
                lines.append(f"a=rtpmap:{pt} {name}")
            lines.append("a=sendrecv")
            accepted = True
        else:
            lines.append(f"m={media.kind} 0 {media.proto} {formats[0] if formats else '0'}")
    if not accepted:
        raise s.SdpError("no acceptable audio stream", 488)
    return ("\r\n".join(lines) + "\r\n").encode()


def quality_of(offer: s.SessionDescription) -> Quality:
    """The sender's quality from the offer's video b=AS cap (cometVideoApi.setBandwidth)."""
    kbps = None
    for media in offer.media:
        if media.kind == "video":
            kbps = media.bandwidths.get("AS")
    if kbps is None:
        return QUALITY_PRESETS["low"]
    best = min(QUALITY_PRESETS.values(), key=lambda q: abs(q.video_kbps - kbps))
    return Quality(best.width, best.height, best.fps, float(kbps), best.audio_kbps)


def transaction_key(message: sip.SipMessage) -> str:
    """What names a transaction, server or client (RFC 3261 17.2.3, 17.1.3): the top Via's branch
    and its sent-by (host and port), so two clients that happen to pick the same branch are two
    transactions.  That happens: JsSIP's branch is ``z9hG4bK`` and 7 random digits, and a few
    thousand INVITEs from many browsers make a repeat likely (birthday bound); matching on the
    branch alone answered one client's INVITE with another's cached response.  The method is not
    part of the key: callers pair it with the method where they need to (a CANCEL and an ACK share
    their INVITE's key)."""
    via = message.top_via
    return f"{via.branch or ''} {via.host.lower()}:{via.port or ''}"


@dataclass(eq=False)
class Binding:
    aor: str
    contact: str          # the Contact header value as the client sent it (without expires)
    uri: str
    flow: Flow
    expires_at: float
    call_id: str
    #: its expiry; cancelled when the binding goes before it (replaced, unregistered, its
    #: connection closed), so no timer outlives the binding it was for
    timer: Timer | None = field(default=None, repr=False)

    def drop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


#: The timer group of a SIP core on its node's Timers (the bridge's is ``bridge``).
TIMER_GROUP = "sip"


class DialogState(StrEnum):
    """An INVITE dialog of the server: early (answered, no ACK yet) -> confirmed -> terminated."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(eq=False)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    invite: sip.SipRequest
    flow: Flow
    channel: Channel
    conference: str
    profile: str
    state: DialogState = DialogState.EARLY
    member_id: int | None = None
    local_cseq: int = 0
    answer: bytes = b""
    response: bytes = b""           # the 2xx, retransmitted over UDP until ACK
    refused: Refusal | None = None
    media_key: str | None = None    # real media: the call's key in the media worker
    retransmit_at: float = 0.0
    retransmit_interval: float = T1
    retransmit_deadline: float = 0.0


@dataclass(eq=False)
class PendingInvite:
    request: sip.SipRequest
    flow: Flow
    to_tag: str
    key: str                         # the INVITE's transaction_key
    user: str
    answer_at: float
    route: tuple[str, str, bool]     # (conference, profile, audio only) from the dialplan


class SipCore:
    def __init__(self, bridge: Bridge, password_for: Callable[[str], str | None], *, rng: random.Random,
                 journal: Journal | None = None, host: str = "127.0.0.1", port: int = 7443,
                 media_fingerprint: str = "00" + ":00" * 31, media_ip: str = "127.0.0.1", media_port: int = 16384,
                 answer_delay: float = 0.0, link_for: Callable[[Flow], LinkConditions] | None = None,
                 nonce_ttl: float = 60.0, clock: Callable[[], float] | None = None,
                 client_of: Callable[[Flow], str] | None = None,
                 keeps_media: Callable[[Dialog], bool] | None = None,
                 password_lookup: Callable[..., Awaitable[str | None]] | None = None,
                 timers: Timers | None = None) -> None:
        self.bridge = bridge
        #: The node's timers: the bridge's unless given (one timer facility per FreeSWITCH node).
        self.timers = timers if timers is not None else bridge.timers
        #: What this core reads as "now" (the timers' clock unless a test gives its own source).
        self.clock = clock if clock is not None else self.timers.clock
        self.password_for = password_for
        self.rng = rng
        self.journal = journal or Journal(enabled=False)
        self.host, self.port = host, port
        self.media_fingerprint = media_fingerprint
        self.media_ip, self.media_port = media_ip, media_port
        self.answer_delay = answer_delay
        self.link_for = link_for or (lambda flow: link_presets().get("loopback", LinkConditions(0.1)))
        # the bench client behind a flow (per-client links; the virtual network names peers after them)
        self.client_of = client_of or (lambda flow: flow.client or flow.peer.host)
        # True when a dialog's media does not depend on its SIP connection (the browser's peer
        # connection is tracked by the media link glue): a closed flow then leaves the media alone
        self.keeps_media = keeps_media
        # an asynchronous directory (mod_xml_curl over HTTP, emulator/freeswitch/directory_client.py):
        # ``await password_lookup(user, method=..., realm=..., ip=...)``; used instead of password_for
        # when given.  The request waits for the answer and is then handled again.
        self.password_lookup = password_lookup
        self._looked_up: dict[tuple[int, int], str | None] = {}
        self._nursery: trio.Nursery | None = None
        self.nonces = sip.NonceManager.from_rng(rng, ttl=nonce_ttl)
        self.bindings: dict[str, list[Binding]] = {}
        #: the AORs each connection registered (insertion-ordered), so that a closed connection
        #: visits its own bindings, not every AOR's (a storm of closes was quadratic); an entry may
        #: name an AOR whose binding has since gone another way, which the close re-checks
        self._flow_aors: dict[Flow, dict[str, None]] = {}
        self.dialogs: dict[tuple[str, str], Dialog] = {}
        # server and client transactions, by transaction_key (branch and sent-by, RFC 3261 17.2.3)
        self.pending: dict[str, PendingInvite] = {}          # INVITE's key -> not yet answered
        #: Real media (emulator/freeswitch/real_media.py), set by the stack when ``media = "real"``.
        self.real_media: RealMedia | None = None
        self.pending_real: dict[str, PendingInvite] = {}     # INVITE's key -> the endpoint is answering
        self.responses: dict[tuple[str, str], tuple[bytes, float]] = {}  # (key, method) -> last response
        self.unacked: dict[str, bytes] = {}  # key -> message repeated over UDP until answered
        self.stats = {"registers": 0, "invites": 0, "answered": 0, "byes": 0}

    # -- time --------------------------------------------------------------------------------------
    def _at(self, when: float, fn: Callable[..., None], *args: Any) -> Timer:
        return self.timers.at(when, fn, *args, group=TIMER_GROUP)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The task of the asynchronous directory lookups; it also drives the node's timers when no
        other task does (the stack runs ``timers.run`` itself)."""
        async with trio.open_nursery() as nursery:   # directory lookups run here
            self._nursery = nursery
            try:
                if self.timers.driven:
                    task_status.started()
                    await trio.sleep_forever()
                else:
                    await self.timers.run(task_status=task_status)
            finally:
                self._nursery = None

    # -- I/O entry points --------------------------------------------------------------------------
    def _send(self, flow: Flow, message: sip.SipRequest | sip.SipResponse) -> bytes:
        data = message.encode()
        flow.send(data)  # the transport journals every message in and out
        return data

    def _respond(self, flow: Flow, request: sip.SipRequest, status: int, *, to_tag: str | None = None,
                 headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> bytes:
        extra = list(headers or [])
        if status != 100 and not any(h[0] == "User-Agent" for h in extra):
            extra.append(("User-Agent", USER_AGENT))
        if to_tag is None and status != 100 and request.to_tag is None:
            to_tag = sip.generate_tag(self.rng)
        response = sip.make_response(request, status, to_tag=to_tag, headers=extra, body=body)
        data = self._send(flow, response)
        if request.method != "ACK" and status >= 200:
            key = (transaction_key(request), request.method)
            self.responses[key] = (data, self.clock() + 32.0)
            self._at(self.clock() + 32.0, self._forget, key)
        if request.method == "INVITE" and status >= 300 and not flow.reliable:
            # Timer G: a final error to an INVITE over UDP is repeated until its ACK (Timer H: 64*T1)
            tkey = transaction_key(request)
            self.unacked[tkey] = data
            self._at(self.clock() + T1, self._repeat_first, flow, tkey, data)
        return data

    def _repeat_first(self, flow: Flow, key: str, data: bytes) -> None:
        """The first repetition (T1 after the original); Timers H/F run 64*T1 from now."""
        self._repeat(flow, key, data, T1, self.clock() + 64 * T1)

    def _repeat(self, flow: Flow, key: str, data: bytes, interval: float, deadline: float) -> None:
        """Timers G/H (error answers to INVITE) and E/F (our BYE) over UDP: T1 doubling up to T2."""
        if self.unacked.get(key) is not data or not flow.alive:
            return
        now = self.clock()
        if now >= deadline:
            del self.unacked[key]
            return
        flow.send(data)
        interval = min(interval * 2, T2)
        self._at(now + interval, self._repeat, flow, key, data, interval, deadline)

    def _forget(self, key: tuple[str, str]) -> None:
        entry = self.responses.get(key)
        if entry is not None and entry[1] <= self.clock():
            del self.responses[key]

    def receive(self, flow: Flow, data: bytes) -> None:
        """One SIP message from a transport."""
        if sip.is_keepalive(data):
            return
        self.timers.run_due()
        try:
            message = sip.parse_message(data)
        except sip.SipParseError as exc:
            self.journal.record("sip", "bad_message", conn_id=flow.id, data=f"{exc} {data[:80]!r}")
            self.answer_malformed(flow, data, exc.status, exc.reason)
            return
        try:
            if isinstance(message, sip.SipResponse):
                self._on_response(flow, message)
            else:
                self._on_request(flow, message)
        except (sip.SipParseError, KeyError, ValueError) as exc:  # a request we cannot make sense of
            self.journal.record("sip", "bad_request", conn_id=flow.id, data=str(exc))
            if isinstance(message, sip.SipRequest) and message.method != "ACK":
                try:
                    self._respond(flow, message, 400)
                except (KeyError, ValueError, sip.SipParseError):
                    pass

    def answer_malformed(self, flow: Flow, data: bytes, status: int = 400, reason: str | None = None) -> bool:
        """Answer a request that does not parse, as sofia's nta does: ``400`` (or the parser's
        413/505/513, or 408 for a message cut off by a timeout) whenever its top Via is usable and
        it is not an ACK.  Transports call it for what they cannot frame (a bad head on TCP); the
        response is not journaled beyond the outgoing ``message`` record.  True if one was sent."""
        response = sip.error_response(data, status, reason, to_tag=sip.generate_tag(self.rng),
                                      headers=[("User-Agent", USER_AGENT)])
        if response is None:
            return False
        flow.send(response)
        return True

    def flow_closed(self, flow: Flow) -> None:
        """A WebSocket/TCP connection ended: its registrations vanish, its calls lose signalling."""
        flow.alive = False
        self.timers.run_due()
        for aor in self._flow_aors.pop(flow, {}):
            if aor not in self.bindings:
                continue
            kept = [b for b in self.bindings[aor] if b.flow is not flow]
            for gone in self.bindings[aor]:
                if gone.flow is flow:
                    gone.drop()
            if kept:
                self.bindings[aor] = kept
            else:
                del self.bindings[aor]
        for key, pending in list(self.pending.items()):
            if pending.flow is flow:
                del self.pending[key]
        for key, pending in list(self.pending_real.items()):
            if pending.flow is flow:
                del self.pending_real[key]
        for dialog in list(self.dialogs.values()):
            if dialog.flow is flow and dialog.state != DialogState.TERMINATED:
                if dialog.member_id is not None:
                    if self.keeps_media is None or not self.keeps_media(dialog):
                        self.bridge.signalling_lost(dialog.member_id)
                else:
                    self._end(dialog, HangupCause.NORMAL_CLEARING)
        self.journal.record("sip", "flow_closed", conn_id=flow.id, data=f"{flow.transport} {flow.peer}")

    # -- requests ----------------------------------------------------------------------------------
    def _on_request(self, flow: Flow, request: sip.SipRequest) -> None:
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            if name not in request.headers:
                raise sip.SipParseError(f"missing {name}")
        if request.method != "ACK":
            cached = self.responses.get((transaction_key(request), request.method))
            if cached is not None:  # a retransmission: answer it the same way again
                flow.send(cached[0])
                return
        method = request.method
        if method == "REGISTER":
            self._register(flow, request)
        elif method == "INVITE":
            if request.to_tag:
                self._reinvite(flow, request)
            else:
                self._invite(flow, request)
        elif method == "ACK":
            self._ack(flow, request)
        elif method == "BYE":
            self._bye(flow, request)
        elif method == "CANCEL":
            self._cancel(flow, request)
        elif method == "OPTIONS":
            self._respond(flow, request, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp"),
                                                       ("Supported", SUPPORTED)])
        elif request.to_tag and (request.call_id, request.to_tag) not in self.dialogs:
            self._respond(flow, request, 481)
        else:
            self._respond(flow, request, 405, headers=[("Allow", ALLOW)])

    def _authorize(self, flow: Flow, request: sip.SipRequest, header: str, challenge_header: str,
                   status: int) -> str | None:
        """The authenticated user, or None after sending a challenge / 403."""
        realm = request.from_addr.uri.host
        from_user = request.from_addr.uri.user or ""
        credentials = request.headers.get(header)
        now = self.clock()
        stale = False
        if credentials:
            params = sip.parse_digest_params(credentials)
            username = params.get("username", "")
            nonce_state = self.nonces.check(params.get("nonce", ""), now)
            if nonce_state is sip.NonceStatus.STALE:
                stale = True
            elif nonce_state is sip.NonceStatus.VALID:
                if self.password_lookup is not None:
                    key = (flow.id, id(request))
                    if key not in self._looked_up:
                        self._start_lookup(flow, request, username, realm, key)
                        return None          # handled again once the directory has answered
                    password = self._looked_up.pop(key)
                else:
                    password = self.password_for(username)
                if password is None or username != from_user or not sip.verify_digest(params, request.method,
                                                                                          password):
                    self.journal.record("sip", "auth_failed", conn_id=flow.id,
                                        data=f"{request.method} user={username!r} from={from_user!r}")
                    self._respond(flow, request, 403)
                    return None
                return username
        nonce = self.nonces.make(max(now, 0.0), self.rng)
        self._respond(flow, request, status,
                      headers=[(challenge_header, sip.make_digest_challenge(realm, nonce, stale=stale))])
        return None

    def _start_lookup(self, flow: Flow, request: sip.SipRequest, username: str, realm: str,
                      key: tuple[int, int]) -> None:
        async def lookup() -> None:
            assert self.password_lookup is not None
            password = await self.password_lookup(username, method=request.method, realm=realm, ip=flow.peer.host)
            if not flow.alive:
                return
            self._looked_up[key] = password
            try:
                self._on_request(flow, request)
            except (sip.SipParseError, KeyError, ValueError) as exc:
                self.journal.record("sip", "bad_request", conn_id=flow.id, data=str(exc))
            finally:
                self._looked_up.pop(key, None)

        if self._nursery is None:
            raise RuntimeError("SipCore.run() must be running for directory lookups")
        self._nursery.start_soon(lookup)

    def _register(self, flow: Flow, request: sip.SipRequest) -> None:
        self.stats["registers"] += 1
        user = self._authorize(flow, request, "Authorization", "WWW-Authenticate", 401)
        if user is None:
            return
        aor = f"{user}@{request.to_addr.uri.host}"
        now = self.clock()
        header_expires = request.headers.get("Expires")
        bindings = self.bindings.setdefault(aor, [])
        for contact in request.contacts:
            value = contact.params.get("expires")
            expires = int(value) if value and value.isdigit() else (
                int(header_expires) if header_expires and header_expires.isdigit() else DEFAULT_EXPIRES)
            expires = min(expires, MAX_EXPIRES)
            uri = str(contact.uri)
            replaced = [b for b in bindings if b.uri == uri]
            bindings[:] = [b for b in bindings if b.uri != uri]
            for old in replaced:
                old.drop()
                self._unindex(old, bindings)
            if expires > 0:
                binding = Binding(aor, _without_expires(str(contact)), uri, flow, now + expires, request.call_id)
                binding.timer = self._at(now + expires, self._expire, aor, uri)
                bindings.append(binding)
                self._flow_aors.setdefault(flow, {})[aor] = None
        if not bindings:
            self.bindings.pop(aor, None)
        contacts = [(b.contact + f";expires={max(0, int(b.expires_at - now))}") for b in self.bindings.get(aor, [])]
        headers = [("Contact", c) for c in contacts]
        if header_expires is not None:
            headers.append(("Expires", header_expires if header_expires == "0" else str(
                min(int(header_expires), MAX_EXPIRES) if header_expires.isdigit() else DEFAULT_EXPIRES)))
        self.journal.record("sip", "registered", conn_id=flow.id, data=f"{aor} bindings={len(contacts)}")
        self._respond(flow, request, 200, headers=headers)

    def _unindex(self, gone: Binding, kept: list[Binding]) -> None:
        """``gone`` left its AOR, whose bindings are now ``kept``: its connection no longer holds
        that AOR unless another kept binding is on it (a UDP flow may never close)."""
        aors = self._flow_aors.get(gone.flow)
        if aors is not None and not any(b.flow is gone.flow for b in kept):
            aors.pop(gone.aor, None)
            if not aors:
                del self._flow_aors[gone.flow]

    def _expire(self, aor: str, uri: str) -> None:
        now = self.clock()
        bindings = self.bindings.get(aor)
        if not bindings:
            return
        expired = [b for b in bindings if b.uri == uri and b.expires_at <= now]
        bindings[:] = [b for b in bindings if not (b.uri == uri and b.expires_at <= now)]
        for binding in expired:
            binding.timer = None   # it is this timer, running now
            self._unindex(binding, bindings)
        if not bindings:
            del self.bindings[aor]

    def _invite(self, flow: Flow, request: sip.SipRequest) -> None:
        key = transaction_key(request)
        if key in self.pending:
            return  # retransmission while we wait to answer
        self.stats["invites"] += 1
        user = self._authorize(flow, request, "Proxy-Authorization", "Proxy-Authenticate", 407)
        if user is None:
            return
        destination = request.parsed_uri.user or ""
        routed = route(destination, self.bridge.domain)
        if routed is None:
            self.journal.record("sip", "no_route", conn_id=flow.id, data=destination)
            self._respond(flow, request, 404)
            return
        self._respond(flow, request, 100)
        pending = PendingInvite(request, flow, sip.generate_tag(self.rng), key, user,
                                self.clock() + self.answer_delay, routed)
        self.pending[key] = pending
        if self.answer_delay > 0:
            self._at(pending.answer_at, self._answer, key)
        else:
            self._answer(key)

    def _answer(self, key: str) -> None:
        pending = self.pending.pop(key, None)
        if pending is None or not pending.flow.alive:
            return
        request, flow = pending.request, pending.flow
        conference, profile, audio_only = pending.route
        try:
            offer = s.parse_sdp(request.body) if request.body else None
            if offer is None:
                raise s.SdpError("an INVITE without an offer is not supported", 488)
            webrtc = offer.ice_ufrag is not None or any(m.ice_ufrag for m in offer.media)
            if webrtc:
                model = s.build_webrtc_answer(
                    offer, host_ip=self.media_ip, port=self.media_port, ice_ufrag=_token(self.rng, 8),
                    ice_pwd=_token(self.rng, 24), fingerprint_sha256=self.media_fingerprint, rng=self.rng,
                    audio_codecs=("PCMU", "GSM") if audio_only else ("opus", "PCMU"),
                    allow_video=not audio_only)
                if self.real_media is not None and self.real_media.serves(self.client_of(flow)):
                    self._answer_real(pending, offer, model)
                    return
                answer = model.encode()
            else:
                answer = plain_answer(offer, self.media_ip, self.media_port, self.rng)
        except (s.SdpError, ValueError) as exc:
            self.journal.record("sip", "bad_sdp", conn_id=flow.id, data=str(exc))
            self._respond(flow, request, 488, to_tag=pending.to_tag)
            return
        self._complete(pending, offer, answer,
                       media_delay=lambda: media_start_delay(self.link_for(flow), quality_of(offer), self.rng))

    def _answer_real(self, pending: PendingInvite, offer: s.SessionDescription, model: s.SessionDescription) -> None:
        """Real media: the worker's endpoint answers the offer narrowed to FreeSWITCH's choices; the
        200 OK carries its transport and RTP lines in FreeSWITCH's shape (emulator/freeswitch/real_media.py).
        The member's media starts at its first RTP, not after the model's delay."""
        real = self.real_media
        assert real is not None
        key = f"{pending.request.call_id};{pending.to_tag}"
        self.pending_real[pending.key] = pending

        async def ask() -> None:
            request, flow = pending.request, pending.flow
            try:
                text = await real.answer(key, s.endpoint_offer(offer, model).to_text())
                answer = s.reskin_answer(text, model).encode()
            except (s.SdpError, ValueError, MediaWorkerError) as exc:
                real.ended(key)
                if self.pending_real.pop(pending.key, None) is None or not flow.alive:
                    return
                status = 503 if isinstance(exc, MediaWorkerError) else 488
                self.journal.record("sip", "media_failed", conn_id=flow.id, data=f"{status}: {exc}")
                self._respond(flow, request, status, to_tag=pending.to_tag)
                return
            if self.pending_real.pop(pending.key, None) is None or not flow.alive:
                real.ended(key)   # cancelled (or the caller went) while the endpoint answered
                return
            dialog = self._complete(pending, offer, answer, media_delay=lambda: None)
            dialog.media_key = key
            real.answered(key, dialog.member_id, dialog.channel.hangup)

        if self._nursery is None:
            raise RuntimeError("SipCore.run() must be running for real media")
        self._nursery.start_soon(ask)

    def _complete(self, pending: PendingInvite, offer: s.SessionDescription, answer: bytes,
                  media_delay: Callable[[], float | None]) -> Dialog:
        """The 200 OK, the channel and the join.  ``media_delay`` is called after the channel's uuid
        is drawn (the seeded order of the draws stays what it always was)."""
        request, flow = pending.request, pending.flow
        conference, profile, audio_only = pending.route
        from_addr = request.from_addr
        channel = Channel(uuid=str(_uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                          caller_id_name=from_addr.display_name or pending.user,
                          caller_id_number=pending.user, destination_number=request.parsed_uri.user or "",
                          network_addr=flow.peer.host, username=pending.user, client=self.client_of(flow),
                          variables={"sip_call_id": request.call_id, "sip_network_ip": flow.peer.host,
                                     "sip_network_port": str(flow.peer.port)},
                          has_video=not audio_only and any(m.kind == "video" for m in offer.media),
                          media_delay=media_delay())
        dialog = Dialog(request.call_id, pending.to_tag, request.from_tag or "", request, flow, channel,
                        conference, profile)
        channel.hangup = functools.partial(self._server_bye, dialog)
        self.bridge.channel_create(channel)
        self.bridge.channel_answer(channel)
        contact = f"<sip:mod_sofia@{self.host}:{self._local_port(flow)};transport={flow.transport.lower()}>"
        data = self._respond(flow, request, 200, to_tag=pending.to_tag,
                             headers=[("Contact", contact), ("Allow", ALLOW), ("Supported", SUPPORTED),
                                      ("Content-Type", "application/sdp")], body=answer)
        dialog.response, dialog.answer = data, answer
        self.dialogs[(dialog.call_id, dialog.local_tag)] = dialog
        self.stats["answered"] += 1
        if not flow.reliable:
            now = self.clock()
            dialog.retransmit_interval, dialog.retransmit_deadline = T1, now + 64 * T1
            self._at(now + T1, self._retransmit, dialog)
        result = self.bridge.join(conference, profile, channel)
        if isinstance(result, Refusal):
            dialog.refused = result  # the BYE follows the ACK (or a short grace without one)
            self._at(self.clock() + 2.0, self._refuse, dialog)
        else:
            dialog.member_id = result.id
        return dialog

    def _retransmit(self, dialog: Dialog) -> None:
        if dialog.state != DialogState.EARLY or not dialog.flow.alive:
            return
        now = self.clock()
        if now >= dialog.retransmit_deadline:  # Timer H: no ACK came; FreeSWITCH hangs up
            self._server_bye(dialog, HangupCause.RECOVERY_ON_TIMER_EXPIRE)
            return
        dialog.flow.send(dialog.response)
        dialog.retransmit_interval = min(dialog.retransmit_interval * 2, T2)
        self._at(now + dialog.retransmit_interval, self._retransmit, dialog)

    def _refuse(self, dialog: Dialog) -> None:
        if dialog.refused is not None and dialog.state != DialogState.TERMINATED:
            self._server_bye(dialog, dialog.refused.cause)

    def _find_dialog(self, request: sip.SipRequest) -> Dialog | None:
        return self.dialogs.get((request.call_id, request.to_tag or ""))

    def _ack(self, flow: Flow, request: sip.SipRequest) -> None:
        self.unacked.pop(transaction_key(request), None)  # the ACK of an error answer ends Timer G
        dialog = self._find_dialog(request)
        if dialog is None:
            return  # the ACK of a non-2xx final response (absorbed) or of a dead dialog
        if dialog.state == DialogState.EARLY:
            dialog.state = DialogState.CONFIRMED
            if dialog.refused is not None:
                self._server_bye(dialog, dialog.refused.cause)

    def _bye(self, flow: Flow, request: sip.SipRequest) -> None:
        dialog = self._find_dialog(request)
        if dialog is None or dialog.state == DialogState.TERMINATED:
            self._respond(flow, request, 481)
            return
        self.stats["byes"] += 1
        self._respond(flow, request, 200)
        self._end(dialog, HangupCause.NORMAL_CLEARING, leave=True)

    def _end(self, dialog: Dialog, cause: str, *, leave: bool = True) -> None:
        if dialog.state == DialogState.TERMINATED:
            return
        dialog.state = DialogState.TERMINATED
        self.dialogs.pop((dialog.call_id, dialog.local_tag), None)
        if dialog.media_key is not None and self.real_media is not None:
            self.real_media.ended(dialog.media_key)
        if leave and dialog.member_id is not None:
            self.bridge.leave(dialog.member_id, cause)
        channel = dialog.channel
        if channel.hangup_at is None:
            channel.hangup_cause = cause
            self.bridge.channel_hangup(channel, cause)
            self.bridge.channel_destroy(channel)
        channel.hangup = _ended  # it closed over the dialog, which holds the channel: no cycle left

    def _server_bye(self, dialog: Dialog, cause: str) -> None:
        """FreeSWITCH ends the call (kick, hup, media timeout, full room): BYE to the caller's Contact."""
        if dialog.state == DialogState.TERMINATED:
            return
        if dialog.flow.alive and dialog.invite.contacts:
            dialog.local_cseq += 1
            via = (f"SIP/2.0/{dialog.flow.transport} {self.host}:{self._local_port(dialog.flow)};"
                   f"branch={sip.generate_branch(self.rng)}")
            bye = sip.make_in_dialog_request(dialog.invite, "BYE", local_tag=dialog.local_tag,
                                             cseq=dialog.local_cseq, via=via,
                                             headers=[("Reason", f'Q.850;cause=16;text="{cause}"')])
            data = self._send(dialog.flow, bye)
            if not dialog.flow.reliable:  # Timer E until the client answers (Timer F: 64*T1)
                key, flow = transaction_key(bye), dialog.flow
                self.unacked[key] = data
                self._at(self.clock() + T1, self._repeat_first, flow, key, data)
        # the bridge already removed the member for kick/hup/timeouts; a refused one never joined
        self._end(dialog, cause, leave=dialog.refused is None and dialog.member_id is not None
                  and self.bridge.member(dialog.member_id) is not None)

    def _cancel(self, flow: Flow, request: sip.SipRequest) -> None:
        key = transaction_key(request)
        pending = self.pending.pop(key, None) or self.pending_real.pop(key, None)
        if pending is None:
            self._respond(flow, request, 481)
            return
        self._respond(flow, request, 200, to_tag=pending.to_tag)
        self._respond(flow, pending.request, 487, to_tag=pending.to_tag)

    def _reinvite(self, flow: Flow, request: sip.SipRequest) -> None:
        dialog = self._find_dialog(request)
        if dialog is None or dialog.state == DialogState.TERMINATED:
            self._respond(flow, request, 481)
            return
        try:
            offer = s.parse_sdp(request.body)
            hold = s.is_hold(offer)
        except (s.SdpError, ValueError):
            self._respond(flow, request, 488)
            return
        if dialog.member_id is not None:
            member = self.bridge.member(dialog.member_id)
            if member is not None:
                self.bridge.set_hold(dialog.member_id, hold)
        self.journal.record("sip", "reinvite", conn_id=flow.id, data=f"hold={hold}")
        dialog.flow = flow
        contact = f"<sip:mod_sofia@{self.host}:{self._local_port(flow)};transport={flow.transport.lower()}>"
        self._respond(flow, request, 200, headers=[("Contact", contact),
                                                   ("Content-Type", "application/sdp")], body=dialog.answer)

    def _on_response(self, flow: Flow, response: sip.SipResponse) -> None:
        """Responses to our own requests (the client's answer to a server BYE) stop their retransmission."""
        self.unacked.pop(transaction_key(response), None)

    def _local_port(self, flow: Flow) -> int:
        """Where this flow's peer reaches us: the advertised WSS port, or the UDP/TCP listener's."""
        return self.port if flow.transport in ("WS", "WSS") else flow.local.port

    def dialog_of(self, channel: Channel) -> Dialog | None:
        """The dialog that carries ``channel``, if it is still up."""
        for dialog in self.dialogs.values():
            if dialog.channel is channel:
                return dialog
        return None

    def restart(self) -> None:
        """FreeSWITCH restarts: registrations, dialogs, pending INVITEs, cached answers and timers are
        gone, nothing is sent (no BYE reaches anyone).  The transports drop their connections."""
        for flow in {d.flow for d in self.dialogs.values()} | {b.flow for bs in self.bindings.values() for b in bs}:
            flow.alive = False
        self.bindings.clear()
        self._flow_aors.clear()
        self.dialogs.clear()
        self.pending.clear()
        self.responses.clear()
        self.unacked.clear()
        self.timers.cancel_group(TIMER_GROUP)
        self.nonces = sip.NonceManager.from_rng(self.rng, ttl=self.nonces.ttl)

    # -- inspection --------------------------------------------------------------------------------
    def registrations(self, aor: str | None = None) -> list[Binding]:
        if aor is not None:
            return list(self.bindings.get(aor, []))
        return [b for bs in self.bindings.values() for b in bs]

    def snapshot(self) -> dict:
        return {"registrations": len(self.registrations()), "dialogs": len(self.dialogs),
                "pending": len(self.pending), **self.stats}


def _ended(cause: str) -> None:
    """A finished dialog's channel hangup: nothing left to do."""


def _token(rng: random.Random, n: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _without_expires(contact: str) -> str:
    return re.sub(r";\s*expires=[0-9]*", "", contact)
