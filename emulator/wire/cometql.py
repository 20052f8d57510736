"""Sans-IO CometQL lexer and parser (the real server's grammar; its quirks: ``docs/quirks/cometql.md``).

``parse(query)`` turns the text of one COM_QUERY into a list of statement dataclasses
(:class:`Select`, :class:`Insert`, :class:`Delete`, :class:`SelectVariable`, :class:`ShowTables`,
...) or raises :class:`ParseError` carrying the exact CometQL error code and message the real
server sends (``3 "Syntax error in query"``, ``17 "Data is too short"``, ``11 "Data is too long"``).
Table semantics (which tables exist, key columns, the ignored WHERE operator, ERR 2 for OR/ORDER
BY) belong to the executor; the tree carries everything it needs, verbatim.

The pipeline follows the original (spec 7 steps 4-5):

1. NUL truncation (the original measures the query with ``strlen``) and the length checks;
2. :func:`rewrite_doubled_quotes` — ``''`` inside ``'...'`` becomes ``\\'`` (and ``""`` -> ``\\"``),
   same length, except in the last 3 bytes (spec 5.4);
3. :func:`tokenize` — an emulation of the flex scanner built with ``-i``: at every position the
   longest match wins, ties go to the earlier rule (keywords before names, quoted names/integers
   before quoted strings), and every character no rule matches is silently skipped (spec 5.1);
4. a recursive-descent parser for the (LALR, conflict-free) grammar of spec 6.1;
5. the multi-statement rule of spec 6.4: all statements are merged into one record (last command
   and table win, WHERE conditions / columns / INSERT values accumulate).

Values are never unescaped: a :class:`Value` holds the raw text between the quotes (after step 2),
its token kind (``int``, ``name`` or ``string`` — a quoted text that looks like a name or an
integer is a name/integer token) and its quote character.

Every place where the faithful behaviour differs from a sensible one is a boolean field of
:class:`ParseOptions` (default ``False`` = bug-compatible); :data:`SWITCHES` lists them with a
one-line description and their page in docs/quirks/cometql.md, for the profile/quirk registry.
("spec N.M" below names a section of the project's private notes on the real server, kept for
maintainers; everything a user needs is in docs/quirks/cometql.md.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, TypeVar

from emulator.wire.cnum import leading_int

__all__ = [
    "ParseError", "ParseOptions", "FAITHFUL", "LENIENT", "SWITCHES", "Switch",
    "Value", "Condition", "OrderBy", "Limit",
    "Statement", "Select", "Insert", "Delete", "SelectVariable", "SelectDatabase",
    "ShowDatabases", "ShowTables", "ShowTableStatus", "ShowProcesslist", "ShowStatus",
    "ShowColumns", "ShowVariables", "Set", "Transaction", "UseDatabase",
    "Token", "tokenize", "rewrite_doubled_quotes", "unescape_mysql",
    "parse", "merge_statements", "split_cluster_prefix", "check_length",
    "MIN_QUERY_BYTES", "MAX_QUERY_BYTES", "MAX_CONDITIONS", "MAX_CONDITION_VALUES",
    "MAX_COLUMNS", "MAX_INSERT_VALUES", "CLUSTER_PREFIX",
    "ERR_SYNTAX", "ERR_TOO_SHORT", "ERR_TOO_LONG", "ERR_INVALID_DEV_ID",
    "ERR_TOO_MANY_CONDITIONS", "ERR_TOO_MANY_CONDITION_VALUES", "ERR_TOO_MANY_COLUMNS",
    "ERR_TOO_MANY_INSERT_NAMES", "ERR_TOO_MANY_INSERT_VALUES",
]

# --- error catalogue (spec 12), verbatim --------------------------------------------------------
ERR_SYNTAX = (3, "Syntax error in query")
ERR_TOO_SHORT = (17, "Data is too short")
ERR_TOO_LONG = (11, "Data is too long")
ERR_INVALID_DEV_ID = (16, "Invalid dev_id value")
ERR_TOO_MANY_CONDITIONS = (18, "Error in expression list, too many conditions.")
ERR_TOO_MANY_CONDITION_VALUES = (19, "Error in expression list, too many values.")
ERR_TOO_MANY_INSERT_VALUES = (19, "Error in names list, too many values.")
ERR_TOO_MANY_COLUMNS = (20, "Error in columns list, too many columns.")
ERR_TOO_MANY_INSERT_NAMES = (21, "Error in names list, too many names.")

# --- limits (spec 7 step 4, 8.1, 8.2, 13) -------------------------------------------------------
MIN_QUERY_BYTES = 4  # a query of <= 3 bytes -> ERR 17
MAX_QUERY_BYTES = 8999  # a query of >= 9000 bytes -> ERR 11
MAX_CONDITIONS = 10
MAX_CONDITION_VALUES = 4000
MAX_COLUMNS = 20  # SELECT columns and INSERT column names
MAX_INSERT_VALUES = 20

CLUSTER_PREFIX = "cometqlcluster_v1 set dev_id="


class ParseError(Exception):
    """A query the real server rejects before execution: ``code`` and ``message`` are the exact
    CometQL error (send them as ``ERR code #HY000 message``).  ``position`` (character offset in
    the rewritten query, or ``None``) is for diagnostics only."""

    def __init__(self, code: int, message: str, position: int | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.position = position

    def __str__(self) -> str:
        where = "" if self.position is None else f" (at offset {self.position})"
        return f"ERR {self.code}: {self.message}{where}"


def _syntax(position: int | None = None) -> ParseError:
    return ParseError(*ERR_SYNTAX, position)


# =================================================================================================
# Options
# =================================================================================================


@dataclass(frozen=True)
class ParseOptions:
    """Faithful-vs-lenient switches.  All ``False`` (the default) reproduces CppComet 4.09.

    Each field's comment names the quirk it turns off and the spec section; :data:`SWITCHES` has
    the same information as data.
    """

    unescape_strings: bool = False
    """Quirk "values are not unescaped" (5.3): True decodes MySQL backslash escapes in string
    values (``\\'`` -> ``'``, ``\\\\`` -> ``\\``, ``\\n`` -> newline, ...), so a doubled quote
    (rewritten to ``\\'``, 5.4) reads as one quote.  Meant to be combined with mysql_string_lexing."""

    mysql_string_lexing: bool = False
    """Quirk "backslash before a closing quote" (5.3, 5.4): the original's string rule lets ``\\``
    escape only the delimiter, so ``'C:\\\\', 'x'`` lexes as one string; its quote rewrite also
    ignores escaped backslashes.  True: ``\\x`` is always an escape pair, in both."""

    full_quote_rewrite: bool = False
    """Quirk "rewrite stops 3 bytes early" (5.4): True rewrites a doubled quote in the last 3 bytes
    of the query too."""

    keep_nul: bool = False
    """Quirk "query cut at NUL" (5.4, 7): the original measures the query with strlen.  True keeps
    the text after a NUL byte (NUL is then an ordinary character)."""

    skip_length_check: bool = False
    """Quirk "query length limits" (7 step 4, 13): ERR 17 for <= 3 bytes, ERR 11 for >= 9000 bytes.
    True skips both checks."""

    reject_unknown_chars: bool = False
    """Quirk "unknown characters are skipped" (5.1): ``id != 5`` means ``id = 5``, stray quotes,
    ``.``, ``-`` vanish.  True: any character outside a token other than whitespace and ``;`` is a
    syntax error (comments and signed integers are allowed if their switches are on)."""

    signed_integers: bool = False
    """Quirk "minus sign skipped" (5.1): ``-5`` lexes as ``5``.  True: a ``-`` directly before
    digits belongs to the integer."""

    strip_comments: bool = False
    """Quirk "no comments" (5.1): ``-- x``, ``# x`` and ``/* x */`` leave their words as tokens (a
    syntax error).  True: they are skipped."""

    flexible_keywords: bool = False
    """Quirk "two-word keywords need exactly one space" (5.1): ``ORDER BY``/``TABLE STATUS``.  True:
    any run of whitespace between the words (and a word boundary after the second)."""

    lenient_backticks: bool = False
    """Quirk "backticks quote only names/integers" (5.1): `` `my-pipe` `` is not a token.  True: a
    backtick-quoted text of any characters is a name."""

    fold_name_case: bool = False
    """Quirk "table and column names are case-sensitive" (5.2): True lower-cases table and column
    names (not values) in the tree."""

    lenient_set: bool = False
    """Quirk "only SET a b / SET a b c" (6.1, 10.6, 2.5 [REC] c): ``SET AUTOCOMMIT = 0``,
    ``SET x=1``, ``SET NAMES a COLLATE b``, ``SET CHARACTER SET x`` are syntax errors.  True: any
    SET (up to the next ``;``) parses as :class:`Set` with its raw text."""

    accept_transactions: bool = False
    """Quirk "no COMMIT/ROLLBACK/BEGIN" (2.5 [REC] c, 6.1): True parses ``COMMIT``, ``ROLLBACK``,
    ``BEGIN`` and ``START TRANSACTION`` as :class:`Transaction` (a no-op OK)."""

    lenient_show_variables: bool = False
    """Quirk "SHOW VARIABLES needs LIKE '<non-name>'" (6.1, 10.3): True accepts ``SHOW VARIABLES``
    without LIKE and with any pattern token."""

    lenient_select_variables: bool = False
    """Quirk "one plain @@variable per SELECT" (10.4): True accepts ``@@session.x``/``@@global.x``
    and ``SELECT @@a, @@b``."""

    accept_desc: bool = False
    """Quirk "DESC t is a syntax error" (6.1): True parses ``DESC t`` like ``DESCRIBE t``."""

    accept_use: bool = False
    """Quirk "USE as SQL text is a syntax error" (2.4): True parses ``USE db`` as
    :class:`UseDatabase` (execute like COM_INIT_DB)."""

    split_multi_statements: bool = False
    """Quirk "multi-statement merge" (6.4): the original merges all statements of a query into one
    record.  True returns them separately (the caller executes them in order)."""

    reject_multi_statements: bool = False
    """Quirk "multi-statement merge" (6.4 [REC]): True answers a query with more than one statement
    with ERR 3 (takes precedence over split_multi_statements)."""

    enforce_limits: bool = False
    """Quirk "limit overflow is not reported" (8.2, 12, 18 [REC]): more than 10 conditions, 4000
    values in a condition, 20 SELECT columns, 20 INSERT names or 20 INSERT values are recorded but
    never reported by the original (the tree keeps them all).  True raises ERR 18/19/20/21."""

    @classmethod
    def lenient(cls) -> ParseOptions:
        """The lenient preset: the spec's [REC] switches (18: lenient_set, accept_transactions,
        enforce_limits, reject_multi_statements) plus those that only turn syntax errors into
        statements.  Switches that change the meaning of queries the original accepts
        (reject_unknown_chars, signed_integers, unescape_strings, mysql_string_lexing,
        fold_name_case, keep_nul, skip_length_check, full_quote_rewrite, split_multi_statements)
        stay off: spec 18 asks to reproduce those behaviours."""
        return cls(**{name: sw.in_lenient_preset for name, sw in SWITCHES.items()})


class Switch(NamedTuple):
    """Registry entry of one :class:`ParseOptions` field."""

    description: str  # the faithful quirk that the switch turns off
    spec: str         # docs/quirks/cometql.md#<quirk name> (the quirk registry of emulator/profiles.py)
    in_lenient_preset: bool


#: switch name -> Switch(faithful quirk it turns off, where docs/quirks/cometql.md describes it, part of LENIENT)
SWITCHES: dict[str, Switch] = {
    "unescape_strings": Switch(
        "string values are delivered raw, escapes not decoded",
        "docs/quirks/cometql.md#sql_raw_values", False),
    "mysql_string_lexing": Switch(
        "a backslash escapes only the delimiter, so 'C:\\\\', 'x' is one string",
        "docs/quirks/cometql.md#sql_backslash_lexing", False),
    "full_quote_rewrite": Switch(
        "doubled quotes in the last 3 bytes are not rewritten",
        "docs/quirks/cometql.md#sql_quote_rewrite_stops_early", False),
    "keep_nul": Switch(
        "the query ends at the first NUL byte (strlen)",
        "docs/quirks/cometql.md#sql_nul_ends_query", False),
    "skip_length_check": Switch(
        "ERR 17 for <= 3 bytes, ERR 11 for >= 9000 bytes",
        "docs/quirks/cometql.md#sql_length_limits", False),
    "reject_unknown_chars": Switch(
        "unknown characters are silently skipped (!=, -, ., stray quotes)",
        "docs/quirks/cometql.md#sql_unknown_chars_skipped", False),
    "signed_integers": Switch(
        "-5 lexes as 5",
        "docs/quirks/cometql.md#sql_minus_ignored", False),
    "strip_comments": Switch(
        "comments are not supported (syntax error)",
        "docs/quirks/cometql.md#sql_comments_rejected", True),
    "flexible_keywords": Switch(
        "ORDER BY / TABLE STATUS need exactly one space",
        "docs/quirks/cometql.md#sql_two_word_keywords_one_space", True),
    "lenient_backticks": Switch(
        "backticks quote only names and integers",
        "docs/quirks/cometql.md#sql_backticks_names_only", True),
    "fold_name_case": Switch(
        "table/column names are case-sensitive (lower-case only)",
        "docs/quirks/cometql.md#sql_names_case_sensitive", False),
    "lenient_set": Switch(
        "only SET a b / SET @@a b / SET a b c; SET x = 1 is a syntax error",
        "docs/quirks/cometql.md#sql_set_strict_forms", True),
    "accept_transactions": Switch(
        "COMMIT/ROLLBACK/BEGIN/START TRANSACTION are syntax errors",
        "docs/quirks/cometql.md#sql_transactions_rejected", True),
    "lenient_show_variables": Switch(
        "SHOW VARIABLES needs LIKE with a non-name string",
        "docs/quirks/cometql.md#sql_show_variables_needs_pattern", True),
    "lenient_select_variables": Switch(
        "SELECT takes exactly one plain @@variable",
        "docs/quirks/cometql.md#sql_one_select_variable", True),
    "accept_desc": Switch(
        "DESC t is a syntax error",
        "docs/quirks/cometql.md#sql_desc_rejected", True),
    "accept_use": Switch(
        "USE db as SQL text is a syntax error",
        "docs/quirks/cometql.md#sql_use_rejected", True),
    "split_multi_statements": Switch(
        "statements of one query are merged into one record (executed separately instead)",
        "docs/quirks/cometql.md#sql_multi_statements_merged", False),
    "reject_multi_statements": Switch(
        "statements of one query are merged into one record (ERR 3 instead)",
        "docs/quirks/cometql.md#sql_multi_statements_merged", True),
    "enforce_limits": Switch(
        "too many conditions/values/columns are not reported (ERR 18-21 never sent)",
        "docs/quirks/cometql.md#sql_limits_unreported", True),
}

FAITHFUL = ParseOptions()
LENIENT = ParseOptions.lenient()


# =================================================================================================
# Tree
# =================================================================================================


@dataclass(frozen=True, slots=True)
class Value:
    """A literal as written.  ``kind`` is the lexer token: ``"int"`` (digits, possibly quoted),
    ``"name"`` (identifier-shaped, possibly quoted) or ``"string"`` (any other quoted text).
    ``text`` excludes the quotes and is NOT unescaped (spec 5.3) — only the doubled-quote rewrite
    (5.4) has been applied.  ``quote`` is ``'``, ``"``, `` ` `` or ``None``."""

    text: str
    kind: str
    quote: str | None = None

    def to_int(self) -> int:
        """Leading-digits conversion (spec 8.2), see :func:`leading_int`."""
        return leading_int(self.text)


@dataclass(frozen=True, slots=True)
class Condition:
    """One WHERE condition.  ``operator`` is ``=``, ``>``, ``<``, ``LIKE`` or ``IN`` — kept
    although the faithful executor ignores it (spec 8.2); ``values`` has one element except for
    IN.  ``connector`` is ``"AND"``/``"OR"`` joining it to the previous condition (``None`` for
    the first condition of each statement)."""

    column: str
    operator: str
    values: tuple[Value, ...]
    connector: str | None = None


@dataclass(frozen=True, slots=True)
class OrderBy:
    """``ORDER BY column [ASC|DESC]`` (any ORDER BY is ERR 2 in the original, spec 8.3)."""

    column: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Limit:
    """``LIMIT first`` or ``LIMIT first, second``, as written.

    The original stores ``rows = first`` and ``start = second`` (spec 8.3); see :meth:`apply`.
    """

    first: int
    second: int | None = None

    @property
    def rows(self) -> int:
        return self.first

    @property
    def start(self) -> int:
        return self.second or 0

    def apply(self, rows: Sequence[_T], *, mysql_semantics: bool = False) -> list[_T]:
        """Apply the limit to a produced row list.

        Faithful (spec 8.3, quirk "LIMIT a, b"): ``LIMIT n`` keeps the first n rows, ``LIMIT 0``
        keeps all; ``LIMIT a, b`` skips the first **b** rows and stops before row index **a** (no
        upper bound if a = 0).  ``mysql_semantics=True``: ``LIMIT n`` = first n (0 = none),
        ``LIMIT a, b`` = offset a, count b.
        """
        first = max(self.first, 0)
        if mysql_semantics:
            if self.second is None:
                return list(rows[:first])
            return list(rows[first: first + max(self.second, 0)])
        start = max(self.start, 0)
        return list(rows[start: first or None])


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Statement:
    """Base class of every statement."""


@dataclass(frozen=True, slots=True)
class Select(Statement):
    """``SELECT {*|col,...} FROM table [WHERE ...] [ORDER BY ...] [LIMIT ...]``.
    ``columns`` is ``None`` for ``*``; ``table`` and columns are as written (quotes stripped)."""

    table: str
    columns: tuple[str, ...] | None = None
    where: tuple[Condition, ...] = ()
    order_by: OrderBy | None = None
    limit: Limit | None = None


@dataclass(frozen=True, slots=True)
class Insert(Statement):
    """``INSERT INTO table [(col,...)] VALUES (v,...)`` — exactly one row; ``columns`` is ``None``
    without a column list (values then map to all table columns, spec 8.1)."""

    table: str
    columns: tuple[str, ...] | None
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Delete(Statement):
    """``DELETE FROM table [WHERE ...] [ORDER BY ...] [LIMIT ...]`` (LIMIT ignored, spec 8.3)."""

    table: str
    where: tuple[Condition, ...] = ()
    order_by: OrderBy | None = None
    limit: Limit | None = None


@dataclass(frozen=True, slots=True)
class SelectVariable(Statement):
    """``SELECT @@var [LIMIT ...]`` (spec 10.4); the result column is named exactly as typed.
    ``names`` has more than one element only with ``lenient_select_variables``."""

    names: tuple[str, ...]
    limit: Limit | None = None

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True, slots=True)
class SelectDatabase(Statement):
    """``SELECT DATABASE()`` (spec 10.4)."""


@dataclass(frozen=True, slots=True)
class ShowDatabases(Statement):
    """``SHOW DATABASES`` (spec 10.1)."""


@dataclass(frozen=True, slots=True)
class ShowTables(Statement):
    """``SHOW TABLES`` (spec 10.1)."""


@dataclass(frozen=True, slots=True)
class ShowTableStatus(Statement):
    """``SHOW TABLE STATUS`` (exactly one space, spec 5.1, 10.1)."""


@dataclass(frozen=True, slots=True)
class ShowProcesslist(Statement):
    """``SHOW PROCESSLIST`` (spec 10.5)."""


@dataclass(frozen=True, slots=True)
class ShowStatus(Statement):
    """``SHOW [GLOBAL|SESSION|FILESYSTEM|RAM|AVG|UPTIME] STATUS`` (spec 10.5); ``flag`` is the
    upper-case flag or ``None``."""

    flag: str | None = None


@dataclass(frozen=True, slots=True)
class ShowColumns(Statement):
    """``SHOW [FULL] COLUMNS {FROM|IN} table`` or ``DESCRIBE table`` (``describe=True``), 10.2."""

    table: str
    full: bool = False
    describe: bool = False


@dataclass(frozen=True, slots=True)
class ShowVariables(Statement):
    """``SHOW [flag] VARIABLES LIKE '<pattern>'`` (spec 10.3; the pattern is ignored)."""

    flag: str | None
    like: Value | None


@dataclass(frozen=True, slots=True)
class Set(Statement):
    """``SET var value`` / ``SET @@var value`` / ``SET section var value`` (spec 6.1, 10.6): an OK
    that changes nothing.  With ``lenient_set`` any other SET has ``variable``/``value`` filled on a
    best-effort basis; ``raw`` is always the statement's source text."""

    variable: str
    value: Value | None
    section: str | None = None
    raw: str = ""


@dataclass(frozen=True, slots=True)
class Transaction(Statement):
    """Lenient only (``accept_transactions``): ``COMMIT``, ``ROLLBACK``, ``BEGIN`` or
    ``START TRANSACTION`` — a no-op OK (spec 2.5 [REC] c)."""

    action: str


@dataclass(frozen=True, slots=True)
class UseDatabase(Statement):
    """Lenient only (``accept_use``): ``USE db`` as SQL text (spec 2.4)."""

    database: str


# =================================================================================================
# Pre-processing
# =================================================================================================


def _byte_len(text: str) -> int:
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def check_length(text: str) -> None:
    """Spec 7 step 4: raise ERR 17 ``Data is too short`` (<= 3 bytes) or ERR 11 ``Data is too
    long`` (>= 9000 bytes); lengths are UTF-8 bytes."""
    n = _byte_len(text)
    if n < MIN_QUERY_BYTES:
        raise ParseError(*ERR_TOO_SHORT)
    if n > MAX_QUERY_BYTES:
        raise ParseError(*ERR_TOO_LONG)


def split_cluster_prefix(query: str, dev_index_size: int = 100000) -> tuple[int | None, str]:
    """Spec 7 step 2 / 15: strip ``cometqlcluster_v1 set dev_id=<N>`` (exact, lower case).

    Returns ``(N, rest)`` — ``rest`` starts at the ``;`` after the digits, which the lexer skips —
    or ``(None, query)`` without the prefix.  Leading zeros are allowed, at most 9 further digits,
    the digits must be followed by ``;`` and ``0 <= N < dev_index_size``; otherwise ERR 16
    ``Invalid dev_id value``.
    """
    if not query.startswith(CLUSTER_PREFIX):
        return None, query
    rest = query[len(CLUSTER_PREFIX):]
    pos = 0
    while pos < len(rest) and rest[pos] == "0":
        pos += 1
    end = rest.find(";", pos)
    digits = rest[pos:end] if end >= 0 else None
    if (
        digits is None
        or len(digits) > 9
        or any(not "0" <= ch <= "9" for ch in digits)
    ):
        raise ParseError(*ERR_INVALID_DEV_ID)
    dev_id = int(digits) if digits else 0
    if not 0 <= dev_id < dev_index_size:
        raise ParseError(*ERR_INVALID_DEV_ID)
    return dev_id, rest[end:]


def rewrite_doubled_quotes(text: str, *, full: bool = False, mysql_escapes: bool = False) -> str:
    """The doubled-quote rewrite done before lexing (spec 5.4).

    Inside ``'...'`` a doubled ``''`` becomes ``\\'`` and inside ``"..."`` a doubled ``""`` becomes
    ``\\"`` (same length).  Faithful: string state is tracked with the original's rule (a quote
    preceded by a backslash does not close, whatever precedes that backslash) and positions in the
    last 3 characters are not examined (``full=True`` examines them).  ``mysql_escapes=True``: a
    backslash inside a string escapes the next character (consistent with ``mysql_string_lexing``).
    """
    chars = list(text)
    n = len(chars)
    last = n - 1 if full else max(n - 4, 0)
    i = 0
    if mysql_escapes:
        quote: str | None = None
        while i < n and i <= last:
            c = chars[i]
            if quote is None:
                if c in "'\"":
                    quote = c
            elif c == "\\":
                i += 1
            elif c == quote:
                if i + 1 < n and chars[i + 1] == quote:
                    chars[i] = "\\"
                    i += 1
                else:
                    quote = None
            i += 1
        return "".join(chars)
    in_sq = in_dq = False
    while i < n and i <= last:
        for q in "'\"":
            c = chars[i]
            inside = in_sq if q == "'" else in_dq
            other = in_dq if q == "'" else in_sq
            if not inside and not other and c == q:
                inside = True
            elif inside and not other and c == q and (i == 0 or chars[i - 1] != "\\"):
                if i + 1 < n and chars[i + 1] == q:
                    chars[i] = "\\"
                    i += 1
                else:
                    inside = False
            if q == "'":
                in_sq = inside
            else:
                in_dq = inside
        i += 1
    return "".join(chars)


_MYSQL_ESCAPES = {
    "0": "\x00", "'": "'", '"': '"', "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a",
    "\\": "\\", "%": "\\%", "_": "\\_",
}


def unescape_mysql(text: str) -> str:
    """Decode MySQL string escapes (lenient ``unescape_strings`` only; spec 5.3)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(_MYSQL_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# =================================================================================================
# Lexer (spec 5.1)
# =================================================================================================

_DIGITS = frozenset("0123456789")
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS = _NAME_START | _DIGITS
_PUNCT = frozenset("><,=*()")
_WHITESPACE = frozenset(" \t\r\n\f\v")
KEYWORDS = frozenset(
    "IN OR SET AND USE ASC RAM AVG DESC SHOW FROM INTO LIKE LIMIT FULL WHERE TABLES DELETE STATUS "
    "VALUES SELECT INSERT COLUMNS GLOBAL UPTIME SESSION DESCRIBE DATABASES DATABASE VARIABLES "
    "FILESYSTEM PROCESSLIST".split()
)
_TWO_WORD = {"ORDER": "BY", "TABLE": "STATUS"}

KW, PUNCT, INT, NAME, STRING, SYSVAR = "kw", "punct", "int", "name", "string", "sysvar"


@dataclass(frozen=True, slots=True)
class Token:
    """A lexer token.  ``kind`` is one of ``kw`` (``text`` = upper-case keyword, ``ORDER BY`` and
    ``TABLE STATUS`` included), ``punct``, ``int``, ``name``, ``string``, ``sysvar`` (``text`` =
    ``@@name`` as typed); for quoted tokens ``text`` excludes the quotes.  ``start``/``end`` are
    offsets in the (rewritten) query."""

    kind: str
    text: str
    quote: str | None
    start: int
    end: int


def _span(s: str, i: int, chars: frozenset[str]) -> int:
    n = len(s)
    while i < n and s[i] in chars:
        i += 1
    return i


def _faithful_string_end(s: str, i: int, q: str) -> int | None:
    """Longest match of flex's ``q(\\\\q|[^q])+q|qq`` at ``i``; returns the end offset."""
    n = len(s)
    if i + 1 < n and s[i + 1] == q:
        return i + 2
    best = None
    j = i + 1
    while j < n:
        if s[j] == q:
            best = j + 1
            if s[j - 1] == "\\" and j - 1 > i:
                j += 1
                continue
            break
        j += 1
    return best


def _mysql_string_end(s: str, i: int, q: str) -> int | None:
    n = len(s)
    j = i + 1
    while j < n:
        c = s[j]
        if c == "\\":
            j += 2
        elif c == q:
            return j + 1
        else:
            j += 1
    return None


class _Lexer:
    def __init__(self, text: str, opts: ParseOptions) -> None:
        self.s = text
        self.opts = opts
        self.tokens: list[Token] = []
        self.separators: list[int] = []  # offsets of skipped ';'

    def run(self) -> None:
        s, opts, n = self.s, self.opts, len(self.s)
        i = 0
        while i < n:
            c = s[i]
            if opts.strip_comments:
                end = self._comment_end(i)
                if end is not None:
                    i = end
                    continue
            if c in _PUNCT:
                self._add(PUNCT, c, None, i, i + 1)
                i += 1
            elif c in _NAME_START:
                i = self._word(i)
            elif c in _DIGITS:
                j = _span(s, i, _DIGITS)
                self._add(INT, s[i:j], None, i, j)
                i = j
            elif c == "@" and s.startswith("@@", i) and i + 2 < n and s[i + 2] in _NAME_START:
                j = _span(s, i + 2, _NAME_CHARS)
                self._add(SYSVAR, s[i:j], None, i, j)
                i = j
            elif c == "-" and opts.signed_integers and i + 1 < n and s[i + 1] in _DIGITS:
                j = _span(s, i + 1, _DIGITS)
                self._add(INT, s[i:j], None, i, j)
                i = j
            elif c in "'\"`" and (m := self._quoted(i, c)) is not None:
                kind, text, end = m
                self._add(kind, text, c, i, end)
                i = end
            else:
                if c == ";":
                    self.separators.append(i)
                elif opts.reject_unknown_chars and c not in _WHITESPACE:
                    raise _syntax(i)
                i += 1

    def _add(self, kind: str, text: str, quote: str | None, start: int, end: int) -> None:
        self.tokens.append(Token(kind, text, quote, start, end))

    def _comment_end(self, i: int) -> int | None:
        s = self.s
        if s[i] == "#" or (s.startswith("--", i) and (i + 2 == len(s) or s[i + 2] in _WHITESPACE)):
            nl = s.find("\n", i)
            return len(s) if nl < 0 else nl + 1
        if s.startswith("/*", i):
            close = s.find("*/", i + 2)
            return len(s) if close < 0 else close + 2
        return None

    def _word(self, i: int) -> int:
        s = self.s
        j = _span(s, i, _NAME_CHARS)
        upper = s[i:j].upper()  # name characters are ASCII
        second = _TWO_WORD.get(upper)
        if second is not None:
            end = self._two_word_end(j, second)
            if end is not None:
                self._add(KW, f"{upper} {second}", None, i, end)
                return end
        self._add(KW if upper in KEYWORDS else NAME, upper if upper in KEYWORDS else s[i:j],
                  None, i, j)
        return j

    def _two_word_end(self, j: int, second: str) -> int | None:
        s = self.s
        if self.opts.flexible_keywords:
            k = _span(s, j, _WHITESPACE)
            if k == j:
                return None
            end = k + len(second)
            word = s[k:end]
            if word.isascii() and word.upper() == second and (end >= len(s) or s[end] not in _NAME_CHARS):
                return end
            return None
        # flex literal "ORDER BY" / "TABLE STATUS": exactly one space, any case, no boundary.
        end = j + 1 + len(second)
        word = s[j + 1:end]
        if s[j:j + 1] == " " and word.isascii() and word.upper() == second:
            return end
        return None

    def _quoted(self, i: int, q: str) -> tuple[str, str, int] | None:
        s, n = self.s, len(self.s)
        best: tuple[str, str, int] | None = None
        j = i + 1
        if j < n and s[j] in _DIGITS:
            k = _span(s, j, _DIGITS)
            if k < n and s[k] == q:
                best = (INT, s[j:k], k + 1)
        elif j < n and s[j] in _NAME_START:
            k = _span(s, j, _NAME_CHARS)
            if k < n and s[k] == q:
                best = (NAME, s[j:k], k + 1)
        if q == "`":
            if best is None and self.opts.lenient_backticks:
                k = s.find("`", j)
                if k > j:
                    best = (NAME, s[j:k], k + 1)
            return best
        if self.opts.mysql_string_lexing:
            end = _mysql_string_end(s, i, q)
        else:
            end = _faithful_string_end(s, i, q)
        if end is not None and (best is None or end > best[2]):
            return (STRING, s[i + 1: end - 1], end)
        return best


def tokenize(text: str, options: ParseOptions = FAITHFUL) -> list[Token]:
    """Tokenise an (already quote-rewritten) query as the original's flex scanner does (5.1)."""
    lexer = _Lexer(text, options)
    lexer.run()
    return lexer.tokens


# =================================================================================================
# Parser (spec 6.1)
# =================================================================================================

_SHOW_FLAGS = frozenset({"GLOBAL", "SESSION", "FILESYSTEM", "RAM", "AVG", "UPTIME"})
_STATEMENT_STARTS = frozenset({"SHOW", "DESCRIBE", "SELECT", "INSERT", "DELETE", "SET"})
_TRANSACTION_WORDS = frozenset({"COMMIT", "ROLLBACK", "BEGIN"})
_COMPARISONS = frozenset({"=", "<", ">"})


class _Parser:
    def __init__(self, text: str, tokens: list[Token], separators: list[int],
                 opts: ParseOptions) -> None:
        self.text = text
        self.toks = tokens
        self.seps = separators
        self.opts = opts
        self.i = 0

    # -- token helpers ----------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Token | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def _pos(self) -> int:
        tok = self.peek()
        return tok.start if tok is not None else len(self.text)

    def next(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise _syntax(len(self.text))
        self.i += 1
        return tok

    def at(self, kind: str, text: str | None = None, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok is not None and tok.kind == kind and (text is None or tok.text == text)

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        if self.at(kind, text):
            return self.next()
        return None

    def expect(self, kind: str, text: str | None = None) -> Token:
        tok = self.accept(kind, text)
        if tok is None:
            raise _syntax(self._pos())
        return tok

    def ident(self, tok: Token) -> str:
        return tok.text.lower() if self.opts.fold_name_case else tok.text

    def name(self) -> str:
        return self.ident(self.expect(NAME))

    def value(self) -> Value:
        tok = self.peek()
        if tok is None or tok.kind not in (STRING, NAME, INT):
            raise _syntax(self._pos())
        self.i += 1
        return self._to_value(tok)

    def _to_value(self, tok: Token) -> Value:
        text = tok.text
        if tok.kind == STRING and self.opts.unescape_strings:
            text = unescape_mysql(text)
        return Value(text, tok.kind, tok.quote)

    # -- statements -------------------------------------------------------------------------------
    def parse_all(self) -> list[Statement]:
        out: list[Statement] = []
        while self.peek() is not None:
            out.append(self.statement())
        return out

    def statement(self) -> Statement:
        tok = self.next()
        o = self.opts
        if tok.kind == KW:
            if tok.text == "SELECT":
                return self.select()
            if tok.text == "INSERT":
                return self.insert()
            if tok.text == "DELETE":
                return self.delete()
            if tok.text == "SHOW":
                return self.show()
            if tok.text == "DESCRIBE" or (tok.text == "DESC" and o.accept_desc):
                return ShowColumns(self.name(), describe=True)
            if tok.text == "SET":
                return self.set_(tok)
            if tok.text == "USE" and o.accept_use:
                return UseDatabase(self.expect(NAME).text)
        elif tok.kind == NAME and o.accept_transactions:
            word = tok.text.upper()
            if word in _TRANSACTION_WORDS:
                return Transaction(word)
            following = self.peek() if self.at(NAME) else None
            if word == "START" and following is not None and following.text.upper() == "TRANSACTION":
                self.i += 1
                return Transaction("START TRANSACTION")
        raise _syntax(tok.start)

    def show(self) -> Statement:
        tok = self.next()
        if tok.kind == KW:
            simple = {"DATABASES": ShowDatabases, "PROCESSLIST": ShowProcesslist,
                      "TABLES": ShowTables, "TABLE STATUS": ShowTableStatus}.get(tok.text)
            if simple is not None:
                return simple()
            full = tok.text == "FULL"
            if full:
                tok = self.next()
            if tok.kind == KW and tok.text == "COLUMNS":
                if not (self.accept(KW, "FROM") or self.accept(KW, "IN")):
                    raise _syntax(self._pos())
                return ShowColumns(self.name(), full=full)
            if not full:
                flag = None
                if tok.text in _SHOW_FLAGS:
                    flag = tok.text
                    tok = self.next()
                if tok.kind == KW and tok.text == "STATUS":
                    return ShowStatus(flag)
                if tok.kind == KW and tok.text == "VARIABLES":
                    return self.show_variables(flag)
        raise _syntax(tok.start)

    def show_variables(self, flag: str | None) -> ShowVariables:
        if self.opts.lenient_show_variables:
            like = self.value() if self.accept(KW, "LIKE") else None
            return ShowVariables(flag, like)
        self.expect(KW, "LIKE")
        tok = self.expect(STRING)
        return ShowVariables(flag, self._to_value(tok))

    def select(self) -> Statement:
        if self.at(SYSVAR):
            names = [self.sysvar()]
            if self.opts.lenient_select_variables:
                while self.at(PUNCT, ",") and self.at(SYSVAR, k=1):
                    self.i += 1
                    names.append(self.sysvar())
            return SelectVariable(tuple(names), self.opt_limit())
        if self.accept(KW, "DATABASE"):
            self.expect(PUNCT, "(")
            self.expect(PUNCT, ")")
            return SelectDatabase()
        columns: tuple[str, ...] | None
        if self.accept(PUNCT, "*"):
            columns = None
        else:
            cols = [self.name()]
            while self.accept(PUNCT, ","):
                cols.append(self.name())
            columns = tuple(cols)
        self.expect(KW, "FROM")
        table = self.name()
        where = self.opt_where()
        order = self.opt_order_by()
        return Select(table, columns, where, order, self.opt_limit())

    def sysvar(self) -> str:
        tok = self.expect(SYSVAR)
        name = tok.text
        if (
            self.opts.lenient_select_variables
            and name.upper() in ("@@SESSION", "@@GLOBAL", "@@LOCAL")
            and (following := self.peek() if self.at(NAME) else None) is not None
            and following.start == tok.end + 1
            and self.text[tok.end] == "."
        ):
            name = f"{name}.{self.next().text}"
        return name

    def insert(self) -> Insert:
        self.expect(KW, "INTO")
        table = self.name()
        columns: tuple[str, ...] | None = None
        if self.accept(PUNCT, "("):
            cols = [self.name()]
            while self.accept(PUNCT, ","):
                cols.append(self.name())
            self.expect(PUNCT, ")")
            columns = tuple(cols)
        self.expect(KW, "VALUES")
        self.expect(PUNCT, "(")
        values = [self.value()]
        while self.accept(PUNCT, ","):
            values.append(self.value())
        self.expect(PUNCT, ")")
        return Insert(table, columns, tuple(values))

    def delete(self) -> Delete:
        self.expect(KW, "FROM")
        table = self.name()
        where = self.opt_where()
        order = self.opt_order_by()
        return Delete(table, where, order, self.opt_limit())

    def opt_where(self) -> tuple[Condition, ...]:
        if not self.accept(KW, "WHERE"):
            return ()
        conds = [self.condition(None)]
        while True:
            conn = self.accept(KW, "AND") or self.accept(KW, "OR")
            if conn is None:
                return tuple(conds)
            conds.append(self.condition(conn.text))

    def condition(self, connector: str | None) -> Condition:
        column = self.name()
        tok = self.next()
        if tok.kind == PUNCT and tok.text in _COMPARISONS:
            return Condition(column, tok.text, (self.value(),), connector)
        if tok.kind == KW and tok.text == "LIKE":
            return Condition(column, "LIKE", (self.value(),), connector)
        if tok.kind == KW and tok.text == "IN":
            self.expect(PUNCT, "(")
            values = [self.value()]
            while self.accept(PUNCT, ","):
                values.append(self.value())
            self.expect(PUNCT, ")")
            return Condition(column, "IN", tuple(values), connector)
        raise _syntax(tok.start)

    def opt_order_by(self) -> OrderBy | None:
        if not self.accept(KW, "ORDER BY"):
            return None
        column = self.name()
        if self.accept(KW, "DESC"):
            return OrderBy(column, True)
        self.accept(KW, "ASC")
        return OrderBy(column, False)

    def opt_limit(self) -> Limit | None:
        if not self.accept(KW, "LIMIT"):
            return None
        first = leading_int(self.expect(INT).text)
        if self.accept(PUNCT, ","):
            return Limit(first, leading_int(self.expect(INT).text))
        return Limit(first)

    # -- SET --------------------------------------------------------------------------------------
    def set_(self, set_tok: Token) -> Set:
        start_index = self.i
        try:
            stmt = self.strict_set(set_tok)
            if not self.opts.lenient_set or self.at_statement_boundary(set_tok):
                return stmt
        except ParseError:
            if not self.opts.lenient_set:
                raise
        # lenient: everything up to the next ';' (or the end) belongs to this SET.
        self.i = start_index
        stop = next((p for p in self.seps if p > set_tok.start), len(self.text))
        words: list[Token] = []
        while (tok := self.peek()) is not None and tok.start < stop:
            words.append(tok)
            self.i += 1
        end = words[-1].end if words else set_tok.end
        raw = self.text[set_tok.start:end]
        args = [t for t in words if t.kind != PUNCT]
        variable = args[0].text if args else ""
        value = self._to_value(args[-1]) if len(args) > 1 and args[-1].kind in (STRING, NAME, INT) else None
        return Set(variable, value, None, raw)

    def strict_set(self, set_tok: Token) -> Set:
        first = self.next()
        if first.kind == SYSVAR:
            second = self.next()
            if second.kind not in (NAME, INT):
                raise _syntax(second.start)
            return Set(first.text, self._to_value(second), None, self.text[set_tok.start:second.end])
        if first.kind != NAME:
            raise _syntax(first.start)
        second = self.next()
        if second.kind not in (NAME, INT):
            raise _syntax(second.start)
        if second.kind == NAME and self.at(NAME):
            third = self.next()
            return Set(second.text, self._to_value(third), first.text,
                       self.text[set_tok.start:third.end])
        return Set(first.text, self._to_value(second), None, self.text[set_tok.start:second.end])

    def at_statement_boundary(self, set_tok: Token) -> bool:
        tok = self.peek()
        if tok is None:
            return True
        if tok.kind == KW and tok.text in _STATEMENT_STARTS:
            return True
        prev_end = self.toks[self.i - 1].end
        return any(prev_end <= p < tok.start for p in self.seps)


# =================================================================================================
# Multi-statement merge (spec 6.4) and limits (spec 8.2)
# =================================================================================================


def merge_statements(statements: Sequence[Statement]) -> Statement | None:
    """Merge a query's statements into one record, as the original does (spec 6.4).

    The last statement decides the command and table.  Accumulated across statements: WHERE
    conditions of SELECT/DELETE (a later statement's first condition has connector ``None``),
    SELECT columns (``*`` resets the list), INSERT column names and values.  Sticky (last one set
    wins, even if a later statement has none): ORDER BY, the LIMIT row count and — separately — the
    LIMIT start (so ``LIMIT 2, 5`` then ``LIMIT 3`` gives ``Limit(3, 5)``, read with the faithful
    meaning of :meth:`Limit.apply`), the SHOW flag, SET's section.  ``[]`` -> ``None``.
    """
    if not statements:
        return None
    if len(statements) == 1:
        return statements[0]
    where: list[Condition] = []
    columns: list[str] = []
    ins_cols: list[str] = []
    ins_vals: list[Value] = []
    order: OrderBy | None = None
    rows: int | None = None
    start: int | None = None
    flag: str | None = None
    section: str | None = None
    for st in statements:
        if isinstance(st, (Select, Delete)):
            where.extend(st.where)
            if st.order_by is not None:
                order = st.order_by
        if isinstance(st, Select):
            if st.columns is None:
                columns.clear()
            else:
                columns.extend(st.columns)
        if isinstance(st, (Select, Delete, SelectVariable)) and st.limit is not None:
            rows = st.limit.first
            if st.limit.second is not None:
                start = st.limit.second
        if isinstance(st, Insert):
            ins_cols.extend(st.columns or ())
            ins_vals.extend(st.values)
        if isinstance(st, (ShowStatus, ShowVariables)) and st.flag is not None:
            flag = st.flag
        if isinstance(st, ShowColumns) and st.full:
            flag = "FULL"
        if isinstance(st, Set) and st.section is not None:
            section = st.section
    limit = None if rows is None else Limit(rows, start)
    last = statements[-1]
    if isinstance(last, Select):
        return Select(last.table, tuple(columns) or None, tuple(where), order, limit)
    if isinstance(last, Delete):
        return Delete(last.table, tuple(where), order, limit)
    if isinstance(last, Insert):
        return Insert(last.table, tuple(ins_cols) or None, tuple(ins_vals))
    if isinstance(last, SelectVariable):
        return SelectVariable(last.names, limit)
    if isinstance(last, ShowStatus):
        return ShowStatus(flag)
    if isinstance(last, ShowVariables):
        return ShowVariables(flag, last.like)
    if isinstance(last, ShowColumns):
        return ShowColumns(last.table, flag == "FULL", last.describe)
    if isinstance(last, Set):
        return replace(last, section=section)
    return last


def _enforce_limits(st: Statement) -> None:
    where = getattr(st, "where", ())
    if len(where) > MAX_CONDITIONS:
        raise ParseError(*ERR_TOO_MANY_CONDITIONS)
    if any(len(c.values) > MAX_CONDITION_VALUES for c in where):
        raise ParseError(*ERR_TOO_MANY_CONDITION_VALUES)
    if isinstance(st, Select) and st.columns is not None and len(st.columns) > MAX_COLUMNS:
        raise ParseError(*ERR_TOO_MANY_COLUMNS)
    if isinstance(st, Insert):
        if st.columns is not None and len(st.columns) > MAX_COLUMNS:
            raise ParseError(*ERR_TOO_MANY_INSERT_NAMES)
        if len(st.values) > MAX_INSERT_VALUES:
            raise ParseError(*ERR_TOO_MANY_INSERT_VALUES)


# =================================================================================================
# Entry point
# =================================================================================================


def parse(
    query: str | bytes, options: ParseOptions | None = None, /, **switches: bool
) -> list[Statement]:
    """Parse the text of one COM_QUERY (after :func:`split_cluster_prefix`).

    Returns the statements — ``[]`` for a query without any (answer OK Variant A, spec 6.3);
    faithfully at most one, because several are merged (6.4).  Raises :class:`ParseError` with the
    real server's code/message: 17/11 for the length limits, 3 for a syntax error (and 18-21 with
    ``enforce_limits``).  ``options`` defaults to :data:`FAITHFUL`; keyword ``switches`` override
    single fields (``parse(q, lenient_set=True)``).  Bytes are decoded as UTF-8 with
    ``surrogateescape``, so every byte survives into the values.
    """
    opts = options if options is not None else FAITHFUL
    if switches:
        opts = replace(opts, **switches)
    text = query.decode("utf-8", "surrogateescape") if isinstance(query, (bytes, bytearray)) else query
    if not opts.keep_nul:
        text = text.split("\x00", 1)[0]
    if not opts.skip_length_check:
        check_length(text)
    text = rewrite_doubled_quotes(text, full=opts.full_quote_rewrite,
                                  mysql_escapes=opts.mysql_string_lexing)
    lexer = _Lexer(text, opts)
    lexer.run()
    statements = _Parser(text, lexer.tokens, lexer.separators, opts).parse_all()
    if opts.enforce_limits:
        for st in statements:
            _enforce_limits(st)
    if len(statements) > 1:
        if opts.reject_multi_statements:
            raise _syntax(None)
        if not opts.split_multi_statements:
            merged = merge_statements(statements)
            assert merged is not None
            if opts.enforce_limits:
                _enforce_limits(merged)
            statements = [merged]
    return statements
