"""A virtual CometServerApi.js 4.08 client: the browser's comet wire behaviour, in trio.

What a browser page does on the wire when it runs ``cometApi.start({...})`` (spec
``comet-ws-protocol.md`` sections 1, 3, 4.2, 6.1 and 7), reproduced so that scenarios can run many
"browsers" in one process, under the real clock or a ``MockClock``:

* the URL, built raw from the options (``sesion=<user_key>&myid=<user_id>&devid=<dev_id>&v=4.08&
  uuid=<32>&api=js``, ``undefined`` for a missing key or user id), rebuilt on every reconnect;
* the 1200 ms tab-election delay, the command queue (the pending subscription list sent at open,
  other commands 20 ms apart from +30 ms), the 50 ms subscription debounce, the ``statistics`` frame
  5 s after the first open;
* the receive path: one leading-or-trailing whitespace run trimmed, lines split, ``\\'`` turned into
  ``'`` before ``JSON.parse`` (lines that do not parse are skipped and counted in
  :attr:`CometClient.unparseable`), ``serverInfo`` handling, the data-decoding cascade
  (``JSON.parse`` / ``stripslashes``), de-duplication by ``uuid`` and ``_cometApi_uuid``, dispatch to
  ``pipe`` and ``pipe.event`` subscriptions with the marker filtering rule, one-shot marker answers;
* the reconnect algorithm of 7.2 (error counter E, delay T, the wss switch, the fatal flag, no
  reconnect after a clean close), where a clean close means the server sent a WebSocket Close frame.

The WebSocket stack is trio-websocket's client side (:func:`trio_websocket.wrap_client_stream`) over a
stream from a :class:`~emulator.net.network.Network`, so it is independent of the server's.  Time
comes only from trio, randomness only from the ``random.Random`` passed in.  All tasks live in a
nursery the caller owns (:func:`open_comet_client` opens one); none outlives it.

Usage::

    async with open_comet_client(network, f"127.0.0.1:{port}", user_id=5, user_key="hash",
                                 dev_id=1, rng=random.Random(1)) as client:
        sub = client.subscription("web_chat")
        client.web_pipe_send("web_chat", "said", {"text": "hi"})
        msg = await sub.receive(timeout=5)

Deviations from the JavaScript client, all deliberate:

* one node per client (the JS ``node`` option may be an array; scenarios open one client per node);
* ``stop()`` also cancels a pending reconnect (the JS timer would still fire), so a stopped client
  stays stopped until :meth:`CometClient.start`;
* a ``jscode`` field is recorded in :attr:`CometClient.jscode`, never evaluated;
* exceptions raised by callbacks propagate (in a browser they only abort the rest of the frame): a
  bench should fail loudly on its own bugs;
* ``get_pipe_log`` always sends a fresh 10-digit marker.
"""

from __future__ import annotations

import decimal
import itertools
import json
import math
import random
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request

from bench.clients.timers import Timer, Timers
from emulator.net.network import Network, quiet_close

API_VERSION = "4.08"
UUID_ALPHABET = "qwertyuiopasdfghjklzxcvbnm1234567890QWERTYUIOPASDFGHJKLZXCVBNM_-"   # getUUID (64)
TAB_ALPHABET = "qwertyuiopasdfghjklzxcvbnm1234567890QWERTYUIOPASDFGHJKLZXCVBNM"      # 62 chars
DEFAULT_NODE = "app.comet-server.ru"
DEFAULT_USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "cometbench-virtual-client/4.08")

# timers of client 4.08 (spec 6.1, 7.1, 7.2), in milliseconds as in the JS source
START_TIMER_MS = 1200            # tab-election delay before the first connection
SUBSCRIPTION_DEBOUNCE_MS = 50    # subscription() while master: full list this long after the last call
QUEUE_FIRST_MS = 30              # queued commands after open: +30, +50, +70 ...
QUEUE_STEP_MS = 20
STATISTICS_MS = 5000             # statistics frame after the first open
RECONNECT_INITIAL_MS = 300       # T before anything was ever received
RECONNECT_AFTER_FRAME_MS = 1000  # T after any received frame
OFFLINE_POLL_MS = 300            # navigator.onLine === false: retry in 300 ms steps
DEDUP_CLEAR_MS = 180_000         # the seen-uuid memory is cleared wholesale every 3 minutes

_SIGNAL_ALL = "comet_server_msg"     # the catch-all signal of subscription("") / subscription(function)
_PIPE_RE = re.compile(r"^[A-z0-9_.\-]+$")       # the JS check (A-z includes [\]^_`): logs, still sends
_PIPE_EVENT_RE = re.compile(r"^([^.]+)\.([^.]+)$")  # "pipe.event" -> "pipe" (exactly one dot)
_JS_WS = "\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_WS_CHARS = frozenset("\t\n\x0b\x0c\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
                         + "".join(chr(c) for c in range(0x2000, 0x200B)))
_LEAD_WS = re.compile(f"[{_JS_WS}]+")
_TRAIL_WS = re.compile(f"[{_JS_WS}]+\\Z")
_STRIPSLASHES_RE = re.compile("\\\\([^\n\r\u2028\u2029]?)")  # JS /\\(.?)/g: '.' skips line terminators
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class _Undefined:
    """JavaScript's ``undefined`` where it differs from ``null`` (absent marker, missing argument)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()


# --- JavaScript semantics, sans-IO --------------------------------------------------------------------


def js_number_to_string(x: float | int) -> str:
    """``Number.prototype.toString()`` for finite numbers (``1.0`` -> ``1``, ``1e-7`` -> ``1e-7``)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    t = decimal.Decimal(repr(abs(x))).as_tuple()  # repr: the shortest round-trip digits, like JS
    digits = "".join(map(str, t.digits)).lstrip("0")
    exp = int(t.exponent)
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    s, k = stripped, len(stripped)
    n = k + exp  # value = 0.s * 10**n
    if k <= n <= 21:
        out = s + "0" * (n - k)
    elif 0 < n <= 21:
        out = s[:n] + "." + s[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + s
    else:
        e = n - 1
        out = s[0] + ("." + s[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return sign + out


def js_string(value: Any) -> str:
    """``String(value)``, as string concatenation in the JS client produces it."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return js_number_to_string(value)
    if isinstance(value, (list, tuple)):
        return ",".join("" if v is None or v is UNDEFINED else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _is_array_index(key: str) -> bool:
    return key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


_DIGITS = frozenset("0123456789")


def _plain(text: str) -> bool:
    """A string JSON.stringify writes as is between quotes (nothing to escape)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def js_stringify(value: Any) -> str:
    """``JSON.stringify(value)``: no spaces, non-ASCII kept, integer-like keys first, JS numbers."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number_to_string(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        if _plain(value):
            return '"' + value + '"'   # nothing to escape (the usual case): what JSON.stringify gives
        text = json.dumps(value, ensure_ascii=False)
        return _SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)  # well-formed stringify
    if isinstance(value, (list, tuple)):
        return "[" + ",".join("null" if v is UNDEFINED else js_stringify(v) for v in value) + "]"
    if isinstance(value, dict):
        # the usual message ({"status": "ping", "_cometApi_uuid": ...}): string keys that are not
        # array indices (their first character is not a digit) and plain values, in insertion order
        out = []
        for k, v in value.items():
            if type(k) is not str or not k or k[0] in _DIGITS or not _plain(k):
                break
            if type(v) is str and _plain(v):
                out.append(f'"{k}":"{v}"')
            elif v is True or v is False or v is None or type(v) is int:
                out.append(f'"{k}":{js_stringify(v)}')
            else:
                break
        else:
            return "{" + ",".join(out) + "}"
        items = [(js_string(k), v) for k, v in value.items() if v is not UNDEFINED]
        index_keys = sorted((kv for kv in items if _is_array_index(kv[0])), key=lambda kv: int(kv[0]))
        other_keys = [kv for kv in items if not _is_array_index(kv[0])]
        return "{" + ",".join(js_stringify(k) + ":" + js_stringify(v) for k, v in index_keys + other_keys) + "}"
    raise TypeError(f"cannot JSON.stringify {type(value).__name__}")


def _bad_constant(name: str) -> Any:
    raise ValueError(f"Unexpected token {name} in JSON")


_JS_DECODER = json.JSONDecoder(parse_constant=_bad_constant)


_JS_SCAN = _JS_DECODER.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__, not declared
_JSON_WS = frozenset(" \t\n\r")


def js_json_parse(text: str) -> Any:
    """``JSON.parse``: like :func:`json.loads` but without NaN/Infinity."""
    if text and text[0] not in _JSON_WS:
        # the usual line: one value, nothing around it -- the decoder's scanner alone, without the
        # two whitespace searches of ``decode`` (anything else takes the full path below)
        try:
            value, end = _JS_SCAN(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return value
    return _JS_DECODER.decode(text)


def _stripslashes_repl(m: re.Match) -> str:
    c = m.group(1)
    if c == "\\":
        return "\\"
    if c == "0":
        return "\x00"
    return c  # '' for a trailing backslash or one before a line terminator


def stripslashes(text: str) -> str:
    """php.js ``stripslashes`` as bundled in CometServerApi.js."""
    if "\\" not in text:
        return text
    if "\\\\" not in text and "\\0" not in text:
        # every backslash escapes an ordinary character (or a line terminator, or ends the text):
        # each one simply goes, which is what the replacement below does one match at a time
        return text.replace("\\", "")
    return _STRIPSLASHES_RE.sub(_stripslashes_repl, text)


def _surely_not_json(text: str) -> bool:
    """True when ``JSON.parse(text)`` is certain to throw: an object or array whose first member
    starts with a backslash (the server's MySQL escaping turns ``{"a"`` into ``{\\"a"``).  A cheap
    exact test that spares the cascade below a parse and an exception for every such message."""
    t = text.lstrip(" \t\n\r")
    return t[:1] in ("{", "[") and t[1:].lstrip(" \t\n\r")[:1] == "\\"


def decode_data(data: str) -> Any:
    """The 4.08 cascade applied to a string ``data`` (spec 4.2 step 6).

    ``JSON.parse(data with \\' -> ')``; ``stripslashes`` then ``JSON.parse``; ``JSON.parse`` with the
    replacement; ``stripslashes`` again then ``JSON.parse``; ``JSON.parse`` with the replacement.
    The first success wins; if all fail the (twice stripslashed) string is kept.
    """

    def unquote(s: str) -> str:
        return s.replace("\\'", "'")

    for step in range(5):
        if step in (1, 3):
            data = stripslashes(data)
        candidate = unquote(data) if step in (0, 2, 4) else data
        if _surely_not_json(candidate):
            continue
        try:
            return js_json_parse(candidate)
        except ValueError:
            continue
    return data


def trim_once(text: str) -> str:
    """``text.replace(/^\\s+|\\s+$/, '')`` (no ``g``): leading whitespace if any, else trailing."""
    if text and text[0] not in _JS_WS_CHARS and text[-1] not in _JS_WS_CHARS:
        return text   # the usual frame: nothing to trim (no regular expression needed)
    m = _LEAD_WS.match(text)
    if m:
        return text[m.end():]
    m = _TRAIL_WS.search(text)
    if m:
        return text[:m.start()]
    return text


def _js_truthy(value: Any) -> bool:
    if value is UNDEFINED or value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, (bool, int, float, str)):
        return bool(value)
    return True  # objects and arrays, even empty ones


def _js_greater_than_400(value: Any) -> bool:
    """``msg.error > 400`` with JS coercion (numbers and numeric strings)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        return value > 400
    if isinstance(value, str):
        try:
            return float(value.strip() or "0") > 400
        except ValueError:
            return False
    return False


def _js_to_number(text: str) -> float | int:
    try:
        number = float(text.strip() or "0")
    except ValueError:
        return math.nan
    return int(number) if number.is_integer() else number


# --- URL ------------------------------------------------------------------------------------------------

_PATH_KEEP = frozenset("!$%&'()*+,-./0123456789:;=@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_abcdefghijklmnopqrstuvwxyz|~")
_QUERY_KEEP = (_PATH_KEEP | frozenset("`{}?")) - frozenset("'")


def browser_request_target(path: str) -> str:
    """What a browser puts in the request line for ``path``: the WHATWG URL parser percent-encodes
    spaces, quotes, ``<>`` and non-ASCII (UTF-8), turns ``\\`` into ``/`` in the path of a special
    scheme, and starts a query at ``?``.  The client concatenates values raw, so a key made of the
    usual ``[A-Za-z0-9._=+/-]`` characters arrives unchanged.  A ``#`` makes ``new WebSocket`` throw."""
    if "#" in path:
        raise ValueError("SyntaxError: a WebSocket URL must not contain a fragment ('#')")
    p, q, query = path.partition("?")

    def encode(text: str, keep: frozenset) -> str:
        out = []
        for ch in text:
            if ch in keep:
                out.append(ch)
            else:
                out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        return "".join(out)

    target = encode(p.replace("\\", "/"), _PATH_KEEP)
    if q:
        target += "?" + encode(query, _QUERY_KEEP)
    return target


@dataclass(frozen=True)
class NodeAddress:
    """Where a node option points: ``host[:port][/prefix]``."""

    host: str
    port: int
    hostport: str   # as written in the URL and sent in the Host header
    prefix: str     # "" or "/comet-server" (whatever followed host:port)

    @classmethod
    def parse(cls, node: str, *, secure: bool) -> NodeAddress:
        hostport, slash, rest = node.partition("/")
        prefix = slash + rest if slash else ""
        if hostport.startswith("["):  # [::1]:8087
            host, _, tail = hostport[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
        elif hostport.count(":") == 1:
            host, port_text = hostport.split(":")
        else:
            host, port_text = hostport, ""
        port = int(port_text) if port_text else (443 if secure else 80)
        return cls(host, port, hostport, prefix)


@dataclass
class ConnectAttempt:
    """One ``new WebSocket(url)``."""

    time: float                 # trio time of the attempt
    url: str
    outcome: str = "pending"    # "open", "refused: ...", "handshake failed: ...", "cancelled"
    opened_at: float | None = None

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0]


@dataclass
class CloseRecord:
    """One ``onclose``: when, whether the server sent a Close frame (``wasClean``), the code."""

    time: float
    was_clean: bool
    code: int
    opened: bool                 # False: the connection never opened (refused, failed handshake)
    reconnect_in_ms: int | None  # the delay chosen by the reconnect algorithm; None: no reconnect


@dataclass(slots=True)
class CometMessage:
    """What a subscription callback receives: ``{data, server_info}`` plus bench bookkeeping."""

    data: Any
    user_id: Any
    pipe: Any
    event: Any
    history: bool
    marker: Any        # UNDEFINED when the frame had none
    uuid: Any          # UNDEFINED when the frame had none
    raw: dict          # the parsed frame object (before the data cascade)
    time: float        # trio time the frame was received
    seq: int           # number of messages dispatched before this one (its index in CometClient.messages
                       # while the history is complete)

    @property
    def server_info(self) -> dict:
        return {"user_id": self.user_id, "pipe": self.pipe, "event": self.event, "history": self.history,
                "marker": self.marker, "uuid": self.uuid}


class Subscription:
    """A local slot on a signal (``pipe``, ``pipe.event``, ``msg.event``, ``_answer_to_pipe`` ...).

    Messages are kept in :attr:`messages`; :meth:`receive` returns them in order, one each call.
    With the client's ``history`` bound set, only the newest ``history`` are kept (a reader of
    :meth:`receive` must keep up within that many).
    """

    def __init__(self, client: CometClient, signal: str, callback: Callable[[CometMessage], Any] | None,
                 *, filtered: bool = True) -> None:
        self.client = client
        self.signal = signal
        self.callback = callback
        self.filtered = filtered  # the marker rule of subscription_callBack (spec 4.2 step 9)
        self.messages: list[CometMessage] = []
        self._read = 0                       # messages already returned by receive()
        self._arrived: trio.Event | None = None
        self.active = True

    def _deliver(self, message: CometMessage) -> None:
        if not self.active:
            return
        if self.filtered and message.marker is not UNDEFINED and message.marker != self.client.custom_id:
            return  # addressed to another tab's (or a one-shot) request
        messages = self.messages
        messages.append(message)
        limit = self.client.history
        if limit is not None and len(messages) > limit:
            drop = len(messages) - limit
            del messages[:drop]
            self._read = max(0, self._read - drop)
        if self._arrived is not None:
            self._arrived.set()
        if self.callback is not None:
            self.callback(message)

    async def receive(self, timeout: float | None = 10.0) -> CometMessage:
        """The next message on this slot (``trio.TooSlowError`` after ``timeout`` seconds)."""
        with trio.fail_after(timeout) if timeout is not None else trio.CancelScope():
            while self._read >= len(self.messages):
                self._arrived = trio.Event()
                await self._arrived.wait()
            await trio.lowlevel.checkpoint()
        return self.receive_nowait()

    def receive_nowait(self) -> CometMessage:
        if self._read >= len(self.messages):
            raise trio.WouldBlock
        message = self.messages[self._read]
        self._read += 1
        return message

    async def __aiter__(self):
        while True:
            yield await self.receive(timeout=None)

    def unsubscribe(self) -> None:
        """``unsubscription(sigId)``: local only, the pipe stays in the subscription list."""
        self.client._remove_slot(self)


class _ReaderWatch:
    """Stands in for the nursery given to ``wrap_client_stream``: runs trio-websocket's reader task
    and reports when it has ended (TCP closed: the browser's ``onclose`` moment) and why."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.done = trio.Event()
        self.error: BaseException | None = None

    def start_soon(self, fn, *args, name=None) -> None:
        async def run() -> None:
            try:
                await fn(*args)
            except Exception as exc:  # noqa: BLE001 - handshake refused, protocol error, broken stream: kept for the caller
                self.error = exc
            finally:
                self.done.set()

        self._nursery.start_soon(run, name=name)


_CLOSE = object()  # outbox sentinel: send a Close frame after what is already queued


def _peer_sent_close(ws: WebSocketConnection) -> bool:
    """``event.wasClean``: the server sent a Close frame (wsproto saw one, whoever started closing)."""
    return ws._wsproto.state in (ConnectionState.CLOSED, ConnectionState.REMOTE_CLOSING)


# --- the client -------------------------------------------------------------------------------------------


class SocketState(StrEnum):
    """The client's WebSocket: none (idle), being opened, open."""

    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"


class CometClient:
    """One ``cometServerApi`` instance (one browser tab) on one node.

    Construct it with a nursery the caller owns, or use :func:`open_comet_client`.
    """

    def __init__(self, network: Network, node: str = DEFAULT_NODE, *, nursery: trio.Nursery,
                 user_key: str | None = None, user_id: int | str | None = None, dev_id: int | str | None = None,
                 uuid: str | None = None, rng: random.Random | None = None, name: str = "comet-js",
                 start_delay: float = START_TIMER_MS / 1000, nostat: bool = False, wss: bool | None = None,
                 page_url: str = "http://localhost/", user_agent: str = DEFAULT_USER_AGENT,
                 accept_language: str = "en-US,en;q=0.9", ssl_context: ssl.SSLContext | None = None,
                 close_timeout: float = 60.0,
                 on_auth_success: Callable[[], Any] | None = None,
                 on_auth_failure: Callable[[], Any] | None = None,
                 history: int | None = None) -> None:
        if history is not None and history < 1:
            raise ValueError(f"history must be None (keep everything) or >= 1, not {history!r}")
        self.network = network
        #: how many entries each record below keeps: None keeps everything (tests read them whole);
        #: a number keeps the newest that many, so a long run or a thousand pages stay bounded (the
        #: counters frames_sent / frames_received / dispatched always count everything)
        self.history = history
        self._nursery = nursery
        self.rng = rng if rng is not None else random.Random()
        self.name = name
        self.start_delay = start_delay
        self.page_url = page_url
        self.user_agent = user_agent
        self.accept_language = accept_language
        self.ssl_context = ssl_context
        self.close_timeout = close_timeout
        self.on_auth_success = on_auth_success
        self.on_auth_failure = on_auth_failure
        # called with the text of every frame written to the socket (bench observers: marks)
        self.on_frame_sent: Callable[[str], Any] | None = None
        # called as on_connection("open", {}) / on_connection("close", {...}) (bench observers: timelines)
        self.on_connection: Callable[[str, dict], Any] | None = None
        self.options: dict[str, Any] = {"node": node, "user_key": user_key, "user_id": user_id,
                                        "dev_id": dev_id, "nostat": nostat, "wss": wss}
        # the uuid: the option if given, else 32 random chars, then stable (localStorage in a browser)
        self.options["uuid"] = uuid or "".join(self.rng.choice(UUID_ALPHABET) for _ in range(32))
        # the tab's private id: (Math.random()*10)+""+Math.random(), first non-[0-9A-z] removed, 10 chars
        raw_id = js_number_to_string(self.rng.random() * 10) + js_number_to_string(self.rng.random())
        self.custom_id = re.sub(r"[^0-9A-z]", "", raw_id, count=1)[:10]

        # JS state
        self.subscription_array: list[str] = []
        self.is_master: bool | None = None        # undefined until the election delay has passed
        self.authorized: bool | None = None
        self.real_user_key: str | None = None
        self.in_abort = False
        self.fatal = False                        # hasCriticalError: top-level error > 400 seen
        self.error_count = 0                      # E
        self.reconnect_ms = RECONNECT_INITIAL_MS  # T
        self.ever_received = False                # S ("websocket ever worked")
        self.use_wss = bool(wss) if wss is not None else page_url.startswith("https:")  # W
        self.online = True                        # navigator.onLine
        self._pending_subscription: str | None = None  # send_msg_subscription
        self._send_queue: list[str] = []               # send_msg_queue
        self._statistics_sent = False
        self._seen_uuids: set[str] = set()
        self._uuid_of_data: dict[str, str] = {}   # data string -> its _cometApi_uuid (cleared with the above)

        # connection
        self._state = SocketState.IDLE
        self._close_on_open = False
        self._outbox: trio.MemorySendChannel | None = None
        self._ws: WebSocketConnection | None = None
        self._channel = None   # the virtual network's MessageChannel while connected over it
        #: use the virtual network's message shortcut when offered (False: frames over bytes always)
        self.message_shortcut = True
        self._loop_scope: trio.CancelScope | None = None
        self._debounce: Timer | None = None
        self._scopes: dict[trio.CancelScope, None] = {}   # ordered: cancelled in creation order
        #: the page's setTimeout (shared with the video client): one heap, run in browser order
        self.timers = Timers(nursery)
        self._dedup_timer = False

        # dispatch
        self._slots: dict[str, list[Subscription]] = {}
        self._marker_waiters: dict[str, list[trio.MemorySendChannel]] = {}
        self._changed: trio.Event | None = None   # made when someone waits (see _notify)
        self._consumed: set[int] = set()

        # records (trio time first)
        self.attempts: list[ConnectAttempt] = []
        self.opens: list[float] = []
        self.closes: list[CloseRecord] = []
        def record() -> Any:   # a list, or a deque of the newest ``history``: both append and iterate
            return [] if history is None else deque(maxlen=history)

        self.received: list[tuple[float, str | bytes]] = record()   # every raw frame
        self.sent: list[tuple[float, str]] = record()               # every frame written to a socket
        self.messages: list[CometMessage] = record()                # every dispatched message
        self.frames_received = 0                              # counts of the above, never bounded
        self.frames_sent = 0
        self.dispatched = 0
        self.unparseable = 0                                  # lines JSON.parse refused
        self.unparseable_lines: list[str] = record()
        self.duplicates = 0                                   # messages dropped by de-duplication
        # one per connection, not per frame: kept whole
        self.server_infos: list[tuple[float, bool, Any]] = []  # (time, authorized, data)
        self.auth_changes: list[tuple[float, bool]] = []      # onAuthSuccess / onAuthFalill firings
        self.console: list[tuple[float, str, str]] = record()       # (time, level, text) the JS would log
        self.jscode: list[str] = record()

    # -- public state -------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._state == SocketState.OPEN

    @property
    def transport(self) -> str | None:
        """How the current connection carries frames: ``"messages"`` (the virtual network's message
        shortcut), ``"frames"`` (WebSocket frames over a byte stream), None between connections."""
        if self._channel is not None and self._ws is None:
            return "messages"
        if self._ws is not None and self._channel is None:
            return "frames"
        if self._ws is None and self._channel is None:
            return None
        return "messages and frames"   # never: one connection uses one way

    @property
    def uuid(self) -> str:
        return self.options["uuid"]

    @property
    def dev_id(self) -> Any:
        dev_id = self.options.get("dev_id")
        if not _js_truthy(dev_id):
            return "15" if self.options.get("node") == DEFAULT_NODE else "0"
        return dev_id

    @property
    def url(self) -> str:
        """The URL the next connection attempt uses (spec 1.1), rebuilt from the current options."""
        o = self.options
        key = o.get("user_key")
        user = o.get("user_id")
        key_text = js_string(key) if _js_truthy(key) else "undefined"
        user_text = js_string(user) if _js_truthy(user) else "undefined"
        return (f"{'wss' if self.use_wss else 'ws'}://{o['node']}/ws/sesion={key_text}&myid={user_text}"
                f"&devid={js_string(self.dev_id)}&v={API_VERSION}&uuid={o['uuid']}&api=js")

    def attempt_intervals_ms(self, since: float | None = None) -> list[int]:
        """Milliseconds between consecutive connection attempts (from ``since`` if given)."""
        times = ([since] if since is not None else []) + [a.time for a in self.attempts
                                                           if since is None or a.time > since]
        return [round((b - a) * 1000) for a, b in itertools.pairwise(times)]

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, **options: Any) -> bool:
        """``cometApi.start(opt)``: merge options, then connect (after the election delay the first time)."""
        self.options.update(options)
        if "wss" in options and options["wss"] is not None:
            self.use_wss = bool(options["wss"])
        self.in_abort = False
        if not self._dedup_timer:
            self._dedup_timer = True
            self._spawn(self._clear_seen_uuids_forever)
        if self._loop_scope is not None:
            return True  # already running: the JS would open a second socket; we keep one
        delay = 0.0 if self.is_master else self.start_delay
        self._spawn(self._run, delay, loop=True)
        return True

    def stop(self) -> None:
        """``cometApi.stop()``: Close frame, no reconnect, until :meth:`start`."""
        self.in_abort = True
        if self._state == SocketState.OPEN:
            self._close_socket()
        elif self._loop_scope is not None:
            self._loop_scope.cancel()  # waiting for a reconnect or the election: stop right now

    def restart(self, **options: Any) -> None:
        """``cometApi.restart(opt)``: merge options and close the socket (a Close frame).

        The reconnect comes from the resulting close: the real server drops TCP without answering, so
        the close is unclean and the client reconnects after T with a URL built from the new options.
        A server that answers the Close frame (RFC behaviour) leaves the client offline (spec 7.3).
        """
        self.options.update(options)
        if not self.is_master:
            return  # before the election: the options apply to the first connection
        self._close_socket()

    def go_offline(self) -> None:
        """``navigator.onLine = false``: reconnect attempts are postponed in 300 ms steps."""
        self.online = False

    def go_online(self) -> None:
        self.online = True
        self._notify()

    def shutdown(self) -> None:
        """Cancel every task of this client (the page is gone; TCP is closed without a Close frame)."""
        self.timers.close()
        for scope in list(self._scopes):
            scope.cancel()

    # -- subscriptions ---------------------------------------------------------------------------------
    def subscription(self, name: str | Callable[[CometMessage], Any] | None,
                     callback: Callable[[CometMessage], Any] | None = None) -> Subscription | None:
        """``cometApi.subscription(name, callback)`` (spec 3.1): add a local slot and, for real pipe
        names, add the pipe to the list sent to the server.  Returns the slot, or None when refused."""
        if name is None:
            return None
        if callable(name):  # every message, unfiltered
            return self._add_slot(_SIGNAL_ALL, name, filtered=False)
        if not _PIPE_RE.match(name):
            self._console("error", f"Invalid pipe name {name}")
        if "\n" in name:
            for part in name.split("\n"):
                self.subscription(part, callback)
            return None
        if name == "msg" or name.startswith("msg."):
            return self._add_slot(name, callback)          # personal messages: local only
        if name.startswith("answer_to_web_"):
            return self._add_slot(name, callback)          # never matches the server's _answer_to_*
        if name.startswith("#"):
            return self._add_slot(name.replace("#", "_answer_to_", 1), callback)  # delivery reports
        if name == "":
            name = _SIGNAL_ALL
        if len(name) < 2:
            return None
        slot = self._add_slot(name, callback)
        if name == _SIGNAL_ALL:
            return slot
        m = _PIPE_EVENT_RE.match(name)
        if m:
            name = m.group(1)
        if name in self.subscription_array:
            return slot
        self.subscription_array.append(name)
        frame = "subscription\n" + "\n".join(self.subscription_array)
        if self.is_master is None:
            self._add_msg_to_queue(frame)
        else:
            if self._debounce is not None:
                self._debounce.cancel()
            self._debounce = self._call_later(SUBSCRIPTION_DEBOUNCE_MS, self._send_debounced_subscription)
        return slot

    subscribe = subscription

    def _send_debounced_subscription(self) -> None:
        self._debounce = None
        self._send_msg("subscription\n" + "\n".join(self.subscription_array))

    def _add_slot(self, signal: str, callback, *, filtered: bool = True) -> Subscription:
        slot = Subscription(self, signal, callback, filtered=filtered)
        self._slots.setdefault(signal, []).append(slot)
        return slot

    def _remove_slot(self, slot: Subscription) -> None:
        slot.active = False
        slots = self._slots.get(slot.signal, [])
        if slot in slots:
            slots.remove(slot)

    # -- commands ----------------------------------------------------------------------------------------
    def new_marker(self) -> str:
        """A request marker: 10 digits."""
        return "".join(self.rng.choice("0123456789") for _ in range(10))

    def web_pipe_send(self, pipe: str, event: Any = UNDEFINED, msg: Any = UNDEFINED) -> bool | None:
        """``web_pipe_send(pipe, event, msg)``; also ``(pipe.event, msg)`` and ``(pipe, msg)``.

        Returns True if written now, False if queued (or no message), None if refused client-side.
        """
        if msg is UNDEFINED:
            msg, event = event, "undefined"
            if "." in pipe:
                pipe, _, event = pipe.partition(".")
        if msg is UNDEFINED:
            return False
        if not (pipe.startswith("web_") or pipe.startswith("webauth_")):
            self._console("error", f"Invalid channel name `{pipe}`. The channel should begin with web_")
            return None
        return self._send_msg(f"web_pipe2\n{pipe}\n{js_string(event)}\n*\n{js_stringify(msg)}")

    def multi_web_pipe_send(self, pipe: str, event: Any, msg: Any, count: int = 3,
                            interval: float = 1.0) -> bool | None:
        """Send the same ``web_pipe2`` ``count`` times, ``interval`` seconds apart, with one
        ``_cometApi_uuid`` added to ``msg`` (in place, as the JS does) so receivers keep one copy."""
        count = count or 3
        interval_ms = round((interval or 1.0) * 1000)
        # Math.random() per character; random.choices(TAB_ALPHABET, k=11) drawn the same way, inline
        r = self.rng.random
        uuid = "jsapi" + "".join([TAB_ALPHABET[int(r() * 62)] for _ in range(11)])
        if isinstance(msg, dict):
            msg["_cometApi_uuid"] = uuid
        for i in range(1, count):
            self._call_later(i * interval_ms, self.web_pipe_send, pipe, event, msg)
        return self.web_pipe_send(pipe, event, msg)

    def get_pipe_log(self, pipe: str, callback: Callable[[CometMessage], Any] | None = None, *,
                     subscribe: bool = False) -> Subscription | None:
        """``get_pipe_log(pipe[, cb])``: history comes back as ordinary messages of ``pipe``.

        With a callback (or ``subscribe=True``) the pipe is subscribed first, as the JS does."""
        slot = None
        if callback is not None or subscribe:
            slot = self.subscription(pipe, callback)
        self._send_msg(f"pipe_log\n{pipe}\n{self.new_marker()}\n")
        return slot

    async def count_users_in_pipe(self, pipe: str, *, timeout: float | None = 10.0) -> CometMessage:
        """``count_users_in_pipe(pipe, cb)``: the answer (``data`` as the server sent it)."""
        marker = self.new_marker()
        return await self._request(f"pipe_count\n{pipe}\n{marker}\n", marker, timeout)

    async def get_track_pipe_users(self, pipe: str, *, timeout: float | None = 10.0) -> CometMessage | None:
        """``getTrackPipeUsers(pipe, cb)``; refused client-side unless ``pipe`` starts with ``track_``."""
        if not pipe.startswith("track_"):
            self._console("error", f"Invalid channel name `{pipe}`. The channel should begin with track_")
            return None
        marker = self.new_marker()
        return await self._request(f"track_pipe_users\n{pipe}\n{marker}", marker, timeout)

    async def get_user_data(self, user_id: int | str, *, timeout: float | None = 10.0) -> CometMessage:
        """``getUserData(user_id, cb)``."""
        marker = self.new_marker()
        return await self._request(f"user_data\n{marker}\n{js_string(user_id)}", marker, timeout)

    def send_statistics(self, plugin_name: str, plugin_version: str, plugin_data: Any) -> bool:
        return self._send_msg("statistics\n" + js_stringify(
            {"url": self.page_url, "dev_id": self.dev_id, "version": API_VERSION,
             "plugin": {"name": plugin_name, "version": plugin_version, "data": plugin_data}}))

    async def _request(self, frame: str, marker: str, timeout: float | None) -> CometMessage:
        send, receive = trio.open_memory_channel[CometMessage](1)
        waiters = self._marker_waiters.setdefault(marker, [])
        waiters.append(send)
        try:
            self._send_msg(frame)
            if timeout is None:
                return await receive.receive()
            with trio.fail_after(timeout):
                return await receive.receive()
        finally:
            if send in waiters:
                waiters.remove(send)
            if not waiters:
                self._marker_waiters.pop(marker, None)

    # -- waiting helpers -----------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = 10.0) -> None:
        """Wait until ``predicate()`` holds; re-checked after every frame, attempt, open and close."""
        with trio.fail_after(timeout) if timeout is not None else trio.CancelScope():
            while not predicate():
                if self._changed is None:
                    self._changed = trio.Event()
                await self._changed.wait()

    async def wait_connected(self, timeout: float | None = 10.0) -> None:
        await self.wait_for(lambda: self.connected, timeout)

    async def wait_server_info(self, count: int = 1, timeout: float | None = 10.0) -> bool:
        """Wait until ``count`` serverInfo frames have arrived in total; the latest auth status."""
        await self.wait_for(lambda: len(self.server_infos) >= count, timeout)
        return self.server_infos[count - 1][1]

    async def next_message(self, pipe: str | None = None, event: str | None = None, *,
                           timeout: float | None = 10.0,
                           where: Callable[[CometMessage], bool] | None = None) -> CometMessage:
        """The oldest dispatched message not yet returned by this method that matches ``pipe``,
        ``event`` and ``where`` (any of them may be None); waits for one if needed."""

        def find() -> CometMessage | None:
            for m in self.messages:
                if m.seq in self._consumed:
                    continue
                if pipe is not None and m.pipe != pipe:
                    continue
                if event is not None and m.event != event:
                    continue
                if where is not None and not where(m):
                    continue
                return m
            return None

        found: list[CometMessage] = []

        def ready() -> bool:
            m = find()
            if m is not None:
                found.append(m)
            return m is not None

        await self.wait_for(ready, timeout)
        self._consumed.add(found[0].seq)
        return found[0]

    def sent_frames(self, command: str | None = None) -> list[str]:
        """Texts of frames written so far, optionally only those of one command word."""
        return [t for _, t in self.sent if command is None or t.split("\n", 1)[0] == command]

    # -- sending (send_msg, add_msg_to_queue, send_msg_from_queue, socketArraySend) --------------------
    def _send_msg(self, text: str) -> bool:
        if self.is_master is None or self._state != SocketState.OPEN:
            self._add_msg_to_queue(text)
            return False
        self._send_msg_from_queue()
        return self._socket_send(text)

    def _add_msg_to_queue(self, text: str) -> None:
        if text.split("\n", 1)[0] == "subscription":
            self._pending_subscription = text  # only the latest list is kept, sent ahead of the queue
        else:
            self._send_queue.append(text)

    def _send_msg_from_queue(self) -> bool:
        if not self.is_master or self._state != SocketState.OPEN:
            return False
        if self._pending_subscription is not None:
            text, self._pending_subscription = self._pending_subscription, None
            self._socket_send(text)
        delay = QUEUE_FIRST_MS - QUEUE_STEP_MS
        for text in self._send_queue:
            delay += QUEUE_STEP_MS
            self._call_later(delay, self._socket_send, text)
        self._send_queue = []
        return True

    def _socket_send(self, text: str) -> bool:
        """Write on the open socket; like the JS, a frame whose moment comes after the socket closed
        is dropped, not queued again."""
        channel = self._channel
        if self._state != SocketState.OPEN or (self._outbox is None and channel is None):
            self._console("log", f"frame dropped, socket not open: {text[:80]}")
            return False
        self.sent.append((trio.current_time(), text))
        self.frames_sent += 1
        if channel is not None:
            try:
                channel.send("text", text, _client_wire_length(text))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass   # the socket is going: onclose follows
        else:
            self._outbox.send_nowait(text)
        self._notify()
        if self.on_frame_sent is not None:
            self.on_frame_sent(text)
        return True

    def _close_socket(self) -> None:
        if self._state == SocketState.OPEN and self._channel is not None:
            try:
                self._channel.send("close", 1000, 8)   # a Close frame; the server then closes TCP
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        elif self._state == SocketState.OPEN and self._outbox is not None:
            self._outbox.send_nowait(_CLOSE)
        elif self._state == SocketState.CONNECTING:
            self._close_on_open = True

    # -- connection loop -------------------------------------------------------------------------------
    async def _run(self, delay: float) -> None:
        if delay > 0:
            await trio.sleep(delay)  # tab election: nobody answers, so this tab becomes master
        self.is_master = True
        while True:
            while not self.online:
                await trio.sleep(OFFLINE_POLL_MS / 1000)
                self._notify()
            record = await self._one_connection()
            if record.reconnect_in_ms is None:
                return
            await trio.sleep(record.reconnect_in_ms / 1000)

    async def _one_connection(self) -> CloseRecord:
        """One WebSocket from ``new WebSocket(url)`` to ``onclose``; applies the 7.2 rules."""
        url = self.url
        secure = self.use_wss
        attempt = ConnectAttempt(trio.current_time(), url)
        self.attempts.append(attempt)
        self._state = SocketState.CONNECTING
        self._close_on_open = False
        self._notify()
        address = NodeAddress.parse(self.options["node"], secure=secure)
        resource = browser_request_target(url.split("://", 1)[1][len(address.hostport):])
        stream: trio.abc.Stream | None = None
        opened = False
        clean = False
        code = 1006
        try:
            try:
                stream = await self.network.connect(address.host, address.port, client=self.name)
                if secure:
                    context = self.ssl_context or ssl.create_default_context()
                    stream = trio.SSLStream(stream, context, server_hostname=address.host, https_compatible=True)
                    await stream.do_handshake()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                attempt.outcome = f"refused: {exc!r}"
            else:
                channel = getattr(stream, "cometbench_messages", None) if not secure else None
                if channel is not None and self.message_shortcut:
                    opened, clean, code = await self._message_connection(channel, stream, address.hostport,
                                                                         resource, attempt)
                    return self.on_close(clean, code, opened)
                async with trio.open_nursery() as conn_nursery:
                    watch = _ReaderWatch(conn_nursery)
                    ws = await self._handshake(watch, stream, address.hostport, resource)
                    if ws is None:
                        attempt.outcome = f"handshake failed: {watch.error!r}"
                    else:
                        opened = True
                        attempt.outcome = "open"
                        attempt.opened_at = trio.current_time()
                        clean, code = await self._serve_open_socket(conn_nursery, watch, ws)
                    conn_nursery.cancel_scope.cancel()
        finally:
            self._state = SocketState.IDLE
            self._outbox = None
            self._ws = None
            self._channel = None
            if stream is not None:
                await quiet_close(stream)
        return self.on_close(clean, code, opened)

    async def _message_connection(self, channel, stream: trio.abc.Stream, host: str, resource: str,
                                  attempt: ConnectAttempt) -> tuple[bool, bool, int]:
        """The same WebSocket over the virtual network's message shortcut (emulator/net/links.py,
        MessageChannel): the upgrade request and its answer go over the bytes as always (made and
        checked by wsproto, as trio-websocket does), then whole messages instead of frames.
        Returns (opened, clean, code)."""
        channel.offer()
        handshake = WSConnection(ConnectionType.CLIENT)
        request = Request(host=host, target=resource, extra_headers=self._request_headers())
        await stream.send_all(handshake.send(request))
        accepted = False
        while not accepted:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                attempt.outcome = f"handshake failed: {exc!r}"
                return False, False, 1006
            if not data:
                attempt.outcome = "handshake failed: the server closed the connection"
                return False, False, 1006
            try:
                handshake.receive_data(bytes(data))
                for event in handshake.events():
                    if isinstance(event, AcceptConnection):
                        accepted = True
                    elif isinstance(event, (RejectConnection, RejectData)):
                        attempt.outcome = f"handshake failed: rejected ({getattr(event, 'status_code', '')})"
                        return False, False, 1006
            except Exception as exc:  # noqa: BLE001 - wsproto's handshake errors (LocalProtocolError ...)
                attempt.outcome = f"handshake failed: {exc!r}"
                return False, False, 1006
        attempt.outcome = "open"
        attempt.opened_at = trio.current_time()
        self._channel = channel
        self._state = SocketState.OPEN
        self._on_open()
        if self._close_on_open:
            self._close_socket()
        clean, code = False, 1006
        try:
            while True:
                message = await channel.receive()
                if message is None:
                    break
                kind, payload = message
                if kind == "close":     # a server that answers with a Close frame: a clean close
                    clean, code = True, int(payload)
                    continue
                self.on_frame(payload)
                while True:   # every frame that has arrived at this moment, as onmessage events in a row
                    more = channel.receive_nowait()
                    if more is None or more[0] != "text":
                        if more is not None:
                            clean, code = True, int(more[1])
                        break
                    self.on_frame(more[1])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self._state = SocketState.IDLE
        self._channel = None
        return True, clean, code

    async def _handshake(self, watch: _ReaderWatch, stream: trio.abc.Stream, host: str,
                         resource: str) -> WebSocketConnection | None:
        """trio-websocket's client handshake; None if the reader ended first (TCP closed, 4xx)."""
        result: list[WebSocketConnection] = []
        async with trio.open_nursery() as race:
            async def reader_ended() -> None:
                await watch.done.wait()
                race.cancel_scope.cancel()

            race.start_soon(reader_ended)
            result.append(await wrap_client_stream(watch, stream, host, resource,  # type: ignore[arg-type]
                                                   extra_headers=self._request_headers()))
            race.cancel_scope.cancel()
        return result[0] if result else None

    def _request_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers a browser adds to the upgrade request that the server records (spec 1.2:
        User-Agent, Origin and Accept-Language feed CometQL ``users_in_pipes``).  No
        ``Sec-WebSocket-Extensions``: the server never negotiates compression."""
        m = re.match(r"^([a-z][a-z0-9+.-]*://[^/?#]*)", self.page_url, re.I)
        headers = [(b"Pragma", b"no-cache"), (b"Cache-Control", b"no-cache"),
                   (b"User-Agent", self.user_agent.encode("latin-1", "replace"))]
        if m:
            headers.append((b"Origin", m.group(1).encode("latin-1", "replace")))
        headers.append((b"Accept-Language", self.accept_language.encode("latin-1", "replace")))
        return headers

    async def _serve_open_socket(self, conn_nursery: trio.Nursery, watch: _ReaderWatch,
                                 ws: WebSocketConnection) -> tuple[bool, int]:
        send, receive = trio.open_memory_channel[object](math.inf)
        self._ws = ws
        self._outbox = send
        self._state = SocketState.OPEN
        conn_nursery.start_soon(self._writer, ws, receive)
        self._on_open()
        if self._close_on_open:
            self._close_socket()
        try:
            while True:
                self.on_frame(await ws.get_message())
        except ConnectionClosed:
            pass
        self._state = SocketState.IDLE
        self._outbox = None
        send.close()
        await watch.done.wait()  # the browser's onclose comes when TCP is gone
        clean = _peer_sent_close(ws)
        return clean, (ws.closed.code if clean and ws.closed else 1006)

    async def _writer(self, ws: WebSocketConnection, receive: trio.MemoryReceiveChannel) -> None:
        async for item in receive:
            if item is _CLOSE:
                with trio.move_on_after(self.close_timeout):
                    await ws.aclose()  # Close frame, then wait for the server to close TCP
                return
            try:
                await ws.send_message(item)
            except ConnectionClosed:
                return

    def _on_open(self) -> None:
        now = trio.current_time()
        self.opens.append(now)
        self._notify()
        if self.on_connection is not None:
            self.on_connection("open", {"opens": len(self.opens)})
        if self._pending_subscription is None and self.subscription_array:
            self._socket_send("subscription\n" + "\n".join(self.subscription_array))
        self._send_msg_from_queue()
        if self.options.get("nostat") is not True:
            self._call_later(STATISTICS_MS, self._statistics_timer)

    def _statistics_timer(self) -> None:
        if self._statistics_sent:
            return
        self._statistics_sent = True
        self._send_msg("statistics\n" + js_stringify({"url": self.page_url, "dev_id": self.dev_id,
                                                       "version": API_VERSION}))

    def on_close(self, clean: bool, code: int, opened: bool) -> CloseRecord:
        """``socket.onclose`` (spec 7.2): the transport calls it when the connection ended (a test or
        a replay may too); the record says whether and when the client reconnects."""
        reconnect: int | None = None
        if clean or self.in_abort:
            pass  # closed cleanly or stopped: no reconnect until start()
        elif self.fatal:
            self._console("warn", "Fatal error, connection impossible.")
        else:
            self.error_count += 1
            if self.error_count > 2 and not self.ever_received and not self.use_wss:
                self.use_wss = True
                self._console("warn", "There were more than 2 errors in Web sites including encryption")
            elif self.error_count > 5:
                self.reconnect_ms *= 3
            elif self.error_count > 3:
                self.reconnect_ms += 2000
            reconnect = self.reconnect_ms
        record = CloseRecord(trio.current_time(), clean, code, opened, reconnect)
        self.closes.append(record)
        self._notify()
        if self.on_connection is not None:
            self.on_connection("close", {"clean": clean, "code": code, "opened": opened,
                                         "reconnect_in_ms": reconnect})
        return record

    # -- receiving ---------------------------------------------------------------------------------------
    def on_frame(self, frame: str | bytes) -> None:
        """``socket.onmessage`` (spec 4.2 steps 1-2): the transport hands each server frame here (a
        test or a replay may feed frames directly)."""
        self.ever_received = True
        self.error_count = 0
        self.reconnect_ms = RECONNECT_AFTER_FRAME_MS
        now = trio.current_time()
        self.received.append((now, frame))
        self.frames_received += 1
        try:
            if isinstance(frame, bytes):
                raise _JsError("event.data.replace is not a function (binary frame)")
            for line in trim_once(frame).split("\n"):
                try:
                    obj = js_json_parse(line.replace("\\'", "'"))
                except ValueError:
                    self.unparseable += 1
                    self.unparseable_lines.append(line)
                    continue
                self._cultivate(obj, now)
        except _JsError as exc:  # a TypeError in onmessage: the rest of the frame is lost
            self._console("error", str(exc))
        self._notify()

    def _cultivate(self, msg: Any, now: float) -> None:
        """``msg_cultivate`` (spec 4.2 steps 3-9)."""
        if msg is None:
            raise _JsError("Cannot read properties of null (reading 'data')")
        if not isinstance(msg, dict) or "data" not in msg:
            return  # data undefined: ignored
        get = msg.get
        error = get("error")
        if error is not None and _js_greater_than_400(error):
            self.fatal = True
            self._console("error", f"CometServerError:{error}")
        if "jscode" in msg:
            self.jscode.append(js_string(msg["jscode"]))
            return
        if "authorized" in msg and get("event") == "serverInfo" and get("pipe") == "sys":
            status = msg["authorized"] is True or msg["authorized"] == "true"
            self._set_authorized(status)
            data = msg["data"]
            self.server_infos.append((now, status, data))
            if not isinstance(data, str):
                raise _JsError("msg.data.replace is not a function")
            self.real_user_key = data.replace(" ", "_", 1)
            return

        data = msg["data"]
        web_id: Any = 0
        top_uuid = get("uuid", UNDEFINED)
        data_text = None
        if isinstance(data, str):
            if data.startswith("A::"):  # legacy sender prefix
                parts = data.split(";")
                web_id = _js_to_number(parts[0].replace("A::", "", 1))
                data = parts[1] if len(parts) > 1 else UNDEFINED
            if isinstance(data, str):
                data_text = data
                # a copy of an event already handled (cometVideoApi sends each three times): the JS
                # would decode it again and drop it at the de-duplication below; nothing before that
                # has an effect, so skip straight to the result
                known = self._uuid_of_data.get(data_text)
                if known is not None and known in self._seen_uuids and not _js_truthy(top_uuid):
                    self.duplicates += 1
                    return
                data = decode_data(data_text)
        user_id = get("user_id", UNDEFINED)
        if not _js_truthy(user_id):
            user_id = web_id
        event = get("event", UNDEFINED)
        marker = get("marker", UNDEFINED)
        message = CometMessage(data, user_id, get("pipe", UNDEFINED), event, get("history") is True, marker,
                               top_uuid, msg, now, self.dispatched)

        if _js_truthy(top_uuid):
            key = js_string(top_uuid)
            if key in self._seen_uuids:
                self.duplicates += 1
                return
            self._seen_uuids.add(key)
        if isinstance(data, dict) and _js_truthy(data.get("_cometApi_uuid", UNDEFINED)):
            key = js_string(data["_cometApi_uuid"])
            if data_text is not None:
                self._uuid_of_data[data_text] = key
            if key in self._seen_uuids:
                self.duplicates += 1
                return
            self._seen_uuids.add(key)
            del data["_cometApi_uuid"]

        self.messages.append(message)
        self.dispatched += 1
        named_event = isinstance(event, str) or (isinstance(event, (int, float)) and not isinstance(event, bool))
        if "pipe" in msg:
            pipe = js_string(msg["pipe"])
            self._emit(pipe, message)
            if named_event:
                self._emit(pipe + "." + js_string(event), message)
        elif named_event:
            self._emit("msg." + js_string(event), message)
            self._emit("msg", message)
        else:
            self._emit("msg", message)
        if _js_truthy(marker):
            key = js_string(marker)
            self._emit(key, message)
            for waiter in self._marker_waiters.pop(key, []):
                try:
                    waiter.send_nowait(message)
                except (trio.WouldBlock, trio.BrokenResourceError):
                    pass
        self._emit(_SIGNAL_ALL, message)

    def _emit(self, signal: str, message: CometMessage) -> None:
        slots = self._slots.get(signal)
        if slots:
            for slot in tuple(slots):   # a callback may add or remove slots: the ones of this moment
                slot._deliver(message)

    def _set_authorized(self, status: bool) -> None:
        changed = self.authorized != status
        self.authorized = status
        if not changed:
            return
        self.auth_changes.append((trio.current_time(), status))
        callback = self.on_auth_success if status else self.on_auth_failure
        if callback is not None:
            callback()

    # -- plumbing ------------------------------------------------------------------------------------------
    def _notify(self) -> None:
        # an Event only while someone waits: a frame used to cost a new Event even when nobody did
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def _console(self, level: str, text: str) -> None:
        self.console.append((trio.current_time(), level, text))

    def _spawn(self, fn, *args, loop: bool = False) -> trio.CancelScope:
        scope = trio.CancelScope()
        self._scopes[scope] = None
        if loop:
            self._loop_scope = scope

        async def runner() -> None:
            try:
                with scope:
                    await fn(*args)
            finally:
                self._scopes.pop(scope, None)
                if loop and self._loop_scope is scope:
                    self._loop_scope = None
                    self._notify()

        self._nursery.start_soon(runner)
        return scope

    def _call_later(self, delay_ms: int, fn, *args) -> Timer:
        """``setTimeout(fn, delay_ms, ...args)`` (``.cancel()`` is ``clearTimeout``)."""
        return self.timers.call_later(delay_ms / 1000, fn, *args)

    async def _clear_seen_uuids_forever(self) -> None:
        while True:
            await trio.sleep(DEDUP_CLEAR_MS / 1000)
            self._seen_uuids.clear()
            self._uuid_of_data.clear()


def _client_wire_length(text: str) -> int:
    """Bytes of the masked frame that carries ``text`` (payload, header, mask)."""
    n = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return n + (6 if n < 126 else 8 if n < 65536 else 14)


class _JsError(Exception):
    """A TypeError the JS client would throw inside ``onmessage``."""


@asynccontextmanager
async def open_comet_client(network: Network, node: str, *, start: bool = True,
                            **options: Any) -> AsyncIterator[CometClient]:
    """A :class:`CometClient` in its own nursery; ``start()`` is called unless ``start=False``.

    Leaving the block cancels every task of the client (like closing the tab: the socket is closed
    without a Close frame).
    """
    async with trio.open_nursery() as nursery:
        client = CometClient(network, node, nursery=nursery, **options)
        if start:
            client.start()
        try:
            yield client
        finally:
            client.shutdown()
            nursery.cancel_scope.cancel()


__all__ = [
    "API_VERSION", "UNDEFINED", "CloseRecord", "CometClient", "CometMessage", "ConnectAttempt", "NodeAddress",
    "Subscription", "browser_request_target", "decode_data", "js_json_parse", "js_number_to_string",
    "js_string", "js_stringify", "open_comet_client", "stripslashes", "trim_once",
]
