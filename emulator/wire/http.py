"""Sans-IO HTTP/1.1 request heads and the comet port's fixed responses.

The comet WebSocket port of the real server speaks just enough HTTP to upgrade to WebSocket and to
answer a few plain requests (comet-ws-protocol.md 1.2, 1.5; reference-observations.md section 4).
This module parses a request head (request line + headers, no body) and builds the exact response
bytes; the transport decides what to do with them.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

import h11

MAX_HEAD = 16384
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HeadError(ValueError):
    """The bytes are not an HTTP request head we can read."""


@dataclass
class RequestHead:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)  # names as sent (case kept)
    raw_lines: list[str] = field(default_factory=list)

    def header(self, name: str, *, exact: bool = False) -> str | None:
        """First value of a header; ``exact`` compares the name case-sensitively (as CppComet does)."""
        for key, value in self.headers:
            if (key == name) if exact else (key.lower() == name.lower()):
                return value
        return None


def find_head_end(buffer: bytes | bytearray) -> int:
    """Index just past the blank line ending the head, or -1 if not complete yet."""
    end = buffer.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def parse_head(data: bytes) -> RequestHead:
    text = data.decode("latin-1")  # latin-1 decodes every byte
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/"):
        raise HeadError(f"bad request line {lines[0][:80]!r}")
    head = RequestHead(parts[0], parts[1], parts[2], raw_lines=lines[1:])
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue
        head.headers.append((name, value.strip()))
    return head


def websocket_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + WS_GUID).digest()).decode()


def upgrade_response(key: str, *, with_protocol: bool) -> bytes:
    """The real server's 101 response, byte for byte (reference-observations.md section 4)."""
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {websocket_accept(key)}", "Sec-WebSocket-Version: 13"]
    if with_protocol:
        lines.append("Sec-WebSocket-Protocol: chat")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


BANNER = (b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>CppComet Server</title></head>"
          b"<body><h1>CppComet Server</h1><p>This is a comet server (cometbench emulator).</p></body></html>")


def _response(status: str, body: bytes, extra: list[str] | None = None,
              content_type: str = "text/html; charset=UTF-8") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type:{content_type}", "Server:CppComet Server",
             "Comet-Server:CppComet Server", "Access-Control-Allow-Origin: *    ",
             "Access-Control-Allow-Methods:POST, GET", "Allow: POST, GET",
             "Access-Control-Allow-Headers: origin, content-type, accept", "Cache-Control: max-age=3600",
             "Connection: close", f"Content-Length: {len(body)}", *(extra or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def plain_http_response(head: RequestHead, node_name: str = "n1") -> bytes:
    """What the comet port answers to a request that is not a WebSocket upgrade (1.5)."""
    if head.method == "OPTIONS":
        return _response("200 OK", b"+OK", content_type="text/plain")
    if head.method == "POST":
        return _response("404 Not Found", BANNER)
    if head.method != "GET":
        return _response("404 Not Found", BANNER)
    path = head.target.split("?", 1)[0]
    if path == "/":
        return _response("200 OK", BANNER)
    if path == "/info":
        body = ('{"status":"ok","node":"' + node_name.ljust(10, "_")[:max(10, len(node_name))] + '"}').encode()
        return _response("200 OK", body, content_type="application/json")
    if path == "/favicon.ico":
        return _response("301 OK", b"", extra=["Location: http://comet-server.com/favicon.ico"])
    return _response("404 Not Found", BANNER)


def strict_head_problem(head: bytes) -> str:
    """Why h11 (the HTTP parser of wsproto and hypercorn) would refuse this request head, or "".

    Listeners that hand a head to wsproto or hypercorn check it here first and answer 400
    themselves: h11 re-raises its parse errors in a way that leaves a reference cycle (the error,
    its traceback, the frame holding the error) per bad request, and wsproto decodes some headers
    as ASCII without catching the UnicodeDecodeError.  Here the error's traceback is dropped.
    """
    if not head.isascii():
        return "non-ASCII byte in the request head"
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(head)
    try:
        event = parser.next_event()
    except h11.RemoteProtocolError as exc:
        problem = f"bad HTTP request: {exc}"
        exc.__traceback__ = exc.__context__ = exc.__cause__ = None
        return problem
    return "" if isinstance(event, h11.Request) else "incomplete HTTP request"
