"""Sans-IO SDP: parse a WebRTC offer, build the answer a fake FreeSWITCH sends, detect hold.

Spec: RFC 8866 (SDP; the grammar of RFC 4566), RFC 3264 (offer/answer: one answer m-line per
offer m-line, same order, port 0 for a rejected stream, direction mirroring in 6.1, hold in 8.4),
RFC 8843 (BUNDLE), RFC 5888 (a=mid, a=group), RFC 8839 (ICE attributes, candidates,
end-of-candidates), RFC 8122 / RFC 5763 (a=fingerprint, a=setup: the answerer of an ``actpass``
offer takes ``active``), RFC 5761 (rtcp-mux), RFC 8830 (msid), RFC 5576 (ssrc), RFC 4585
(rtcp-fb), RFC 3551 (static payload types) and JSEP (RFC 8829) 5.3 for what Chrome expects of an
answer.  Project facts (from the maintainers' notes on the real client; the browser compat test
tests/compat/test_jssip_chromium.py checks them): what Chrome offers through JsSIP 2.0.6, that the
answer must pass ``setRemoteDescription`` (CRLF line ends), and that the ``video`` conference
profile answers OPUS+VP8 while the ``audio`` profile forces ``absolute_codec_string=PCMU,GSM`` and
so has no video (fixtures/conference.conf.xml).

Model: a :class:`SessionDescription` is the session-level lines plus a list of
:class:`SdpMedia`; every section keeps its lines verbatim as ``(type, value)`` pairs, so a parsed
description re-encodes unchanged, and the typed views (:attr:`SdpMedia.mid`,
:attr:`SdpMedia.codecs`, :attr:`SdpMedia.candidates`, ...) are computed from those lines.  The
parser validates every attribute it interprets (rtpmap, fmtp, rtcp-fb, candidate, fingerprint,
setup, group, ssrc, ssrc-group, mid, msid, extmap, rtcp, ice-*) up front, so the accessors of a
parsed description never raise; any malformed input raises :class:`SdpError` (a
:class:`~emulator.wire.sip.SipParseError`) and nothing else.  Nothing here does I/O or reads a
clock; random identifiers come from a ``random.Random`` the caller passes in.

Decisions where the RFCs leave room:

* Lines may end in CRLF or LF; blank lines are skipped; type letters must be lower-case and the
  first line must be ``v=0``; ``o=`` and ``s=`` are required, ``t=`` is not; ``c=`` must be
  ``IN IP4``/``IN IP6``.  Unknown line types and attributes are kept and ignored.  Bodies over
  :data:`MAX_SDP_BYTES` (64 KiB) are refused with status 413.
* :func:`build_webrtc_answer` accepts an m-line only if it is audio or video (video only with
  ``allow_video``), not already rejected, DTLS-SRTP (``.../TLS/RTP/SAVP[F]``), has ICE
  credentials and a fingerprint (media or session level), a usable ``a=setup`` and a codec on the
  preference list; anything else (data channels, plain RTP/AVP offers) is rejected with port 0.
  If nothing is accepted it raises :class:`SdpError` with status 488, as FreeSWITCH answers
  "488 Not Acceptable Here" (INCOMPATIBLE_DESTINATION).
* The answer has one codec per m-line (the first of the caller's preferences the offer has;
  static payload types count even without an rtpmap) with that payload type's rtpmap, fmtp and
  rtcp-fb lines copied from the offer; no rtx/red/fec, no telephone-event, no extmaps, no b=
  lines (the client rewrites b=AS anyway).  All accepted m-lines share the one host candidate
  and port (as if BUNDLE were always negotiated).  Rejected m-lines keep the offered mid and
  carry ``a=inactive``.  The answer has msid/ssrc lines only for m-lines we send on.
* ``c=0.0.0.0`` (RFC 2543 hold) removes the receive half of a stream's direction, so
  ``sendrecv`` becomes ``sendonly`` and ``recvonly`` becomes ``inactive``.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from emulator.wire.sip import SipParseError

__all__ = [
    "SdpError", "MAX_SDP_BYTES", "STATIC_PAYLOAD_TYPES",
    "Origin", "Connection", "RtpMap", "Codec", "Candidate",
    "SdpMedia", "SessionDescription", "parse_sdp",
    "build_webrtc_answer", "answer_direction", "sdp_direction", "is_hold",
    "endpoint_offer", "reskin_answer",
]

#: Largest SDP body the parser accepts.
MAX_SDP_BYTES = 64 * 1024

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
SETUP_ROLES = ("active", "passive", "actpass", "holdconn")

#: RFC 3551 tables 4 and 5: payload types usable without an a=rtpmap line.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, None), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1), 18: ("G729", 8000, 1), 25: ("CelB", 90000, None),
    26: ("JPEG", 90000, None), 28: ("nv", 90000, None), 31: ("H261", 90000, None),
    32: ("MPV", 90000, None), 33: ("MP2T", 90000, None), 34: ("H263", 90000, None),
}


class SdpError(SipParseError):
    """Malformed or unacceptable SDP.  ``status`` suggests the SIP response: 400 for bad syntax,
    413 for an oversized body, 488 when no offered stream can be accepted."""


# =================================================================================================
# Typed views
# =================================================================================================

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LINE_RE = re.compile(r"\r?\n")
_ICE_CHARS_RE = re.compile(r"[A-Za-z0-9+/]+")
_FINGERPRINT_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*")


def _num(text: str, what: str, maximum: int) -> int:
    if not _DIGITS_RE.fullmatch(text) or len(text) > 20 or int(text) > maximum:
        raise SdpError(f"bad {what}: {text[:40]!r}")
    return int(text)


def _token(text: str, what: str) -> str:
    if not _TOKEN_RE.fullmatch(text):
        raise SdpError(f"bad {what}: {text[:40]!r}")
    return text


@dataclass(frozen=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>``."""

    username: str
    session_id: str
    session_version: str
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (f"{self.username} {self.session_id} {self.session_version} {self.nettype} "
                f"{self.addrtype} {self.address}")


@dataclass(frozen=True)
class Connection:
    """``c=<nettype> <addrtype> <address>[/ttl][/count]`` (``address`` without the suffixes)."""

    nettype: str
    addrtype: str
    address: str

    @property
    def is_hold_address(self) -> bool:
        """RFC 2543 hold: the unspecified address."""
        return self.address in ("0.0.0.0", "::")


@dataclass(frozen=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]``."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True)
class Codec:
    """One payload type of an m-line with everything the m-section says about it."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int | None
    fmtp: str | None
    rtcp_fb: tuple[str, ...]

    @property
    def rtpmap(self) -> RtpMap:
        return RtpMap(self.payload_type, self.name, self.clock_rate, self.channels)


@dataclass(frozen=True)
class Candidate:
    """An ICE candidate (RFC 8839 5.1), as in ``a=candidate:<value>``."""

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        out = (f"{self.foundation} {self.component} {self.transport} {self.priority} "
               f"{self.address} {self.port} typ {self.type}")
        if self.related_address is not None:
            out += f" raddr {self.related_address}"
        if self.related_port is not None:
            out += f" rport {self.related_port}"
        return out + "".join(f" {k} {v}" for k, v in self.extensions)


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpError(f"bad o= line: {value[:80]!r}")
    _num(parts[1], "o= session id", 10 ** 20)
    _num(parts[2], "o= session version", 10 ** 20)
    return Origin(*parts)


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line: {value[:80]!r}")
    return Connection(parts[0], parts[1], parts[2].split("/")[0])


def _parse_bandwidth(value: str) -> tuple[str, int]:
    kind, colon, amount = value.partition(":")
    if not colon:
        raise SdpError(f"bad b= line: {value[:80]!r}")
    return _token(kind, "bandwidth type"), _num(amount, "bandwidth", 2 ** 32)


def _parse_rtpmap(value: str) -> RtpMap:
    pt, _, rest = value.strip().partition(" ")
    parts = rest.strip().split("/")
    if not 2 <= len(parts) <= 3 or not parts[0]:
        raise SdpError(f"bad rtpmap: {value[:80]!r}")
    channels = _num(parts[2], "rtpmap channels", 255) if len(parts) == 3 else None
    return RtpMap(_num(pt, "payload type", 127), _token(parts[0], "encoding name"),
                  _num(parts[1], "clock rate", 10 ** 7), channels)


def _parse_fmt_and_rest(value: str, what: str, *, star: bool = False) -> tuple[str, str]:
    fmt, _, rest = value.strip().partition(" ")
    if not (star and fmt == "*"):
        _token(fmt, f"{what} format")
    if not rest.strip():
        raise SdpError(f"bad {what}: {value[:80]!r}")
    return fmt, rest.strip()


def _parse_candidate(value: str) -> Candidate:
    parts = value.split()
    if len(parts) < 8 or parts[6] != "typ" or len(parts) % 2:
        raise SdpError(f"bad candidate: {value[:80]!r}")
    extra = parts[8:]
    pairs = list(zip(extra[0::2], extra[1::2], strict=True))
    raddr = rport = None
    extensions: list[tuple[str, str]] = []
    for key, val in pairs:
        if key == "raddr":
            raddr = val
        elif key == "rport":
            rport = _num(val, "candidate rport", 65535)
        else:
            extensions.append((key, val))
    return Candidate(_token(parts[0], "candidate foundation"),
                     _num(parts[1], "candidate component", 256), _token(parts[2], "transport"),
                     _num(parts[3], "candidate priority", 2 ** 32 - 1), parts[4],
                     _num(parts[5], "candidate port", 65535), _token(parts[7], "candidate type"),
                     raddr, rport, tuple(extensions))


def _parse_fingerprint(value: str) -> tuple[str, str]:
    parts = value.split()
    if len(parts) != 2 or not _FINGERPRINT_RE.fullmatch(parts[1]):
        raise SdpError(f"bad fingerprint: {value[:80]!r}")
    return _token(parts[0], "fingerprint hash").lower(), parts[1]


def _parse_ssrc(value: str) -> tuple[int, str, str | None]:
    ssrc, _, rest = value.strip().partition(" ")
    name, colon, val = rest.partition(":")
    if not name:
        raise SdpError(f"bad ssrc attribute: {value[:80]!r}")
    return _num(ssrc, "ssrc", 2 ** 32 - 1), _token(name, "ssrc attribute"), val if colon else None


def _parse_ssrc_group(value: str) -> tuple[str, list[int]]:
    parts = value.split()
    if not parts:
        raise SdpError("empty ssrc-group")
    return _token(parts[0], "ssrc-group semantics"), [_num(p, "ssrc", 2 ** 32 - 1)
                                                      for p in parts[1:]]


def _parse_group(value: str) -> tuple[str, list[str]]:
    parts = value.split()
    if not parts:
        raise SdpError("empty group attribute")
    return _token(parts[0], "group semantics"), [_token(p, "group mid") for p in parts[1:]]


def _parse_extmap(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) < 2:
        raise SdpError(f"bad extmap: {value[:80]!r}")
    return _num(parts[0].split("/")[0], "extmap id", 65535), parts[1]


def _parse_rtcp(value: str) -> int:
    parts = value.split()
    if len(parts) not in (1, 4):
        raise SdpError(f"bad rtcp attribute: {value[:80]!r}")
    return _num(parts[0], "rtcp port", 65535)


_ATTRIBUTE_CHECKS: dict[str, Callable[[str], object]] = {
    "rtpmap": _parse_rtpmap,
    "fmtp": lambda v: _parse_fmt_and_rest(v, "fmtp"),
    "rtcp-fb": lambda v: _parse_fmt_and_rest(v, "rtcp-fb", star=True),
    "candidate": _parse_candidate,
    "fingerprint": _parse_fingerprint,
    "ssrc": _parse_ssrc,
    "ssrc-group": _parse_ssrc_group,
    "group": _parse_group,
    "extmap": _parse_extmap,
    "rtcp": _parse_rtcp,
    "mid": lambda v: _token(v.strip(), "mid"),
    "msid": lambda v: _token(v.split()[0] if v.split() else "", "msid"),
    "setup": lambda v: v.strip() in SETUP_ROLES or _fail(f"bad setup role {v[:40]!r}"),
    "ice-ufrag": lambda v: _ICE_CHARS_RE.fullmatch(v.strip()) or _fail("bad ice-ufrag"),
    "ice-pwd": lambda v: _ICE_CHARS_RE.fullmatch(v.strip()) or _fail("bad ice-pwd"),
}


def _fail(message: str) -> bool:
    raise SdpError(message)


# =================================================================================================
# Sections
# =================================================================================================


@dataclass
class _Section:
    """Lines of one section as ``(type letter, value)``; attribute helpers over them."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def attributes(self) -> list[tuple[str, str | None]]:
        """``a=`` lines as ``(name, value)``; ``value`` is None for property attributes."""
        out: list[tuple[str, str | None]] = []
        for kind, value in self.lines:
            if kind == "a":
                name, colon, val = value.partition(":")
                out.append((name, val if colon else None))
        return out

    def attribute(self, name: str) -> str | None:
        """The (stripped) value of the first ``a=name:value`` line, or None."""
        for n, v in self.attributes:
            if n == name and v is not None:
                return v.strip()
        return None

    def attribute_values(self, name: str) -> list[str]:
        return [v.strip() for n, v in self.attributes if n == name and v is not None]

    def has_attribute(self, name: str) -> bool:
        return any(n == name for n, _ in self.attributes)

    @property
    def connection(self) -> Connection | None:
        for kind, value in self.lines:
            if kind == "c":
                return _parse_connection(value)
        return None

    @property
    def bandwidths(self) -> dict[str, int]:
        return dict(_parse_bandwidth(v) for k, v in self.lines if k == "b")

    @property
    def direction(self) -> str | None:
        """The explicit direction attribute of this section, if any."""
        for n, _ in self.attributes:
            if n in DIRECTIONS:
                return n
        return None

    @property
    def ice_ufrag(self) -> str | None:
        return self.attribute("ice-ufrag")

    @property
    def ice_pwd(self) -> str | None:
        return self.attribute("ice-pwd")

    @property
    def ice_options(self) -> list[str]:
        return " ".join(self.attribute_values("ice-options")).split()

    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        """``(hash function lower-cased, fingerprint)`` pairs."""
        return [_parse_fingerprint(v) for v in self.attribute_values("fingerprint")]

    @property
    def setup(self) -> str | None:
        return self.attribute("setup")


@dataclass
class SdpMedia(_Section):
    """One media section: the parsed ``m=`` line and the lines after it."""

    kind: str = "audio"
    port: int = 0
    proto: str = "UDP/TLS/RTP/SAVPF"
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None

    @property
    def m_line(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return f"{self.kind} {port} {self.proto} {' '.join(self.formats)}"

    @property
    def rejected(self) -> bool:
        """Port 0: a rejected or disabled stream (RFC 3264 6, 8.2)."""
        return self.port == 0

    @property
    def mid(self) -> str | None:
        return self.attribute("mid")

    @property
    def rtcp_mux(self) -> bool:
        return self.has_attribute("rtcp-mux")

    @property
    def rtcp_rsize(self) -> bool:
        return self.has_attribute("rtcp-rsize")

    @property
    def rtcp_port(self) -> int | None:
        value = self.attribute("rtcp")
        return None if value is None else _parse_rtcp(value)

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        out: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rm = _parse_rtpmap(value)
            out.setdefault(rm.payload_type, rm)
        return out

    @property
    def fmtps(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for value in self.attribute_values("fmtp"):
            fmt, rest = _parse_fmt_and_rest(value, "fmtp")
            out.setdefault(fmt, rest)
        return out

    @property
    def rtcp_fbs(self) -> dict[str, list[str]]:
        """Feedback types by format (``"*"`` for the wildcard), in order."""
        out: dict[str, list[str]] = {}
        for value in self.attribute_values("rtcp-fb"):
            fmt, rest = _parse_fmt_and_rest(value, "rtcp-fb", star=True)
            out.setdefault(fmt, []).append(rest)
        return out

    @property
    def codecs(self) -> list[Codec]:
        """The RTP payload types of the m-line, in order, with rtpmap (or the RFC 3551 static
        entry), fmtp and rtcp-fb.  Formats that are neither mapped nor static are left out."""
        rtpmaps, fmtps, fbs = self.rtpmaps, self.fmtps, self.rtcp_fbs
        out: list[Codec] = []
        for fmt in self.formats:
            if not _DIGITS_RE.fullmatch(fmt) or len(fmt) > 3:
                continue
            pt = int(fmt)
            if pt in rtpmaps:
                rm = rtpmaps[pt]
                name, rate, channels = rm.encoding, rm.clock_rate, rm.channels
            elif pt in STATIC_PAYLOAD_TYPES:
                name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
                channels = None
            else:
                continue
            out.append(Codec(pt, name, rate, channels, fmtps.get(fmt),
                             tuple(fbs.get(fmt, []) + fbs.get("*", []))))
        return out

    @property
    def msid(self) -> str | None:
        return self.attribute("msid")

    @property
    def ssrcs(self) -> dict[int, dict[str, str | None]]:
        """``{ssrc: {attribute: value}}`` from the a=ssrc lines, in order."""
        out: dict[int, dict[str, str | None]] = {}
        for value in self.attribute_values("ssrc"):
            ssrc, name, val = _parse_ssrc(value)
            out.setdefault(ssrc, {})[name] = val
        return out

    @property
    def ssrc_groups(self) -> list[tuple[str, list[int]]]:
        return [_parse_ssrc_group(v) for v in self.attribute_values("ssrc-group")]

    @property
    def candidates(self) -> list[Candidate]:
        return [_parse_candidate(v) for v in self.attribute_values("candidate")]

    @property
    def end_of_candidates(self) -> bool:
        return self.has_attribute("end-of-candidates")

    @property
    def extmaps(self) -> list[tuple[int, str]]:
        return [_parse_extmap(v) for v in self.attribute_values("extmap")]

    def text_lines(self) -> list[str]:
        return [f"m={self.m_line}"] + [f"{k}={v}" for k, v in self.lines]


@dataclass
class SessionDescription(_Section):
    """A whole description: session-level ``lines`` (v=, o=, s=, t=, a=...) and ``media``."""

    media: list[SdpMedia] = field(default_factory=list)

    def _first(self, kind: str) -> str | None:
        for k, v in self.lines:
            if k == kind:
                return v
        return None

    @property
    def version(self) -> int:
        return int(self._first("v") or "0")

    @property
    def origin(self) -> Origin:
        value = self._first("o")
        if value is None:
            raise SdpError("no o= line")
        return _parse_origin(value)

    @property
    def session_name(self) -> str | None:
        return self._first("s")

    @property
    def groups(self) -> list[tuple[str, list[str]]]:
        return [_parse_group(v) for v in self.attribute_values("group")]

    @property
    def bundle_mids(self) -> list[str]:
        """The mids of the first BUNDLE group (empty if there is none)."""
        for semantics, mids in self.groups:
            if semantics == "BUNDLE":
                return mids
        return []

    @property
    def msid_semantic(self) -> str | None:
        return self.attribute("msid-semantic")

    def media_by_mid(self, mid: str) -> SdpMedia | None:
        for m in self.media:
            if m.mid == mid:
                return m
        return None

    def to_text(self) -> str:
        """The description with CRLF line ends (and a final CRLF)."""
        lines = [f"{k}={v}" for k, v in self.lines]
        for m in self.media:
            lines += m.text_lines()
        return "\r\n".join(lines) + "\r\n"

    __str__ = to_text

    def encode(self) -> bytes:
        return self.to_text().encode("utf-8")

    __bytes__ = encode


# =================================================================================================
# Parsing
# =================================================================================================


def parse_sdp(data: bytes | str, *, max_bytes: int = MAX_SDP_BYTES) -> SessionDescription:
    """Parse an SDP body (RFC 8866 5); :class:`SdpError` for anything malformed or too big."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise SdpError(f"SDP body of {len(raw)} bytes exceeds {max_bytes}", 413)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP body is not UTF-8") from None
    session = SessionDescription()
    section: _Section = session
    first = True
    for line in _LINE_RE.split(text):
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"bad SDP line {line[:60]!r}")
        if _CTL_RE.search(line):
            raise SdpError("control character in SDP")
        kind, value = line[0], line[2:]
        if first:
            if kind != "v" or value != "0":
                raise SdpError("SDP must start with v=0")
            first = False
        if kind == "m":
            media = _parse_m_line(value)
            session.media.append(media)
            section = media
            continue
        if kind in ("o", "s", "t", "v") and section is not session:
            raise SdpError(f"{kind}= line inside a media section")
        if kind == "o":
            _parse_origin(value)
        elif kind == "c":
            _parse_connection(value)
        elif kind == "b":
            _parse_bandwidth(value)
        elif kind == "a":
            _check_attribute(value)
        section.lines.append((kind, value))
    if first:
        raise SdpError("empty SDP")
    for kind in ("o", "s", "v"):
        count = sum(1 for k, _ in session.lines if k == kind)
        if count != 1:
            raise SdpError(f"SDP needs exactly one {kind}= line, found {count}")
    return session


def _parse_m_line(value: str) -> SdpMedia:
    parts = value.split(" ")
    if len(parts) < 4 or any(not p for p in parts):
        raise SdpError(f"bad m= line {value[:80]!r}")
    kind = _token(parts[0], "media type")
    port_text, slash, count_text = parts[1].partition("/")
    port = _num(port_text, "media port", 65535)
    count = _num(count_text, "port count", 65535) if slash else None
    proto = parts[2]
    if not all(_TOKEN_RE.fullmatch(p) for p in proto.split("/")):
        raise SdpError(f"bad media protocol {proto[:40]!r}")
    formats = [_token(f, "media format") for f in parts[3:]]
    return SdpMedia(kind=kind, port=port, proto=proto, formats=formats, port_count=count)


def _check_attribute(value: str) -> None:
    name, colon, val = value.partition(":")
    _token(name, "attribute name")
    check = _ATTRIBUTE_CHECKS.get(name)
    if check is None:
        return
    if not colon:
        raise SdpError(f"attribute {name} needs a value")
    check(val)


# =================================================================================================
# Directions and hold (RFC 3264 6.1, 8.4)
# =================================================================================================

_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
                     "inactive": "inactive"}


def answer_direction(offer_direction: str) -> str:
    """The direction an answerer willing to send and receive puts in its answer (RFC 3264 6.1)."""
    return _ANSWER_DIRECTION[offer_direction]


def _media_direction(sdp: SessionDescription, media: SdpMedia) -> str:
    if media.rejected:
        return "inactive"
    direction = media.direction or sdp.direction or "sendrecv"
    conn = media.connection or sdp.connection
    if conn is not None and conn.is_hold_address:
        direction = {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)
    return direction


def sdp_direction(sdp: SessionDescription, media: SdpMedia | int | None = None) -> str:
    """The effective direction, from the SDP author's point of view.

    For one m-line (an :class:`SdpMedia` or its index): its attribute, else the session's, else
    ``sendrecv``; ``c=0.0.0.0`` drops the receive half; a rejected m-line is ``inactive``.  For
    the whole description: the union of the non-rejected m-lines (``send`` if any sends,
    ``recv`` if any receives), ``inactive`` when there are none.
    """
    if isinstance(media, int):
        media = sdp.media[media]
    if media is not None:
        return _media_direction(sdp, media)
    send = recv = False
    for m in sdp.media:
        d = _media_direction(sdp, m)
        send |= d in ("sendrecv", "sendonly")
        recv |= d in ("sendrecv", "recvonly")
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly",
            (False, False): "inactive"}[(send, recv)]


def is_hold(sdp: SessionDescription) -> bool:
    """True if ``sdp`` (typically a re-INVITE offer) puts the call on hold: it has at least one
    active m-line and none of them will receive media (a=sendonly / a=inactive / c=0.0.0.0)."""
    if not any(not m.rejected for m in sdp.media):
        return False
    return sdp_direction(sdp) in ("sendonly", "inactive")


# =================================================================================================
# The WebRTC answer
# =================================================================================================

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _rand_token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(_ALNUM) for _ in range(length))


def _format_fingerprint(fingerprint: str | bytes) -> str:
    if isinstance(fingerprint, (bytes, bytearray)):
        if len(fingerprint) != 32:
            raise ValueError("a SHA-256 fingerprint is 32 bytes")
        return ":".join(f"{b:02X}" for b in fingerprint)
    if not re.fullmatch(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}", fingerprint):
        raise ValueError(f"not a SHA-256 fingerprint: {fingerprint!r}")
    return fingerprint.upper()


def _choose_codec(media: SdpMedia, preferences: Sequence[str]) -> Codec | None:
    codecs = media.codecs
    for pref in preferences:
        name, _, rate = pref.partition("/")
        for codec in codecs:
            if codec.name.lower() == name.lower() and (not rate or str(codec.clock_rate) == rate):
                return codec
    return None


def _acceptable(offer: SessionDescription, media: SdpMedia, allow_video: bool) -> bool:
    if media.rejected or media.kind not in ("audio", "video"):
        return False
    if media.kind == "video" and not allow_video:
        return False
    if "TLS/RTP/SAVP" not in media.proto.upper():
        return False
    if not (media.ice_ufrag or offer.ice_ufrag) or not (media.ice_pwd or offer.ice_pwd):
        return False
    if not (media.fingerprints or offer.fingerprints):
        return False
    return (media.setup or offer.setup or "actpass") in ("actpass", "passive", "active")


def build_webrtc_answer(offer: SessionDescription | bytes | str, *, host_ip: str, port: int,
                        ice_ufrag: str, ice_pwd: str, fingerprint_sha256: str | bytes,
                        rng: random.Random, session_id: int | None = None,
                        audio_codecs: Sequence[str] = ("opus",),
                        video_codecs: Sequence[str] = ("VP8",),
                        allow_video: bool = True) -> SessionDescription:
    """Answer a browser's WebRTC offer the way a fake FreeSWITCH ``answer`` does.

    One m-line per offered m-line, same order and mid (RFC 3264 6).  An accepted m-line carries
    the chosen codec (first of ``audio_codecs`` / ``video_codecs`` the offer has; ``"name"`` or
    ``"name/rate"``, case-insensitive) with its rtpmap/rtcp-fb/fmtp lines, ``c=`` and one UDP
    host candidate at ``host_ip:port`` followed by ``a=end-of-candidates``, ``a=ice-ufrag``,
    ``a=ice-pwd``, ``a=fingerprint:sha-256``, ``a=setup:active`` (``passive`` if the offer is
    ``active``), the mid, the mirrored direction, ``a=msid`` plus ``a=ssrc`` cname/msid lines
    when we send, and ``a=rtcp-mux`` / ``a=rtcp-rsize`` when offered.  The session carries
    ``a=group:BUNDLE`` with the accepted offered-bundle mids and ``a=msid-semantic: WMS``.
    Rejected m-lines get port 0, the first offered format, the mid and ``a=inactive``.

    ``offer`` may be unparsed bytes/text (parse errors raise :class:`SdpError`).  Bad arguments
    (an address that is not an IP, a port outside 1-65535, ICE credentials outside RFC 8839's
    ice-char 4-256 / 22-256, a malformed fingerprint) raise ``ValueError``.  If no m-line can be
    accepted, :class:`SdpError` with status 488.  Random ids (session id, stream/track ids,
    CNAME, SSRCs) come from ``rng``.
    """
    if not isinstance(offer, SessionDescription):
        offer = parse_sdp(offer)
    addr = ipaddress.ip_address(host_ip)
    addrtype = "IP6" if addr.version == 6 else "IP4"
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    if not (4 <= len(ice_ufrag) <= 256 and _ICE_CHARS_RE.fullmatch(ice_ufrag)):
        raise ValueError(f"bad ice-ufrag {ice_ufrag!r}")
    if not (22 <= len(ice_pwd) <= 256 and _ICE_CHARS_RE.fullmatch(ice_pwd)):
        raise ValueError(f"bad ice-pwd {ice_pwd!r}")
    fingerprint = _format_fingerprint(fingerprint_sha256)
    sid = session_id if session_id is not None else rng.randrange(1, 2 ** 62)
    stream_id = _rand_token(rng, 16)
    cname = _rand_token(rng, 16)
    used_ssrcs: set[int] = set()

    answer_media: list[SdpMedia] = []
    accepted_mids: list[str] = []
    sending = False
    for media in offer.media:
        codec = None
        if _acceptable(offer, media, allow_video):
            codec = _choose_codec(media, audio_codecs if media.kind == "audio" else video_codecs)
        mid = media.mid
        if codec is None:
            lines = [("c", f"IN {addrtype} {host_ip}")]
            if mid is not None:
                lines.append(("a", f"mid:{mid}"))
            lines.append(("a", "inactive"))
            answer_media.append(SdpMedia(lines, kind=media.kind, port=0, proto=media.proto,
                                         formats=media.formats[:1]))
            continue
        if mid is not None:
            accepted_mids.append(mid)
        direction = answer_direction(_media_direction(offer, media))
        setup = "passive" if (media.setup or offer.setup) == "active" else "active"
        pt = codec.payload_type
        lines = [
            ("c", f"IN {addrtype} {host_ip}"),
            ("a", f"candidate:1 1 udp 2130706431 {host_ip} {port} typ host generation 0"),
            ("a", "end-of-candidates"),
            ("a", f"ice-ufrag:{ice_ufrag}"),
            ("a", f"ice-pwd:{ice_pwd}"),
            ("a", f"fingerprint:sha-256 {fingerprint}"),
            ("a", f"setup:{setup}"),
        ]
        if mid is not None:
            lines.append(("a", f"mid:{mid}"))
        lines.append(("a", direction))
        sends = direction in ("sendrecv", "sendonly")
        track_id = _rand_token(rng, 16)
        if sends:
            sending = True
            lines.append(("a", f"msid:{stream_id} {track_id}"))
        if media.rtcp_mux:
            lines.append(("a", "rtcp-mux"))
        if media.rtcp_rsize:
            lines.append(("a", "rtcp-rsize"))
        lines.append(("a", f"rtpmap:{codec.rtpmap}"))
        lines += [("a", f"rtcp-fb:{pt} {fb}") for fb in codec.rtcp_fb]
        if codec.fmtp is not None:
            lines.append(("a", f"fmtp:{pt} {codec.fmtp}"))
        if sends:
            ssrc = rng.randrange(1, 2 ** 32)
            while ssrc in used_ssrcs:
                ssrc = rng.randrange(1, 2 ** 32)
            used_ssrcs.add(ssrc)
            lines.append(("a", f"ssrc:{ssrc} cname:{cname}"))
            lines.append(("a", f"ssrc:{ssrc} msid:{stream_id} {track_id}"))
        answer_media.append(SdpMedia(lines, kind=media.kind, port=port, proto=media.proto,
                                     formats=[str(pt)]))

    if not any(not m.rejected for m in answer_media):
        raise SdpError("no acceptable media stream in the offer", 488)
    session_lines = [
        ("v", "0"),
        ("o", f"FreeSWITCH {sid} {sid + 1} IN {addrtype} {host_ip}"),
        ("s", "FreeSWITCH"),
        ("t", "0 0"),
    ]
    bundle = [mid for mid in offer.bundle_mids if mid in accepted_mids]
    if bundle:
        session_lines.append(("a", "group:BUNDLE " + " ".join(bundle)))
    if sending:
        session_lines.append(("a", f"msid-semantic: WMS {stream_id}"))
    return SessionDescription(session_lines, media=answer_media)


# =================================================================================================
# Real media: narrow the offer for the endpoint, re-skin its answer (emulator/freeswitch/real_media.py)
# =================================================================================================

#: Per-format attributes: kept in a narrowed offer only for the chosen payload type.
_PER_FORMAT = ("rtpmap", "fmtp", "rtcp-fb")
#: Session-level attributes an endpoint answer may carry that FreeSWITCH's shape keeps.
_KEPT_SESSION = ("group", "msid-semantic", "ice-lite")


def endpoint_offer(offer: SessionDescription, model: SessionDescription) -> SessionDescription:
    """The offer narrowed to what FreeSWITCH's answer ``model`` (from :func:`build_webrtc_answer`)
    accepts, for a real endpoint to answer: m-lines the model rejects are left out (and out of the
    BUNDLE group), and each kept m-line offers only the payload type the model chose, with its own
    rtpmap, fmtp and rtcp-fb lines.  Everything else (ICE, fingerprint, setup, candidates, extmaps,
    msid, ssrc) stays the browser's.  The model must answer this offer (same m-lines, same order)."""
    if len(model.media) != len(offer.media):
        raise ValueError("the model answer does not answer this offer")
    kept: list[SdpMedia] = []
    kept_mids: set[str] = set()
    for media, answer in zip(offer.media, model.media):
        if answer.rejected:
            continue
        pt = answer.formats[0]
        lines = []
        for kind, value in media.lines:
            if kind == "a":
                name, _, rest = value.partition(":")
                if name in _PER_FORMAT and rest.split(" ", 1)[0] != pt:
                    continue
                if name == "ssrc-group" or (name == "fmtp" and rest.startswith(f"{pt} apt=")):
                    continue
            lines.append((kind, value))
        kept.append(SdpMedia(lines, kind=media.kind, port=media.port, proto=media.proto, formats=[pt],
                             port_count=media.port_count))
        if media.mid is not None:
            kept_mids.add(media.mid)
    session = []
    for kind, value in offer.lines:
        if kind == "a" and value.startswith("group:BUNDLE"):
            mids = [m for m in value.split()[1:] if m in kept_mids]
            if not mids:
                continue
            value = "group:BUNDLE " + " ".join(mids)
        session.append((kind, value))
    return SessionDescription(session, media=kept)


def reskin_answer(endpoint: SessionDescription | bytes | str, model: SessionDescription) -> SessionDescription:
    """A real endpoint's answer in FreeSWITCH's shape: ``model``'s session lines (``o=FreeSWITCH``,
    ``s=FreeSWITCH``, ``t=0 0``) and rejected m-lines; for each accepted m-line, the endpoint's own
    section (found by mid, else in order) with every transport and RTP line it wrote -- ICE
    credentials, candidates and port, fingerprint, setup role, mid, direction, payload types, rtcp-mux,
    msid and ssrc -- except what FreeSWITCH does not send: fingerprints other than sha-256, extmaps,
    ``a=rtcp:9`` placeholders and ``ssrc-group`` lines of retransmission streams not negotiated.  The
    session keeps the endpoint's BUNDLE group and msid-semantic.  :class:`SdpError` (488) if the
    endpoint rejected a stream the model accepted or left out its fingerprint."""
    if not isinstance(endpoint, SessionDescription):
        endpoint = parse_sdp(endpoint)
    by_mid = {m.mid: m for m in endpoint.media if m.mid is not None}
    accepted = iter(endpoint.media)
    media_out: list[SdpMedia] = []
    for answer in model.media:
        if answer.rejected:
            media_out.append(answer)
            continue
        section = by_mid.get(answer.mid) if answer.mid is not None else None
        if section is None:
            section = next(accepted, None)
        if section is None or section.rejected:
            raise SdpError(f"the media endpoint rejected the {answer.kind} stream", 488)
        lines: list[tuple[str, str]] = []
        fingerprint = False
        for kind, value in section.lines:
            if kind == "a":
                name, _, rest = value.partition(":")
                if name == "fingerprint":
                    if not rest.lower().startswith("sha-256 "):
                        continue
                    fingerprint = True
                if name in ("extmap", "extmap-allow-mixed", "ssrc-group", "rtcp"):
                    continue
            lines.append((kind, value))
        if not fingerprint and not any(v.lower().startswith("fingerprint:sha-256 ")
                                       for k, v in endpoint.lines if k == "a"):
            raise SdpError("the media endpoint's answer has no sha-256 fingerprint", 488)
        formats = [f for f in section.formats if f in answer.formats] or section.formats[:1]
        rtx = [f for f in section.formats if f not in formats]   # retransmission formats: not FreeSWITCH's
        lines = [(k, v) for k, v in lines
                 if not (k == "a" and v.partition(":")[0] in _PER_FORMAT
                         and v.partition(":")[2].split(" ", 1)[0] in rtx)]
        media_out.append(SdpMedia(lines, kind=section.kind, port=section.port, proto=section.proto, formats=formats))
    session = [(k, v) for k, v in model.lines if k != "a"]
    session += [(k, v) for k, v in endpoint.lines if k == "a" and v.partition(":")[0] in _KEPT_SESSION]
    return SessionDescription(session, media=media_out)
