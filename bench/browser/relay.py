"""Per-actor relays: a real browser's connections pass the network seam under the actor's name.

A virtual actor opens its connections through ``network.connect(host, port, client=<actor>)``, so
link conditions and link faults (latency, loss, partition, reset, half-open; emulator/net) apply
to that actor alone.  A real browser opens its own sockets.  To give it the same links, each
browser actor gets two small TCP relays on 127.0.0.1 -- one for the comet WebSocket, one for SIP
over WSS -- and the page's WebSockets are pointed at them (the probe's WebSocket redirect,
bench/browser/probe.js).  Each accepted connection is relayed byte for byte to the emulator
through ``network.connect(..., client=<actor>)``: TLS passes through untouched (the browser still
talks TLS with the emulator's certificate), a FIN is passed on as a FIN, and a reset of either
leg resets the other (the browser sees a 1006 close, as on a real network).

The relay's own listener is a plain OS listener (``trio.serve_listeners``), not the emulator's
``Network.listen_and_serve``: Chromium reaches it from outside the process whatever the network
seam is, and the seam's link conditions belong on the upstream leg only (applied once, under the
actor's name); a seam listener would apply them a second time as the server's side.

The relays run in the scenario's actor nursery and stop with it.  Cost: one extra loopback hop
per byte in this process (small: signalling only; there is no media over these sockets).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import trio

from emulator.net.network import quiet_close

__all__ = ["Relay"]


def _abort(stream: trio.abc.Stream) -> None:
    """Close with RST when the stream is a socket (SO_LINGER 0); else just close."""
    sock = getattr(stream, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


@dataclass
class Relay:
    network: object
    host: str
    port: int
    client: str
    name: str = ""
    local_port: int = 0
    connections: int = 0
    failures: list[str] = field(default_factory=list)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.local_port = listeners[0].socket.getsockname()[1]
        task_status.started(self.local_port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, downstream: trio.abc.Stream) -> None:
        self.connections += 1
        try:
            upstream = await self.network.connect(self.host, self.port, client=self.client)  # type: ignore[attr-defined]
        except (OSError, trio.BrokenResourceError) as exc:
            self.failures.append(f"connect {self.host}:{self.port}: {exc!r}")
            _abort(downstream)
            await quiet_close(downstream)
            return
        reset = False

        async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
            nonlocal reset
            try:
                while True:
                    data = await src.receive_some(65536)
                    if not data:
                        break
                    await dst.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                reset = True
                nursery.cancel_scope.cancel()
                return
            try:
                await dst.send_eof()  # type: ignore[attr-defined]
            except (AttributeError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                nursery.cancel_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, downstream, upstream)
                nursery.start_soon(pump, upstream, downstream)
        finally:
            if reset:
                _abort(downstream)
                _abort(upstream)
            await quiet_close(upstream)
            await quiet_close(downstream)
