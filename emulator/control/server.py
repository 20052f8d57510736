"""The control plane's listener: the quart-trio app of :mod:`emulator.control.app` served by
hypercorn's HTTP/1.1 machinery on streams from the project's network seam
(``network.listen_and_serve``), as the directory endpoint is (:mod:`emulator.comet.directory`): it runs on
OS sockets and on the virtual network alike, inside the caller's nursery, and stops with it.

The same fix as the directory's applies: quart-trio cancels its per-request nursery as soon as the
response is handed over, and under hypercorn 0.18 that cancellation can land inside ``send``, so
every ``send`` is shielded (:func:`emulator.comet.directory.shielded_send`).  Keep-alive is on (the
dashboard polls), with hypercorn's keep-alive timeout.

``ControlServer`` belongs to the layer above the stack: ``cometbench serve`` starts it next to
``open_stack`` (``emulator/stack.py`` knows nothing of it), bound to ``control_host`` (127.0.0.1
unless configured) on ``[ports] control`` (8088), with ``control_token`` or a random token.
"""

from __future__ import annotations

import secrets
import socket
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app

from emulator.comet.directory import shielded_send
from emulator.control.app import Control, create_app
from emulator.net.network import Endpoint, Listener, peer_of

if TYPE_CHECKING:  # pragma: no cover
    from emulator.stack import Stack

__all__ = ["ControlServer", "new_token"]


def new_token() -> str:
    """A random token (URL-safe, 32 characters) for a control plane without ``control_token``."""
    return secrets.token_urlsafe(24)


class _PeerSocket:
    family = socket.AF_INET

    def __init__(self, peer: Endpoint, local: Endpoint) -> None:
        self._peer, self._local = peer, local

    def getpeername(self) -> tuple[str, int]:
        return (self._peer.host, self._peer.port)

    def getsockname(self) -> tuple[str, int]:
        return (self._local.host, self._local.port)


class _Stream(trio.abc.HalfCloseableStream):
    """An accepted stream as hypercorn's TCPServer wants it (``.socket``; no ``do_handshake``)."""

    def __init__(self, inner: trio.abc.Stream, local: Endpoint) -> None:
        self._inner = inner
        self.socket = getattr(inner, "socket", None) or _PeerSocket(peer_of(inner), local)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self._inner, "send_eof", None)
        if send_eof is None:
            raise AttributeError("send_eof")
        await send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


class ControlServer:
    """The control plane on one stack (see the module docstring)."""

    def __init__(self, stack: Stack, token: str | None = None) -> None:
        self.stack = stack
        self.token = token or new_token()
        self.control = Control(stack, self.token)
        self.app = create_app(self.control)
        self.config = HypercornConfig()
        self.config.errorlog = None          # errors are answered as JSON; nothing on stderr
        self.config.accesslog = None
        self._asgi: Any = wrap_app(shielded_send(self.app), self.config.wsgi_max_body_size, "asgi")
        self._context = WorkerContext(None)
        self.listener: Listener | None = None

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.endpoint.port

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Listen and serve until cancelled; ``await nursery.start(server.serve, host, port)`` is the port."""
        try:
            await self.stack.network.listen_and_serve("control", host, port, self.handle, on_listen=self._listening,
                                                      task_status=task_status)
        finally:
            self.control.close()

    def _listening(self, listener: Listener) -> None:
        self.listener = listener

    async def handle(self, stream: trio.abc.Stream) -> None:
        try:
            assert self.listener is not None
            server = TCPServer(self._asgi, self.config, self._context, {},
                               _Stream(stream, self.listener.endpoint))  # type: ignore[arg-type]
            await server.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
