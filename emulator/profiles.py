"""Fidelity profiles: named quirks of the real servers, switchable one by one.

The default profile, ``cppcomet-4.09``, reproduces what the real CppComet 4.09 server (and, later,
FreeSWITCH 1.6) does on the wire, including the behaviours that hurt applications, because an app
must survive what production does.  ``lenient`` turns the harmful quirks off.

Every quirk has a name, a one-line description and the page of the project's docs that describes it
(``docs/quirks/<area>.md#<name>``: comet, cometql, freeswitch).  Code asks ``profile.on("quirk_name")``;
tests exercise every quirk in both states.  ``cometbench quirks`` prints the table below.

A profile with quirks switched on top of it (``--quirk NAME=on|off``, ``[quirks]`` in the config) is
named ``<profile>+custom``, so the ready line and the journal say that it is not a stock profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Quirk:
    name: str
    description: str
    spec: str      # where the project's docs describe it: docs/quirks/<area>.md#<name>
    harmful: bool  # True: the lenient profile turns it off


QUIRKS: dict[str, Quirk] = {}


def register_quirk(name: str, description: str, area: str, *, harmful: bool = True) -> None:
    """Register a quirk described under the heading ``name`` of ``docs/quirks/<area>.md``."""
    QUIRKS[name] = Quirk(name, description, f"docs/quirks/{area}.md#{name}", harmful)


# --- comet WebSocket protocol -------------------------------------------------------------------
register_quirk(
    "queue_ten_per_login",
    "only the 10 oldest queued personal messages are delivered at login; the rest are deleted",
    "comet",
)
register_quirk(
    "web_pipe2_mysql_escape",
    "web_pipe2 data is MySQL-escaped before delivery (quotes arrive as \\\")",
    "comet",
)
register_quirk(
    "short_frame_truncation",
    "a frame whose JSON is 123-125 bytes keeps only its first 122 bytes, NUL-padded (unparseable)",
    "comet",
)
register_quirk(
    "web_answer_counts_long_frames",
    "web_pipe2's number_messages counts only deliveries of frames of 126 bytes or more",
    "comet",
)
register_quirk(
    "pipe_count_array",
    'pipe_count answers data ["user_in_pipe", N] instead of the documented {"user_in_pipe": N}',
    "comet",
    harmful=False,
)
register_quirk(
    "private_subscription_bug",
    "an anonymous subscription list stops at the first private_* name",
    "comet",
)
register_quirk(
    "url_errors_v3_shape",
    "URL errors 401/406/418 (found before the version is parsed) are sent in the v<4 shape "
    "(data as a JSON string, event_name, api_data)",
    "comet",
    harmful=False,
)
register_quirk(
    "user_status_online_epoch",
    "user_status for an online user answers 'now - 0', i.e. about the current unix time",
    "comet",
)


# --- CometQL (MySQL protocol) -------------------------------------------------------------------
register_quirk(
    "cometql_version_string",
    "the greeting's server version 'CppComet community 4.09 ...' does not start with a number "
    "(pymysql cannot parse it)",
    "cometql",
)
register_quirk(
    "cometql_ssl_advertised",
    "the greeting advertises CLIENT_SSL and CLIENT_COMPRESS without supporting them "
    "(TLS-preferring clients fail)",
    "cometql",
)
register_quirk(
    "cometql_no_auth_switch",
    "a client that starts with another auth plugin gets 'authDataLen!=20' instead of an AuthSwitchRequest",
    "cometql",
)
register_quirk(
    "cometql_lenenc_fd_bug",
    "integers 65536..16777215 are length-encoded as 0xFD + 4 bytes (clients then read 2 warnings)",
    "cometql",
)
register_quirk(
    "cometql_ok_status_no_backslash_escapes",
    "result OK packets carry status 0x0200 (NO_BACKSLASH_ESCAPES) and a NUL info byte",
    "cometql",
    harmful=False,
)
register_quirk(
    "cometql_describe_bad_sequence",
    "DESCRIBE of a table other than users_auth answers with a wrong sequence id (the client drops the link)",
    "cometql",
)
register_quirk(
    "cometql_users_messages_delete_same_second",
    "DELETE FROM users_messages keeps messages queued in the current second",
    "cometql",
)

# --- FreeSWITCH 1.6 (the fake bridge) --------------------------------------------------------------
register_quirk(
    "fs_reply_without_plus",
    "conference API replies have FreeSWITCH 1.6's form without '+' ('OK mute 7', 'Non-Existant ID 9', "
    "hup prints nothing); off: the 1.8+ '+OK'/'-ERR' forms",
    "freeswitch",
    harmful=False,
)
register_quirk(
    "fs_ghost_until_media_timeout",
    "a member whose browser vanished without a BYE stays in the conference (and in conference_members) "
    "until the RTP timeout (rtp-timeout-sec 300), then leaves with MEDIA_TIMEOUT; off: it leaves at once",
    "freeswitch",
)
register_quirk(
    "comet_esl_link_not_restored",
    "after a FreeSWITCH restart the comet server's ESL link stays dead, so conference_members is empty "
    "until the comet server restarts; off: the link is made again",
    "freeswitch",
)

# Parser switches of emulator/wire/cometql.py.  Each quirk is on when its switch is off (the
# faithful parse); the lenient profile turns off those whose switch is in the parser's LENIENT
# preset.  ``split_multi_statements`` is an alternative to ``reject_multi_statements``, not a quirk.
from emulator.wire.cometql import SWITCHES as _SQL_SWITCHES  # noqa: E402  (wire is the bottom layer)

SQL_QUIRK_SWITCHES = {
    "sql_raw_values": "unescape_strings",
    "sql_backslash_lexing": "mysql_string_lexing",
    "sql_quote_rewrite_stops_early": "full_quote_rewrite",
    "sql_nul_ends_query": "keep_nul",
    "sql_length_limits": "skip_length_check",
    "sql_unknown_chars_skipped": "reject_unknown_chars",
    "sql_minus_ignored": "signed_integers",
    "sql_comments_rejected": "strip_comments",
    "sql_two_word_keywords_one_space": "flexible_keywords",
    "sql_backticks_names_only": "lenient_backticks",
    "sql_names_case_sensitive": "fold_name_case",
    "sql_set_strict_forms": "lenient_set",
    "sql_transactions_rejected": "accept_transactions",
    "sql_show_variables_needs_pattern": "lenient_show_variables",
    "sql_one_select_variable": "lenient_select_variables",
    "sql_desc_rejected": "accept_desc",
    "sql_use_rejected": "accept_use",
    "sql_multi_statements_merged": "reject_multi_statements",
    "sql_limits_unreported": "enforce_limits",
}
for _quirk_name, _switch_name in SQL_QUIRK_SWITCHES.items():
    _switch = _SQL_SWITCHES[_switch_name]
    register_quirk(_quirk_name, _switch.description, "cometql", harmful=_switch.in_lenient_preset)


def sql_options(profile: "Profile"):
    """The CometQL parser options a profile implies."""
    from emulator.wire.cometql import ParseOptions

    return ParseOptions(**{switch: not profile.on(quirk) for quirk, switch in SQL_QUIRK_SWITCHES.items()})


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
    lines = [f"{'quirk'.ljust(width)}  4.09  lenient  description (where it is described)"]
    for name, q in sorted(QUIRKS.items()):
        lines.append(
            f"{name.ljust(width)}  {'on ' if faithful.on(name) else 'off'}   "
            f"{'on ' if lenient.on(name) else 'off'}      {q.description} ({q.spec})"
        )
    return "\n".join(lines)
