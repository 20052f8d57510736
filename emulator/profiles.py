"""Fidelity profiles: named quirks of the real servers, switchable one by one.

The default profile, ``cppcomet-4.09``, reproduces what the real CppComet 4.09 server (and, later,
FreeSWITCH 1.6) does on the wire, including the behaviours that hurt applications, because an app
must survive what production does.  ``lenient`` turns the harmful quirks off.

Every quirk has a name, a one-line description and a reference into ``../shared/spec``.  Code asks
``profile.on("quirk_name")``; tests exercise every quirk in both states.  ``cometbench quirks``
prints the table below.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Quirk:
    name: str
    description: str
    spec: str
    harmful: bool  # True: the lenient profile turns it off


QUIRKS: dict[str, Quirk] = {}


def register_quirk(name: str, description: str, spec: str, *, harmful: bool = True) -> None:
    QUIRKS[name] = Quirk(name, description, spec, harmful)


# --- comet WebSocket protocol -------------------------------------------------------------------
register_quirk(
    "queue_ten_per_login",
    "only the 10 oldest queued personal messages are delivered at login; the rest are deleted",
    "comet-ws-protocol.md 5.4; reference-observations.md S9",
)
register_quirk(
    "web_pipe2_mysql_escape",
    "web_pipe2 data is MySQL-escaped before delivery (quotes arrive as \\\")",
    "comet-ws-protocol.md 3.2; reference-observations.md S11",
)
register_quirk(
    "short_frame_truncation",
    "a frame whose JSON is 123-125 bytes keeps only its first 122 bytes, NUL-padded (unparseable)",
    "reference-observations.md S10, S18 (short_ws_message writes at most 122 chars)",
)
register_quirk(
    "web_answer_counts_long_frames",
    "web_pipe2's number_messages counts only deliveries of frames of 126 bytes or more",
    "reference-observations.md S11",
)
register_quirk(
    "pipe_count_array",
    'pipe_count answers data ["user_in_pipe", N] instead of the documented {"user_in_pipe": N}',
    "comet-ws-protocol.md 3.4",
    harmful=False,
)
register_quirk(
    "private_subscription_bug",
    "an anonymous subscription list stops at the first private_* name",
    "comet-ws-protocol.md 3.1",
)
register_quirk(
    "url_errors_v3_shape",
    "URL errors 401/406 are sent in the v<4 shape (data as a JSON string, event_name, api_data)",
    "comet-ws-protocol.md 2.2, 4.4",
    harmful=False,
)
register_quirk(
    "user_status_online_epoch",
    "user_status for an online user answers 'now - 0', i.e. about the current unix time",
    "comet-ws-protocol.md 3.8",
)


@dataclass(frozen=True)
class Profile:
    """A named set of quirk states."""

    name: str
    quirks: dict[str, bool] = field(default_factory=dict)

    def on(self, quirk: str) -> bool:
        try:
            return self.quirks[quirk]
        except KeyError:
            raise KeyError(f"unknown quirk {quirk!r}") from None

    def with_quirks(self, **states: bool) -> "Profile":
        """A copy with some quirks switched (for tests and ``--quirk name=on|off``)."""
        for name in states:
            if name not in QUIRKS:
                raise KeyError(f"unknown quirk {name!r}")
        return Profile(self.name + "+custom", {**self.quirks, **states})


PROFILE_NAMES = ("cppcomet-4.09", "lenient")
DEFAULT_PROFILE = "cppcomet-4.09"


def get_profile(name: str) -> Profile:
    """Build a profile from the quirks registered so far (services register theirs on import)."""
    if name == "cppcomet-4.09":
        return Profile(name, {q: True for q in QUIRKS})
    if name == "lenient":
        return Profile(name, {q: not v.harmful for q, v in QUIRKS.items()})
    raise KeyError(f"unknown profile {name!r}; known: {', '.join(PROFILE_NAMES)}")


def quirks_table() -> str:
    """The text ``cometbench quirks`` prints."""
    faithful, lenient = get_profile("cppcomet-4.09"), get_profile("lenient")
    width = max(len(n) for n in QUIRKS)
    lines = [f"{'quirk'.ljust(width)}  4.09  lenient  description (spec)"]
    for name, q in sorted(QUIRKS.items()):
        lines.append(
            f"{name.ljust(width)}  {'on ' if faithful.on(name) else 'off'}   "
            f"{'on ' if lenient.on(name) else 'off'}      {q.description} ({q.spec})"
        )
    return "\n".join(lines)
