"""Sans-IO codec of the FreeSWITCH event socket (mod_event_socket, inbound mode).

Client -> server: commands are text blocks ended by a blank line (``auth ClueCon\\n\\n``,
``api conference xml_list\\n\\n``, ``event plain CUSTOM conference::maintenance\\n\\n``); a block may
carry header lines after the command line (``sendmsg``), and a ``Content-Length`` header announces
a body.  :class:`CommandParser` turns bytes into :class:`Command` objects.

Server -> client: messages are header blocks (``Content-Type: command/reply``, ``api/response``,
``text/event-plain|json|xml``, ``auth/request``, ``text/disconnect-notice``) with an optional body
whose length ``Content-Length`` gives.  The builders here produce those bytes exactly as
FreeSWITCH lays them out (spec video-call-flow.md 5.6, 5.8).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

MAX_COMMAND = 65536
#: The end of a command block: two LFs, CRs between them ignored (mod_event_socket's read_packet
#: counts LFs, lets CRs pass and resets on anything else).
_BLOCK_END = re.compile(rb"\n\r*\n")
DISCONNECT_TEXT = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


class EslError(ValueError):
    """Input that is not an event-socket command (too large, bad Content-Length)."""


@dataclass
class Command:
    line: str                                   # the first line, e.g. "api status"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    @property
    def word(self) -> str:
        return self.line.split(" ", 1)[0].lower() if self.line else ""

    @property
    def rest(self) -> str:
        parts = self.line.split(" ", 1)
        return parts[1].strip() if len(parts) > 1 else ""


class CommandParser:
    """Feed bytes, take :class:`Command` objects.  Raises :class:`EslError` on oversize input."""

    def __init__(self, max_size: int = MAX_COMMAND) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._pending: Command | None = None
        self._body_len = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a command (blank lines between commands count)."""
        return len(self._buf) + (1 if self._pending is not None else 0)

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data
        if len(self._buf) > self.max_size and self._pending is None and _BLOCK_END.search(self._buf) is None:
            raise EslError(f"command block over {self.max_size} bytes")

    def next_command(self) -> Command | None:
        if self._pending is not None:
            if len(self._buf) < self._body_len:
                return None
            cmd = self._pending
            cmd.body = bytes(self._buf[:self._body_len]).decode("utf-8", "replace")
            del self._buf[:self._body_len]
            self._pending = None
            return cmd
        while True:
            end = _BLOCK_END.search(self._buf)
            if end is None:
                return None
            # the block alone: CRs are dropped from it, never from a body that may follow it
            block = bytes(self._buf[:end.start()]).decode("utf-8", "replace").replace("\r", "")
            del self._buf[:end.end()]
            lines = block.split("\n")
            # leading blank lines between commands are tolerated (FreeSWITCH skips them)
            while lines and not lines[0].strip():
                lines.pop(0)
            if not lines:
                continue
            cmd = Command(lines[0].strip())
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if colon:
                    cmd.headers[name.strip()] = value.strip()
            length = cmd.headers.get("Content-Length")
            if length is not None:
                if not length.isdigit() or int(length) > self.max_size:
                    raise EslError(f"bad Content-Length {length!r}")
                self._pending, self._body_len = cmd, int(length)
                return self.next_command()
            return cmd


# FreeSWITCH's switch_url_encode: only these and bytes outside printable ASCII are escaped
_URL_UNSAFE = set("\r\n \"#%&+:;<=>?@[\\]^`{|}")


def url_encode(value: str) -> str:
    """``switch_url_encode``: bytes outside printable ASCII and ``\\r\\n "#%&+:;<=>?@[\\]^`{|}`` as %XX."""
    out = []
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if byte < 32 or byte > 126 or ch in _URL_UNSAFE:
            out.append(f"%{byte:02X}")
        else:
            out.append(ch)
    return "".join(out)


# --- server messages ------------------------------------------------------------------------------


def _message(headers: list[tuple[str, str]], body: str = "") -> bytes:
    data = body.encode("utf-8")
    if data:
        headers = [*headers, ("Content-Length", str(len(data)))]
    return ("".join(f"{k}: {v}\n" for k, v in headers) + "\n").encode("utf-8") + data


def auth_request() -> bytes:
    return _message([("Content-Type", "auth/request")])


def command_reply(text: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    return _message([("Content-Type", "command/reply"), ("Reply-Text", text), *(extra or [])])


def api_response(body: str) -> bytes:
    return _message([("Content-Type", "api/response")], body)


def disconnect_notice() -> bytes:
    return _message([("Content-Type", "text/disconnect-notice")], DISCONNECT_TEXT)


def event_plain(headers: list[tuple[str, str]], body: str = "") -> bytes:
    """``text/event-plain``: url-encoded ``Name: value`` lines, a blank line, then the event body."""
    lines = [f"{k}: {url_encode(str(v))}\n" for k, v in headers]
    payload = "".join(lines)
    data = body.encode("utf-8")
    if data:
        payload += f"Content-Length: {len(data)}\n\n" + body
    else:
        payload += "\n"
    raw = payload.encode("utf-8")
    return f"Content-Length: {len(raw)}\nContent-Type: text/event-plain\n\n".encode() + raw


def event_json(headers: list[tuple[str, str]], body: str = "") -> bytes:
    obj: dict[str, str] = {k: str(v) for k, v in headers}
    if body:
        obj["Content-Length"] = str(len(body.encode("utf-8")))
        obj["_body"] = body
    raw = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return f"Content-Length: {len(raw)}\nContent-Type: text/event-json\n\n".encode() + raw


def event_xml(headers: list[tuple[str, str]], body: str = "") -> bytes:
    parts = ["<event>\n  <headers>\n"]
    for k, v in headers:
        parts.append(f"    <{k}>{escape(url_encode(str(v)))}</{k}>\n")
    parts.append("  </headers>\n")
    if body:
        parts.append(f"  <body>{escape(body)}</body>\n")
    parts.append("</event>")
    raw = "".join(parts).encode("utf-8")
    return f"Content-Length: {len(raw)}\nContent-Type: text/event-xml\n\n".encode() + raw


EVENT_FORMATS = {"plain": event_plain, "json": event_json, "xml": event_xml}


# --- event subscriptions ---------------------------------------------------------------------------


@dataclass
class Subscription:
    """What ``event <format> <names...>`` asked for; ``matches`` decides per event."""

    format: str = "plain"
    all: bool = False
    names: set[str] = field(default_factory=set)
    subclasses: set[str] = field(default_factory=set)
    any_custom: bool = False

    def add(self, words: list[str]) -> None:
        custom = False
        for word in words:
            if custom:
                self.subclasses.add(word)
                continue
            upper = word.upper()
            if upper == "ALL":
                self.all = True
            elif upper == "CUSTOM":
                custom = True
                self.any_custom = True
            else:
                self.names.add(upper)

    def matches(self, name: str, subclass: str = "") -> bool:
        if self.all:
            return True
        if name == "CUSTOM":
            return bool(subclass) and subclass in self.subclasses
        return name in self.names

    @property
    def active(self) -> bool:
        return self.all or bool(self.names) or bool(self.subclasses)


def parse_event_command(rest: str) -> tuple[str, list[str]] | None:
    """``event plain CUSTOM conference::maintenance`` -> ("plain", ["CUSTOM", "conference::maintenance"])."""
    words = rest.split()
    if not words:
        return None
    fmt = words[0].lower()
    if fmt not in EVENT_FORMATS:
        return None
    return fmt, words[1:]


# --- client side: reading the server's messages -----------------------------------------------------


@dataclass
class Message:
    """One message from the server: its headers (``Content-Type``, ``Reply-Text`` ...) and body."""

    headers: dict[str, str]
    body: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class MessageParser:
    """Feed the server's bytes, take :class:`Message` objects (what an ESL client such as the comet
    server's libesl reads: a header block, a blank line, ``Content-Length`` bytes of body).
    Raises :class:`EslError` on a header block over ``max_size`` or a bad Content-Length."""

    def __init__(self, max_size: int = MAX_COMMAND) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._pending: dict[str, str] | None = None
        self._body_len = 0

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data
        if self._pending is None and len(self._buf) > self.max_size and b"\n\n" not in self._buf:
            raise EslError(f"header block over {self.max_size} bytes")

    def next_message(self) -> Message | None:
        if self._pending is None:
            while self._buf[:1] == b"\n":   # blank lines between messages
                del self._buf[:1]
            end = self._buf.find(b"\n\n")
            if end < 0:
                return None
            block = self._buf[:end].decode("utf-8", "replace")
            del self._buf[:end + 2]
            headers: dict[str, str] = {}
            for line in block.split("\n"):
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip()] = value.strip()
            length_text = headers.get("Content-Length", "0") or "0"
            if not length_text.isdigit():
                raise EslError(f"bad Content-Length {length_text!r}")
            self._pending, self._body_len = headers, int(length_text)
        if len(self._buf) < self._body_len:
            return None
        body = bytes(self._buf[:self._body_len]).decode("utf-8", "replace")
        del self._buf[:self._body_len]
        headers, self._pending = self._pending, None
        return Message(headers, body)


def command(line: str) -> bytes:
    """A client command block: ``<line>\\n\\n``."""
    return (line.replace("\n", " ") + "\n\n").encode("utf-8")
