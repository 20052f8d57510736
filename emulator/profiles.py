"""Fidelity profiles: named quirks of the real servers, switchable one by one.

The default profile, ``cppcomet-4.09``, reproduces what the real CppComet 4.09 server (and, later,
FreeSWITCH 1.6) does on the wire, including the behaviours that hurt applications, because an app
must survive what production does.  ``lenient`` turns the harmful quirks off.

Every quirk is a member of the :class:`Quirk` enum and is registered with a one-line description
and the page of the project's docs that describes it (``docs/quirks/<area>.md#<name>``: comet,
cometql, freeswitch).  Code asks ``profile.on(Quirk.QUEUE_TEN_PER_LOGIN)``: a misspelt member is an
AttributeError that mypy reports (``make test`` runs it) and that fails wherever the name is bound
at import; a quirk added to the enum without a registration (or registered without a member) fails
this module's import.  Configuration and the command line name quirks by their value
(``queue_ten_per_login``); tests exercise every quirk in both states.  ``cometbench quirks``
prints the table below.

A profile with quirks switched on top of it (``--quirk NAME=on|off``, ``[quirks]`` in the config) is
named ``<profile>+custom``, so the ready line and the journal say that it is not a stock profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from emulator.wire.cometql import ParseOptions


class Quirk(StrEnum):
    """The name of every server quirk (its value is the name configuration uses)."""

    # comet WebSocket protocol
    QUEUE_TEN_PER_LOGIN = "queue_ten_per_login"
    WEB_PIPE2_MYSQL_ESCAPE = "web_pipe2_mysql_escape"
    SHORT_FRAME_TRUNCATION = "short_frame_truncation"
    WEB_ANSWER_COUNTS_LONG_FRAMES = "web_answer_counts_long_frames"
    PIPE_COUNT_ARRAY = "pipe_count_array"
    PRIVATE_SUBSCRIPTION_BUG = "private_subscription_bug"
    URL_ERRORS_V3_SHAPE = "url_errors_v3_shape"
    USER_STATUS_ONLINE_EPOCH = "user_status_online_epoch"
    # CometQL (MySQL protocol)
    COMETQL_VERSION_STRING = "cometql_version_string"
    COMETQL_SSL_ADVERTISED = "cometql_ssl_advertised"
    COMETQL_NO_AUTH_SWITCH = "cometql_no_auth_switch"
    COMETQL_LENENC_FD_BUG = "cometql_lenenc_fd_bug"
    COMETQL_OK_STATUS_NO_BACKSLASH_ESCAPES = "cometql_ok_status_no_backslash_escapes"
    COMETQL_DESCRIBE_BAD_SEQUENCE = "cometql_describe_bad_sequence"
    COMETQL_USERS_MESSAGES_DELETE_SAME_SECOND = "cometql_users_messages_delete_same_second"
    # FreeSWITCH 1.6 (the fake bridge)
    FS_REPLY_WITHOUT_PLUS = "fs_reply_without_plus"
    FS_GHOST_UNTIL_MEDIA_TIMEOUT = "fs_ghost_until_media_timeout"
    COMET_ESL_LINK_NOT_RESTORED = "comet_esl_link_not_restored"
    # the CometQL parser's switches (emulator/wire/cometql.py SWITCHES; SQL_QUIRK_SWITCHES below)
    SQL_RAW_VALUES = "sql_raw_values"
    SQL_BACKSLASH_LEXING = "sql_backslash_lexing"
    SQL_QUOTE_REWRITE_STOPS_EARLY = "sql_quote_rewrite_stops_early"
    SQL_NUL_ENDS_QUERY = "sql_nul_ends_query"
    SQL_LENGTH_LIMITS = "sql_length_limits"
    SQL_UNKNOWN_CHARS_SKIPPED = "sql_unknown_chars_skipped"
    SQL_MINUS_IGNORED = "sql_minus_ignored"
    SQL_COMMENTS_REJECTED = "sql_comments_rejected"
    SQL_TWO_WORD_KEYWORDS_ONE_SPACE = "sql_two_word_keywords_one_space"
    SQL_BACKTICKS_NAMES_ONLY = "sql_backticks_names_only"
    SQL_NAMES_CASE_SENSITIVE = "sql_names_case_sensitive"
    SQL_SET_STRICT_FORMS = "sql_set_strict_forms"
    SQL_TRANSACTIONS_REJECTED = "sql_transactions_rejected"
    SQL_SHOW_VARIABLES_NEEDS_PATTERN = "sql_show_variables_needs_pattern"
    SQL_ONE_SELECT_VARIABLE = "sql_one_select_variable"
    SQL_DESC_REJECTED = "sql_desc_rejected"
    SQL_USE_REJECTED = "sql_use_rejected"
    SQL_MULTI_STATEMENTS_MERGED = "sql_multi_statements_merged"
    SQL_LIMITS_UNREPORTED = "sql_limits_unreported"


@dataclass(frozen=True)
class QuirkInfo:
    name: Quirk
    description: str
    spec: str      # where the project's docs describe it: docs/quirks/<area>.md#<name>
    harmful: bool  # True: the lenient profile turns it off


QUIRKS: dict[Quirk, QuirkInfo] = {}


def register_quirk(name: Quirk, description: str, area: str, *, harmful: bool = True) -> None:
    """Register a quirk described under the heading ``name`` of ``docs/quirks/<area>.md``."""
    quirk = Quirk(name)
    if quirk in QUIRKS:
        raise ValueError(f"quirk {quirk.value!r} registered twice")
    QUIRKS[quirk] = QuirkInfo(quirk, description, f"docs/quirks/{area}.md#{quirk.value}", harmful)


# --- comet WebSocket protocol -------------------------------------------------------------------
register_quirk(
    Quirk.QUEUE_TEN_PER_LOGIN,
    "only the 10 oldest queued personal messages are delivered at login; the rest are deleted",
    "comet",
)
register_quirk(
    Quirk.WEB_PIPE2_MYSQL_ESCAPE,
    "web_pipe2 data is MySQL-escaped before delivery (quotes arrive as \\\")",
    "comet",
)
register_quirk(
    Quirk.SHORT_FRAME_TRUNCATION,
    "a frame whose JSON is 123-125 bytes keeps only its first 122 bytes, NUL-padded (unparseable)",
    "comet",
)
register_quirk(
    Quirk.WEB_ANSWER_COUNTS_LONG_FRAMES,
    "web_pipe2's number_messages counts only deliveries of frames of 126 bytes or more",
    "comet",
)
register_quirk(
    Quirk.PIPE_COUNT_ARRAY,
    'pipe_count answers data ["user_in_pipe", N] instead of the documented {"user_in_pipe": N}',
    "comet",
    harmful=False,
)
register_quirk(
    Quirk.PRIVATE_SUBSCRIPTION_BUG,
    "an anonymous subscription list stops at the first private_* name",
    "comet",
)
register_quirk(
    Quirk.URL_ERRORS_V3_SHAPE,
    "URL errors 401/406/418 (found before the version is parsed) are sent in the v<4 shape "
    "(data as a JSON string, event_name, api_data)",
    "comet",
    harmful=False,
)
register_quirk(
    Quirk.USER_STATUS_ONLINE_EPOCH,
    "user_status for an online user answers 'now - 0', i.e. about the current unix time",
    "comet",
)


# --- CometQL (MySQL protocol) -------------------------------------------------------------------
register_quirk(
    Quirk.COMETQL_VERSION_STRING,
    "the greeting's server version 'CppComet community 4.09 ...' does not start with a number "
    "(pymysql cannot parse it)",
    "cometql",
)
register_quirk(
    Quirk.COMETQL_SSL_ADVERTISED,
    "the greeting advertises CLIENT_SSL and CLIENT_COMPRESS without supporting them "
    "(TLS-preferring clients fail)",
    "cometql",
)
register_quirk(
    Quirk.COMETQL_NO_AUTH_SWITCH,
    "a client that starts with another auth plugin gets 'authDataLen!=20' instead of an AuthSwitchRequest",
    "cometql",
)
register_quirk(
    Quirk.COMETQL_LENENC_FD_BUG,
    "integers 65536..16777215 are length-encoded as 0xFD + 4 bytes (clients then read 2 warnings)",
    "cometql",
)
register_quirk(
    Quirk.COMETQL_OK_STATUS_NO_BACKSLASH_ESCAPES,
    "result OK packets carry status 0x0200 (NO_BACKSLASH_ESCAPES) and a NUL info byte",
    "cometql",
    harmful=False,
)
register_quirk(
    Quirk.COMETQL_DESCRIBE_BAD_SEQUENCE,
    "DESCRIBE of a table other than users_auth answers with a wrong sequence id (the client drops the link)",
    "cometql",
)
register_quirk(
    Quirk.COMETQL_USERS_MESSAGES_DELETE_SAME_SECOND,
    "DELETE FROM users_messages keeps messages queued in the current second",
    "cometql",
)

# --- FreeSWITCH 1.6 (the fake bridge) --------------------------------------------------------------
register_quirk(
    Quirk.FS_REPLY_WITHOUT_PLUS,
    "conference API replies have FreeSWITCH 1.6's form without '+' ('OK mute 7', 'Non-Existant ID 9', "
    "hup prints nothing); off: the 1.8+ '+OK'/'-ERR' forms",
    "freeswitch",
    harmful=False,
)
register_quirk(
    Quirk.FS_GHOST_UNTIL_MEDIA_TIMEOUT,
    "a member whose browser vanished without a BYE stays in the conference (and in conference_members) "
    "until the RTP timeout (rtp-timeout-sec 300), then leaves with MEDIA_TIMEOUT; off: it leaves at once",
    "freeswitch",
)
register_quirk(
    Quirk.COMET_ESL_LINK_NOT_RESTORED,
    "after a FreeSWITCH restart the comet server's ESL link stays dead, so conference_members is empty "
    "until the comet server restarts; off: the link is made again",
    "freeswitch",
)

# Parser switches of emulator/wire/cometql.py.  Each quirk is on when its switch is off (the
# faithful parse); the lenient profile turns off those whose switch is in the parser's LENIENT
# preset.  ``split_multi_statements`` is an alternative to ``reject_multi_statements``, not a quirk.
from emulator.wire.cometql import SWITCHES as _SQL_SWITCHES  # noqa: E402  (wire is the bottom layer)

SQL_QUIRK_SWITCHES: dict[Quirk, str] = {
    Quirk.SQL_RAW_VALUES: "unescape_strings",
    Quirk.SQL_BACKSLASH_LEXING: "mysql_string_lexing",
    Quirk.SQL_QUOTE_REWRITE_STOPS_EARLY: "full_quote_rewrite",
    Quirk.SQL_NUL_ENDS_QUERY: "keep_nul",
    Quirk.SQL_LENGTH_LIMITS: "skip_length_check",
    Quirk.SQL_UNKNOWN_CHARS_SKIPPED: "reject_unknown_chars",
    Quirk.SQL_MINUS_IGNORED: "signed_integers",
    Quirk.SQL_COMMENTS_REJECTED: "strip_comments",
    Quirk.SQL_TWO_WORD_KEYWORDS_ONE_SPACE: "flexible_keywords",
    Quirk.SQL_BACKTICKS_NAMES_ONLY: "lenient_backticks",
    Quirk.SQL_NAMES_CASE_SENSITIVE: "fold_name_case",
    Quirk.SQL_SET_STRICT_FORMS: "lenient_set",
    Quirk.SQL_TRANSACTIONS_REJECTED: "accept_transactions",
    Quirk.SQL_SHOW_VARIABLES_NEEDS_PATTERN: "lenient_show_variables",
    Quirk.SQL_ONE_SELECT_VARIABLE: "lenient_select_variables",
    Quirk.SQL_DESC_REJECTED: "accept_desc",
    Quirk.SQL_USE_REJECTED: "accept_use",
    Quirk.SQL_MULTI_STATEMENTS_MERGED: "reject_multi_statements",
    Quirk.SQL_LIMITS_UNREPORTED: "enforce_limits",
}
for _quirk, _switch_name in SQL_QUIRK_SWITCHES.items():
    _switch = _SQL_SWITCHES[_switch_name]
    register_quirk(_quirk, _switch.description, "cometql", harmful=_switch.in_lenient_preset)

_unregistered = set(Quirk) - QUIRKS.keys()
if _unregistered:  # pragma: no cover - a quirk added to the enum without its description
    raise ImportError(f"quirks without a registration: {', '.join(sorted(_unregistered))}")


def sql_options(profile: Profile) -> ParseOptions:
    """The CometQL parser options a profile implies."""
    from emulator.wire.cometql import ParseOptions

    return ParseOptions(**{switch: not profile.on(quirk) for quirk, switch in SQL_QUIRK_SWITCHES.items()})


@dataclass(frozen=True)
class Profile:
    """A named set of quirk states."""

    name: str
    quirks: dict[Quirk, bool] = field(default_factory=dict)

    def on(self, quirk: Quirk) -> bool:
        """Whether ``quirk`` is on.  A name that is no quirk raises KeyError (configuration passes
        names as text; code passes :class:`Quirk` members)."""
        try:
            return self.quirks[quirk]
        except KeyError:
            raise KeyError(f"unknown quirk {str(quirk)!r}") from None

    def with_quirks(self, **states: bool) -> Profile:
        """A copy with some quirks switched (for tests and ``--quirk name=on|off``)."""
        switched: dict[Quirk, bool] = {}
        for name, state in states.items():
            if name not in QUIRKS:
                raise KeyError(f"unknown quirk {name!r}")
            switched[Quirk(name)] = state
        return Profile(self.name + "+custom", {**self.quirks, **switched})


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
