"""Sans-IO SIP: messages, framing, URIs, addresses, Via, builders and digest auth.

Spec: RFC 3261 (SIP), RFC 2617 / RFC 7616 (HTTP digest, MD5 only), RFC 5626 section 3.5.1 (CRLF
keep-alives), RFC 7118 (SIP over WebSocket: one SIP message per WebSocket message); the client
behaviour we must parse is that of JsSIP 2.0.6 in cometVideoApi.js (checked against the real
library by tests/compat/test_jssip_node.py and test_jssip_chromium.py).  Nothing here touches a socket, a
task, a clock or a global random generator: bytes go in, typed objects come out, and ``encode()``
turns them back into bytes.  Randomness (tags, branches, nonces) comes from a ``random.Random``
the caller passes in, and time (nonce expiry) from a number the caller passes in.

Layers:

* **Message model** -- :class:`SipRequest` / :class:`SipResponse` with a :class:`SipHeaders`
  multi-map: ordered, case-insensitive lookup, compact forms expanded (RFC 3261 7.3.3 plus the
  registered extension letters), known names spelled as the RFCs spell them, comma-separated values
  split into one entry per element for the list headers of RFC 3261 7.3.1 (Via, Contact, Route,
  Record-Route, Allow, Supported, ...), never for the authentication headers (their values contain
  commas).  ``encode()`` writes one line per entry, in order, except that adjacent entries of a
  token-list header (Allow, Supported, Require, ...) are joined on one line with ``","`` as JsSIP
  writes them, and it always writes a correct Content-Length (RFC 3261 18.3, 20.14).
* **Parsing** -- :func:`parse_message` for one datagram / WebSocket message (RFC 3261 7 and 25:
  strict start line, tolerant of LF-only line ends, leading CRLFs and folded header lines, per
  7.3.1 and 7.5), and :class:`SipStreamParser` for SIP over TCP/TLS (18.3: Content-Length is
  mandatory on streams; CRLFs between messages are skipped and counted as RFC 5626 pings).  Both
  check the mandatory headers of 8.1.1 and the syntax of Via, From, To, Contact, Route,
  Record-Route, CSeq, Content-Length and Max-Forwards up front, so the accessors of a parsed
  message never raise.  Every malformed input raises :class:`SipParseError` and nothing else.
* **Helpers** -- :func:`parse_uri` (19.1.1, 25.1; ``*`` is a legal user character, as in
  ``sip:15*101*video@127.0.0.1``), :func:`parse_name_addr` (20.10, 20.20, 20.39), :func:`parse_via`
  (20.42, 18.2.1 received/rport per RFC 3581), tag / branch / Call-ID generation (8.1.1.3, 8.1.1.7,
  19.3), :func:`make_response` (8.2.6), :func:`make_request` and :func:`make_in_dialog_request`
  (8.1.1, 12.2.1.1: a BYE from the UAS to the client's Contact with From/To swapped).
* **Digest** -- :func:`make_digest_challenge` (RFC 3261 22.4, RFC 2617 3.2.1),
  :func:`parse_digest_params`, :func:`digest_response` / :func:`verify_digest` (RFC 2617 3.2.2:
  MD5 and MD5-sess, qop ``auth``, ``auth-int`` and the RFC 2069 no-qop form),
  :func:`make_digest_authorization` for virtual clients, and :class:`NonceManager`: stateless
  HMAC-signed nonces that carry their creation time, checked against a caller-supplied clock value
  (FreeSWITCH's ``nonce-ttl`` is 60 s in the CppComet profile, video-call-flow.md 1.2).

Design decisions where the RFCs leave room:

* Header values are kept verbatim (after folding and trimming), so a parsed JsSIP message
  re-encodes byte for byte; structured views (:class:`NameAddr`, :class:`Via`, :class:`SipUri`)
  are built on demand by the accessors and turned back into text with ``str()``.
* URI and header parameter names are case-insensitive (19.1.4) and are stored lower-cased; values
  are kept as received (quoted values keep their quotes).  A parameter that appears twice is an
  error (19.1.1: "Any given parameter MUST NOT appear more than once").
* Only ``sip:``/``sips:`` URIs are modelled; a Request-URI with another scheme passes the parser
  (absoluteURI is legal) but :attr:`SipRequest.parsed_uri` raises.
* Header names must be tokens, values may not contain control characters other than HTAB, and the
  whole head must be UTF-8 (RFC 3261 7.3.1, 25.1).
* Suggested status codes on :class:`SipParseError`: 400 for bad syntax, 505 for a SIP version
  other than 2.0, 513 for a header section over the limit (21.5.14) and 413 for a body over the
  limit (21.4.11).  They only make sense for requests; a bad response is dropped.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import hmac
import random
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeAlias

__all__ = [
    # errors and limits
    "SipParseError", "MAX_HEADER_BYTES", "MAX_BODY_BYTES", "T1", "T2",
    # model
    "SipHeaders", "SipRequest", "SipResponse", "SipMessage", "CSeq", "canonical_header_name",
    # parsing
    "parse_message", "SipStreamParser", "is_keepalive",
    # helpers
    "SipUri", "parse_uri", "NameAddr", "parse_name_addr", "Via", "parse_via", "parse_params",
    "quote_string", "unquote_string", "split_header_list",
    "generate_tag", "generate_branch", "generate_call_id", "BRANCH_MAGIC_COOKIE",
    "REASON_PHRASES", "reason_phrase", "make_response", "make_request", "make_in_dialog_request",
    "error_response",
    # digest
    "make_digest_challenge", "parse_digest_params", "digest_response", "verify_digest",
    "make_digest_authorization", "NonceStatus", "NonceManager",
]


# =================================================================================================
# Errors and limits
# =================================================================================================

#: Largest header section (start line + headers, without the blank line) we accept.
MAX_HEADER_BYTES = 64 * 1024
#: Largest body we accept.
MAX_BODY_BYTES = 1024 * 1024

#: RFC 3261 17.1.1.1 timer values (seconds): T1, the round-trip estimate every retransmission timer
#: starts from (and 64*T1 bounds a transaction), and T2, the cap of the doubling interval.
T1 = 0.5
T2 = 4.0


class SipParseError(ValueError):
    """Malformed SIP input: the only exception the parsers raise for bad *input*.

    ``status``/``reason`` suggest the response a UAS would send to a request this bad (RFC 3261
    8.2 and 21): 400 Bad Request by default, 505 for an unsupported SIP version, 513 for a header
    section that is too large and 413 for a body that is too large.  Programming errors (wrong
    argument types, impossible builder arguments) raise ``TypeError``/``ValueError`` instead.
    """

    def __init__(self, message: str, status: int = 400, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason if reason is not None else reason_phrase(status)


# =================================================================================================
# Lexical helpers (RFC 3261 25.1)
# =================================================================================================

_TOKEN_CHARS = "A-Za-z0-9\\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{_TOKEN_CHARS}]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
# gen-value = token / host / quoted-string (host adds ":" "[" "]" for IPv6 references)
_GEN_VALUE_RE = re.compile(f"[{_TOKEN_CHARS}:\\[\\]]+")


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _digits(text: str, what: str, max_len: int) -> int:
    """An ASCII decimal number (``int()`` alone would take ``+1``, ``1_0``, Unicode digits...)."""
    if not _DIGITS_RE.fullmatch(text):
        raise SipParseError(f"{what} is not a number: {text[:40]!r}")
    if len(text) > max_len:
        raise SipParseError(f"{what} is too long: {text[:40]!r}")
    return int(text)


def quote_string(text: str) -> str:
    """``text`` as a quoted-string (RFC 3261 25.1): backslash before ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_string(text: str) -> str:
    """The content of a quoted-string, or ``text`` unchanged when it is not quoted."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.S)
    return text


def _split_outside(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` where it is outside quoted-strings and ``<...>``.

    Raises :class:`SipParseError` for an unterminated quote or angle bracket.
    """
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    in_angle = False
    while i < n:
        ch = text[i]
        if ch == '"' and not in_angle:
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise SipParseError(f"unterminated quoted string in {text[:60]!r}")
        elif ch == "<" and not in_angle:
            in_angle = True
        elif ch == ">" and in_angle:
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_angle:
        raise SipParseError(f"unterminated '<' in {text[:60]!r}")
    parts.append(text[start:])
    return parts


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value into its elements (RFC 3261 7.3.1).

    Commas inside quoted-strings and ``<...>`` do not split; empty elements are dropped, but an
    empty value gives ``[""]`` so the header's presence survives.
    """
    items = [p.strip(" \t") for p in _split_outside(value, ",")]
    items = [p for p in items if p]
    return items or [""]


def parse_params(text: str, *, what: str = "header") -> dict[str, str | None]:
    """Parse ``;name[=value]`` parameters (``text`` starts after the first ``;`` or is empty).

    Names are tokens and are lower-cased; values are a token, a host or a quoted-string and are
    kept verbatim (quotes included).  A flag parameter has the value ``None``.  Whitespace around
    ``;`` and ``=`` is allowed (SEMI / EQUAL of 25.1).
    """
    params: dict[str, str | None] = {}
    if not text.strip(" \t"):
        return params
    for raw in _split_outside(text, ";"):
        item = raw.strip(" \t")
        if not item:
            raise SipParseError(f"empty {what} parameter")
        name, eq, value = item.partition("=")
        name = name.rstrip(" \t")
        if not _is_token(name):
            raise SipParseError(f"bad {what} parameter name {name[:40]!r}")
        key = name.lower()
        if key in params:
            raise SipParseError(f"{what} parameter {key!r} appears twice")
        if not eq:
            params[key] = None
            continue
        value = value.lstrip(" \t")
        if not (_QUOTED_RE.fullmatch(value) or _GEN_VALUE_RE.fullmatch(value)):
            raise SipParseError(f"bad value for {what} parameter {key!r}: {value[:40]!r}")
        params[key] = value
    return params


def _tail_params(tail: str, what: str) -> dict[str, str | None]:
    """Parameters from ``tail``, which is empty or starts with ``;`` (a lone ``;`` is an error)."""
    if not tail:
        return {}
    if not tail[1:].strip(" \t"):
        raise SipParseError(f"empty {what} parameter")
    return parse_params(tail[1:], what=what)


def _format_params(params: Mapping[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# =================================================================================================
# Header names and the header multi-map
# =================================================================================================

#: RFC 3261 7.3.3 compact forms, plus the letters registered later (IANA "Header Fields").
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact",
    "k": "Supported", "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event",
    "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via",
    "x": "Session-Expires", "y": "Identity",
}

_KNOWN_NAMES = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE",
    "Organization", "P-Asserted-Identity", "Path", "Priority", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To",
    "Referred-By", "Reject-Contact", "Replaces", "Reply-To", "Request-Disposition", "Require",
    "Retry-After", "Route", "RSeq", "Server", "Service-Route", "Session-Expires", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
    "Warning", "WWW-Authenticate",
]
_CANONICAL: dict[str, str] = {n.lower(): n for n in _KNOWN_NAMES}

#: Headers whose grammar is a comma-separated list (RFC 3261 7.3.1 and 25.1): split on parse.
LIST_HEADERS = frozenset(n.lower() for n in [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
    "In-Reply-To", "P-Asserted-Identity", "Path", "Proxy-Require", "Reason", "Record-Route",
    "Reject-Contact", "Require", "Route", "Service-Route", "Supported", "Unsupported", "Via",
    "Warning",
])
#: List headers of plain tokens: adjacent entries are written back on one line.
_JOINED_ON_OUTPUT = frozenset(n.lower() for n in [
    "Accept", "Accept-Encoding", "Accept-Language", "Allow", "Allow-Events", "Content-Encoding",
    "Content-Language", "Proxy-Require", "Require", "Supported", "Unsupported",
])
#: Headers that may appear at most once.
_SINGLETONS = ("to", "from", "call-id", "cseq", "content-length", "max-forwards", "content-type")
#: Headers holding name-addr values that the parser validates.
_ADDRESS_HEADERS = ("from", "to", "contact", "route", "record-route")


def canonical_header_name(name: str) -> str:
    """Expand a compact form and spell a known header as the RFCs do; others stay verbatim."""
    low = name.lower()
    if low in COMPACT_FORMS:
        return COMPACT_FORMS[low]
    return _CANONICAL.get(low, name)


class SipHeaders:
    """An ordered multi-map of header fields with case-insensitive, compact-aware lookup.

    Each entry is one ``(name, value)`` pair; ``name`` is :func:`canonical_header_name` of what was
    given.  :meth:`add` stores the value exactly as given (no comma splitting: the parser does that
    for list headers).  Iterating yields the pairs in order.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    # -- reading ----------------------------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = canonical_header_name(name).lower()
        for n, v in self._items:
            if n.lower() == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = canonical_header_name(name).lower()
        return [v for n, v in self._items if n.lower() == key]

    def count(self, name: str) -> int:
        """How many entries ``name`` has."""
        return len(self.get_all(name))

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        """All entries as a list of ``(name, value)``."""
        return list(self._items)

    def names(self) -> list[str]:
        """The distinct header names, in order of first appearance."""
        seen: dict[str, str] = {}
        for n, _ in self._items:
            seen.setdefault(n.lower(), n)
        return list(seen.values())

    # -- writing ----------------------------------------------------------------------------------
    def add(self, name: str, value: str) -> None:
        """Append one entry."""
        self._items.append((self._check_name(name), self._check_value(value)))

    def insert(self, index: int, name: str, value: str) -> None:
        """Insert one entry at position ``index`` (e.g. 0 to prepend a Via)."""
        self._items.insert(index, (self._check_name(name), self._check_value(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every entry of ``name`` by one, at the place of the first (or at the end)."""
        canon = self._check_name(name)
        value = self._check_value(value)
        key = canon.lower()
        out: list[tuple[str, str]] = []
        done = False
        for n, v in self._items:
            if n.lower() == key:
                if not done:
                    out.append((canon, value))
                    done = True
            else:
                out.append((n, v))
        if not done:
            out.append((canon, value))
        self._items = out

    def remove(self, name: str) -> int:
        """Remove every entry of ``name``; return how many there were."""
        key = canonical_header_name(name).lower()
        before = len(self._items)
        self._items = [(n, v) for n, v in self._items if n.lower() != key]
        return before - len(self._items)

    def copy(self) -> SipHeaders:
        new = SipHeaders()
        new._items = list(self._items)
        return new

    # -- output -----------------------------------------------------------------------------------
    def lines(self) -> list[str]:
        """Header lines for the wire (adjacent token-list entries joined with ``","``)."""
        out: list[str] = []
        prev: tuple[str, str] | None = None
        for n, v in self._items:
            key = n.lower()
            if (prev is not None and key == prev[0] and key in _JOINED_ON_OUTPUT
                    and v and prev[1]):
                out[-1] = f"{out[-1]},{v}"
            else:
                out.append(f"{n}: {v}")
            prev = (key, v)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipHeaders):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    def __repr__(self) -> str:
        return f"SipHeaders({self._items!r})"

    @staticmethod
    def _check_name(name: str) -> str:
        if not _is_token(name):
            raise ValueError(f"header name is not a token: {name!r}")
        return canonical_header_name(name)

    @staticmethod
    def _check_value(value: str) -> str:
        if not isinstance(value, str):
            raise TypeError(f"header value must be str, not {type(value).__name__}")
        if _CTL_RE.search(value):
            raise ValueError(f"header value contains a control character: {value!r}")
        return value


# =================================================================================================
# URIs (RFC 3261 19.1)
# =================================================================================================

_ESC = "%[0-9A-Fa-f]{2}"
_UNRESERVED = "A-Za-z0-9\\-_.!~*'()"
_USER_RE = re.compile(f"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+")
_PASSWORD_RE = re.compile(f"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_.])?|\[[0-9A-Fa-f:.]+\]")
_URI_PARAM_RE = re.compile(f"(?:[{_UNRESERVED}\\[\\]/:&+$]|{_ESC})+")
_URI_HEADER_RE = re.compile(f"(?:[{_UNRESERVED}\\[\\]/?:+$]|{_ESC})*")


def _parse_hostport(text: str, what: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        host, rest = (text[: end + 1], text[end + 1:]) if end > 0 else (text, "")
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
    if not _HOST_RE.fullmatch(host) or ".." in host:
        raise SipParseError(f"bad host in {what}: {text[:60]!r}")
    port: int | None = None
    if rest:
        if not rest.startswith(":"):
            raise SipParseError(f"bad host:port in {what}: {text[:60]!r}")
        port = _digits(rest[1:], f"port in {what}", 5)
        if port > 65535:
            raise SipParseError(f"port out of range in {what}: {port}")
    return host, port


@dataclass
class SipUri:
    """A ``sip:``/``sips:`` URI (RFC 3261 19.1.1).

    ``user`` and ``password`` are kept escaped, as received; ``params`` maps lower-cased names to
    a value or ``None`` (flags such as ``lr`` or ``ob``); ``headers`` are the ``?h=v&...`` pairs.
    ``str()`` gives the URI back.
    """

    host: str
    user: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)
    scheme: str = "sip"
    password: str | None = None

    def param(self, name: str, default: str | None = None) -> str | None:
        """The value of URI parameter ``name`` (``default`` when absent or a flag)."""
        value = self.params.get(name.lower())
        return default if value is None else value

    @property
    def transport(self) -> str | None:
        return self.param("transport")

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        out = f"{self.scheme}:{userinfo}{self.hostport}{_format_params(self.params)}"
        if self.headers:
            out += "?" + "&".join(f"{k}={v}" for k, v in self.headers)
        return out


def parse_uri(text: str) -> SipUri:
    """Parse a SIP or SIPS URI; :class:`SipParseError` if it is not one or is malformed."""
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise SipParseError(f"not a sip: or sips: URI: {text[:60]!r}", 416)
    user: str | None = None
    password: str | None = None
    if "@" in rest:
        # '@' cannot appear in parameters or headers, and the user part may hold ';' and '?'
        # (user-unreserved), so the userinfo ends at the last '@'.
        userinfo, _, rest = rest.rpartition("@")
        user, pcolon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user) or "@" in userinfo:
            raise SipParseError(f"bad user part in URI {text[:60]!r}")
        if pcolon:
            if not _PASSWORD_RE.fullmatch(pw):
                raise SipParseError(f"bad password in URI {text[:60]!r}")
            password = pw
    rest, qmark, header_text = rest.partition("?")
    hostport, semi, param_text = rest.partition(";")
    host, port = _parse_hostport(hostport, "URI")
    params: dict[str, str | None] = {}
    if semi:
        for item in param_text.split(";"):
            name, eq, value = item.partition("=")
            if not _URI_PARAM_RE.fullmatch(name) or (eq and not _URI_PARAM_RE.fullmatch(value)):
                raise SipParseError(f"bad URI parameter {item[:40]!r} in {text[:60]!r}")
            key = name.lower()
            if key in params:
                raise SipParseError(f"URI parameter {key!r} appears twice in {text[:60]!r}")
            params[key] = value if eq else None
    headers: list[tuple[str, str]] = []
    if qmark:
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not eq or not name or not _URI_HEADER_RE.fullmatch(name) \
                    or not _URI_HEADER_RE.fullmatch(value):
                raise SipParseError(f"bad URI header {item[:40]!r} in {text[:60]!r}")
            headers.append((name, value))
    return SipUri(host=host, user=user, port=port, params=params, headers=headers,
                  scheme=scheme.lower(), password=password)


# =================================================================================================
# name-addr / addr-spec (RFC 3261 20.10, 20.20, 20.39, 25.1)
# =================================================================================================


@dataclass
class NameAddr:
    """A From/To/Contact/Route value: optional display name, a SIP URI and header parameters.

    ``display_name`` is unquoted; ``params`` hold the header parameters (``tag``, ``expires``,
    ``+sip.instance``...), names lower-cased, values verbatim.  ``str()`` always uses the
    ``<...>`` form, quoting the display name.
    """

    uri: SipUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``;tag=`` set."""
        if not _is_token(tag):
            raise ValueError(f"tag is not a token: {tag!r}")
        return NameAddr(self.uri, self.display_name, {**self.params, "tag": tag})

    def without_params(self) -> NameAddr:
        return NameAddr(self.uri, self.display_name, {})

    def __str__(self) -> str:
        display = f"{quote_string(self.display_name)} " if self.display_name is not None else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def _angle_form(text: str) -> bool:
    """True if ``text`` is ``[display] <uri>...``: a '<' comes before any ';' or '"'."""
    lt = text.find("<")
    if lt < 0:
        return False
    return all(c not in text[:lt] for c in ';"')


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``"display" <sip:u@h>;p=v``, ``display <uri>;p=v``, ``<uri>;p=v`` or ``sip:u@h;p=v``.

    In the bare addr-spec form every ``;`` parameter belongs to the header, not to the URI
    (RFC 3261 20.10).  ``*`` (the wildcard Contact) is not an address and raises.
    """
    text = text.strip(" \t")
    display: str | None = None
    if text.startswith('"'):
        m = _QUOTED_RE.match(text)
        if m is None:
            raise SipParseError(f"unterminated display name in {text[:60]!r}")
        display = unquote_string(m.group())
        rest = text[m.end():].lstrip(" \t")
        if not rest.startswith("<"):
            raise SipParseError(f"quoted display name without <uri> in {text[:60]!r}")
    elif _angle_form(text):
        before, _, after = text.partition("<")
        words = before.split()
        if any(not _is_token(w) for w in words):
            raise SipParseError(f"bad display name in {text[:60]!r}")
        display = " ".join(words) if words else None
        rest = "<" + after
    else:
        rest = text
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            raise SipParseError(f"unterminated <uri> in {text[:60]!r}")
        uri = parse_uri(rest[1:end])
        tail = rest[end + 1:].strip(" \t")
    else:
        uri_text, semi, tail = rest.partition(";")
        if not uri_text or any(c in uri_text for c in " \t,?>"):
            raise SipParseError(f"bad address {text[:60]!r}")
        uri = parse_uri(uri_text)
        tail = ";" + tail if semi else ""
    if tail and not tail.startswith(";"):
        raise SipParseError(f"junk after address in {text[:60]!r}")
    return NameAddr(uri, display, _tail_params(tail, "address"))


# =================================================================================================
# Via (RFC 3261 20.42, 18.2.1; RFC 3581 rport)
# =================================================================================================

BRANCH_MAGIC_COOKIE = "z9hG4bK"
_VIA_RE = re.compile(
    f"([{_TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{_TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{_TOKEN_CHARS}]+)"
    r"[ \t]+([^; \t]+)[ \t]*(;.*)?", re.S)


@dataclass
class Via:
    """One Via value: ``SIP/2.0/<transport> <host>[:<port>];params``.

    ``transport`` is upper-cased; ``params`` maps lower-cased names to values (``None`` for flags,
    e.g. a bare ``rport`` the server must fill in).
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The ``rport`` value, if one is filled in."""
        value = self.params.get("rport")
        return int(value) if value is not None and _DIGITS_RE.fullmatch(value) else None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_format_params(self.params)}"


def parse_via(text: str) -> Via:
    """Parse one Via value (the list is split already)."""
    m = _VIA_RE.fullmatch(text.strip(" \t"))
    if m is None:
        raise SipParseError(f"bad Via {text[:60]!r}")
    name, version, transport, sent_by, param_text = m.groups()
    host, port = _parse_hostport(sent_by, "Via")
    params = _tail_params(param_text or "", "Via")
    if "rport" in params and params["rport"] is not None:
        _digits(params["rport"], "Via rport", 5)
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


# =================================================================================================
# Messages
# =================================================================================================


class CSeq(NamedTuple):
    number: int
    method: str


class _MessageMixin:
    """Accessors shared by requests and responses (valid on parsed messages; constructed ones
    raise :class:`SipParseError` if their headers are malformed)."""

    headers: SipHeaders
    body: bytes

    def _one(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self._one("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return _parse_cseq(self._one("CSeq"))

    @property
    def from_addr(self) -> NameAddr:
        return parse_name_addr(self._one("From"))

    @property
    def to_addr(self) -> NameAddr:
        return parse_name_addr(self._one("To"))

    @property
    def from_tag(self) -> str | None:
        return self.from_addr.tag

    @property
    def to_tag(self) -> str | None:
        return self.to_addr.tag

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        return parse_via(self._one("Via"))

    @property
    def branch(self) -> str | None:
        return self.top_via.branch

    @property
    def contacts(self) -> list[NameAddr]:
        """The Contact addresses (a ``*`` wildcard is left out)."""
        return [parse_name_addr(v) for v in self.headers.get_all("Contact") if v.strip() != "*"]

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";")[0].strip().lower()

    def _encode(self, start_line: str) -> bytes:
        lines = [start_line]
        body = bytes(self.body)
        length_written = False
        for line in self.headers.lines():
            if line.lower().startswith("content-length:"):
                if length_written:
                    continue
                line = f"Content-Length: {len(body)}"
                length_written = True
            lines.append(line)
        if not length_written:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


@dataclass(eq=True)
class SipRequest(_MessageMixin):
    """A SIP request.  ``uri`` is the Request-URI as text (see :attr:`parsed_uri`)."""

    method: str
    uri: str
    version: str = "SIP/2.0"
    headers: SipHeaders = field(default_factory=SipHeaders)
    body: bytes = b""

    @property
    def parsed_uri(self) -> SipUri:
        return parse_uri(self.uri)

    @property
    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def encode(self) -> bytes:
        """Wire bytes, CRLF line ends, with a correct Content-Length."""
        return self._encode(self.start_line)

    __bytes__ = encode


@dataclass(eq=True)
class SipResponse(_MessageMixin):
    """A SIP response."""

    status: int
    reason: str = ""
    headers: SipHeaders = field(default_factory=SipHeaders)
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def encode(self) -> bytes:
        """Wire bytes, CRLF line ends, with a correct Content-Length."""
        return self._encode(self.start_line)

    __bytes__ = encode


SipMessage: TypeAlias = SipRequest | SipResponse


def _parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not _is_token(parts[1]):
        raise SipParseError(f"bad CSeq {value[:40]!r}")
    number = _digits(parts[0], "CSeq number", 10)
    if number >= 2 ** 31:
        raise SipParseError(f"CSeq number out of range: {number}")
    return CSeq(number, parts[1])


# =================================================================================================
# Parsing
# =================================================================================================

_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")
_LINE_RE = re.compile(r"\r?\n")
_VERSION = r"[Ss][Ii][Pp]/[0-9]{1,3}\.[0-9]{1,3}"
_REQUEST_LINE_RE = re.compile(f"([{_TOKEN_CHARS}]+) ([\\x21-\\x7e]+) ({_VERSION})")
_STATUS_LINE_RE = re.compile(f"({_VERSION}) ([1-6][0-9][0-9]) (.*)", re.S)
_URI_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:.+", re.S)


def is_keepalive(data: bytes) -> bool:
    """True for a datagram / WebSocket message made only of CR and LF (RFC 5626 3.5.1 ping/pong)."""
    return bool(data) and not bytes(data).strip(b"\r\n")


def _skip_crlf(data: bytes | bytearray, pos: int) -> int:
    n = len(data)
    while pos < n and data[pos] in (13, 10):
        pos += 1
    return pos


def _parse_head(head: bytes) -> SipMessage:
    """Parse a start line and header fields (no trailing blank line) into a bodiless message."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not UTF-8 ({exc.reason} at {exc.start})") from None
    lines = _LINE_RE.split(text)
    start = lines[0]
    if _CTL_RE.search(start):
        raise SipParseError("control character in the start line")

    msg: SipMessage
    if start[:4].upper() == "SIP/":
        m = _STATUS_LINE_RE.fullmatch(start)
        if m is None:
            raise SipParseError(f"bad status line {start[:80]!r}")
        version = m.group(1).upper()
        if version != "SIP/2.0":
            raise SipParseError(f"unsupported version {version}", 505)
        msg = SipResponse(int(m.group(2)), m.group(3), version=version)
    else:
        m = _REQUEST_LINE_RE.fullmatch(start)
        if m is None:
            raise SipParseError(f"bad request line {start[:80]!r}")
        method, uri, version = m.group(1), m.group(2), m.group(3).upper()
        if version != "SIP/2.0":
            raise SipParseError(f"unsupported version {version}", 505)
        if not _URI_SCHEME_RE.fullmatch(uri):
            raise SipParseError(f"bad Request-URI {uri[:80]!r}")
        if uri.split(":", 1)[0].lower() in ("sip", "sips"):
            parse_uri(uri)
        msg = SipRequest(method, uri, version)

    fields: list[list[str]] = []
    for line in lines[1:]:
        if _CTL_RE.search(line):
            raise SipParseError("control character in a header line")
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("continuation line before the first header")
            folded = line.strip(" \t")
            if folded:
                fields[-1][1] = f"{fields[-1][1]} {folded}" if fields[-1][1] else folded
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _is_token(name):
            raise SipParseError(f"bad header line {line[:80]!r}")
        fields.append([name, value.strip(" \t")])

    headers = msg.headers
    for name, value in fields:
        canon = canonical_header_name(name)
        if canon.lower() in LIST_HEADERS:
            for item in split_header_list(value):
                headers._items.append((canon, item))
        else:
            headers._items.append((canon, value))
    _validate(msg)
    return msg


def _validate(msg: SipMessage) -> None:
    """RFC 3261 8.1.1 mandatory headers and the syntax of the ones we rely on."""
    h = msg.headers
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in h:
            raise SipParseError(f"missing mandatory header {name}")
    for key in _SINGLETONS:
        if h.count(key) > 1:
            raise SipParseError(f"header {canonical_header_name(key)} appears more than once")
    if not h["Call-ID"].strip() or any(c in h["Call-ID"] for c in " \t"):
        raise SipParseError(f"bad Call-ID {h['Call-ID'][:40]!r}")
    cseq = _parse_cseq(h["CSeq"])
    if isinstance(msg, SipRequest) and cseq.method != msg.method:
        raise SipParseError(f"CSeq method {cseq.method} does not match {msg.method}")
    for value in h.get_all("Via"):
        parse_via(value)
    for key in _ADDRESS_HEADERS:
        for value in h.get_all(key):
            if key == "contact" and value == "*":
                continue
            parse_name_addr(value)
    if h.count("Contact") > 1 and "*" in h.get_all("Contact"):
        raise SipParseError("wildcard Contact mixed with addresses")
    if "Max-Forwards" in h:
        _digits(h["Max-Forwards"], "Max-Forwards", 3)
    if "Content-Length" in h:
        _digits(h["Content-Length"], "Content-Length", 12)


def _content_length(msg: SipMessage, max_body: int) -> int | None:
    value = msg.headers.get("Content-Length")
    if value is None:
        return None
    if int(value) > max_body:
        raise SipParseError(f"Content-Length {value} exceeds the limit of {max_body}", 413)
    return int(value)


def parse_message(data: bytes, *, max_header_bytes: int = MAX_HEADER_BYTES,
                  max_body_bytes: int = MAX_BODY_BYTES) -> SipMessage:
    """Parse one complete message: a UDP datagram or a WebSocket message (RFC 7118).

    Leading CRLFs are ignored (RFC 3261 7.5).  Content-Length is optional here: without it the
    body is the rest of the data; with it, extra bytes are discarded and missing bytes are an error
    (18.3).  Raises :class:`SipParseError` for anything malformed, including a keep-alive made
    only of CRLFs (check :func:`is_keepalive` first).
    """
    data = bytes(data)
    start = _skip_crlf(data, 0)
    if start == len(data):
        raise SipParseError("empty message")
    m = _HEAD_END_RE.search(data, start)
    head_end = m.start() if m else len(data)
    if head_end - start > max_header_bytes:
        raise SipParseError(f"header section exceeds {max_header_bytes} bytes", 513)
    if m is None:
        raise SipParseError("no blank line after the header section")
    msg = _parse_head(data[start:head_end])
    body = data[m.end():]
    length = _content_length(msg, max_body_bytes)
    if length is None:
        if len(body) > max_body_bytes:
            raise SipParseError(f"body exceeds {max_body_bytes} bytes", 413)
        length = len(body)
    if len(body) < length:
        raise SipParseError(f"truncated body: Content-Length {length}, {len(body)} bytes present")
    msg.body = body[:length]
    return msg


class SipStreamParser:
    """Incremental framer for SIP over a byte stream (TCP, TLS), RFC 3261 18.3.

    Pull style, like the MySQL ``PacketReader``: :meth:`receive_data` appends bytes and
    :meth:`next_message` returns the next complete message or ``None``; :meth:`feed` does both
    and returns every complete message.  CR/LF bytes between messages are skipped; each CRLFCRLF
    among them counts as one RFC 5626 ping in :attr:`pings` (answer it with a CRLF pong).

    Content-Length is required on streams.  The header section is bounded by
    ``max_header_bytes`` (checked before its end has arrived, so a peer cannot make the parser
    buffer without limit) and the body by ``max_body_bytes`` (checked as soon as the header is
    parsed).  After a :class:`SipParseError` the parser is dead: every call raises it again.
    """

    def __init__(self, *, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.pings = 0
        self._buf = bytearray()
        self._scan = 0
        self._lf_run = 0
        self._pending: tuple[SipMessage, int, int] | None = None  # head, body start, length
        self._error: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a message."""
        return len(self._buf)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Append received bytes (may be empty)."""
        self._check_alive()
        self._buf += data

    def feed(self, data: bytes | bytearray) -> list[SipMessage]:
        """Append ``data`` and return every message now complete.

        If a bad message follows good ones in the same call, the error is raised and the good
        ones are lost with the connection; use :meth:`next_message` to handle them one by one.
        """
        self.receive_data(data)
        return list(self)

    def __iter__(self) -> Iterator[SipMessage]:
        while (msg := self.next_message()) is not None:
            yield msg

    def feed_eof(self) -> None:
        """The peer closed: raise :class:`SipParseError` if a message was cut off."""
        self._check_alive()
        if _skip_crlf(self._buf, 0) < len(self._buf):
            self._fail(SipParseError(f"connection closed inside a message "
                                     f"({len(self._buf)} bytes pending)"))

    def next_message(self) -> SipMessage | None:
        """The next complete message, or ``None`` if more bytes are needed."""
        self._check_alive()
        try:
            return self._next()
        except SipParseError as exc:
            self._fail(exc)
            raise  # pragma: no cover - _fail raises

    def _next(self) -> SipMessage | None:
        buf = self._buf
        if self._pending is None:
            skip = 0
            while skip < len(buf) and buf[skip] in (13, 10):
                if buf[skip] == 10:
                    self._lf_run += 1
                    if self._lf_run == 2:
                        self.pings += 1
                        self._lf_run = 0
                skip += 1
            if skip:
                del buf[:skip]
                self._scan = 0
            if not buf:
                return None
            self._lf_run = 0
            m = _HEAD_END_RE.search(buf, self._scan)
            if m is None:
                if len(buf) > self.max_header_bytes + 3:
                    raise SipParseError(f"header section exceeds {self.max_header_bytes} bytes",
                                        513)
                self._scan = max(0, len(buf) - 3)
                return None
            if m.start() > self.max_header_bytes:
                raise SipParseError(f"header section exceeds {self.max_header_bytes} bytes", 513)
            msg = _parse_head(bytes(buf[: m.start()]))
            length = _content_length(msg, self.max_body_bytes)
            if length is None:
                raise SipParseError("Content-Length is required on stream transports")
            self._pending = (msg, m.end(), length)
        msg, body_start, length = self._pending
        if len(buf) < body_start + length:
            return None
        msg.body = bytes(buf[body_start: body_start + length])
        del buf[: body_start + length]
        self._pending = None
        self._scan = 0
        return msg

    def _fail(self, err: SipParseError) -> None:
        # keep a copy without a traceback: the raised error's traceback holds this parser's frames,
        # and a parser holding it would be a reference cycle
        self._error = copy.copy(err)
        self._buf.clear()
        self._pending = None
        try:
            raise err
        finally:
            del err  # this frame is in err's traceback: do not let it hold err too

    def _check_alive(self) -> None:
        if self._error is not None:
            raise copy.copy(self._error)


# =================================================================================================
# Identifiers (RFC 3261 8.1.1.3, 8.1.1.4, 8.1.1.7, 19.3)
# =================================================================================================

_ALNUM_LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"


def generate_tag(rng: random.Random, length: int = 10) -> str:
    """A From/To tag: ``length`` random lower-case alphanumerics (>= 32 bits of randomness)."""
    return "".join(rng.choice(_ALNUM_LOWER) for _ in range(length))


def generate_branch(rng: random.Random) -> str:
    """A Via branch starting with the RFC 3261 magic cookie ``z9hG4bK``."""
    return BRANCH_MAGIC_COOKIE + "".join(rng.choice(_ALNUM_LOWER) for _ in range(16))


def generate_call_id(rng: random.Random, host: str | None = None) -> str:
    """A Call-ID: 22 random alphanumerics, ``@host`` appended when given."""
    local = "".join(rng.choice(_ALNUM_LOWER) for _ in range(22))
    return f"{local}@{host}" if host else local


# =================================================================================================
# Builders
# =================================================================================================

#: Reason phrases of RFC 3261 21 and of the extensions a WebRTC call can meet.
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 430: "Flow Failed", 439: "First Hop Lacks Outbound Support",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status`` ("Unknown" if it has none)."""
    return REASON_PHRASES.get(status, "Unknown")


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def make_response(request: SipRequest, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"") -> SipResponse:
    """Build a response to ``request`` as a UAS does (RFC 3261 8.2.6).

    Copies every Via (in order), From, Call-ID and CSeq, and To with ``;tag=to_tag`` appended
    when the request's To has no tag (8.2.6.2; an existing tag is kept).  A To tag is required
    for every status but 100.  Also copies Timestamp into a 100 (8.2.6.1) and Record-Route into a
    101-299 response to INVITE (12.1.1).  ``headers`` follow in the given order, then
    Content-Length.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status out of range: {status}")
    if request.method == "ACK":
        raise ValueError("ACK is never answered")
    out = SipHeaders()
    for via in request.headers.get_all("Via"):
        out.add("Via", via)
    out.add("From", request.headers["From"])
    to_value = request.headers["To"]
    if parse_name_addr(to_value).tag is None:
        if to_tag is not None:
            if not _is_token(to_tag):
                raise ValueError(f"tag is not a token: {to_tag!r}")
            to_value = f"{to_value};tag={to_tag}"
        elif status != 100:
            raise ValueError(f"a {status} response needs a To tag (RFC 3261 8.2.6.2)")
    out.add("To", to_value)
    out.add("Call-ID", request.headers["Call-ID"])
    out.add("CSeq", request.headers["CSeq"])
    if status == 100 and "Timestamp" in request.headers:
        out.add("Timestamp", request.headers["Timestamp"])
    if request.method == "INVITE" and 101 <= status <= 299:
        for rr in request.headers.get_all("Record-Route"):
            out.add("Record-Route", rr)
    for name, value in headers:
        out.add(name, value)
    out.set("Content-Length", str(len(body)))
    return SipResponse(status, reason if reason is not None else reason_phrase(status), out,
                       bytes(body))


def make_request(method: str, uri: str | SipUri, *, via: Via | str, from_: NameAddr | str,
                 to: NameAddr | str, call_id: str, cseq: int, max_forwards: int | None = 70,
                 contact: NameAddr | str | None = None, routes: Iterable[str] = (),
                 headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                 content_type: str | None = None) -> SipRequest:
    """Build a request (RFC 3261 8.1.1) with headers in JsSIP's order: Via, Route, Max-Forwards,
    To, From, Call-ID, CSeq, Contact, ``headers``, Content-Type, Content-Length."""
    if not _is_token(method):
        raise ValueError(f"method is not a token: {method!r}")
    if not 0 <= cseq < 2 ** 31:
        raise ValueError(f"CSeq out of range: {cseq}")
    h = SipHeaders()
    h.add("Via", _as_text(via))
    for route in routes:
        h.add("Route", route)
    if max_forwards is not None:
        h.add("Max-Forwards", str(max_forwards))
    h.add("To", _as_text(to))
    h.add("From", _as_text(from_))
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        h.add("Contact", _as_text(contact))
    for name, value in headers:
        h.add(name, value)
    if content_type is not None:
        h.add("Content-Type", content_type)
    h.add("Content-Length", str(len(body)))
    return SipRequest(method, _as_text(uri), "SIP/2.0", h, bytes(body))


def make_in_dialog_request(invite: SipRequest, method: str, *, local_tag: str, cseq: int,
                           via: Via | str, headers: Iterable[tuple[str, str]] = (),
                           body: bytes = b"", content_type: str | None = None,
                           max_forwards: int = 70) -> SipRequest:
    """A request the UAS of ``invite``'s dialog sends to the caller (e.g. a server BYE).

    RFC 3261 12.1.1 and 12.2.1.1: the Request-URI is the remote target (the INVITE's Contact
    URI), the route set is the INVITE's Record-Route in order, From is the INVITE's To with our
    ``local_tag``, To is the INVITE's From (with the caller's tag), the Call-ID is kept and
    ``cseq`` is our own, new local sequence number.
    """
    contacts = invite.contacts
    if not contacts:
        raise ValueError("the INVITE has no Contact: no remote target (RFC 3261 8.1.1.8)")
    if not _is_token(local_tag):
        raise ValueError(f"tag is not a token: {local_tag!r}")
    to_value = invite.headers["From"]
    from_addr = parse_name_addr(invite.headers["To"])
    if from_addr.tag is not None and from_addr.tag != local_tag:
        raise ValueError(f"the INVITE's To tag {from_addr.tag!r} is not ours ({local_tag!r})")
    from_value = invite.headers["To"]
    if from_addr.tag is None:
        from_value = f"{from_value};tag={local_tag}"
    return make_request(method, contacts[0].uri, via=via, from_=from_value, to=to_value,
                        call_id=invite.call_id, cseq=cseq, max_forwards=max_forwards,
                        routes=invite.headers.get_all("Record-Route"), headers=headers,
                        body=body, content_type=content_type)


# =================================================================================================
# Answering a request that does not parse (RFC 3261 8.2, 21.4.1)
# =================================================================================================

_REQUEST_START_RE = re.compile(f"([{_TOKEN_CHARS}]+) [^ ]+ [Ss][Ii][Pp]/[0-9]")
_ECHOED = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
           "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}


def error_response(data: bytes, status: int = 400, reason: str | None = None, *, to_tag: str = "",
                   headers: Iterable[tuple[str, str]] = ()) -> bytes | None:
    """The answer to a request that :func:`parse_message` rejects, when one can be sent; else None.

    A server answers a malformed request whenever it can tell where the answer goes: sofia-sip's
    nta answers ``400`` to any request with a usable Via that is not an ACK (ACKs are never
    answered).  This reads the start line and the header lines leniently (any byte, Latin-1;
    lines without a colon skipped; folded lines joined; compact names), requires a request line
    and a top Via that :func:`parse_via` accepts, and echoes every Via plus those of From, To,
    Call-ID and CSeq that are well formed (a To without a tag gets ``to_tag``).  The bytes of the
    echoed values are the client's own.  ``headers`` are added before ``Content-Length: 0``.
    """
    data = bytes(data[:MAX_HEADER_BYTES + 4])
    start = _skip_crlf(data, 0)
    end = _HEAD_END_RE.search(data, start)
    text = data[start:end.start() if end else len(data)].decode("latin-1")
    lines = _LINE_RE.split(text)
    m = _REQUEST_START_RE.match(lines[0])
    if m is None or m.group(1) == "ACK" or not 100 <= status <= 699:
        return None
    fields: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if fields:
                fields[-1][1] += " " + line.strip(" \t")
            continue
        name, colon, value = line.partition(":")
        canon = _ECHOED.get(name.strip(" \t").lower())
        if colon and canon:
            fields.append([canon, value.strip(" \t")])
    vias: list[str] = []
    found: dict[str, str] = {}
    for name, value in fields:
        if _CTL_RE.search(value):
            continue
        if name == "Via":
            try:
                vias.extend(split_header_list(value))
            except SipParseError:  # an unbalanced quote: keep the line whole; the top one must parse
                vias.append(value)
        elif name not in found:
            found[name] = value
    try:
        parse_via(vias[0])
    except (IndexError, SipParseError):
        return None
    out = [f"SIP/2.0 {status} {reason or reason_phrase(status)}"]
    out += [f"Via: {via}" for via in vias]
    for name in ("From", "To"):
        value = found.get(name)
        if value is None:
            continue
        try:
            addr = parse_name_addr(value)
        except SipParseError:
            continue
        if name == "To" and addr.tag is None and to_tag:
            value = f"{value};tag={to_tag}"
        out.append(f"{name}: {value}")
    call_id = found.get("Call-ID", "")
    if call_id and not any(c in call_id for c in " \t"):
        out.append(f"Call-ID: {call_id}")
    if "CSeq" in found:
        try:
            _parse_cseq(found["CSeq"])
            out.append(f"CSeq: {found['CSeq']}")
        except SipParseError:
            pass
    out += [f"{name}: {value}" for name, value in headers]
    out.append("Content-Length: 0")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1", "replace")


# =================================================================================================
# Digest authentication (RFC 2617 3.2, RFC 7616 MD5, RFC 3261 22.4)
# =================================================================================================

_AUTH_TOKEN_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")


def make_digest_challenge(realm: str, nonce: str, *, qop: str | None = "auth",
                          algorithm: str | None = "MD5", opaque: str | None = None,
                          stale: bool = False) -> str:
    """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` value, in FreeSWITCH's order:
    ``Digest realm="r", nonce="n", algorithm=MD5, qop="auth"`` (plus opaque / stale=true)."""
    parts = [f"realm={quote_string(realm)}", f"nonce={quote_string(nonce)}"]
    if opaque is not None:
        parts.append(f"opaque={quote_string(opaque)}")
    if stale:
        parts.append("stale=true")
    if algorithm is not None:
        parts.append(f"algorithm={algorithm}")
    if qop is not None:
        parts.append(f"qop={quote_string(qop)}")
    return "Digest " + ", ".join(parts)


def parse_digest_params(value: str) -> dict[str, str]:
    """Parse a Digest challenge or credentials value into ``{lower-case name: unquoted value}``.

    Works for WWW-Authenticate, Proxy-Authenticate, Authorization and Proxy-Authorization.
    Raises :class:`SipParseError` if the scheme is not Digest, a parameter is malformed or
    repeated, or there are no parameters.
    """
    text = value.strip(" \t")
    scheme, rest = [*re.split(r"[ \t]+", text, maxsplit=1), ""][:2]
    if scheme.lower() != "digest":
        raise SipParseError(f"not a Digest header: {text[:40]!r}")
    params: dict[str, str] = {}
    pos, n = 0, len(rest)
    while True:
        while pos < n and rest[pos] in " \t,":
            pos += 1
        if pos >= n:
            break
        m = _AUTH_TOKEN_RE.match(rest, pos)
        if m is None:
            raise SipParseError(f"bad Digest parameter at {rest[pos:pos + 30]!r}")
        name = m.group().lower()
        pos = m.end()
        while pos < n and rest[pos] in " \t":
            pos += 1
        if pos >= n or rest[pos] != "=":
            raise SipParseError(f"Digest parameter {name!r} has no value")
        pos += 1
        while pos < n and rest[pos] in " \t":
            pos += 1
        q = _QUOTED_RE.match(rest, pos)
        if q is not None:
            val = unquote_string(q.group())
        else:
            q = _AUTH_TOKEN_RE.match(rest, pos)
            if q is None:
                raise SipParseError(f"bad value for Digest parameter {name!r}")
            val = q.group()
        pos = q.end()
        while pos < n and rest[pos] in " \t":
            pos += 1
        if pos < n and rest[pos] != ",":
            raise SipParseError(f"junk after Digest parameter {name!r}")
        if name in params:
            raise SipParseError(f"Digest parameter {name!r} appears twice")
        params[name] = val
    if not params:
        raise SipParseError("Digest header without parameters")
    return params


def _md5(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.md5(data).hexdigest()


def digest_response(*, username: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, qop: str | None = None, nc: str | None = None,
                    cnonce: str | None = None, algorithm: str = "MD5",
                    body: bytes = b"") -> str:
    """The ``response`` value (lower-case hex) of RFC 2617 3.2.2.1.

    ``algorithm`` is MD5 or MD5-sess; ``qop`` is None (RFC 2069 form), ``auth`` or ``auth-int``
    (which hashes ``body``).  ``nc`` and ``cnonce`` are needed with a qop and with MD5-sess.
    """
    alg = algorithm.upper()
    if alg not in ("MD5", "MD5-SESS"):
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    ha1 = _md5(f"{username}:{realm}:{password}")
    if alg == "MD5-SESS":
        if cnonce is None:
            raise ValueError("MD5-sess needs a cnonce")
        ha1 = _md5(f"{ha1}:{nonce}:{cnonce}")
    q = qop.lower() if qop is not None else None
    if q == "auth-int":
        ha2 = _md5(f"{method}:{uri}:{_md5(body)}")
    elif q in (None, "auth"):
        ha2 = _md5(f"{method}:{uri}")
    else:
        raise ValueError(f"unsupported qop {qop!r}")
    if q is None:
        return _md5(f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise ValueError("a qop digest needs nc and cnonce")
    return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{q}:{ha2}")


def verify_digest(params: Mapping[str, str], method: str, password: str, *,
                  body: bytes | None = None) -> bool:
    """Check parsed credentials (:func:`parse_digest_params`) against ``password``.

    False when a required parameter is missing, the algorithm or qop is unsupported, ``nc`` is
    not 8 hex digits, or the response does not match; never raises for bad credentials.  The
    caller checks the username, realm, uri and nonce freshness (:class:`NonceManager`).
    ``auth-int`` needs the request ``body``.
    """
    try:
        username, realm, nonce = params["username"], params["realm"], params["nonce"]
        uri, response = params["uri"], params["response"]
    except KeyError:
        return False
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() not in ("MD5", "MD5-SESS"):
        return False
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        if qop.lower() not in ("auth", "auth-int") or nc is None or cnonce is None:
            return False
        if not _NC_RE.fullmatch(nc):
            return False
        if qop.lower() == "auth-int" and body is None:
            return False
    if algorithm.upper() == "MD5-SESS" and cnonce is None:
        return False
    expected = digest_response(username=username, realm=realm, password=password,
                               method=method, uri=uri, nonce=nonce, qop=qop, nc=nc,
                               cnonce=cnonce, algorithm=algorithm, body=body or b"")
    return hmac.compare_digest(expected.encode(), response.lower().encode("utf-8"))


def make_digest_authorization(challenge: Mapping[str, str], *, username: str, password: str,
                              method: str, uri: str, cnonce: str, nc: int = 1,
                              body: bytes = b"") -> str:
    """Answer a parsed challenge as JsSIP 2.0.6 does (real-video-client.md 4.2), for virtual
    clients: ``Digest algorithm=MD5, username=..., realm=..., nonce=..., uri=..., response=...,
    qop=auth, cnonce=..., nc=00000001`` (``opaque`` echoed when present)."""
    realm, nonce = challenge["realm"], challenge["nonce"]
    algorithm = challenge.get("algorithm", "MD5")
    offered = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in offered else ("auth-int" if "auth-int" in offered else None)
    nc_text = f"{nc:08x}"
    response = digest_response(username=username, realm=realm, password=password,
                               method=method, uri=uri, nonce=nonce, qop=qop, nc=nc_text,
                               cnonce=cnonce, algorithm=algorithm, body=body)
    parts = [f"algorithm={algorithm}", f"username={quote_string(username)}",
             f"realm={quote_string(realm)}", f"nonce={quote_string(nonce)}",
             f"uri={quote_string(uri)}", f"response={quote_string(response)}"]
    if "opaque" in challenge:
        parts.append(f"opaque={quote_string(challenge['opaque'])}")
    if qop is not None:
        parts += [f"qop={qop}", f"cnonce={quote_string(cnonce)}", f"nc={nc_text}"]
    return "Digest " + ", ".join(parts)


class NonceStatus(enum.Enum):
    """Outcome of :meth:`NonceManager.check`."""

    VALID = "valid"
    STALE = "stale"      #: ours but older than the TTL: re-challenge with ``stale=true``
    INVALID = "invalid"  #: not ours (forged, mangled, or from the future)


_NONCE_RE = re.compile(r"([0-9a-f]{1,16})\.([0-9a-f]{16})\.([0-9a-f]{16})")


class NonceManager:
    """Stateless digest nonces: ``<ms hex>.<64 random bits hex>.<HMAC-SHA256 prefix>``.

    The nonce carries its creation time (milliseconds of the caller's clock) and is signed with
    ``secret``, so checking needs no table: a valid signature proves it is ours, the embedded
    time gives its age.  ``ttl`` defaults to FreeSWITCH's ``nonce-ttl`` of 60 s.  ``now`` is
    always passed in (trio's clock in the core layer; any non-negative float here).  Replay of a
    nonce within its TTL is not tracked (nor is it by FreeSWITCH's nc handling for our purposes).
    """

    def __init__(self, secret: bytes, ttl: float = 60.0) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        self.secret = bytes(secret)
        self.ttl = ttl

    @classmethod
    def from_rng(cls, rng: random.Random, ttl: float = 60.0) -> NonceManager:
        """A manager whose secret is drawn from ``rng`` (reproducible with a seed)."""
        return cls(rng.getrandbits(128).to_bytes(16, "big"), ttl)

    def _mac(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()[:16]

    def make(self, now: float, rng: random.Random) -> str:
        """A fresh nonce created at time ``now`` (seconds, >= 0)."""
        if now < 0:
            raise ValueError("clock values must be >= 0")
        payload = f"{int(now * 1000):x}.{rng.getrandbits(64):016x}"
        return f"{payload}.{self._mac(payload)}"

    def check(self, nonce: str, now: float) -> NonceStatus:
        """VALID if ``nonce`` is ours and at most ``ttl`` old at ``now``; STALE if ours but
        older; INVALID otherwise."""
        m = _NONCE_RE.fullmatch(nonce)
        if m is None:
            return NonceStatus.INVALID
        payload = f"{m.group(1)}.{m.group(2)}"
        if not hmac.compare_digest(self._mac(payload), m.group(3)):
            return NonceStatus.INVALID
        age = now - int(m.group(1), 16) / 1000
        if age < -0.001:
            return NonceStatus.INVALID
        return NonceStatus.STALE if age > self.ttl else NonceStatus.VALID
