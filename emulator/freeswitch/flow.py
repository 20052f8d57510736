"""A SIP flow: one transport relationship with one peer, as the SIP core sees it.

Transports (``sip_transport.py``) create a :class:`Flow` per WebSocket connection, per TCP
connection and per UDP peer address, feed received messages to :meth:`SipCore.receive`, and
report closes with :meth:`SipCore.flow_closed`.  The core answers through :meth:`Flow.send`, a
non-blocking enqueue the transport drains.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.net.network import Endpoint

_ids = itertools.count(1)


def restart_ids() -> None:
    """Number flows from 1 again.  A virtual run does this at start, so that the flow ids in its
    journal do not depend on what ran before it in the same process."""
    global _ids
    _ids = itertools.count(1)


@dataclass(eq=False)
class Flow:
    transport: str                  # "WSS", "WS", "TCP", "UDP" (as in a Via header)
    peer: Endpoint
    local: Endpoint
    send_bytes: Callable[[bytes], None]
    close: Callable[[], None] = lambda: None
    client: str = ""                # the bench client name, for per-client link conditions
    id: int = field(default_factory=lambda: next(_ids))
    alive: bool = True

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"

    def send(self, data: bytes) -> None:
        if self.alive:
            self.send_bytes(data)
