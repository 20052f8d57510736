"""The comet server's ``[freeswitch]`` HTTP port: the directory that mod_xml_curl asks for SIP passwords.

Spec: video-call-flow.md 2.6.4 (CppComet ``Freeswitch_connection.cpp``, ``get_directory_request``).
FreeSWITCH sends ``GET /directory?...&user=000015123&domain=...`` for every REGISTER and INVITE it
has to authenticate; the answer carries the user's ``users_auth`` hash as the SIP password.

Two layers:

* :func:`lookup_directory` — the pure rule ``(store, user) -> (status, body)``.  The fake
  FreeSWITCH's SIP digest check calls it in-process (the bridge authenticates SIP through the same
  lookup); :func:`directory_password` is the convenience form.
* :class:`DirectoryServer` — the HTTP endpoint: a quart-trio app run by hypercorn's HTTP/1.1
  machinery on streams taken from the project's network layer (``network.listen("directory", ...)``
  + ``network.serve``), so it runs on OS sockets and on the virtual network alike, and every stream
  passes through ``Network.wrap`` (link conditions).  Each accepted stream is handed to hypercorn's
  trio ``TCPServer`` after a pre-read of the request head (see below).

The real server decides on the raw request bytes, before any HTTP parsing: ``OPTIONS...`` gets
``+OK``; ``GET /directory`` / ``GET /comet-server-com/directory`` the directory rules; any other
``GET`` a logo page; anything else, and a malformed ``&user=`` value (not followed by ``&``, or 64
characters or more), a close without an answer.  An ASGI app cannot close without answering, so
the pre-read (:func:`classify`) makes that decision on the raw head and closes the stream itself;
what the app answers is decided there too and passed in the ASGI scope.  Like the original, it
answers from the head alone and never reads a body (:func:`head_without_body`), so a truncated or
invalid body changes nothing.  The head must arrive within ``head_timeout`` seconds of the connect
(a slowloris trickling bytes is closed then) and may not exceed 16 KiB.

Deviations from the original (HTTP framing only; status codes and bodies are the original's):
the status line reason is empty (``HTTP/1.1 404 ``, not ``HTTP/1.1 404 Error``: ASGI has no reason
phrase); responses carry ``Content-Length`` (the original sends none and closes); a request hypercorn's
HTTP parser rejects (no ``Host`` header, say) gets hypercorn's 400.  Every answer closes the
connection (``Connection: close``), as the original does.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app
from quart import Response, request
from quart.routing import QuartMap
from quart_trio import QuartTrio
from werkzeug.routing.exceptions import NoMatch

from emulator.journal import Journal
from emulator.net.network import Endpoint, Listener, Network, forget_traceback, is_peer_gone, peer_of
from emulator.net.timeouts import HANDSHAKE_TIMEOUT
from emulator.wire import http
from emulator.wire.cnum import scan_int
from emulator.wire.http import strict_head_problem

if TYPE_CHECKING:  # pragma: no cover
    from emulator.state import StateStore

SCOPE_KEY = "cometbench.directory"   # (kind, user) from the pre-read, in the ASGI scope

# Freeswitch_connection.cpp, verbatim (printf-style: user, password, user, user, user)
DIRECTORY_XML = """<document type="freeswitch/xml">
    <section name="directory">
        <domain name="FSdefaultDomain">
            <params>
                <param name="dial-string" value="{presence_id=${dialed_user}@${dialed_domain}}${sofia_contact(${dialed_user}@${dialed_domain})}"/>
            </params>
            <groups>
                <group name="default">
                    <users>
                        <user id="%s">
                            <params>
                                <param name="password" value="%s"/>
                            </params>
                            <variables>
                                <variable name="toll_allow" value="domestic,international,local"/>
                                <variable name="accountcode" value="%s"/>
                                <variable name="user_context" value="default"/>
                                <variable name="effective_caller_id_name" value="Extension %s"/>
                                <variable name="effective_caller_id_number" value="%s"/>
                                <variable name="outbound_caller_id_name" value="$${outbound_caller_name}"/>
                                <variable name="outbound_caller_id_number" value="$${outbound_caller_id}"/>
                                <variable name="callgroup" value="techsupport"/>
                            </variables>
                        </user>
                    </users>
                </group>
            </groups>
        </domain>
    </section>
</document>"""

LOGO_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Star.Comet Server</title></head>
<body><h1>Star.Comet Server</h1><p>FreeSWITCH directory endpoint (cometbench emulator of CppComet)</p></body></html>
"""

_COMMON_HEADERS = {
    "Server": "Star.Comet Server",
    "Comet-Server": "Star.Comet Server",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Allow": "POST, GET",
    "Access-Control-Allow-Headers": "origin, content-type, accept",
    "Connection": "close",
}
_DIRECTORY_HEADERS = {**_COMMON_HEADERS, "Access-Control-Allow-Methods": "GET", "Allow": "GET"}
CONTENT_TYPE = "text/html; charset=UTF-8"
#: hypercorn's answer to a request h11 rejects, byte for byte (sent by the pre-read instead)
BAD_REQUEST = b"HTTP/1.1 400 \r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


# --- the rules ---------------------------------------------------------------------------------------


def split_sip_user(user: str) -> tuple[int, int] | None:
    """``000015123`` -> (dev_id 15, user id 123): the first 6 digits, then up to 9 more."""
    dev = scan_int(user, 0, 6)
    if dev is None:
        return None
    uid = scan_int(user, dev[1], 9)
    if uid is None:
        return None
    return dev[0], uid[0]


def lookup_directory(store: StateStore, user: str) -> tuple[int, str]:
    """The directory answer for SIP user ``user``: ``(404, "")`` or ``(200, <document>)``.

    Fewer than 7 characters, a user that does not parse as ``<6-digit dev_id><user id>``, or no
    ``users_auth`` hash for it: 404.  Otherwise the FreeSWITCH XML document with the hash as the
    password; the domain is always ``FSdefaultDomain`` and the values are inserted unescaped, as
    the original does.  Invitations (the ``conference`` table) are not consulted.
    """
    if len(user.encode("utf-8", "surrogateescape")) < 7:
        return 404, ""
    ids = split_sip_user(user)
    if ids is None or ids[1] <= 0 or ids[0] < 0:
        return 404, ""
    hash_ = store.get_hash(*ids)
    if hash_ is None:
        return 404, ""
    return 200, DIRECTORY_XML % (user, hash_, user, user, user)


def directory_password(store: StateStore, user: str) -> str | None:
    """The SIP password FreeSWITCH would get for ``user`` (None: the directory answers 404)."""
    status, _ = lookup_directory(store, user)
    if status != 200:
        return None
    ids = split_sip_user(user)
    assert ids is not None
    return store.get_hash(*ids)


def directory_user(request_bytes: bytes) -> bytes | None:
    """The ``&user=`` value the original reads from the raw request, or None: close, no answer.

    It walks the buffer from ``&`` to ``&`` (a C string: it ends at the first NUL; two ``&`` in a row
    end the walk); after each ``&`` that is followed by ``user=`` it copies the value up to the next
    ``&`` into a 64-byte zeroed buffer.  A value with no ``&`` after it, an empty one or one of 64
    bytes or more means "close".  No ``&user=`` at all gives ``b""`` (which then gets a 404).
    """
    data = request_bytes.split(b"\0", 1)[0]
    buffer = bytearray(64)
    p = 0
    while True:
        pos = data.find(b"&", p)
        if pos < 0 or pos == p:  # str_find gave -1, or 0 (the loop condition ends on 0 too)
            break
        p = pos + 1
        if data.startswith(b"user=", p):
            p += 5
            end = data.find(b"&", p)
            length = end - p if end >= 0 else -1
            if length <= 0 or length >= 64:
                return None
            buffer[:length] = data[p:p + length]
    return bytes(buffer).split(b"\0", 1)[0]


def classify(head: bytes) -> tuple[str, bytes | None]:
    """What the original does with a request head: ``("options", None)``, ``("directory", user)``,
    ``("page", None)`` or ``("close", None)`` (close without an answer)."""
    if head.startswith(b"OPTIONS"):
        return "options", None
    if head.startswith((b"GET /directory", b"GET /comet-server-com/directory")):
        user = directory_user(head)
        return ("close", None) if user is None else ("directory", user)
    if head.startswith(b"GET"):
        return "page", None
    return "close", None


# --- the quart-trio app ------------------------------------------------------------------------------


def _request_line(scope: Mapping[str, Any]) -> bytes:
    """A request line rebuilt from an ASGI scope (when the app is driven without the pre-read)."""
    target = scope.get("raw_path") or scope["path"].encode("latin-1")
    query = scope.get("query_string", b"")
    if query:
        target += b"?" + query
    return scope["method"].encode("ascii") + b" " + target + b" HTTP/1.1\r\n"


class _CatchAllMatcher:
    """URL matching for the directory's routes: exact static paths, and one ``/<path:path>`` rule
    that takes every other path.

    werkzeug's own matcher defines a recursive inner function on every match, which is a reference
    cycle per request: garbage only the cyclic collector frees.  The directory answers every path
    with one view, so this small matcher (the same interface: ``add``, ``update``, ``match``) does
    the job without leaving anything behind.
    """

    def __init__(self, merge_slashes: bool) -> None:
        self.merge_slashes = merge_slashes
        self._static: dict[str, Any] = {}
        self._any: Any = None

    def add(self, rule: Any) -> None:
        if rule.rule == "/<path:path>":
            self._any = rule
        elif "<" not in rule.rule:
            self._static[rule.rule] = rule
        else:  # pragma: no cover - a route this matcher was not written for
            raise ValueError(f"the directory's URL matcher cannot serve {rule.rule!r}")

    def update(self) -> None:
        pass

    def match(self, domain: str, path: str, method: str, websocket: bool) -> tuple[Any, dict]:
        rule = self._static.get(path or "/")
        values: dict = dict(rule.defaults or {}) if rule is not None else {}
        if rule is None and self._any is not None:
            rule, values = self._any, {"path": path[1:]}
        if rule is None or rule.websocket != websocket:
            raise NoMatch(set(), rule is not None)
        if rule.methods is not None and method not in rule.methods:
            raise NoMatch(set(rule.methods), False)
        return rule, values


class _CatchAllMap(QuartMap):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._matcher = _CatchAllMatcher(self._matcher.merge_slashes)  # type: ignore[assignment]


class _DirectoryApp(QuartTrio):
    url_map_class = _CatchAllMap


def create_app(store: StateStore, journal: Journal | None = None) -> QuartTrio:
    journal = journal or Journal(enabled=False)
    app = _DirectoryApp(__name__, static_folder=None)  # no static files: every path is the one view
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False

    @app.route("/", defaults={"path": ""}, methods=["GET", "OPTIONS"], provide_automatic_options=False)
    @app.route("/<path:path>", methods=["GET", "OPTIONS"], provide_automatic_options=False)
    async def answer(path: str) -> Response:
        scope = cast(Mapping[str, Any], request.scope)   # our key is not in quart's TypedDict
        decided: tuple[str, bytes | None] | None = scope.get(SCOPE_KEY)
        kind, user = decided or classify(_request_line(scope))
        if kind == "options":
            return Response("+OK\r\n", 200, headers=_COMMON_HEADERS, content_type=CONTENT_TYPE)
        if kind == "directory":
            assert user is not None
            name = user.decode("utf-8", "surrogateescape")
            status, body = lookup_directory(store, name)
            journal.record("directory", "lookup", data=f"user={name!r} status={status}")
            if status != 200:
                return Response(b"", status, headers={"Connection": "close"})
            return Response(body, 200, headers=_DIRECTORY_HEADERS, content_type=CONTENT_TYPE)
        if kind == "page":
            return Response(LOGO_PAGE, 200, headers=_COMMON_HEADERS, content_type=CONTENT_TYPE)
        # "close": only reachable without the pre-read (e.g. quart's test client)
        return Response(b"", 400, headers={"Connection": "close"})

    return app


def shielded_send(app: Any) -> Any:
    """ASGI middleware: every ``send`` runs in a shielded cancel scope.

    quart-trio cancels its per-request nursery as soon as the response is handed over; under
    hypercorn 0.18 that cancellation can land inside ``send`` and the connection is never closed.
    Shielding ``send`` (a short, bounded write into hypercorn's protocol) fixes it.
    """

    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        async def send_shielded(message: dict) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await app(scope, receive, send_shielded)

    return asgi


# --- the transport -----------------------------------------------------------------------------------


class _PeerSocket:
    """What hypercorn reads from ``stream.socket`` (family and addresses), for streams without one."""

    family = socket.AF_INET

    def __init__(self, peer: Endpoint, local: Endpoint):
        self._peer, self._local = peer, local

    def getpeername(self) -> tuple[str, int]:
        return (self._peer.host, self._peer.port)

    def getsockname(self) -> tuple[str, int]:
        return (self._local.host, self._local.port)


_BODY_FRAMING = (b"content-length", b"transfer-encoding")


def head_without_body(head: bytes) -> bytes:
    """The request head (up to its blank line) as hypercorn gets it: without Content-Length /
    Transfer-Encoding lines, and with a Host werkzeug can handle.

    The original reads only the request head and answers from it; a body is never read.  Handing
    hypercorn a head that announces no body keeps it that way: a truncated body, an invalid chunk
    or a client that half-closes mid-body cannot change or delay the answer.  Bytes that follow
    the head are read and dropped (:class:`_ConnectionStream`): every answer closes the connection.
    The original ignores Host too, but werkzeug encodes it with IDNA and fails on an empty or
    over-long label (``a..b``): such a Host is replaced by ``localhost``.  The request target
    becomes ``/``: what to answer was decided on the raw head (:func:`classify`), and quart fails
    on targets that do not start with a slash (``GET ?x``).
    """
    head = head[:head.find(b"\r\n\r\n") + 4] if b"\r\n\r\n" in head else head
    lines = head.split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) == 3:  # the answer is decided already: quart fails on some targets ("?x")
        lines[0] = request_line[0] + b" / " + request_line[2]
    kept = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in _BODY_FRAMING:
            continue
        if name == b"host" and not _idna_ok(value.strip()):
            line = b"Host: localhost"
        kept.append(line)
    return b"\r\n".join(lines[:1] + kept)


def _idna_ok(host: bytes) -> bool:
    name = host.decode("latin-1")
    name = name[1:name.find("]")] if name.startswith("[") else name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    try:
        name.encode("idna")
    except UnicodeError:
        return False
    return True


class _ConnectionStream(trio.abc.HalfCloseableStream):
    """The accepted stream with the pre-read head put back in front, as hypercorn's TCPServer wants
    it (``.socket``; no ``do_handshake``, so it is treated as plain TCP).

    Sends are serialised: hypercorn 0.18 can call ``send_eof`` (closing after the app's answer)
    while another task writes its own error answer, and a trio stream raises
    ``BusyResourceError`` for two writers.  After ``send_eof`` a write fails as a closed stream.
    """

    def __init__(self, inner: trio.abc.Stream, prefix: bytes, local: Endpoint):
        self._inner = inner
        self._prefix = prefix
        self._send_lock = trio.Lock()
        self._eof_sent = False
        self.socket = getattr(inner, "socket", None) or _PeerSocket(peer_of(inner), local)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        # after the head: read (so the close is a FIN, not a reset over unread bytes) and drop
        # everything but the end of the stream; the answer depends on the head alone
        while await self._inner.receive_some(max_bytes):
            pass
        return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._send_lock:
            if self._eof_sent:
                raise trio.ClosedResourceError("the answer is complete")
            await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self._inner, "send_eof", None)
        if send_eof is None:
            raise AttributeError("send_eof")  # TCPServer treats this as "nothing to do"
        async with self._send_lock:
            if not self._eof_sent:
                self._eof_sent = True
                await send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _WithScope:
    """Per-connection hypercorn app wrapper: adds the pre-read's decision to the HTTP scope."""

    def __init__(self, app: Any, extra: tuple[str, bytes | None]):
        self._app, self._extra = app, extra

    async def __call__(self, scope: dict, receive: Any, send: Any, sync_spawn: Any, call_soon: Any) -> None:
        if scope.get("type") == "http":
            scope = {**scope, SCOPE_KEY: self._extra}
        await self._app(scope, receive, send, sync_spawn, call_soon)


class DirectoryServer:
    """The ``[freeswitch]`` HTTP listener (default port 8082)."""

    def __init__(self, store: StateStore, network: Network, journal: Journal | None = None, *,
                 head_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.store = store
        self.network = network
        self.journal = journal or Journal(enabled=False)
        self.head_timeout = head_timeout
        self.app = create_app(store, self.journal)
        self.config = HypercornConfig()
        self.config.include_server_header = False   # the app sends the original's Server header
        self.config.include_date_header = False
        self._asgi = wrap_app(shielded_send(self.app), self.config.wsgi_max_body_size, "asgi")
        self._context = WorkerContext(None)
        self.listener: Listener | None = None
        self.requests = 0

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        await self.network.listen_and_serve("directory", host, port, self.handle, on_listen=self._listening,
                                            task_status=task_status)

    def _listening(self, listener: Listener) -> None:
        self.listener = listener

    async def handle(self, stream: trio.abc.Stream) -> None:
        try:
            head = await self._read_head(stream)
            if head is None:
                return
            kind, user = classify(head)
            self.requests += 1
            if kind == "close":
                self.journal.record("directory", "closed_without_answer", data=head[:200])
                return
            prefix = head_without_body(head)
            problem = strict_head_problem(prefix)
            if problem:  # what hypercorn would answer, without h11's reference cycle (wire/http.py)
                self.journal.record("directory", "bad_request", data=f"{problem} {head[:120]!r}"[:300])
                await stream.send_all(BAD_REQUEST)
                return
            assert self.listener is not None
            # hypercorn's per-connection server on our own stream (docs/decisions.md, "hypercorn's
            # per-connection server"): its types name its own app wrapper and trio's SocketStream
            server = TCPServer(_WithScope(self._asgi, (kind, user)), self.config, self._context,  # type: ignore[arg-type]
                               {}, _ConnectionStream(stream, prefix, self.listener.endpoint))  # type: ignore[arg-type]
            try:
                await server.run()
            finally:
                # TCPServer -> its protocol -> a bound method of the TCPServer: cut the cycle so the
                # connection's objects go with reference counting
                server.protocol = None  # type: ignore[assignment]  # cleared on purpose, see above
        except Exception as exc:
            if not is_peer_gone(exc):
                raise
            forget_traceback(exc)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_head(self, stream: trio.abc.Stream) -> bytes | None:
        """Everything received up to and including the end of the request head; None to just close."""
        buffer = bytearray()
        with trio.move_on_after(self.head_timeout):
            while b"\r\n\r\n" not in buffer:
                if len(buffer) > http.MAX_HEAD:
                    return None
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return None
                buffer += chunk
            return bytes(buffer)
        return None
