"""Sans-IO codec of the CppComet browser protocol (CometServerApi.js 4.08 <-> server 4.09).

Three things live here, none of which touches a socket or a clock:

* :func:`parse_url` — the positional parameter extraction of the upgrade request's path
  (spec comet-ws-protocol.md 2.1) and the URL-level errors 401/406/418 (2.2);
* :func:`parse_command` — a client text frame to a typed command (section 3), with the exact
  argument rules of the real server;
* the server frames of section 4.3 as dicts, and :func:`dumps` / :func:`for_client_version` to turn
  them into the exact JSON text a client of a given major version receives (4.1, 4.4);
* :func:`encode_server_frame` — that text as the bytes of one WebSocket frame on the wire (1.3).
  Server frames are unmasked, so one publish's bytes are the same for every subscriber: the hub
  encodes once per fan-out and the transport writes the shared bytes.

Error texts are the real server's, verbatim (4.5).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

SERVER_NAME = "CppComet community 4.09 (AGPL license)"

NAME_RE = re.compile(r"[A-Za-z0-9_-]*\Z")
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_NAME = 64
MAX_SUBSCRIPTIONS = 32
MAX_SUBSCRIPTION_BODY = 2176
MAX_FRAME = 65535
DEV_INDEX_SIZE = 100000


# --- JSON ------------------------------------------------------------------------------------------


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
_encode_string = json.encoder.encode_basestring   # what _ENCODER writes for a str (C version)


def dumps(obj: object) -> str:
    """Serialise as the server's JSON library does: sorted keys, no spaces, UTF-8 kept as is.

    (One encoder object for every call: ``json.dumps`` with options builds a new one each time,
    which cost as much as the encoding of a heartbeat frame.)"""
    return _ENCODER.encode(obj)


def for_client_version(obj: dict, major: int) -> dict:
    """The compatibility transformation for clients whose URL version major is < 4 (4.4)."""
    if major >= 4:
        return obj
    out = dict(obj)
    out["event_name"] = obj.get("event")
    out["api_data"] = "for major_version < 4"
    data = obj.get("data")
    plain = isinstance(data, (str, int, float)) and not isinstance(data, bool)
    if obj.get("pipe") != "msg" and not plain:
        out["data"] = dumps(data)
    return out


def mysql_escape(text: str) -> str:
    """``mysql_real_escape_string``: backslash before \\ ' " NUL CR LF and Ctrl-Z."""
    return (text.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("\x00", "\\0")
            .replace("\n", "\\n").replace("\r", "\\r").replace("\x1a", "\\Z"))


# --- URL -------------------------------------------------------------------------------------------


URL_PREFIXES = ("/ws/", "//ws/", "/comet-server/ws/", "//comet-server/ws/")

URL_ERRORS = {
    "no_session": (401, "Error code 401(Invalid request, session ID not found)"),
    "no_user": (401, "Error code 401(Invalid request, the user ID can not be found)"),
    "no_dev": (406, "Error code 406(Invalid request, no public key found [1])"),
    "no_version": (418, "Error code 418(Invalid request Not assigned client api version)\n"),
    "origin": (423, "Error code 423(Access denied, Request from unauthorized domain.)"),
}


@dataclass
class UrlParams:
    user_key: str = ""
    user_id: int = 0
    dev_id: int = 0
    major: int = 0
    minor: int = 0
    uuid: str = ""
    error: tuple[int, str] | None = None  # (code, text) when the URL is refused


def _leading_number(text: str, max_digits: int = 18) -> int:
    """Digits up to the end; anything else (``undefined``, ``-3``, ``1x``) gives 0."""
    if not text or not text.isdigit() or not text.isascii():
        return 0
    text = text.lstrip("0") or "0"
    return int(text[:max_digits])


def parse_url(target: str, *, tail: str = " HTTP/1.1\r\n") -> UrlParams:
    """Extract the parameters the way the real server does: by position, not by name (2.1).

    ``tail`` is what follows the path in the request text; a custom uuid shorter than 32
    characters swallows it, exactly as on the real server.
    """
    p = UrlParams()
    text = target
    eq = text.find("=", 0, 2000)
    if eq < 0:
        p.error = URL_ERRORS["no_session"]
        return p
    amps: list[int] = []
    pos = text.find("&")
    while pos >= 0 and len(amps) < 5:
        amps.append(pos)
        pos = text.find("&", pos + 1)

    def until_amp(start: int) -> str:
        end = text.find("&", start)
        return text[start:] if end < 0 else text[start:end]

    p.user_key = until_amp(eq + 1)[:600]
    if len(amps) < 1:
        p.error = URL_ERRORS["no_user"]
        return p
    p.user_id = _leading_number(until_amp(amps[0] + 1 + 5))
    if len(amps) < 2:
        p.error = URL_ERRORS["no_dev"]
        return p
    dev = _leading_number(until_amp(amps[1] + 1 + 6))
    p.dev_id = dev if dev < DEV_INDEX_SIZE else 0
    if len(amps) < 3:
        p.error = URL_ERRORS["no_version"]
        return p
    version = until_amp(amps[2] + 1 + 2)
    major, dot, minor = version.partition(".")
    if not dot or not major.isdigit() or not minor.isdigit() or not major.isascii() or not minor.isascii():
        p.error = URL_ERRORS["no_version"]
        return p
    p.major, p.minor = int(major[:9]), int(minor[:9])
    if len(amps) >= 4 and text.startswith("uuid=", amps[3] + 1):
        start = amps[3] + 1 + 5
        p.uuid = (text + tail)[start:start + 32]
    return p


def url_error_frame(code: int, text: str, now: int, *, old_shape: bool) -> dict:
    frame = {"data": {"error": text, "error_code": code, "info": "Closed due to error. See last message."},
             "event": "error", "message_send_time": now, "pipe": "sys"}
    return for_client_version(frame, 0) if old_shape else frame


# --- names -----------------------------------------------------------------------------------------


def valid_name_chars(name: str) -> bool:
    return NAME_CHARS.issuperset(name)


def check_pipe_name(name: str) -> dict | None:
    """The name check of web_pipe2 / pipe_log / pipe_count: ``None`` or the error data (4.5)."""
    if not valid_name_chars(name):
        return {"error": "The channel name can only contain characters A-Za-z0-9_-", "number_messages": -1}
    if len(name) < 2 or len(name) > MAX_NAME:
        return {"error": "Invalid pipe name length", "number_messages": -1}
    return None


def check_event_name(name: str) -> dict | None:
    if not valid_name_chars(name):
        return {"error": "The event name can only contain characters A-Za-z0-9_-"}
    if len(name) > MAX_NAME:
        return {"error": "Invalid event name length"}
    return None


# --- commands --------------------------------------------------------------------------------------


@dataclass
class Command:
    name: str  # subscription, web_pipe2, pipe_log, pipe_count, track_pipe_users, user_data,
    #            user_status, statistics, cgi_call, CometQL_call, or "unknown"
    body: str = ""
    args: list[str] = field(default_factory=list)


# prefix order of the real server (3): the first prefix that matches wins
COMMAND_PREFIXES = ("subscription", "user_status", "pipe_count", "statistics", "web_pipe2", "pipe_log",
                    "track_pipe_users", "user_data", "cgi_call", "CometQL_call")


def parse_command(text: str) -> Command:
    """Recognise a frame by prefix; the body starts one character after the command word."""
    for prefix in COMMAND_PREFIXES:
        if text.startswith(prefix):
            # the real server skips one byte after the command word, whatever it is
            return Command(prefix, text[len(prefix) + 1:])
    return Command("unknown", text)


@dataclass
class SubscriptionList:
    names: list[str]
    too_many: bool = False       # more than 32 names: error, connection kept
    fatal_error: str | None = None  # error text sent before the server closes the connection


def parse_subscription(body: str) -> SubscriptionList:
    """Split a subscription body (3.1): any character outside ``[A-Za-z0-9_-]`` separates names;
    a name shorter than 2 characters ends the list; 33+ names are ignored with an error; a body
    over 2176 bytes or a name over 64 characters is an error that closes the connection."""
    if len(body.encode("utf-8", "replace")) > MAX_SUBSCRIPTION_BODY:
        return SubscriptionList([], fatal_error="Too many letters")
    names: list[str] = []
    current: list[str] = []
    too_many = False
    tokens: list[str] = []
    for ch in body:
        if ch in NAME_CHARS:
            current.append(ch)
        else:
            tokens.append("".join(current))
            current = []
    tokens.append("".join(current))
    for token in tokens:
        if len(token) > MAX_NAME:
            return SubscriptionList(names, too_many, fatal_error="Channel name is too long")
        if len(token) < 2:
            break
        if len(names) >= MAX_SUBSCRIPTIONS:
            too_many = True
            break
        names.append(token)
    return SubscriptionList(names, too_many)


@dataclass
class WebPipe2:
    pipe: str
    event: str
    message: str
    anonymous: bool  # the @web_ form
    error: dict | None = None


def parse_web_pipe2(body: str) -> WebPipe2:
    """``<pipe>\\n<event>\\n<auth_type>\\n<message>`` (3.2)."""
    pipe, _, rest = body.partition("\n")
    event, _, rest = rest.partition("\n")
    anonymous = pipe.startswith("@")
    if anonymous:
        pipe = pipe[1:]
    msg = WebPipe2(pipe, event, "", anonymous)
    err = check_pipe_name(pipe)
    if (err is None and not (pipe.startswith("web_") or pipe.startswith("webauth_"))) or (
            anonymous and not pipe.startswith("web_")):
        err = {"error": "[pipe_msg2] Invalid channel name. The channel should begin with web_", "number_messages": -1}
    if err is None:
        err = check_event_name(event)
    if err is None and (len(rest) < 2 or rest[1] != "\n"):
        err = {"error": "Invalid value auth_type", "number_messages": -1}
    msg.error = err
    msg.message = rest[2:] if err is None else ""
    return msg


def split_marker_args(body: str, count: int) -> list[str]:
    """Newline-separated arguments; missing ones are empty strings."""
    parts = body.split("\n")
    parts += [""] * (count - len(parts))
    return parts[:count]


def valid_marker(marker: str) -> bool:
    return 0 < len(marker) <= MAX_NAME and valid_name_chars(marker)


# --- server frames (4.3) ---------------------------------------------------------------------------


def server_info(authorized: bool, key: str, now: int) -> dict:
    return {"authorized": authorized, "data": key if authorized else "", "event": "serverInfo",
            "message_send_time": now, "pipe": "sys", "server": SERVER_NAME}


def sys_error(data: dict, now: int) -> dict:
    return {"data": data, "event": "error", "message_send_time": now, "pipe": "sys"}


def pipe_message(pipe: str, event: str, data: str, now: int, user_id: int | None = None) -> dict:
    frame = {"data": data, "event": event, "message_send_time": now, "pipe": pipe}
    if user_id is not None:
        frame["user_id"] = user_id
    return frame


def pipe_message_text(pipe: str, event: str, data: str, now: int, user_id: int | None = None) -> str:
    """``dumps(pipe_message(...))`` for string ``pipe``/``event``/``data`` and integer ``now``/``user_id``,
    written directly: a call's heartbeat is mostly these frames, and the generic encoder (sorting the
    keys of a new dict each time) cost three times as much.  tests/unit/wire/test_comet_frames.py
    checks that both give the same text."""
    tail = "}" if user_id is None else f',"user_id":{int(user_id)}}}'
    return (f'{{"data":{_encode_string(data)},"event":{_encode_string(event)},"message_send_time":{int(now)},'
            f'"pipe":{_encode_string(pipe)}{tail}')


def web_answer_text(pipe: str, message: str, number: int, now: int) -> str:
    """``dumps(web_answer(...))``, written directly (see :func:`pipe_message_text`)."""
    return (f'{{"data":{{"message":{_encode_string(message)},"number_messages":{int(number)}}},"event":"answer",'
            f'"message_send_time":{int(now)},"pipe":{_encode_string("_answer_to_" + pipe)}}}')


def web_answer(pipe: str, message: str, number: int, now: int) -> dict:
    return {"data": {"message": message, "number_messages": number}, "event": "answer",
            "message_send_time": now, "pipe": "_answer_to_" + pipe}


def personal_message(event: str, data: str) -> dict:
    return {"data": data, "event": event, "pipe": "msg"}


def queued_message(event: str, data: str, queued_at: int) -> dict:
    return {"data": data, "event": event, "fromQueue": True, "message_send_time": queued_at, "pipe": "msg"}


def track_event(pipe: str, event: str, user_id: int, uuid: str, now: int) -> dict:
    return {"data": {"user_id": user_id, "uuid": uuid}, "event": event, "message_send_time": now, "pipe": pipe}


def user_status_event(user_id: int, online: bool) -> dict:
    word = "online" if online else "offline"
    return {"data": word, "event": word, "pipe": f"user_status_{user_id}"}


def history_message(pipe: str, event: str, data: str, stored_at: int, user_id: int) -> dict:
    return {"data": data, "event": event, "fromQueue": True, "message_send_time": stored_at, "pipe": pipe,
            "user_id": user_id}


def pipe_count_answer(count: int, marker: str, now: int, *, array_shape: bool) -> dict:
    data: object = ["user_in_pipe", count] if array_shape else {"user_in_pipe": count}
    return {"data": data, "event": "user_in_pipe", "marker": marker, "message_send_time": now,
            "pipe": "_answer_pipe_count"}


def track_users_answer(entries: list[dict], marker: str, now: int) -> dict:
    return {"_info": "answer for track_pipe_users", "data": entries, "event": "answer", "marker": marker,
            "message_send_time": now, "pipe": "_answer"}


def user_data_answer(user_id: int, data: str, marker: str, now: int) -> dict:
    return {"data": {"user_data": data, "user_id": user_id}, "event": "answer", "marker": marker,
            "message_send_time": now, "pipe": "_answer"}


def user_status_answer(user_id: int, seconds: int, last_online: int, now: int) -> dict:
    return {"data": {"data": seconds, "last_online_time": last_online}, "event": f"user_status_{user_id}",
            "message_send_time": now, "pipe": "_answer_user_status"}



SHORT_FRAME_KEEP = 122


def short_frame_quirk(text: str) -> str:
    """The real server's short-frame writer (reference-observations.md S10, S18).

    Frames under 126 bytes are copied with ``snprintf`` into a 125-byte array after a 2-byte
    header, so at most 122 bytes of the JSON survive; the header still states the full length and
    the missing bytes arrive as NULs.  Only lengths 123-125 are affected.
    """
    n = len(text)
    if n > 125 or (n < 123 and text.isascii()):
        return text   # its UTF-8 length is outside 123-125 too (never shorter than the text)
    data = text.encode("utf-8")
    if not 123 <= len(data) <= 125:
        return text
    kept = data[:SHORT_FRAME_KEEP].decode("utf-8", "ignore")
    return kept + "\x00" * (len(data) - len(kept.encode("utf-8")))


def frame_length(text: str) -> int:
    return len(text.encode("utf-8"))


# --- WebSocket framing of server frames (1.3) ------------------------------------------------------


def encode_server_frame(text: str) -> bytes | None:
    """The bytes of one server frame carrying ``text``, as the real server writes it (1.3).

    Always a single final text frame (``0x81``), unmasked, with a 7-bit length under 126 bytes and
    the 16-bit extended length up to 65535 bytes; the 64-bit form is never used because longer
    payloads are not sent at all: ``None``.  Quirks that change the payload (the NUL padding of
    ``short_frame_truncation``) are already in ``text``; the header states the full length either
    way.  A character UTF-8 cannot encode (a lone surrogate, which only a programming error lets
    through: CometQL and the WebSocket reader hand over valid text) is written as ``?`` rather than
    failing a whole fan-out.
    """
    data = text.encode("utf-8", "replace")
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n <= MAX_FRAME:
        return bytes((0x81, 126, n >> 8, n & 0xFF)) + data
    return None
