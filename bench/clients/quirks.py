"""Client quirks: the real browser client's known behaviours, named and switchable one by one.

The emulator reproduces the servers' quirks (``emulator/profiles.py``); the bench's virtual clients
reproduce the *client's*: what cometVideoApi.js 1.0 and JsSIP 2.0.6 actually do in a browser,
including the behaviours that hurt an application, because latency and recovery numbers measured
with a better-behaved client would be wrong.  Every quirk is on by default and has a name, a
one-line description and a reference into ``docs/client-quirks.md`` (the project's own account,
which cites the spec sections it rests on).  A test exercises each one in both states
(``tests/integration/test_client_quirks.py``).

::

    quirks = ClientQuirks()                                    # all on: the real client
    quirks = ClientQuirks().with_quirks(stale_call_after_remote_end=False)
    quirks.on(ClientQuirk.NO_IN_EVENT)

Names are members of the :class:`ClientQuirk` enum (their values are the names ``with_quirks`` and
scenario files use), so a misspelt one in the code is an AttributeError mypy reports; an enum
member without a registration fails this module's import.  ``python -m bench.clients.quirks``
prints the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["ClientQuirk", "ClientQuirkInfo", "CLIENT_QUIRKS", "ClientQuirks", "client_quirks_table"]


class ClientQuirk(StrEnum):
    """The name of every client quirk."""

    STALE_CALL_AFTER_REMOTE_END = "stale_call_after_remote_end"
    REJOIN_ON_REREGISTER = "rejoin_on_reregister"
    TOGGLE_MUTE_WRONG_CALLBACK = "toggle_mute_wrong_callback"
    NO_IN_EVENT = "no_in_event"
    UNCLAMPED_RECONNECT_BACKOFF = "unclamped_reconnect_backoff"
    OLD_UAS_NEVER_STOPPED = "old_uas_never_stopped"
    TOGGLE_HOLD_NEVER_RESUMES = "toggle_hold_never_resumes"
    SECOND_OUT_AFTER_AUTO_END = "second_out_after_auto_end"


@dataclass(frozen=True)
class ClientQuirkInfo:
    name: ClientQuirk
    description: str
    spec: str


CLIENT_QUIRKS: dict[ClientQuirk, ClientQuirkInfo] = {}


def _register(name: ClientQuirk, description: str, spec: str) -> None:
    CLIENT_QUIRKS[name] = ClientQuirkInfo(name, description, spec)


_register(
    ClientQuirk.STALE_CALL_AFTER_REMOTE_END,
    "a call ended by the server or the network (SIP BYE, ICE failure) runs onCallEnd but never hangup(): "
    "the page keeps a stale active call, refuses new calls and ignores a re-invite into the same room; "
    "off: the end also hangs up (out is sent, the call is cleared)",
    "docs/client-quirks.md#stale_call_after_remote_end",
)
_register(
    ClientQuirk.REJOIN_ON_REREGISTER,
    "every `registered` after a SIP transport reconnect runs _sipCall again: a second getUserMedia and a "
    "second INVITE into the same conference (a duplicate member); off: only the first registration dials",
    "docs/client-quirks.md#rejoin_on_reregister",
)
_register(
    ClientQuirk.TOGGLE_MUTE_WRONG_CALLBACK,
    "a peer's toggleMute checks opt.onToggleMute but calls opt.toggleMute (a TypeError when only "
    "onToggleMute is defined); off: onToggleMute is called",
    "docs/client-quirks.md#toggle_mute_wrong_callback",
)
_register(
    ClientQuirk.NO_IN_EVENT,
    "onIn is never called; off: onIn fires when a peer's media starts (its mediaStart self) in the active call",
    "docs/client-quirks.md#no_in_event",
)
_register(
    ClientQuirk.UNCLAMPED_RECONNECT_BACKOFF,
    "the SIP transport reconnects after a random integer in [1, 2^n] seconds with no clamp "
    "(cometVideoApi passes undefined limits); off: JsSIP's own defaults, clamped to [2, 30] seconds",
    "docs/client-quirks.md#unclamped_reconnect_backoff",
)
_register(
    ClientQuirk.OLD_UAS_NEVER_STOPPED,
    "every acceptCall creates a new JsSIP UA and none is ever stopped: old UAs stay connected, keep "
    "re-registering and act on the current call; off: hangup() and a new acceptCall stop the previous UA",
    "docs/client-quirks.md#old_uas_never_stopped",
)
_register(
    ClientQuirk.TOGGLE_HOLD_NEVER_RESUMES,
    "toggleHold() tests JsSIP's isOnHold(), an object and so always true, and calls hold(): the first call "
    "holds, later ones do nothing, the call is never resumed; off: it toggles hold and resume",
    "docs/client-quirks.md#toggle_hold_never_resumes",
)
_register(
    ClientQuirk.SECOND_OUT_AFTER_AUTO_END,
    "hangup() after an automatic end (registration failure, SIP error, Timer B) finds the old accepted "
    "call again and sends a second out{hangup}; off: an ended call is not hung up twice",
    "docs/client-quirks.md#second_out_after_auto_end",
)


_unregistered = set(ClientQuirk) - CLIENT_QUIRKS.keys()
if _unregistered:  # pragma: no cover - a quirk added to the enum without its description
    raise ImportError(f"client quirks without a registration: {', '.join(sorted(_unregistered))}")


@dataclass(frozen=True)
class ClientQuirks:
    """The states of every client quirk (all on unless switched)."""

    states: dict[ClientQuirk, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.states:
            if name not in CLIENT_QUIRKS:
                raise KeyError(f"unknown client quirk {name!r}; known: {', '.join(sorted(CLIENT_QUIRKS))}")

    def on(self, name: ClientQuirk) -> bool:
        if name not in CLIENT_QUIRKS:
            raise KeyError(f"unknown client quirk {name!r}")
        return self.states.get(name, True)

    def with_quirks(self, **states: bool) -> ClientQuirks:
        """A copy with some quirks switched, by name (``no_in_event=False``)."""
        for name in states:
            if name not in CLIENT_QUIRKS:
                raise KeyError(f"unknown client quirk {name!r}; known: {', '.join(sorted(CLIENT_QUIRKS))}")
        return ClientQuirks({**self.states, **{ClientQuirk(n): v for n, v in states.items()}})

    @classmethod
    def fixed(cls) -> ClientQuirks:
        """Every quirk off: a client without the known bugs (for comparison runs)."""
        return cls({name: False for name in CLIENT_QUIRKS})


def client_quirks_table() -> str:
    width = max(len(n) for n in CLIENT_QUIRKS)
    lines = [f"{'client quirk'.ljust(width)}  description (reference)"]
    for name, quirk in sorted(CLIENT_QUIRKS.items()):
        lines.append(f"{name.ljust(width)}  {quirk.description} ({quirk.spec})")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(client_quirks_table())
