"""Read deadlines for one connection: the timeout rules every listener shares, in one place.

A hostile or careless client can hold a connection (and a file descriptor) in three ways, and a
listener guards against each with one clock:

* **start** (handshake, authentication, first message): an absolute deadline counted from accept,
  in force until the transport calls :meth:`ReadDeadline.settle` (the WebSocket upgrade finished,
  the ESL ``auth`` was accepted, the first SIP message arrived).  A slowloris that trickles a byte
  every few seconds does not move it.
* **head**: a message whose first byte has arrived must be complete within ``head`` seconds (a
  request that never completes).  The transport reports progress with :meth:`received`
  (``pending=True`` while a message is incomplete).
* **idle**: a connection that has been quiet for ``idle`` seconds.  Received bytes count, and so
  do sent ones when the transport calls :meth:`sent` (sofia-sip measures its idle time over both
  directions).

``None`` or ``0`` switches a clock off.  All three share one :class:`trio.CancelScope` (the
transport wraps its read loop in it), whose deadline is the earliest of the armed clocks, so the
cost on the hot path is one deadline assignment per received chunk.  When the scope fires,
:attr:`ReadDeadline.expired` names the clock that did it ("start", "head" or "idle"), for the one
journal record the transport writes.  Time is trio's, so a ``MockClock`` drives it in tests.

Values per listener, and where they differ from the real servers: ``docs/decisions.md``
("Timeouts").
"""

from __future__ import annotations

import math

import trio

__all__ = ["ReadDeadline", "HANDSHAKE_TIMEOUT", "SIP_TCP_HEAD_TIMEOUT", "SIP_TCP_IDLE_TIMEOUT", "ESL_AUTH_TIMEOUT",
           "NEVER"]

# The listeners' default limits (seconds), each defined here once: ``emulator/config.py`` and the
# servers' constructors take their defaults from these; docs/decisions.md ("Timeouts") says where
# each follows the real servers.
#: A WebSocket upgrade, a CometQL login, an HTTP request head (and the SIP-over-WS upgrade with TLS).
HANDSHAKE_TIMEOUT = 10.0
#: SIP over TCP: a message must be complete this long after its first byte, and a new connection
#: must deliver its first message this soon.
SIP_TCP_HEAD_TIMEOUT = 10.0
#: SIP over TCP: a connection quiet both ways this long is closed (nta's TPTAG_IDLE, 30 minutes).
SIP_TCP_IDLE_TIMEOUT = 1800.0
#: ESL: ``auth`` must succeed this soon after the connect (mod_event_socket reads with a 25 s limit).
ESL_AUTH_TIMEOUT = 25.0
#: A limit that is switched off (the idle limits of SIP over WS and ESL, as FreeSWITCH has none).
NEVER = 0.0


_KEEP = object()


def _on(value: float | None) -> float | None:
    return value if value else None


class ReadDeadline:
    """See the module docstring.  ``with deadline.scope:`` around the read loop."""

    __slots__ = ("_head_at", "_last", "_start_at", "head", "idle", "scope", "start")

    def __init__(self, *, start: float | None = None, head: float | None = None,
                 idle: float | None = None) -> None:
        now = trio.current_time()
        self.start, self.head, self.idle = _on(start), _on(head), _on(idle)
        self._start_at = now + self.start if self.start is not None else math.inf
        self._head_at = math.inf
        self._last = now
        self.scope = trio.CancelScope(deadline=self._deadline())

    def _deadline(self) -> float:
        idle_at = self._last + self.idle if self.idle is not None else math.inf
        return min(self._start_at, self._head_at, idle_at)

    def received(self, *, pending: bool) -> None:
        """Bytes arrived; ``pending``: a message is begun and not complete yet."""
        now = trio.current_time()
        self._last = now
        if not pending:
            self._head_at = math.inf
        elif self._head_at == math.inf and self.head is not None:
            self._head_at = now + self.head
        self.scope.deadline = self._deadline()

    def sent(self) -> None:
        """Bytes went out (counts as activity for the idle clock)."""
        if self.idle is not None:
            self._last = trio.current_time()
            self.scope.deadline = self._deadline()

    def settle(self, *, head: float | object | None = _KEEP, idle: float | object | None = _KEEP) -> None:
        """The start phase is over: drop the start deadline.  ``head``/``idle``, when given, replace
        those clocks for the rest of the connection (``None``/``0``: off)."""
        self._start_at = math.inf
        if head is not _KEEP:
            self.head = _on(head)  # type: ignore[arg-type]
            if self.head is None:
                self._head_at = math.inf
        if idle is not _KEEP:
            self.idle = _on(idle)  # type: ignore[arg-type]
        self.scope.deadline = self._deadline()

    @property
    def expired(self) -> str | None:
        """Which clock closed the connection ("start", "head", "idle"), or None if none did."""
        if not self.scope.cancelled_caught:
            return None
        at = self.scope.deadline
        if at == self._start_at:
            return "start"
        if at == self._head_at:
            return "head"
        return "idle"
