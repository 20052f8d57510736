"""Sans-IO MySQL client/server protocol: the server side as CppComet 4.09 speaks it, and the client
side the bench's CometQL client needs.

What a client sees of it, quirks included, is in docs/quirks/cometql.md; "spec 2.1" etc. below name
sections of the maintainers' notes on the real server that this module was built from, and the
recorded answers in fixtures/parity/ check it.  Nothing here touches a socket, a task or a
clock: bytes go in, typed objects come out, and the encoders turn values back into payloads.

Layers:

* **Framing** — :class:`PacketReader` is fed whatever a ``recv`` returned (partial packets, several
  packets at once) and yields logical :class:`Packet` objects; physical packets of exactly
  ``0xFFFFFF`` bytes are continued by the next one (the 16 MB rule).  :func:`frame_packet` /
  :func:`frame_packets` do the reverse with sequence ids.  Bad framing and oversize payloads raise
  :class:`ProtocolError` subclasses; nothing else is raised for any input.
* **Connection phase** — :func:`build_initial_handshake` (Initial Handshake v10, spec 2.1),
  :func:`parse_handshake_response` (HandshakeResponse41, spec 2.2), :func:`is_ssl_request`,
  :func:`verify_native_password` (mysql_native_password, spec 2.3), :func:`check_auth` (the
  server's decision table of spec 2.2 step 4, plus the optional auth switch of spec 2.5 [REC]),
  :func:`build_auth_switch_request` / :func:`parse_auth_switch_response`.
* **Command phase** — :func:`parse_command` (spec 3) into :class:`ComQuery`, :class:`ComInitDb`,
  :class:`ComPing`, :class:`ComQuit` or :class:`ComOther` (carrying the command byte).
* **Encoders** — OK (both variants of spec 4.1), ERR (4.3), EOF, column definitions, text rows and
  whole text result sets (4.4), length-encoded integers/strings (4.2).
* **Client side** — the reverse direction, written from the MySQL protocol documentation rather
  than from our server so that it also works against a real MySQL or MariaDB server:
  :func:`parse_initial_handshake` (any v10 greeting: auth data part 2 of ``max(13, len - 8)``
  bytes, optional plugin name), :func:`build_handshake_response`, :func:`caching_sha2_token`,
  :func:`parse_auth_switch_request`, :func:`parse_ok` / :func:`parse_err` / :func:`parse_eof`,
  :func:`parse_column_definition`, :func:`parse_text_row` and :func:`build_command`.  They decode
  the correct length encoding; CppComet's 0xFD bug (integers 65,536-16,777,215 written with four
  bytes) is not undone, which only matters for affected-row counts that large.

Faithful-by-default: wherever the real server is odd (status bytes ``00 02`` in result OKs, the
trailing NUL info byte, the 0xFD length-encoding bug, scramble bytes that may be 0x00, SSL advertised
without TLS, NULL never sent) the odd variant is the default and a keyword argument selects the
correct one; every such argument's docstring names the spec section.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    # errors
    "ProtocolError", "PacketTooLarge", "MalformedPacket", "SequenceError",
    # framing
    "MAX_PACKET_CHUNK", "DEFAULT_MAX_PAYLOAD", "Packet", "PacketReader", "frame_packet",
    "frame_packets",
    # capabilities / constants
    "CAPABILITIES_CPPCOMET", "CAPABILITIES_LENIENT", "SERVER_VERSION", "SERVER_STATUS_AUTOCOMMIT",
    "SERVER_STATUS_NO_BACKSLASH_ESCAPES", "CHARSET_LATIN1", "CHARSET_UTF8_GENERAL_CI",
    "NATIVE_PASSWORD_PLUGIN", "CACHING_SHA2_PLUGIN",
    # connection phase
    "generate_scramble", "build_initial_handshake", "HandshakeResponse", "parse_handshake_response",
    "is_ssl_request", "native_password_token", "verify_native_password", "AuthResult",
    "check_auth", "build_auth_switch_request", "parse_auth_switch_response",
    "check_auth_switch_response",
    "dev_id_from_username",
    # command phase
    "COM_QUIT", "COM_INIT_DB", "COM_QUERY", "COM_FIELD_LIST", "COM_PING", "ComQuit", "ComInitDb",
    "ComQuery", "ComPing", "ComOther", "Command", "parse_command",
    # encoders
    "encode_lenenc_int", "decode_lenenc_int", "encode_lenenc_str", "OK_CONSTANT",
    "build_ok_constant", "build_ok", "build_err", "build_eof", "EOF_PAYLOAD",
    "build_column_count", "build_column_definition", "build_text_row", "build_result_set",
    # handshake error texts
    "ERR_AUTH_BAD_LENGTH", "ERR_AUTH_FAILURE", "ERR_SELECT_DB", "ERR_ACCESS_DENIED",
    # client side
    "CLIENT_CAPABILITIES", "Greeting", "parse_initial_handshake", "build_handshake_response",
    "caching_sha2_token", "AuthSwitchRequest", "parse_auth_switch_request", "OkPacket", "ErrPacket",
    "EofPacket", "parse_ok", "parse_err", "parse_eof", "is_ok_packet", "is_err_packet",
    "is_eof_packet", "ColumnDefinition", "parse_column_definition", "parse_text_row",
    "build_command",
]


# =================================================================================================
# Errors
# =================================================================================================


class ProtocolError(Exception):
    """The peer broke the MySQL framing or sent a packet that cannot be decoded.

    The only exception type this module raises for bad *input* (programming errors such as a wrong
    argument type still raise ``TypeError``/``ValueError``).  A server should close the connection.
    """


class PacketTooLarge(ProtocolError):
    """A logical packet's payload exceeds the reader's configured ``max_payload``."""


class MalformedPacket(ProtocolError):
    """A payload is too short or lacks a terminator for the structure it should hold."""


class SequenceError(ProtocolError):
    """A continuation chunk of a split packet did not carry the next sequence id."""


# =================================================================================================
# Framing
# =================================================================================================

#: Largest payload of one physical packet; a chunk of exactly this size is continued by the next.
MAX_PACKET_CHUNK = 0xFFFFFF
#: Default cap for a reassembled logical payload (queries are < 9000 bytes, spec 13).
DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Packet:
    """One logical packet (split physical packets already joined).

    ``sequence_id`` is the id of the first physical packet, ``last_sequence_id`` of the last one
    (they differ only for payloads of 16 MB or more).  Replies continue from
    :attr:`reply_sequence_id` (spec 3: "reply sequence ids start at client sequence id + 1").
    """

    sequence_id: int
    payload: bytes
    last_sequence_id: int

    @property
    def reply_sequence_id(self) -> int:
        return (self.last_sequence_id + 1) & 0xFF


class PacketReader:
    """Incremental MySQL packet decoder.

    Feed it bytes with :meth:`feed`, then take packets with :meth:`next_packet` (``None`` = need
    more bytes) or by iterating.  Handles arbitrary split and merged reads and the 16 MB
    continuation rule (a physical packet of length ``0xFFFFFF`` is followed by another carrying
    the next sequence id; the logical packet ends with the first shorter one, possibly empty).

    ``max_payload`` bounds the reassembled payload; the check happens as soon as a header is seen,
    before the body has arrived, so a hostile length cannot make the reader buffer it.  After a
    :class:`ProtocolError` the reader is dead: every further call raises the same error.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if max_payload < 0:
            raise ValueError("max_payload must be >= 0")
        self.max_payload = max_payload
        self._buf = bytearray()
        self._pos = 0
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._first_seq: int | None = None
        self._last_seq = 0
        self._error: ProtocolError | None = None

    # -- input ------------------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray) -> None:
        """Append received bytes (may be empty)."""
        self._check_alive()
        if self._pos and self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def feed_eof(self) -> None:
        """The peer closed; raise :class:`MalformedPacket` if the bytes received end inside a
        packet.  Complete packets not yet taken stay available from :meth:`next_packet`."""
        self._check_alive()
        pos, end = self._pos, len(self._buf)
        continuing = bool(self._chunks)
        while pos < end:
            if end - pos < 4:
                break
            length = self._buf[pos] | (self._buf[pos + 1] << 8) | (self._buf[pos + 2] << 16)
            if end - pos < 4 + length:
                break
            pos += 4 + length
            continuing = length == MAX_PACKET_CHUNK
        if pos < end or continuing:
            self._fail(MalformedPacket(
                f"connection closed inside a packet ({end - pos + self._chunks_len} bytes pending)"))

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a packet."""
        return len(self._buf) - self._pos + self._chunks_len

    # -- output -----------------------------------------------------------------------------------
    def next_packet(self) -> Packet | None:
        """The next complete logical packet, or ``None`` if more bytes are needed."""
        self._check_alive()
        while True:
            avail = len(self._buf) - self._pos
            if avail < 4:
                return None
            header = self._buf[self._pos: self._pos + 4]
            length = header[0] | (header[1] << 8) | (header[2] << 16)
            seq = header[3]
            if self._first_seq is not None and seq != (self._last_seq + 1) & 0xFF:
                self._fail(SequenceError(
                    f"continuation packet has sequence id {seq}, expected {(self._last_seq + 1) & 0xFF}"))
            if self._chunks_len + length > self.max_payload:
                self._fail(PacketTooLarge(
                    f"packet payload of {self._chunks_len + length} bytes exceeds the limit of "
                    f"{self.max_payload}"))
            if avail < 4 + length:
                return None
            start = self._pos + 4
            body = bytes(self._buf[start: start + length])
            self._pos = start + length
            if self._first_seq is None:
                self._first_seq = seq
            self._last_seq = seq
            if length == MAX_PACKET_CHUNK:
                self._chunks.append(body)
                self._chunks_len += length
                continue
            if self._chunks:
                self._chunks.append(body)
                body = b"".join(self._chunks)
                self._chunks.clear()
                self._chunks_len = 0
            pkt = Packet(self._first_seq, body, seq)
            self._first_seq = None
            return pkt

    def __iter__(self) -> Iterator[Packet]:
        while (pkt := self.next_packet()) is not None:
            yield pkt

    # -- internals --------------------------------------------------------------------------------
    def _fail(self, err: ProtocolError) -> None:
        # keep a copy without a traceback: the raised error's traceback holds this parser's frames,
        # and a parser holding it would be a reference cycle
        self._error = copy.copy(err)
        try:
            raise err
        finally:
            del err  # this frame is in err's traceback: do not let it hold err too

    def _check_alive(self) -> None:
        if self._error is not None:
            raise copy.copy(self._error)


def frame_packet(payload: bytes, sequence_id: int) -> bytes:
    """Frame one logical payload; payloads of 16 MB or more are split into consecutive ids.

    A payload whose length is a multiple of ``0xFFFFFF`` (including 0 after a full chunk) ends with
    an empty packet, as the protocol requires.
    """
    out = bytearray()
    seq = sequence_id & 0xFF
    view = memoryview(payload)
    while True:
        chunk = view[:MAX_PACKET_CHUNK]
        view = view[MAX_PACKET_CHUNK:]
        n = len(chunk)
        out += bytes((n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF, seq))
        out += chunk
        seq = (seq + 1) & 0xFF
        if n < MAX_PACKET_CHUNK:
            return bytes(out)


def frame_packets(payloads: Iterable[bytes], first_sequence_id: int) -> bytes:
    """Frame several payloads with consecutive sequence ids (a result set, spec 4.4)."""
    out = bytearray()
    seq = first_sequence_id & 0xFF
    for payload in payloads:
        framed = frame_packet(payload, seq)
        out += framed
        seq = (seq + 1 + len(payload) // MAX_PACKET_CHUNK) & 0xFF
    return bytes(out)


# =================================================================================================
# Constants
# =================================================================================================

CLIENT_LONG_PASSWORD = 1 << 0
CLIENT_FOUND_ROWS = 1 << 1
CLIENT_LONG_FLAG = 1 << 2
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_NO_SCHEMA = 1 << 4
CLIENT_COMPRESS = 1 << 5
CLIENT_ODBC = 1 << 6
CLIENT_LOCAL_FILES = 1 << 7
CLIENT_IGNORE_SPACE = 1 << 8
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_INTERACTIVE = 1 << 10
CLIENT_SSL = 1 << 11
CLIENT_IGNORE_SIGPIPE = 1 << 12
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_RESERVED = 1 << 14
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
CLIENT_SESSION_TRACK = 1 << 23
CLIENT_DEPRECATE_EOF = 1 << 24
CLIENT_SSL_VERIFY_SERVER_CERT = 1 << 30
CLIENT_REMEMBER_OPTIONS = 1 << 31

#: What CppComet 4.09 advertises (spec 2.1): bits 0-19 plus 30/31 — including SSL and COMPRESS,
#: neither of which it implements.
CAPABILITIES_CPPCOMET = 0xC00FFFFF
#: Spec 2.1/18 [REC]: the same without CLIENT_SSL and CLIENT_COMPRESS, so TLS-preferring clients
#: silently continue in plain text.
CAPABILITIES_LENIENT = CAPABILITIES_CPPCOMET & ~(CLIENT_SSL | CLIENT_COMPRESS)

SERVER_VERSION = "CppComet community 4.09 (AGPL license)"
SERVER_STATUS_AUTOCOMMIT = 0x0002
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x0200
CHARSET_LATIN1 = 0x08  # latin1_swedish_ci, announced in the greeting (spec 2.1)
CHARSET_UTF8_GENERAL_CI = 33  # every column definition (spec 4.4)
NATIVE_PASSWORD_PLUGIN = "mysql_native_password"
CACHING_SHA2_PLUGIN = "caching_sha2_password"

COM_QUIT = 0x01
COM_INIT_DB = 0x02
COM_QUERY = 0x03
COM_FIELD_LIST = 0x04
COM_STATISTICS = 0x09
COM_PING = 0x0E
COM_CHANGE_USER = 0x11
COM_STMT_PREPARE = 0x16
COM_SET_OPTION = 0x1B
COM_RESET_CONNECTION = 0x1F

MYSQL_TYPE_VAR_STRING = 0xFD
NOT_NULL_FLAG = 0x0001

#: Handshake/command error (code, message) pairs, verbatim (spec 2.2, 2.4, 3, 12).
ERR_AUTH_BAD_LENGTH = (16, "Authentication failure, authDataLen!=20")
ERR_AUTH_FAILURE = (16, "Authentication failure")
ERR_SELECT_DB = (15, "Select database failure")
ERR_ACCESS_DENIED = (403, "Access denied")


# =================================================================================================
# Length-encoded integers and strings (spec 4.2)
# =================================================================================================


def encode_lenenc_int(value: int, *, fd_bug: bool = True) -> bytes:
    """Length-encoded integer.

    ``fd_bug`` (default ``True``, faithful, spec 4.2): for ``65536 <= value < 2**24`` CppComet
    writes ``0xFD`` followed by **four** bytes (a spurious trailing ``0x00``) instead of three, and
    a value of ``-1`` (cluster mode, spec 11) becomes the single byte ``0xFF``.  Pass
    ``fd_bug=False`` for the correct encoding (negative values then raise ``ValueError``).
    """
    if value < 0:
        if fd_bug and value == -1:
            return b"\xff"
        raise ValueError("length-encoded integers are unsigned")
    if value < 251:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(4 if fd_bug else 3, "little")
    if value < 1 << 64:
        return b"\xfe" + value.to_bytes(8, "little")
    raise ValueError("value does not fit a length-encoded integer")


def decode_lenenc_int(data: bytes, pos: int = 0) -> tuple[int | None, int]:
    """Decode a (correct) length-encoded integer at ``pos``; returns ``(value, new_pos)``.

    ``0xFB`` (NULL in rows) decodes to ``None``.  Raises :class:`MalformedPacket` if truncated or
    on the undefined prefix ``0xFF``.
    """
    if pos >= len(data):
        raise MalformedPacket("length-encoded integer missing")
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return None, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if size is None:
        raise MalformedPacket("invalid length-encoded integer prefix 0xff")
    end = pos + 1 + size
    if end > len(data):
        raise MalformedPacket("length-encoded integer truncated")
    return int.from_bytes(data[pos + 1: end], "little"), end


def encode_lenenc_str(value: str | bytes) -> bytes:
    """Length-encoded string (correct length encoding; row values are < 64 KiB, spec 4.4)."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    return encode_lenenc_int(len(raw), fd_bug=False) + raw


# =================================================================================================
# Connection phase (spec 2)
# =================================================================================================


def generate_scramble(
    randbytes: Callable[[int], bytes] = os.urandom, *, nonzero: bool = False
) -> bytes:
    """20 scramble bytes for the greeting.

    Default (faithful, spec 2.1): each byte is ``random % 254``, i.e. 0x00-0xFD, zero bytes
    possible as in the original.  ``nonzero=True`` (spec 2.1 [REC]): bytes in 0x01-0x7F like
    MySQL.  ``randbytes`` is injectable so tests are deterministic.
    """
    raw = randbytes(20)
    if len(raw) != 20:
        raise ValueError("randbytes(20) must return 20 bytes")
    if nonzero:
        return bytes(1 + (b % 127) for b in raw)
    return bytes(b % 254 for b in raw)


def build_initial_handshake(
    *,
    connection_id: int,
    scramble: bytes,
    capabilities: int = CAPABILITIES_CPPCOMET,
    server_version: str = SERVER_VERSION,
    charset: int = CHARSET_LATIN1,
    status: int = SERVER_STATUS_AUTOCOMMIT,
    auth_plugin: str = NATIVE_PASSWORD_PLUGIN,
) -> bytes:
    """Initial Handshake v10 payload (server -> client, sequence id 0), spec 2.1.

    The defaults reproduce CppComet 4.09 byte for byte (106 bytes): version
    ``CppComet community 4.09 (AGPL license)``, capabilities ``0xC00FFFFF`` (advertising SSL it does
    not implement — pass :data:`CAPABILITIES_LENIENT` for the spec 2.1 [REC] profile), charset 8,
    status 0x0002, auth-data length 21, plugin ``mysql_native_password``.  ``connection_id`` is the
    socket descriptor number in the original.
    """
    if len(scramble) != 20:
        raise ValueError("scramble must be 20 bytes")
    return b"".join((
        b"\x0a",
        server_version.encode("utf-8") + b"\x00",
        struct.pack("<I", connection_id & 0xFFFFFFFF),
        scramble[:8],
        b"\x00",
        struct.pack("<H", capabilities & 0xFFFF),
        bytes((charset & 0xFF,)),
        struct.pack("<H", status & 0xFFFF),
        struct.pack("<H", (capabilities >> 16) & 0xFFFF),
        bytes((len(scramble) + 1,)),
        b"\x00" * 10,
        scramble[8:] + b"\x00",
        auth_plugin.encode("ascii") + b"\x00",
    ))


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """A decoded HandshakeResponse41 (spec 2.2).

    ``username`` keeps the raw bytes (the original compares them byte-wise); ``auth_response`` is
    the scramble response (20 bytes for mysql_native_password, 0 for an empty password or a client
    waiting for an auth switch, 32 for caching_sha2_password).  ``database`` is ``None`` unless the
    client set CONNECT_WITH_DB; ``auth_plugin`` is ``None`` unless it set PLUGIN_AUTH.
    ``secure_connection`` is False for pre-4.1 authentication (spec 2.2 step 4, last bullet).
    """

    capabilities: int
    max_packet_size: int
    charset: int
    username: bytes
    auth_response: bytes
    database: bytes | None
    auth_plugin: str | None
    secure_connection: bool

    @property
    def user(self) -> str:
        return self.username.decode("utf-8", "surrogateescape")

    @property
    def database_name(self) -> str | None:
        return None if self.database is None else self.database.decode("utf-8", "surrogateescape")


def _cstring(data: bytes, pos: int, what: str, *, to_end: bool = False) -> tuple[bytes, int]:
    end = data.find(b"\x00", pos)
    if end < 0:
        if to_end:
            return bytes(data[pos:]), len(data)
        raise MalformedPacket(f"{what} is not NUL-terminated")
    return bytes(data[pos:end]), end + 1


def is_ssl_request(payload: bytes) -> bool:
    """True for the 32-byte SSLRequest a TLS-preferring client sends instead of its response.

    The original does not recognise it and parses it as a full response (spec 2.1, "SSL advertised
    but not implemented"); the server decides what to do (faithful: ERR/close; lenient servers do
    not advertise CLIENT_SSL, so it never arrives).
    """
    if len(payload) != 32:
        return False
    caps = int.from_bytes(payload[:4], "little")
    return bool(caps & CLIENT_SSL) and bool(caps & CLIENT_PROTOCOL_41)


def parse_handshake_response(payload: bytes) -> HandshakeResponse:
    """Decode a HandshakeResponse41 (client -> server, sequence id 1), spec 2.2.

    Layout as the original reads it: 4 bytes capabilities; if PROTOCOL_41, 4 bytes max packet
    size; 1 byte charset; if PROTOCOL_41, 23 reserved bytes; NUL-terminated user; the auth response
    (lenenc length if the client set PLUGIN_AUTH_LENENC_CLIENT_DATA — never advertised by
    CppComet, identical to the 1-byte form below 251 —, else a 1-byte length if SECURE_CONNECTION,
    else a NUL-terminated string); a NUL-terminated database if CONNECT_WITH_DB; the plugin name if
    PLUGIN_AUTH.  Anything after that (connection attributes) is ignored (step 6).  Raises
    :class:`MalformedPacket` when the payload is too short (e.g. an SSLRequest).
    """
    data = bytes(payload)
    if len(data) < 4:
        raise MalformedPacket("handshake response shorter than 4 bytes")
    caps = int.from_bytes(data[:4], "little")
    pos = 4
    max_packet = 0
    if caps & CLIENT_PROTOCOL_41:
        if len(data) < pos + 4:
            raise MalformedPacket("handshake response truncated (max packet size)")
        max_packet = int.from_bytes(data[pos: pos + 4], "little")
        pos += 4
    if len(data) < pos + 1:
        raise MalformedPacket("handshake response truncated (charset)")
    charset = data[pos]
    pos += 1
    if caps & CLIENT_PROTOCOL_41:
        if len(data) < pos + 23:
            raise MalformedPacket("handshake response truncated (reserved bytes)")
        pos += 23
    username, pos = _cstring(data, pos, "user name")
    secure = bool(caps & (CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA))
    if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        n, pos = decode_lenenc_int(data, pos)
        if n is None or pos + n > len(data):
            raise MalformedPacket("auth response truncated")
        auth, pos = data[pos: pos + n], pos + n
    elif caps & CLIENT_SECURE_CONNECTION:
        if pos >= len(data):
            raise MalformedPacket("auth response length missing")
        n = data[pos]
        pos += 1
        if pos + n > len(data):
            raise MalformedPacket("auth response truncated")
        auth, pos = data[pos: pos + n], pos + n
    else:
        auth, pos = _cstring(data, pos, "auth response", to_end=True)
    database: bytes | None = None
    if caps & CLIENT_CONNECT_WITH_DB:
        database, pos = _cstring(data, pos, "database", to_end=True)
    plugin: str | None = None
    if caps & CLIENT_PLUGIN_AUTH and pos < len(data):
        raw_plugin, pos = _cstring(data, pos, "auth plugin", to_end=True)
        plugin = raw_plugin.decode("latin-1")
    return HandshakeResponse(caps, max_packet, charset, username, bytes(auth), database, plugin, secure)


def _password_bytes(password: str | bytes) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else bytes(password)


def native_password_token(password: str | bytes, scramble: bytes) -> bytes:
    """The client's mysql_native_password response: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).

    An empty password gives an empty token (MySQL convention).
    """
    pw = _password_bytes(password)
    if not pw:
        return b""
    h1 = hashlib.sha1(pw).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(bytes(scramble) + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


def verify_native_password(scramble: bytes, token: bytes, password: str | bytes) -> bool:
    """Check a mysql_native_password response against the plaintext shared password (spec 2.3)."""
    expected = native_password_token(password, scramble)
    return hmac.compare_digest(expected, bytes(token))


class AuthResult(enum.Enum):
    """Outcome of :func:`check_auth` (spec 2.2 step 4)."""

    AUTHENTICATED = "authenticated"  # send OK (after the database check, step 5)
    UNAUTHENTICATED = "unauthenticated"  # send OK; every COM_QUERY then gets ERR 403
    AUTH_SWITCH = "auth_switch"  # lenient only: send build_auth_switch_request()
    BAD_LENGTH = "bad_length"  # ERR_AUTH_BAD_LENGTH, seq 2, close
    BAD_PASSWORD = "bad_password"  # ERR_AUTH_FAILURE, seq 2, close

    @property
    def skips_database_check(self) -> bool:
        """The haproxy_check path answers OK immediately, before any database check."""
        return self is AuthResult.UNAUTHENTICATED


def check_auth(
    response: HandshakeResponse,
    scramble: bytes,
    password: str | bytes,
    *,
    auth_switch: bool = False,
) -> AuthResult:
    """The server's authentication decision for a parsed handshake response.

    Faithful (spec 2.2 step 4): pre-4.1 auth -> UNAUTHENTICATED; empty auth data -> UNAUTHENTICATED
    if the user name starts with ``haproxy_check``, else BAD_LENGTH; length != 20 -> BAD_LENGTH;
    otherwise the native-password check.  The plugin name is ignored.

    ``auth_switch=True`` (spec 2.5 [REC] (b)): a response that is not a 20-byte native scramble
    (empty, 32 bytes of caching_sha2_password, or a plugin name other than mysql_native_password)
    yields AUTH_SWITCH instead of BAD_LENGTH; the haproxy_check rule still comes first.
    """
    if not response.secure_connection:
        return AuthResult.UNAUTHENTICATED
    auth = response.auth_response
    if not auth and response.username.startswith(b"haproxy_check"):
        return AuthResult.UNAUTHENTICATED
    if auth_switch and (
        len(auth) != 20
        or (response.auth_plugin is not None and response.auth_plugin != NATIVE_PASSWORD_PLUGIN)
    ):
        return AuthResult.AUTH_SWITCH
    if len(auth) != 20:
        return AuthResult.BAD_LENGTH
    if verify_native_password(scramble, auth, password):
        return AuthResult.AUTHENTICATED
    return AuthResult.BAD_PASSWORD


def build_auth_switch_request(scramble: bytes, plugin: str = NATIVE_PASSWORD_PLUGIN) -> bytes:
    """AuthSwitchRequest: ``FE``, plugin name NUL, 20-byte scramble, NUL (spec 2.5 [REC] (b)).

    The original never sends it; a lenient server sends it (sequence id = response id + 1) to
    clients that started with caching_sha2_password or an empty response.
    """
    if len(scramble) != 20:
        raise ValueError("scramble must be 20 bytes")
    return b"\xfe" + plugin.encode("ascii") + b"\x00" + bytes(scramble) + b"\x00"


def parse_auth_switch_response(payload: bytes) -> bytes:
    """The client's AuthSwitchResponse: the raw auth data (20 bytes for mysql_native_password).

    Verify it with :func:`verify_native_password` against the *new* scramble; the OK or ERR that
    follows carries the response's sequence id + 1.
    """
    return bytes(payload)


def check_auth_switch_response(payload: bytes, scramble: bytes, password: str | bytes) -> AuthResult:
    """Decide on the AuthSwitchResponse (lenient path of spec 2.5 [REC] (b)).

    ``scramble`` is the one sent in the AuthSwitchRequest.  AUTHENTICATED -> OK; BAD_LENGTH /
    BAD_PASSWORD -> the ERR 16 texts of spec 2.2 (:data:`ERR_AUTH_BAD_LENGTH`,
    :data:`ERR_AUTH_FAILURE`), then close.
    """
    token = parse_auth_switch_response(payload)
    if len(token) != 20:
        return AuthResult.BAD_LENGTH
    if verify_native_password(scramble, token, password):
        return AuthResult.AUTHENTICATED
    return AuthResult.BAD_PASSWORD


def dev_id_from_username(username: bytes | str) -> int:
    """The tenant selected by the login name (spec 2.3).

    ``root`` or ``0`` -> 0; a decimal string -> its value (leading zeros allowed, at most 18
    significant digits; the empty name reads as 0); anything else -> -1.
    """
    raw = username.encode("utf-8", "surrogateescape") if isinstance(username, str) else bytes(username)
    if raw in (b"root", b"0"):
        return 0
    digits = raw.lstrip(b"0")
    if len(digits) > 18 or any(not 0x30 <= c <= 0x39 for c in digits):
        return -1
    return int(digits) if digits else 0


# =================================================================================================
# Command phase (spec 3)
# =================================================================================================


@dataclass(frozen=True, slots=True)
class ComQuit:
    """COM_QUIT. The original answers OK(0,0) Variant B and does not close (spec 3)."""


@dataclass(frozen=True, slots=True)
class ComPing:
    """COM_PING -> OK(0,0) Variant B (spec 3)."""


@dataclass(frozen=True, slots=True)
class ComInitDb:
    """COM_INIT_DB; ``raw`` is everything after the command byte."""

    raw: bytes

    @property
    def database(self) -> str:
        """The name as the original sees it: up to the first NUL (C string)."""
        return self.raw.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class ComQuery:
    """COM_QUERY; ``query`` is the raw text (may contain NUL; see cometql.parse)."""

    query: bytes

    @property
    def text(self) -> str:
        return self.query.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class ComOther:
    """Any other command (COM_FIELD_LIST 0x04, COM_STMT_PREPARE 0x16, ...).

    The original answers every one with a single EOF packet (spec 3); ``command`` is the byte so
    a lenient server can choose ERR/OK per command.
    """

    command: int
    data: bytes


Command = ComQuit | ComPing | ComInitDb | ComQuery | ComOther


def parse_command(payload: bytes) -> Command:
    """Decode a command-phase packet by its first byte (spec 3).

    Raises :class:`MalformedPacket` for an empty payload.
    """
    if not payload:
        raise MalformedPacket("empty command packet")
    cmd, rest = payload[0], bytes(payload[1:])
    if cmd == COM_QUERY:
        return ComQuery(rest)
    if cmd == COM_INIT_DB:
        return ComInitDb(rest)
    if cmd == COM_PING:
        return ComPing()
    if cmd == COM_QUIT:
        return ComQuit()
    return ComOther(cmd, rest)


# =================================================================================================
# Encoders (spec 4)
# =================================================================================================

#: OK Variant A, "constant OK" (spec 4.1): affected 0, insert id 0, status 0x0002, 0 warnings, no
#: info.  Successful handshake, haproxy_check login, query without statements.
OK_CONSTANT = bytes.fromhex("00000002000000")

#: EOF: 0 warnings, status 0x0002 (spec 4.4).
EOF_PAYLOAD = bytes.fromhex("fe00000200")


def build_ok_constant() -> bytes:
    """OK Variant A (spec 4.1), exact payload ``00 00 00 02 00 00 00``."""
    return OK_CONSTANT


def build_ok(
    affected_rows: int = 0,
    insert_id: int = 0,
    *,
    status: int = SERVER_STATUS_NO_BACKSLASH_ESCAPES,
    warnings: int = 0,
    info: bytes = b"\x00",
    fd_bug: bool = True,
) -> bytes:
    """OK packet; the defaults give Variant B, the "result OK" of CppComet (spec 4.1).

    Variant B (every SET, INSERT, DELETE, COM_PING, COM_QUIT, COM_INIT_DB success) is
    ``00 | affected | insert id | 00 02 | 00 00 | 00``: the status word is 0x0200
    (NO_BACKSLASH_ESCAPES, autocommit clear) and the info is a lone NUL.  Both oddities are the
    defaults because client escaping depends on the status bit (spec 4.1).  For a textbook OK pass
    ``status=SERVER_STATUS_AUTOCOMMIT, info=b""``.  ``fd_bug`` selects the faithful 0xFD
    length-encoding of :func:`encode_lenenc_int` (spec 4.2).
    """
    return b"".join((
        b"\x00",
        encode_lenenc_int(affected_rows, fd_bug=fd_bug),
        encode_lenenc_int(insert_id, fd_bug=fd_bug),
        struct.pack("<HH", status & 0xFFFF, warnings & 0xFFFF),
        bytes(info),
    ))


def build_err(code: int, message: str, *, sqlstate: str = "HY000") -> bytes:
    """ERR packet: ``FF``, code (2 bytes LE), ``#``, SQLSTATE (always HY000), message (spec 4.3)."""
    state = sqlstate.encode("ascii")
    if len(state) != 5:
        raise ValueError("SQLSTATE must be 5 characters")
    return b"\xff" + struct.pack("<H", code & 0xFFFF) + b"#" + state + message.encode("utf-8")


def build_eof(*, warnings: int = 0, status: int = SERVER_STATUS_AUTOCOMMIT) -> bytes:
    """EOF packet; default exact payload ``FE 00 00 02 00`` (spec 4.4)."""
    return b"\xfe" + struct.pack("<HH", warnings & 0xFFFF, status & 0xFFFF)


def build_column_count(count: int) -> bytes:
    """The first packet of a result set: the column count (spec 4.4)."""
    return encode_lenenc_int(count, fd_bug=False)


def build_column_definition(
    name: str,
    *,
    catalog: str = "def",
    schema: str = "",
    table: str = "",
    org_table: str = "",
    org_name: str = "",
    charset: int = CHARSET_UTF8_GENERAL_CI,
    length: int = 77,
    column_type: int = MYSQL_TYPE_VAR_STRING,
    flags: int = NOT_NULL_FLAG,
    decimals: int = 0x1F,
) -> bytes:
    """Column Definition 41 with CppComet's fixed shape (spec 4.4, reference-observations 2).

    Catalog ``def``; schema, table, org_table, org_name empty; fixed-length marker 0x0C; charset 33;
    length 77; type 0xFD VAR_STRING; flags 0x0001 NOT_NULL (the high flags byte and the two filler
    bytes are unwritten buffer bytes in the original, spec 17.1 — written as 0x00); decimals 0x1F.
    """
    return b"".join((
        encode_lenenc_str(catalog),
        encode_lenenc_str(schema),
        encode_lenenc_str(table),
        encode_lenenc_str(org_table),
        encode_lenenc_str(name),
        encode_lenenc_str(org_name),
        b"\x0c",
        struct.pack("<HIBHB", charset & 0xFFFF, length & 0xFFFFFFFF, column_type & 0xFF,
                    flags & 0xFFFF, decimals & 0xFF),
        b"\x00\x00",
    ))


def build_text_row(values: Sequence[str | bytes | None], *, null_as_empty: bool = True) -> bytes:
    """A text-protocol row: each value as a length-encoded string (spec 4.4).

    ``null_as_empty`` (default ``True``, faithful, spec 4.4): CppComet never sends NULL (0xFB);
    missing values are empty strings.  ``False`` encodes ``None`` as 0xFB.
    """
    out = bytearray()
    for v in values:
        if v is None:
            out += b"\x00" if null_as_empty else b"\xfb"
        else:
            out += encode_lenenc_str(v)
    return bytes(out)


def build_result_set(
    columns: Sequence[str],
    rows: Iterable[Sequence[str | bytes | None]],
    *,
    null_as_empty: bool = True,
    answer_buf_size: int | None = None,
) -> list[bytes]:
    """Payloads of a whole text result set: count, definitions, EOF, rows, EOF (spec 4.4).

    Frame with ``frame_packets(payloads, command_packet.reply_sequence_id)``.

    ``answer_buf_size`` (default ``None``: no limit, the sensible behaviour): emulate the original's
    answer buffer (``[main] answer_buf_size``, default 1 000 000) which silently stops adding rows
    once fewer than ``columns x 2000`` bytes remain (spec 4.4 "Result size limit").  The buffer use
    is approximated by the framed size of the packets produced so far.
    """
    out = [build_column_count(len(columns))]
    out.extend(build_column_definition(c) for c in columns)
    out.append(EOF_PAYLOAD)
    used = sum(len(p) + 4 for p in out)
    reserve = len(columns) * 2000
    for row in rows:
        if answer_buf_size is not None and answer_buf_size - used < reserve:
            break
        payload = build_text_row(row, null_as_empty=null_as_empty)
        out.append(payload)
        used += len(payload) + 4
    out.append(EOF_PAYLOAD)
    return out


# =================================================================================================
# Client side (the bench's CometQL client; MySQL protocol documentation, connection and text
# protocol).  Every decoder raises MalformedPacket, and nothing else, for a payload it cannot read.
# =================================================================================================

#: What the bench client asks for: LONG_PASSWORD, FOUND_ROWS, LONG_FLAG, CONNECT_WITH_DB,
#: PROTOCOL_41, TRANSACTIONS, SECURE_CONNECTION, MULTI_RESULTS and PLUGIN_AUTH -- the set PHP's
#: mysqlnd sends without TLS.  Never SSL (CppComet advertises it without speaking it) or
#: DEPRECATE_EOF (result sets then end with the classic EOF packets every server sends).
CLIENT_CAPABILITIES = (CLIENT_LONG_PASSWORD | CLIENT_FOUND_ROWS | CLIENT_LONG_FLAG
                       | CLIENT_CONNECT_WITH_DB | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS
                       | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH)

SERVER_MORE_RESULTS_EXISTS = 0x0008


@dataclass(frozen=True, slots=True)
class Greeting:
    """A decoded Initial Handshake v10 (server -> client)."""

    protocol_version: int
    server_version: str
    connection_id: int
    scramble: bytes          # auth plugin data, trailing NUL removed (20 bytes for the usual plugins)
    capabilities: int
    charset: int
    status: int
    auth_plugin: str | None  # None when the server did not send CLIENT_PLUGIN_AUTH


def parse_initial_handshake(payload: bytes) -> Greeting:
    """Decode an Initial Handshake v10.  The server version is read up to its NUL whatever it says
    (CppComet's does not start with a digit); the capability upper half, status and auth data part
    2 are optional as in the protocol (pre-4.1 servers stop after the lower capabilities)."""
    data = bytes(payload)
    if not data:
        raise MalformedPacket("empty greeting")
    if data[0] != 10:
        raise MalformedPacket(f"unsupported protocol version {data[0]} in the greeting")
    version, pos = _cstring(data, 1, "server version")
    if len(data) < pos + 4 + 8 + 1 + 2:
        raise MalformedPacket("greeting truncated")
    connection_id = int.from_bytes(data[pos: pos + 4], "little")
    part1 = data[pos + 4: pos + 12]
    pos += 13  # part 1 and its filler byte
    caps = int.from_bytes(data[pos: pos + 2], "little")
    pos += 2
    charset = status = 0
    auth_len = 0
    if len(data) >= pos + 16:
        charset = data[pos]
        status = int.from_bytes(data[pos + 1: pos + 3], "little")
        caps |= int.from_bytes(data[pos + 3: pos + 5], "little") << 16
        auth_len = data[pos + 5]
        pos += 16  # charset, status, caps upper, auth length, 10 reserved bytes
    part2 = b""
    if caps & CLIENT_SECURE_CONNECTION and pos < len(data):
        n = max(13, auth_len - 8)
        if len(data) < pos + n:
            raise MalformedPacket("greeting auth data truncated")
        part2 = data[pos: pos + n]
        pos += n
    plugin: str | None = None
    if caps & CLIENT_PLUGIN_AUTH and pos < len(data):
        raw, pos = _cstring(data, pos, "auth plugin name", to_end=True)
        plugin = raw.decode("latin-1")
    scramble = part1 + part2
    if part2 and scramble.endswith(b"\x00"):  # part 2 carries the scramble's NUL terminator
        scramble = scramble[:-1]
    return Greeting(10, version.decode("utf-8", "replace"), connection_id, scramble, caps, charset, status,
                    plugin)


def build_handshake_response(username: str, auth_response: bytes, *, database: str | None = None,
                             auth_plugin: str | None = NATIVE_PASSWORD_PLUGIN,
                             capabilities: int = CLIENT_CAPABILITIES, charset: int = CHARSET_UTF8_GENERAL_CI,
                             max_packet_size: int = 1 << 24) -> bytes:
    """A HandshakeResponse41 (client -> server, sequence id 1).  CONNECT_WITH_DB and PLUGIN_AUTH are
    set or cleared to match ``database`` / ``auth_plugin``; the auth response uses the 1-byte length
    of SECURE_CONNECTION (so it must be shorter than 256 bytes)."""
    if len(auth_response) > 255:
        raise ValueError("auth response too long for a 1-byte length")
    caps = capabilities | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION
    caps = caps | CLIENT_CONNECT_WITH_DB if database is not None else caps & ~CLIENT_CONNECT_WITH_DB
    caps = caps | CLIENT_PLUGIN_AUTH if auth_plugin is not None else caps & ~CLIENT_PLUGIN_AUTH
    caps &= ~(CLIENT_SSL | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_CONNECT_ATTRS | CLIENT_DEPRECATE_EOF)
    out = bytearray(struct.pack("<IIB", caps, max_packet_size, charset & 0xFF))
    out += b"\x00" * 23
    out += username.encode("utf-8") + b"\x00"
    out += bytes((len(auth_response),)) + bytes(auth_response)
    if database is not None:
        out += database.encode("utf-8") + b"\x00"
    if auth_plugin is not None:
        out += auth_plugin.encode("ascii") + b"\x00"
    return bytes(out)


def caching_sha2_token(password: str | bytes, scramble: bytes) -> bytes:
    """The caching_sha2_password fast-auth token: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)."""
    pw = _password_bytes(password)
    if not pw:
        return b""
    h1 = hashlib.sha256(pw).digest()
    h2 = hashlib.sha256(h1).digest()
    h3 = hashlib.sha256(h2 + bytes(scramble)).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    plugin: str
    data: bytes   # the new scramble, trailing NUL removed


def parse_auth_switch_request(payload: bytes) -> AuthSwitchRequest:
    """``FE plugin NUL data [NUL]`` (an old-style lone ``FE`` means mysql_old_password)."""
    data = bytes(payload)
    if not data or data[0] != 0xFE:
        raise MalformedPacket("not an auth switch request")
    if len(data) == 1:
        return AuthSwitchRequest("mysql_old_password", b"")
    raw, pos = _cstring(data, 1, "auth switch plugin name", to_end=True)
    rest = data[pos:]
    return AuthSwitchRequest(raw.decode("latin-1"), rest[:-1] if rest.endswith(b"\x00") else rest)


@dataclass(frozen=True, slots=True)
class OkPacket:
    affected_rows: int
    insert_id: int
    status: int
    warnings: int
    info: bytes


@dataclass(frozen=True, slots=True)
class ErrPacket:
    code: int
    sqlstate: str   # "" when the server sent none (pre-4.1 form or handshake errors)
    message: str


@dataclass(frozen=True, slots=True)
class EofPacket:
    warnings: int
    status: int


def is_ok_packet(payload: bytes) -> bool:
    """An OK packet as the first packet of a response: ``00`` and at least the two lengths."""
    return payload[:1] == b"\x00" and len(payload) >= 3


def is_err_packet(payload: bytes) -> bool:
    return payload[:1] == b"\xff"


def is_eof_packet(payload: bytes) -> bool:
    """An EOF packet: ``FE`` and shorter than 9 bytes (a longer ``FE`` starts a row value)."""
    return payload[:1] == b"\xfe" and len(payload) < 9


def parse_ok(payload: bytes) -> OkPacket:
    """``00 | affected (lenenc) | insert id (lenenc) | status u16 | warnings u16 | info``."""
    data = bytes(payload)
    if not data or data[0] not in (0x00, 0xFE):
        raise MalformedPacket("not an OK packet")
    affected, pos = decode_lenenc_int(data, 1)
    insert_id, pos = decode_lenenc_int(data, pos)
    status = warnings = 0
    if len(data) >= pos + 2:
        status = int.from_bytes(data[pos: pos + 2], "little")
        pos += 2
    if len(data) >= pos + 2:
        warnings = int.from_bytes(data[pos: pos + 2], "little")
        pos += 2
    return OkPacket(affected or 0, insert_id or 0, status, warnings, data[pos:])


def parse_err(payload: bytes) -> ErrPacket:
    """``FF | code u16 | ['#' sqlstate(5)] | message``."""
    data = bytes(payload)
    if len(data) < 3 or data[0] != 0xFF:
        raise MalformedPacket("not an ERR packet")
    code = int.from_bytes(data[1:3], "little")
    rest = data[3:]
    state = ""
    if rest[:1] == b"#" and len(rest) >= 6:
        state, rest = rest[1:6].decode("latin-1"), rest[6:]
    return ErrPacket(code, state, rest.decode("utf-8", "replace"))


def parse_eof(payload: bytes) -> EofPacket:
    data = bytes(payload)
    if not is_eof_packet(data):
        raise MalformedPacket("not an EOF packet")
    if len(data) >= 5:
        return EofPacket(int.from_bytes(data[1:3], "little"), int.from_bytes(data[3:5], "little"))
    return EofPacket(0, 0)


@dataclass(frozen=True, slots=True)
class ColumnDefinition:
    catalog: str
    schema: str
    table: str
    org_table: str
    name: str
    org_name: str
    charset: int
    length: int
    column_type: int
    flags: int
    decimals: int


def _lenenc_bytes(data: bytes, pos: int, what: str) -> tuple[bytes | None, int]:
    n, pos = decode_lenenc_int(data, pos)
    if n is None:
        return None, pos
    if pos + n > len(data):
        raise MalformedPacket(f"{what} truncated")
    return data[pos: pos + n], pos + n


def parse_column_definition(payload: bytes) -> ColumnDefinition:
    """Column Definition 41."""
    data = bytes(payload)
    texts: list[str] = []
    pos = 0
    for what in ("catalog", "schema", "table", "org_table", "name", "org_name"):
        raw, pos = _lenenc_bytes(data, pos, f"column {what}")
        texts.append((raw or b"").decode("utf-8", "replace"))
    fixed, pos = decode_lenenc_int(data, pos)
    if fixed is None or len(data) < pos + 10:
        raise MalformedPacket("column definition truncated")
    charset, length, column_type, flags, decimals = struct.unpack("<HIBHB", data[pos: pos + 10])
    catalog, schema, table, org_table, name, org_name = texts
    return ColumnDefinition(catalog, schema, table, org_table, name, org_name, charset, length, column_type, flags,
                            decimals)


def parse_text_row(payload: bytes, column_count: int) -> tuple[bytes | None, ...]:
    """A text-protocol row: ``column_count`` length-encoded strings, ``FB`` for NULL."""
    data = bytes(payload)
    values: list[bytes | None] = []
    pos = 0
    for i in range(column_count):
        value, pos = _lenenc_bytes(data, pos, f"row value {i}")
        values.append(value)
    if pos != len(data):
        raise MalformedPacket(f"row has {len(data) - pos} bytes after its {column_count} values")
    return tuple(values)


def build_command(command: int, argument: bytes | str = b"") -> bytes:
    """A command-phase payload: the command byte and its argument (``COM_QUERY`` + SQL text...)."""
    raw = argument.encode("utf-8") if isinstance(argument, str) else bytes(argument)
    return bytes((command & 0xFF,)) + raw
