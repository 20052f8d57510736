"""A small FreeSWITCH event-socket client (inbound mode), as an operator's tool or the comet server uses it.

Scenarios drive FreeSWITCH the way people do in production: an operator (or an app with access to
ESL) connects to port 8021, authenticates and sends ``api conference <name> kick <id>``,
``... mute <id>`` or ``conference xml_list``.  Nothing in the comet server or the browser client
does this (video-call-flow.md section 0, fact 2; 3.2): it is the only way to change a member's
FreeSWITCH flags, and the bench's "ESL kick" fault is exactly that.

:class:`EslMessageParser` is the sans-IO half: feed the server's bytes, take ``(headers, body)``
messages (header blocks ended by a blank line, a ``Content-Length`` body).  :class:`EslClient` is
the trio half over a stream from the :class:`~emulator.net.network.Network` seam, so it works on the
in-memory network under a MockClock as well as on loopback sockets::

    async with await EslClient.connect(network, "127.0.0.1", 8021, password="ClueCon") as esl:
        reply = await esl.api("conference 15*101-FSdefaultDomain kick 7")
"""

from __future__ import annotations

import trio

from emulator.config import DEFAULT_ESL_PASSWORD
from emulator.net.network import Network

__all__ = ["EslMessageParser", "EslClient", "EslError"]

MAX_MESSAGE = 4 * 1024 * 1024


class EslError(Exception):
    """The server refused us (wrong password), closed the connection, or sent something unparseable."""


class EslMessageParser:
    """Server -> client messages: ``(headers, body)``; header values are kept as sent."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: dict[str, str] | None = None
        self._need = 0

    def feed(self, data: bytes | bytearray) -> None:
        self._buf += data
        if len(self._buf) > MAX_MESSAGE:
            raise EslError(f"a server message over {MAX_MESSAGE} bytes")

    def next_message(self) -> tuple[dict[str, str], str] | None:
        if self._head is None:
            end = self._buf.find(b"\n\n")
            if end < 0:
                return None
            head = bytes(self._buf[:end]).decode("utf-8", "replace")
            del self._buf[:end + 2]
            headers: dict[str, str] = {}
            for line in head.split("\n"):
                name, sep, value = line.partition(":")
                if not sep:
                    raise EslError(f"not an event-socket header line: {line!r}")
                headers[name.strip()] = value.strip()
            try:
                self._need = int(headers.get("Content-Length", "0"))
            except ValueError:
                raise EslError(f"bad Content-Length {headers.get('Content-Length')!r}") from None
            self._head = headers
        if len(self._buf) < self._need:
            return None
        body = bytes(self._buf[:self._need]).decode("utf-8", "replace")
        del self._buf[:self._need]
        headers, self._head, self._need = self._head, None, 0
        return headers, body


class EslClient:
    """One authenticated ESL connection; ``api`` commands one at a time."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._parser = EslMessageParser()
        self._lock = trio.Lock()

    @classmethod
    async def connect(cls, network: Network, host: str, port: int, *, password: str = DEFAULT_ESL_PASSWORD,
                      client: str = "ops", timeout: float = 10.0) -> EslClient:
        """Connect and authenticate; :class:`EslError` if the password is refused."""
        with trio.fail_after(timeout):
            stream = await network.connect(host, port, client=client)
            esl = cls(stream)
            try:
                headers, _ = await esl._read()
                if headers.get("Content-Type") != "auth/request":
                    raise EslError(f"expected auth/request, got {headers}")
                await stream.send_all(f"auth {password}\n\n".encode())
                headers, _ = await esl._read()
                if not headers.get("Reply-Text", "").startswith("+OK"):
                    raise EslError(f"ESL refused the password: {headers.get('Reply-Text', headers)}")
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return esl

    async def _read(self) -> tuple[dict[str, str], str]:
        while True:
            message = self._parser.next_message()
            if message is not None:
                return message
            data = await self._stream.receive_some(65536)
            if not data:
                raise EslError("the event socket closed the connection")
            self._parser.feed(data)

    async def api(self, command: str, *, timeout: float = 10.0) -> str:
        """``api <command>``: the body of the ``api/response``."""
        if "\n" in command:
            raise ValueError("an ESL command is one line")
        async with self._lock:
            with trio.fail_after(timeout):
                await self._stream.send_all(f"api {command}\n\n".encode())
                while True:
                    headers, body = await self._read()
                    if headers.get("Content-Type") == "api/response":
                        return body
                    if headers.get("Content-Type") == "text/disconnect-notice":
                        raise EslError("the event socket disconnected us")

    async def aclose(self) -> None:
        """``exit``, then read until the server closes (its ``+OK bye`` and disconnect notice), as
        fs_cli does: a client that vanishes mid-reply makes the server's write fail."""
        try:
            with trio.move_on_after(1):
                await self._stream.send_all(b"exit\n\n")
                while await self._stream.receive_some(65536):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.aclose_forcefully(self._stream)

    async def __aenter__(self) -> EslClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
