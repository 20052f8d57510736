"""An ESL client (FreeSWITCH mod_event_socket, inbound): what the comet server's libesl does.

The comet server keeps one ESL connection per FreeSWITCH node and sends ``api conference xml_list``
on it to answer ``SELECT * FROM conference_members`` (spec video-call-flow.md 4.2, 5.8); the fault
controls use the same client to kick a member the way an operator would
(``api conference <name> kick <id>``).  It runs over the network seam, so it reaches the fake
FreeSWITCH on the in-memory network as well as a real FreeSWITCH on a socket.

Protocol (5.8): the server greets with ``auth/request``; ``auth <password>`` is answered with a
``command/reply`` whose Reply-Text starts with ``+OK`` (or ``-ERR invalid`` and a disconnect notice);
``api <command>`` is answered with ``api/response`` and the output as the body.  Like libesl's
``send_recv``, messages of other content types (events, logs) are skipped while waiting.

Errors: :class:`EslConnectionError` (refused, closed, timed out, wrong password) names the address.
"""

from __future__ import annotations

import trio

from emulator.net.network import Network, quiet_close
from emulator.wire import esl as e

__all__ = ["EslClient", "EslConnectionError"]


class EslConnectionError(ConnectionError):
    """The ESL server could not be reached or used; the message names ``host:port`` and why."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"ESL {address}: {reason}")
        self.address = address
        self.reason = reason


class EslClient:
    """One authenticated ESL connection.  Use :meth:`connect`; one command at a time."""

    def __init__(self, stream: trio.abc.Stream, address: str, timeout: float | None) -> None:
        self._stream = stream
        self._parser = e.MessageParser(max_size=1 << 20)
        self.address = address
        self.timeout = timeout
        self.closed = False
        self._lock = trio.Lock()

    @classmethod
    async def connect(cls, network: Network, host: str, port: int, password: str, *, client: str = "",
                      timeout: float | None = 10.0) -> EslClient:
        address = f"{host}:{port}"
        try:
            with trio.fail_after(timeout) if timeout else trio.CancelScope():
                stream = await network.connect(host, port, client=client)
        except trio.TooSlowError:
            raise EslConnectionError(address, f"no connection within {timeout} s") from None
        except OSError as exc:
            raise EslConnectionError(address, f"connection refused ({exc})") from None
        self = cls(stream, address, timeout)
        try:
            greeting = await self._next("waiting for auth/request")
            if greeting.content_type != "auth/request":
                raise EslConnectionError(address, f"not an event socket (first message {greeting.content_type!r})")
            await self._send(f"auth {password}")
            reply = await self._reply("waiting for the auth reply", ("command/reply",))
            if not reply.headers.get("Reply-Text", "").startswith("+OK"):
                raise EslConnectionError(address, f"authentication refused ({reply.headers.get('Reply-Text', '')})")
        except BaseException:
            await self.close()
            raise
        return self

    async def api(self, command: str) -> str:
        """``api <command>``: the output (the body of the api/response)."""
        async with self._lock:
            await self._send(f"api {command}")
            return (await self._reply(f"waiting for the answer to api {command}", ("api/response",))).body

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await quiet_close(self._stream)

    async def __aenter__(self) -> EslClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ----------------------------------------------------------------------------------
    async def _send(self, line: str) -> None:
        try:
            await self._stream.send_all(e.command(line))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = True
            raise EslConnectionError(self.address, f"connection lost ({exc})") from None

    async def _reply(self, doing: str, types: tuple[str, ...]) -> e.Message:
        while True:
            message = await self._next(doing)
            if message.content_type in types:
                return message
            if message.content_type == "text/disconnect-notice":
                self.closed = True
                raise EslConnectionError(self.address, f"disconnected by the server while {doing}")

    async def _next(self, doing: str) -> e.Message:
        try:
            with trio.fail_after(self.timeout) if self.timeout else trio.CancelScope():
                while True:
                    message = self._parser.next_message()
                    if message is not None:
                        return message
                    data = await self._stream.receive_some(65536)
                    if not data:
                        self.closed = True
                        raise EslConnectionError(self.address, f"connection closed while {doing}")
                    self._parser.feed(data)
        except trio.TooSlowError:
            raise EslConnectionError(self.address, f"no answer within {self.timeout} s while {doing}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = True
            raise EslConnectionError(self.address, f"connection lost while {doing} ({exc})") from None
        except e.EslError as exc:
            self.closed = True
            raise EslConnectionError(self.address, f"unreadable answer while {doing}: {exc}") from None
