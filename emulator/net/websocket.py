"""What the WebSocket listeners share about trio-websocket / wsproto connections.

wsproto's ``FrameProtocol`` keeps its frame parser as a generator (``_parse_more``) whose frame
refers back to the protocol object: a reference cycle for every WebSocket connection, which only
the cyclic garbage collector frees (and ``gc.collect()`` does not even count it as unreachable).
:func:`release_frame_parser` closes that generator once a connection is over, which clears the
generator's frame and lets reference counting free the connection's objects at once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["release_frame_parser"]


def release_frame_parser(ws: Any) -> None:
    """Break wsproto's per-connection cycle; call when the connection is finished (idempotent).

    ``ws`` is a trio-websocket ``WebSocketConnection`` whose ``_wsproto`` is either a
    ``wsproto.WSConnection`` (handshake included; its ``connection`` exists after the upgrade)
    or a bare ``wsproto.connection.Connection``.  Missing attributes (another wsproto version, a
    connection that never upgraded) make this a no-op.
    """
    connection = getattr(ws, "_wsproto", None)
    connection = getattr(connection, "connection", connection)
    parser = getattr(getattr(connection, "_proto", None), "_parse_more", None)
    close = getattr(parser, "close", None)
    if close is not None:
        close()
