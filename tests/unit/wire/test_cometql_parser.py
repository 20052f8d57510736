"""Unit tests of emulator.wire.cometql (the grammar of docs/quirks/cometql.md; parity corpus 4.09)."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from emulator.wire import cometql as q
from emulator.wire.cnum import leading_int
from emulator.wire.cometql import (
    Condition,
    Delete,
    Insert,
    Limit,
    OrderBy,
    ParseError,
    ParseOptions,
    Select,
    SelectDatabase,
    SelectVariable,
    Set,
    ShowColumns,
    ShowDatabases,
    ShowProcesslist,
    ShowStatus,
    ShowTables,
    ShowTableStatus,
    ShowVariables,
    Transaction,
    UseDatabase,
    Value,
    parse,
)
from tests.fuzzing import fuzz_settings
from tests.parity.conftest import load_corpus

pytestmark = pytest.mark.fuzz("cometql")
SYNTAX = (3, "Syntax error in query")


def one(sql: str, **switches: bool):
    result = parse(sql, **switches)
    assert len(result) == 1, result
    return result[0]


def err(sql: str, **switches: bool) -> tuple[int, str]:
    with pytest.raises(ParseError) as info:
        parse(sql, **switches)
    return info.value.code, info.value.message


def V(text: str, kind: str = "name", quote: str | None = None) -> Value:
    return Value(text, kind, quote)


def I(text: str, quote: str | None = None) -> Value:
    return Value(text, "int", quote)


def S(text: str, quote: str | None = "'") -> Value:
    return Value(text, "string", quote)


# =================================================================================================
# Parity corpus: every errno-3 statement is a ParseError 3, every other statement parses
# =================================================================================================


def _parity_rows() -> list[dict]:
    """The recorded statements (fixtures/parity/cometql-4.09.jsonl): ``sql`` and the error code, if any."""
    return [{"sql": step["statement"], "errno": step.get("code")} for step in load_corpus()]


_EXPECTED_KIND = {
    "SHOW": (ShowDatabases, ShowTables, ShowColumns, ShowStatus, ShowTableStatus, ShowVariables,
             ShowProcesslist),
    "DESCRIBE": (ShowColumns,),
    "SELECT": (Select, SelectVariable, SelectDatabase),
    "INSERT": (Insert,),
    "DELETE": (Delete,),
    "SET": (Set,),
}


def test_parity_corpus_syntax_errors_and_parse_trees():
    rows = _parity_rows()
    assert len(rows) == 119
    syntax_errors = 0
    for row in rows:
        sql = row["sql"]
        if row.get("errno") == 3:
            syntax_errors += 1
            with pytest.raises(ParseError) as info:
                parse(sql)
            assert (info.value.code, info.value.message) == SYNTAX, sql
            continue
        statements = parse(sql)
        assert len(statements) == 1, sql
        stmt = statements[0]
        keyword = sql.split()[0].upper()
        assert isinstance(stmt, _EXPECTED_KIND[keyword]), (sql, stmt)
        table = getattr(stmt, "table", None)
        if table is not None:
            assert table in sql, (sql, table)  # as written (case kept, quotes stripped)
    assert syntax_errors == 12


def test_parity_corpus_with_lenient_options_accepts_superset():
    """The lenient preset accepts every statement the faithful parser accepts (none of the corpus
    is multi-statement except one, which the lenient preset rejects on purpose) and more."""
    lenient_ok = 0
    for row in _parity_rows():
        sql = row["sql"]
        try:
            faithful = parse(sql)
        except ParseError:
            faithful = None
        try:
            lenient = parse(sql, q.LENIENT)
        except ParseError as e:
            assert faithful is None or ";" in sql, (sql, e)
            continue
        lenient_ok += 1
        if faithful is not None:
            assert type(lenient[0]) is type(faithful[0])
    # SET AUTOCOMMIT = 0, SET autocommit=1, COMMIT and the "-- comment" query become valid
    assert lenient_ok == 119 - 12 - 1 + 4


def test_parity_specific_trees():
    assert one("SELECT * FROM Users_Auth WHERE id = 1").table == "Users_Auth"
    assert one("SELECT * FROM `users_auth` WHERE `id` = 1") == Select(
        "users_auth", None, (Condition("id", "=", (I("1"),)),))
    assert one("SELECT * FROM users_auth WHERE id > 1").where[0].operator == ">"
    assert one("SELECT * FROM users_auth WHERE id != 1").where[0].operator == "="
    assert one("SELECT * FROM users_auth WHERE id = '1'").where[0].values == (I("1", "'"),)
    assert one("INSERT INTO users_data (id, data) VALUES (2, 'it''s')").values[1] == S("it\\'s")
    assert one("INSERT INTO users_auth (id, hash) VALUES (-7, 'neg')").values[0] == I("7")
    assert one('INSERT INTO pipes_settings ("name", "length") VALUES ("p10", 10)') == Insert(
        "pipes_settings", ("name", "length"), (V("p10", quote='"'), I("10")))
    assert one("INSERT INTO users_auth VALUES (10, 'noCols')") == Insert(
        "users_auth", None, (I("10"), V("noCols", quote="'")))
    conf = one("INSERT INTO conference (name, user_id, caller_id, message, profile)"
               "VALUES('101', '1', '1', '{}', 'video' );")
    assert conf.values == (I("101", "'"), I("1", "'"), I("1", "'"), S("{}"), V("video", quote="'"))
    assert one("SELECT * FROM users_auth WHERE id = 1 OR id = 2").where == (
        Condition("id", "=", (I("1"),)), Condition("id", "=", (I("2"),), "OR"))
    assert one("DELETE FROM conference WHERE name = '101' AND user_id = 1").where == (
        Condition("name", "=", (I("101", "'"),)), Condition("user_id", "=", (I("1"),), "AND"))
    assert one("SELECT * FROM users_auth WHERE id = 1 ORDER BY id").order_by == OrderBy("id")
    sel = one("SELECT * FROM users_auth WHERE id IN (1, 2, 3) LIMIT 2, 1")
    assert sel.limit == Limit(2, 1)
    assert sel.limit.apply(["r1", "r2", "r3"]) == ["r2"]  # "LIMIT 2, 1 returns the second row"
    assert one("SELECT * FROM pipes WHERE name IN ('web_a', 'web_b', 'x y')").where[0].values == (
        V("web_a", quote="'"), V("web_b", quote="'"), S("x y"))


def test_parity_multi_statement_is_merged():
    """'... WHERE id = 1; SELECT ... WHERE id = 2' -> ERR 13 duplicate column: conditions merge."""
    stmt = one("SELECT * FROM users_auth WHERE id = 1; SELECT * FROM users_auth WHERE id = 2")
    assert stmt == Select("users_auth", None, (Condition("id", "=", (I("1"),)),
                                               Condition("id", "=", (I("2"),))))


# =================================================================================================
# Lexer (spec 5.1)
# =================================================================================================


def kinds(sql: str, **switches: bool) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in q.tokenize(sql, ParseOptions(**switches))]


def test_tokens_basic():
    assert kinds("select * FROM pipes WHERE name=`x` LIMIT 5") == [
        ("kw", "SELECT"), ("punct", "*"), ("kw", "FROM"), ("name", "pipes"), ("kw", "WHERE"),
        ("name", "name"), ("punct", "="), ("name", "x"), ("kw", "LIMIT"), ("int", "5")]


def test_quoted_name_or_int_beats_string():
    toks = q.tokenize("'status' \"123\" `abc` '12a' 'a b' \"\" ''")
    assert [(t.kind, t.text, t.quote) for t in toks] == [
        ("name", "status", "'"), ("int", "123", '"'), ("name", "abc", "`"), ("string", "12a", "'"),
        ("string", "a b", "'"), ("string", "", '"'), ("string", "", "'")]


def test_keywords_need_whole_words():
    assert kinds("TABLES tables_x INTO INTOX in_ IN") == [
        ("kw", "TABLES"), ("name", "tables_x"), ("kw", "INTO"), ("name", "INTOX"),
        ("name", "in_"), ("kw", "IN")]


def test_two_word_keywords_exactly_one_space():
    assert kinds("ORDER BY order  by Table Status TABLE\tSTATUS") == [
        ("kw", "ORDER BY"), ("name", "order"), ("name", "by"), ("kw", "TABLE STATUS"),
        ("name", "TABLE"), ("kw", "STATUS")]
    # flex has no word boundary after a literal: "ORDER BYx" is ORDER BY + x
    assert kinds("ORDER BYx") == [("kw", "ORDER BY"), ("name", "x")]
    assert kinds("order  by x", flexible_keywords=True) == [("kw", "ORDER BY"), ("name", "x")]
    assert kinds("ORDER BYx", flexible_keywords=True) == [("name", "ORDER"), ("name", "BYx")]


def test_system_variables():
    assert kinds("@@version_comment @@session.x @x @@ @@1") == [
        ("sysvar", "@@version_comment"), ("sysvar", "@@session"), ("name", "x"), ("name", "x"),
        ("int", "1")]


def test_skipped_characters():
    assert kinds("id != -5; 1.5 a+b # /") == [
        ("name", "id"), ("punct", "="), ("int", "5"), ("int", "1"), ("int", "5"), ("name", "a"),
        ("name", "b")]
    assert kinds("x -5", signed_integers=True) == [("name", "x"), ("int", "-5")]


def test_non_ascii_is_skipped_and_never_a_keyword():
    assert kinds("DEſC ıN é") == [("name", "DE"), ("name", "C"), ("name", "N")]


def test_string_longest_match_with_escaped_quote():
    toks = q.tokenize("'a\\'b' 'it\\'s'")
    assert [(t.kind, t.text) for t in toks] == [("string", "a\\'b"), ("string", "it\\'s")]


def test_string_backslash_before_closing_quote_quirk():
    """Spec 5.3: ('p1','e','C:\\\\', 'x') mis-lexes (the string swallows ', ')."""
    toks = q.tokenize("('p1','e','C:\\\\', 'x')")
    assert [(t.kind, t.text) for t in toks][5:] == [("string", "C:\\\\', "), ("name", "x"), ("punct", ")")]
    toks = q.tokenize("('C:\\\\', 'x')", ParseOptions(mysql_string_lexing=True))
    assert [(t.kind, t.text) for t in toks] == [
        ("punct", "("), ("string", "C:\\\\"), ("punct", ","), ("name", "x"), ("punct", ")")]


def test_strings_may_span_lines_and_utf8():
    stmt = one("INSERT INTO t (m) VALUES ('line1\nстрока ✓')")
    assert stmt.values[0] == S("line1\nстрока ✓")


def test_backticks_quote_only_names_and_ints():
    assert kinds("`my-pipe`") == [("name", "my"), ("name", "pipe")]
    assert kinds("`my-pipe`", lenient_backticks=True) == [("name", "my-pipe")]
    assert kinds("`12`") == [("int", "12")]


def test_unterminated_quote_is_skipped_or_rejected():
    assert kinds("'abc") == [("name", "abc")]
    with pytest.raises(ParseError):
        q.tokenize("'abc", ParseOptions(reject_unknown_chars=True))


def test_token_offsets():
    toks = q.tokenize("SHOW  'x'")
    assert (toks[0].start, toks[0].end, toks[1].start, toks[1].end) == (0, 4, 6, 9)


# =================================================================================================
# Doubled-quote rewrite and raw values (spec 5.3, 5.4)
# =================================================================================================


def test_rewrite_doubled_quotes():
    assert q.rewrite_doubled_quotes("'it''s ok'") == "'it\\'s ok'"
    assert q.rewrite_doubled_quotes('"say ""hi"""  ') == '"say \\"hi\\""  '
    assert q.rewrite_doubled_quotes("'{\"\"a\"\"}'  ") == "'{\"\"a\"\"}'  "  # other quote kind untouched
    assert q.rewrite_doubled_quotes("('', 'x')") == "('', 'x')"  # an empty string is not a pair


def test_rewrite_skips_last_three_characters():
    assert q.rewrite_doubled_quotes("'ab''") == "'ab''"
    assert q.rewrite_doubled_quotes("'ab''", full=True) == "'ab\\'"
    assert q.rewrite_doubled_quotes("'ab'' ") == "'ab'' "  # pair 3 from the end: skipped
    assert q.rewrite_doubled_quotes("'ab''  ") == "'ab\\'  "  # pair 4 from the end: rewritten
    assert q.rewrite_doubled_quotes("") == ""


def test_rewrite_ignores_backslash_escaped_quote_but_not_escaped_backslash():
    assert q.rewrite_doubled_quotes("'a\\'' '' xx") == "'a\\'' '' xx"
    # faithful: after 'C:\\' the rewrite still believes it is inside the string
    faithful = q.rewrite_doubled_quotes("'C:\\\\', 'it''s'  ")
    assert faithful == "'C:\\\\', 'it''s'  "
    assert q.rewrite_doubled_quotes("'C:\\\\', 'it''s'  ", mysql_escapes=True) == "'C:\\\\', 'it\\'s'  "


def test_values_are_not_unescaped():
    cases = {
        "'it\\'s'": "it\\'s",
        "'a\\\\b'": "a\\\\b",
        '"say \\"hi\\""': 'say \\"hi\\"',
        "'a\\nb'": "a\\nb",
        "'it''s ok'": "it\\'s ok",
        '"say ""hi"""': 'say \\"hi\\"',
        "'{\"a\":\"b\"}'": '{"a":"b"}',
    }
    for literal, raw in cases.items():
        stmt = one(f"INSERT INTO pipes_messages (name, event, message) VALUES ('p', 'e', {literal})")
        assert stmt.values[2].text == raw, literal


def test_unescape_strings_switch():
    stmt = one("INSERT INTO t (m) VALUES ('it''s \\n \\\\ \\%')", unescape_strings=True,
               mysql_string_lexing=True)
    assert stmt.values[0].text == "it's \n \\ \\%"
    assert q.unescape_mysql("a\\0b\\Zc\\qd\\") == "a\x00b\x1acqd\\"


def test_windows_path_quirk_end_to_end():
    sql = "INSERT INTO pipes_messages (name, event, message) VALUES ('p1','e','C:\\\\', 'x')"
    assert err(sql) == SYNTAX
    stmt = one(sql.replace(", 'x'", ""), mysql_string_lexing=True)
    assert stmt.values[2].text == "C:\\\\"
    stmt = one("INSERT INTO t (a, b) VALUES ('C:\\\\', 'x')", mysql_string_lexing=True,
               unescape_strings=True)
    assert stmt.values == (S("C:\\"), V("x", quote="'"))


def test_stray_trailing_quote_is_ignored():
    """PHP examples end with ");'" — the stray quote is skipped."""
    stmt = one("INSERT INTO pipes_messages (name, event, message) VALUES ('p', 'e', 'm');'")
    assert stmt.values[2] == V("m", quote="'")
    assert err("INSERT INTO t (a) VALUES ('m');'", reject_unknown_chars=True) == SYNTAX


# =================================================================================================
# Grammar (spec 6.1, 10)
# =================================================================================================


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SHOW DATABASES", ShowDatabases()),
        ("show processlist", ShowProcesslist()),
        ("SHOW TABLES;", ShowTables()),
        ("SHOW TABLE STATUS", ShowTableStatus()),
        ("SHOW STATUS", ShowStatus(None)),
        ("SHOW GLOBAL STATUS", ShowStatus("GLOBAL")),
        ("SHOW SESSION STATUS", ShowStatus("SESSION")),
        ("SHOW FILESYSTEM STATUS", ShowStatus("FILESYSTEM")),
        ("SHOW RAM STATUS", ShowStatus("RAM")),
        ("show avg status", ShowStatus("AVG")),
        ("SHOW UPTIME STATUS", ShowStatus("UPTIME")),
        ("SHOW COLUMNS FROM users_auth", ShowColumns("users_auth")),
        ("SHOW FULL COLUMNS IN users_auth", ShowColumns("users_auth", full=True)),
        ("DESCRIBE pipes", ShowColumns("pipes", describe=True)),
        ("SHOW VARIABLES LIKE 'lower_case%'", ShowVariables(None, S("lower_case%"))),
        ("SHOW SESSION VARIABLES LIKE '%'", ShowVariables("SESSION", S("%"))),
        ("SHOW GLOBAL VARIABLES LIKE \"a b\"", ShowVariables("GLOBAL", S("a b", '"'))),
        ("SELECT @@version_comment LIMIT 1", SelectVariable(("@@version_comment",), Limit(1))),
        ("SELECT @@Max_Allowed_Packet", SelectVariable(("@@Max_Allowed_Packet",))),
        ("SELECT @@x LIMIT 1, 2", SelectVariable(("@@x",), Limit(1, 2))),
        ("SELECT DATABASE()", SelectDatabase()),
        ("select database ( )", SelectDatabase()),
        ("SET NAMES utf8", Set("NAMES", V("utf8"), None, "SET NAMES utf8")),
        ("set names 'utf8mb4'", Set("names", V("utf8mb4", quote="'"), None, "set names 'utf8mb4'")),
        ("SET @@autocommit on", Set("@@autocommit", V("on"), None, "SET @@autocommit on")),
        ("SET x 1", Set("x", I("1"), None, "SET x 1")),
        ("SET a b c", Set("b", V("c"), "a", "SET a b c")),
        ("SELECT name, users FROM pipes WHERE name LIKE 'web%'",
         Select("pipes", ("name", "users"), (Condition("name", "LIKE", (S("web%"),)),))),
        ("SELECT * FROM pipes WHERE name < 'abc'",
         Select("pipes", None, (Condition("name", "<", (V("abc", quote="'"),)),))),
        ("SELECT * FROM users_auth WHERE id = 1 ORDER BY id DESC LIMIT 4, 2",
         Select("users_auth", None, (Condition("id", "=", (I("1"),)),), OrderBy("id", True),
                Limit(4, 2))),
        ("SELECT * FROM t ORDER BY a ASC", Select("t", None, (), OrderBy("a"))),
        ("DELETE FROM pipes_messages WHERE name = 'p' AND id = 'u' ORDER BY x LIMIT 1",
         Delete("pipes_messages", (Condition("name", "=", (V("p", quote="'"),)),
                                   Condition("id", "=", (V("u", quote="'"),), "AND")),
                OrderBy("x"), Limit(1))),
        ("INSERT INTO users_auth (id, hash) VALUES (12, h)",
         Insert("users_auth", ("id", "hash"), (I("12"), V("h")))),
    ],
)
def test_grammar_forms(sql, expected):
    assert one(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1", "SELECT NOW()", "SELECT COUNT(*) FROM pipes", "SELECT", "SELECT * FROM",
        "SELECT * pipes", "SELECT a,, b FROM t", "SELECT * FROM t WHERE", "SELECT * FROM t WHERE id",
        "SELECT * FROM t WHERE id >= 1", "SELECT * FROM t WHERE id <> 1", "SELECT * FROM t WHERE (id = 1)",
        "SELECT * FROM t WHERE id IS NULL", "SELECT * FROM t WHERE NOT id = 1",
        "SELECT * FROM t WHERE id IN ()",
        "SELECT * FROM t WHERE id IN (1, 2", "SELECT * FROM t WHERE id = 1 AND", "SELECT * FROM t LIMIT",
        "SELECT * FROM t LIMIT a", "SELECT * FROM t LIMIT 1,", "SELECT * FROM t ORDER BY",
        "SELECT * FROM t ORDER  BY id", "SELECT * FROM t LIMIT 1 ORDER BY id", "SELECT * FROM t AS x",
        "SELECT * FROM CometQL_v1.pipes", "SELECT * FROM t WHERE id = 1.5", "SELECT @@session.x",
        "SELECT @@a, @@b", "select DATABASE(), USER() limit 1", "SELECT DATABASE", "SELECT * FROM 'a b'",
        "INSERT users_auth VALUES (1)", "INSERT INTO t VALUES 1", "INSERT INTO t () VALUES (1)",
        "INSERT INTO t (a) VALUES ()", "INSERT INTO t (a) VALUES (1), (2)", "INSERT INTO t (a) SELECT 1",
        "INSERT INTO t (1) VALUES (1)", "DELETE users_auth WHERE id = 1", "DELETE FROM",
        "UPDATE t SET a = 1", "REPLACE INTO t (a) VALUES (1)", "DROP TABLE t", "CREATE TABLE t (id int)",
        "SHOW", "SHOW VARIABLES", "SHOW VARIABLES LIKE 'lower_case_table_names'",
        "SHOW VARIABLES LIKE '123'", "SHOW VARIABLES LIKE x", "SHOW CREATE TABLE t", "SHOW WARNINGS",
        "SHOW ENGINES", "SHOW FULL STATUS", "SHOW GLOBAL TABLES", "SHOW COLUMNS users_auth",
        "SHOW TABLE  STATUS", "SHOW TABLE", "DESC users_auth", "DESCRIBE", "EXPLAIN SELECT * FROM t",
        "USE CometQL_v1", "SET AUTOCOMMIT = 0", "SET x=1", "SET NAMES utf8mb4 COLLATE utf8mb4_general_ci",
        "SET CHARACTER SET utf8", "SET @@a", "SET 'a b' c", "SET a 'b c'", "COMMIT", "ROLLBACK", "BEGIN",
        "START TRANSACTION", "KILL 1", "SELECT * FROM t WHERE id = 1 -- comment", "/* c */ SHOW TABLES",
        "# c\nSHOW TABLES", "garbage here", "SHOW TABLES garbage",
    ],
)
def test_syntax_errors(sql):
    assert err(sql) == SYNTAX


def test_keywords_are_not_names_unless_quoted():
    assert err("SELECT status FROM t") == SYNTAX
    assert one("SELECT 'status' FROM `from`") == Select("from", ("status",))


def test_quoted_table_and_column_names():
    assert one("SELECT \"name\" FROM 'pipes' WHERE `name` = 'abc'") == Select(
        "pipes", ("name",), (Condition("name", "=", (V("abc", quote="'"),)),))


def test_empty_statement_list():
    assert parse("....") == []
    assert parse(";;;;") == []
    assert parse("  ;\n\t  ") == []


def test_case_is_kept_for_names_and_values():
    stmt = one("select Name FROM Pipes where NAME in ('Web_A')")
    assert stmt == Select("Pipes", ("Name",), (Condition("NAME", "IN", (V("Web_A", quote="'"),)),))
    folded = one("select Name FROM Pipes where NAME in ('Web_A')", fold_name_case=True)
    assert folded == Select("pipes", ("name",), (Condition("name", "IN", (V("Web_A", quote="'"),)),))
    assert one("INSERT INTO Users_Auth (ID) VALUES (1)", fold_name_case=True).columns == ("id",)


# =================================================================================================
# Limits and lengths (spec 7 step 4, 8.2, 8.3, 13)
# =================================================================================================


def test_length_limits():
    assert err("abc") == (17, "Data is too short")
    assert err("") == (17, "Data is too short")
    assert err("SHOW") == SYNTAX  # 4 bytes passes the length check
    assert err("a" * 9000) == (11, "Data is too long")
    long_ok = "INSERT INTO t (m) VALUES ('" + "x" * (8999 - 29) + "')"
    assert len(long_ok.encode()) == 8999
    assert one(long_ok).values[0].text == "x" * 8970
    # lengths are bytes: 4 Cyrillic letters are 8 bytes
    assert parse("ыы") == []  # 4 bytes, all skipped characters
    assert err("ы") == (17, "Data is too short")
    assert err("é" * 4500) == (11, "Data is too long")
    assert parse("...", skip_length_check=True) == []
    assert err("abc", skip_length_check=True) == SYNTAX
    assert err("a" * 9000, skip_length_check=True) == SYNTAX


def test_length_check_helper():
    q.check_length("SHOW")
    with pytest.raises(ParseError):
        q.check_length("\udcff")  # surrogate-escaped byte counts 1 byte


def test_nul_truncation():
    assert one("SHOW TABLES\x00 garbage") == ShowTables()
    assert err("SHOW TABLES\x00 garbage", keep_nul=True) == SYNTAX
    assert err("SH\x00OW TABLES") == (17, "Data is too short")


def test_bytes_input_keeps_raw_bytes():
    stmt = one(b"INSERT INTO t (m) VALUES ('\xff\xfe ok')")
    assert stmt.values[0].text.encode("utf-8", "surrogateescape") == b"\xff\xfe ok"


@pytest.mark.parametrize(
    ("limit", "faithful", "mysql"),
    [
        (Limit(1), [0], [0]),
        (Limit(0), list(range(12)), []),
        (Limit(2, 1), [1], [2]),
        (Limit(4, 2), [2, 3], [4, 5]),
        (Limit(0, 10), [10, 11], list(range(10))),
        (Limit(1, 5), [], [1, 2, 3, 4, 5]),
        (Limit(20), list(range(12)), list(range(12))),
    ],
)
def test_limit_semantics(limit, faithful, mysql):
    rows = list(range(12))
    assert limit.apply(rows) == faithful
    assert limit.apply(rows, mysql_semantics=True) == mysql
    assert limit.rows == limit.first and limit.start == (limit.second or 0)


def test_limit_accepts_quoted_integers():
    assert one("SELECT * FROM t LIMIT '5', \"2\"").limit == Limit(5, 2)


def test_where_limits_are_kept_faithfully_and_enforced_leniently():
    conds = " AND ".join(f"c{i} = {i}" for i in range(11))
    sql = f"SELECT * FROM t WHERE {conds}"
    assert len(one(sql).where) == 11
    assert err(sql, enforce_limits=True) == (18, "Error in expression list, too many conditions.")
    values = ",".join("1" for _ in range(4001))
    sql = f"SELECT * FROM t WHERE id IN ({values})"
    assert len(one(sql).where[0].values) == 4001
    assert err(sql, enforce_limits=True) == (19, "Error in expression list, too many values.")
    cols = ", ".join(f"c{i}" for i in range(21))
    assert err(f"SELECT {cols} FROM t", enforce_limits=True) == (
        20, "Error in columns list, too many columns.")
    vals = ", ".join("1" for _ in range(21))
    assert err(f"INSERT INTO t ({cols}) VALUES ({vals})", enforce_limits=True) == (
        21, "Error in names list, too many names.")
    assert err(f"INSERT INTO t VALUES ({vals})", enforce_limits=True) == (
        19, "Error in names list, too many values.")
    ok_cols = ", ".join(f"c{i}" for i in range(20))
    assert len(one(f"SELECT {ok_cols} FROM t", enforce_limits=True).columns) == 20


def test_enforced_limits_count_merged_statements():
    six = " AND ".join(f"c{i} = 1" for i in range(6))
    sql = f"SELECT * FROM t WHERE {six}; SELECT * FROM t WHERE {six}"
    assert len(one(sql).where) == 12
    assert err(sql, enforce_limits=True)[0] == 18


def test_leading_int_conversion():
    for text, value in [("12abc", 12), ("abc", 0), ("-5", -5), ("007", 7), ("", 0), ("-", 0),
                        ("+5", 0), ("99999999999", 99999999999)]:
        assert leading_int(text) == value
        assert Value(text, "string", "'").to_int() == value


# =================================================================================================
# Multi-statement merge (spec 6.4)
# =================================================================================================


def test_merge_last_command_and_table_win_conditions_accumulate():
    stmt = one("SELECT * FROM pipes WHERE name='abc'; SELECT * FROM users_time WHERE id=1")
    assert stmt == Select("users_time", None, (Condition("name", "=", (V("abc", quote="'"),)),
                                               Condition("id", "=", (I("1"),))))


def test_merge_columns_star_resets():
    assert one("SELECT a FROM t; SELECT b FROM u").columns == ("a", "b")
    assert one("SELECT a FROM t; SELECT * FROM u").columns is None
    assert one("SELECT * FROM t; SELECT b FROM u").columns == ("b",)


def test_merge_insert_accumulates():
    stmt = one("INSERT INTO t (a) VALUES (1); INSERT INTO u VALUES (2)")
    assert stmt == Insert("u", ("a",), (I("1"), I("2")))
    stmt = one("SELECT * FROM t WHERE x = 1; INSERT INTO u (a, b) VALUES (1, 2)")
    assert stmt == Insert("u", ("a", "b"), (I("1"), I("2")))


def test_merge_sticky_order_by_limit_and_flags():
    stmt = one("SELECT * FROM t ORDER BY a LIMIT 2, 5; DELETE FROM u WHERE id = 1 LIMIT 3")
    assert stmt == Delete("u", (Condition("id", "=", (I("1"),)),), OrderBy("a"), Limit(3, 5))
    assert one("SELECT @@a LIMIT 1; SELECT @@b") == SelectVariable(("@@b",), Limit(1))
    assert one("SHOW GLOBAL STATUS; SHOW STATUS") == ShowStatus("GLOBAL")
    assert one("SHOW FULL COLUMNS FROM a; DESCRIBE b") == ShowColumns("b", True, True)
    assert one("SHOW RAM STATUS; SHOW VARIABLES LIKE '%'") == ShowVariables("RAM", S("%"))
    assert one("SET a b c; SET x y").section == "a"
    assert one("SELECT * FROM t; SHOW TABLES") == ShowTables()
    assert one("SHOW TABLES SHOW DATABASES") == ShowDatabases()


def test_merge_helper_edge_cases():
    assert q.merge_statements([]) is None
    assert q.merge_statements([ShowTables()]) == ShowTables()


def test_multi_statement_switches():
    sql = "SELECT * FROM a WHERE x = 1; SELECT * FROM b WHERE y = 2"
    split = parse(sql, split_multi_statements=True)
    assert [s.table for s in split] == ["a", "b"]
    assert err(sql, reject_multi_statements=True) == SYNTAX
    assert err(sql, reject_multi_statements=True, split_multi_statements=True) == SYNTAX
    assert len(parse("SHOW TABLES", reject_multi_statements=True)) == 1


# =================================================================================================
# Cluster prefix (spec 7 step 2, 15)
# =================================================================================================


def test_cluster_prefix():
    sql = ("cometqlcluster_v1 set dev_id=15; INSERT INTO pipes_messages (name, event, message)"
           "VALUES('user_status_7', 'online', 'online');")
    dev_id, rest = q.split_cluster_prefix(sql)
    assert dev_id == 15 and rest.startswith("; INSERT")
    assert one(rest).table == "pipes_messages"
    assert q.split_cluster_prefix("cometqlcluster_v1 set dev_id=0001;x") == (1, ";x")
    assert q.split_cluster_prefix("cometqlcluster_v1 set dev_id=;x") == (0, ";x")
    assert q.split_cluster_prefix("cometqlcluster_v1 set dev_id=00000000000099999;x") == (99999, ";x")
    assert q.split_cluster_prefix("SHOW TABLES") == (None, "SHOW TABLES")
    assert q.split_cluster_prefix("COMETQLCLUSTER_V1 set dev_id=1; x")[0] is None


@pytest.mark.parametrize(
    "sql",
    [
        "cometqlcluster_v1 set dev_id=100000; SHOW TABLES",
        "cometqlcluster_v1 set dev_id=abc; SHOW TABLES",
        "cometqlcluster_v1 set dev_id=1 ; SHOW TABLES",
        "cometqlcluster_v1 set dev_id=1",
        "cometqlcluster_v1 set dev_id=1234567890; x",
        "cometqlcluster_v1 set dev_id=-1; x",
    ],
)
def test_cluster_prefix_invalid(sql):
    with pytest.raises(ParseError) as info:
        q.split_cluster_prefix(sql)
    assert (info.value.code, info.value.message) == (16, "Invalid dev_id value")


def test_cluster_prefix_dev_index_size():
    assert q.split_cluster_prefix("cometqlcluster_v1 set dev_id=7;", dev_index_size=8)[0] == 7
    with pytest.raises(ParseError):
        q.split_cluster_prefix("cometqlcluster_v1 set dev_id=8;", dev_index_size=8)


# =================================================================================================
# Lenient switches (each one on its own)
# =================================================================================================


def test_lenient_set():
    for sql in ["SET AUTOCOMMIT = 0", "SET autocommit=1", "SET NAMES utf8mb4 COLLATE utf8mb4_general_ci",
                "SET CHARACTER SET utf8", "SET @@session.sql_mode = 'x'", "SET x = 1, y = 2"]:
        stmt = one(sql, lenient_set=True)
        assert isinstance(stmt, Set) and stmt.raw == sql, sql
    assert one("SET AUTOCOMMIT = 0", lenient_set=True) == Set(
        "AUTOCOMMIT", I("0"), None, "SET AUTOCOMMIT = 0")
    stmts = parse("SET NAMES utf8mb4; SET AUTOCOMMIT = 0; SELECT @@x", lenient_set=True,
                  split_multi_statements=True)
    assert [type(s) for s in stmts] == [Set, Set, SelectVariable]
    assert stmts[1].raw == "SET AUTOCOMMIT = 0"
    # faithful forms still work and are followed by further statements without ';'
    stmts = parse("SET NAMES utf8 SHOW TABLES", lenient_set=True, split_multi_statements=True)
    assert [type(s) for s in stmts] == [Set, ShowTables]
    assert one("SET;;;;", lenient_set=True) == Set("", None, None, "SET")


def test_accept_transactions():
    for sql, action in [("COMMIT", "COMMIT"), ("rollback", "ROLLBACK"), ("Begin;", "BEGIN"),
                        ("START TRANSACTION", "START TRANSACTION")]:
        assert one(sql, accept_transactions=True) == Transaction(action)
    assert err("START", accept_transactions=True) == SYNTAX
    assert err("COMMITS", accept_transactions=True) == SYNTAX


def test_lenient_show_variables():
    assert one("SHOW VARIABLES", lenient_show_variables=True) == ShowVariables(None, None)
    assert one("SHOW GLOBAL VARIABLES LIKE 'lower_case_table_names'", lenient_show_variables=True) == (
        ShowVariables("GLOBAL", V("lower_case_table_names", quote="'")))


def test_lenient_select_variables():
    assert one("SELECT @@session.auto_increment_increment, @@version LIMIT 1",
               lenient_select_variables=True) == SelectVariable(
        ("@@session.auto_increment_increment", "@@version"), Limit(1))
    assert err("SELECT @@session .x", lenient_select_variables=True) == SYNTAX


def test_accept_desc_and_use():
    assert one("DESC users_auth", accept_desc=True) == ShowColumns("users_auth", describe=True)
    assert one("USE CometQL_v1", accept_use=True) == UseDatabase("CometQL_v1")
    assert err("USE ;", accept_use=True) == SYNTAX


def test_reject_unknown_chars():
    assert err("SELECT * FROM t WHERE id != 1", reject_unknown_chars=True) == SYNTAX
    assert err("SELECT * FROM a.b", reject_unknown_chars=True) == SYNTAX
    assert one(" SHOW\tTABLES ;\n", reject_unknown_chars=True) == ShowTables()
    assert one("SELECT * FROM t WHERE id = -5", reject_unknown_chars=True,
               signed_integers=True).where[0].values == (I("-5"),)


def test_strip_comments():
    sql = "/* a */ SELECT * FROM t -- tail\n WHERE id = 1 # x\n LIMIT 1 /* open"
    stmt = one(sql, strip_comments=True)
    assert stmt == Select("t", None, (Condition("id", "=", (I("1"),)),), None, Limit(1))
    assert one("SELECT * FROM t WHERE id = 1 --", strip_comments=True).table == "t"
    # '--' not followed by whitespace is not a comment (MySQL rule): '-' skipped, 5 is stray
    assert err("SELECT * FROM t WHERE id = 1--5", strip_comments=True) == SYNTAX


def test_flexible_keywords_end_to_end():
    assert one("SELECT * FROM t ORDER\n  BY a", flexible_keywords=True).order_by == OrderBy("a")
    assert one("SHOW TABLE   STATUS", flexible_keywords=True) == ShowTableStatus()


def test_lenient_preset_and_switch_table():
    names = {f.name for f in fields(ParseOptions)}
    assert set(q.SWITCHES) == names
    assert all(getattr(q.FAITHFUL, n) is False for n in names)
    for name, switch in q.SWITCHES.items():
        assert switch.description and "cometql.md" in switch.spec, name
        assert getattr(q.LENIENT, name) is switch.in_lenient_preset
        assert ParseOptions.__dict__.get(name) is False  # documented default
    # the preset never changes the meaning of queries the original accepts (spec 18)
    for name in ("reject_unknown_chars", "signed_integers", "unescape_strings", "mysql_string_lexing",
                 "fold_name_case", "split_multi_statements"):
        assert getattr(q.LENIENT, name) is False


def test_options_object_and_keyword_overrides():
    opts = ParseOptions(accept_use=True)
    assert parse("USE x", opts) == [UseDatabase("x")]
    with pytest.raises(ParseError):
        parse("USE x", opts, accept_use=False)
    with pytest.raises(TypeError):
        parse("SHOW TABLES", no_such_switch=True)


def test_parse_error_str_and_position():
    with pytest.raises(ParseError) as info:
        parse("SHOW TABLES garbage")
    assert info.value.position == 12
    assert "Syntax error in query" in str(info.value)
    assert str(ParseError(17, "Data is too short")) == "ERR 17: Data is too short"


# =================================================================================================
# Property tests: never anything but a statement list or ParseError, never a hang
# =================================================================================================

FAST = fuzz_settings(400, suppress_health_check=[HealthCheck.too_slow])

SQLISH = st.lists(
    st.sampled_from([
        "SELECT", "INSERT", "INTO", "DELETE", "FROM", "WHERE", "AND", "OR", "IN", "LIKE", "LIMIT",
        "ORDER BY", "ASC", "DESC", "SHOW", "TABLES", "TABLE STATUS", "STATUS", "GLOBAL", "FULL",
        "COLUMNS", "VARIABLES", "DESCRIBE", "DATABASE", "DATABASES", "VALUES", "SET", "USE",
        "COMMIT", "START", "TRANSACTION", "*", ",", "(", ")", "=", "<", ">", ";", "'", '"', "`", "\\",
        "''", "'a''b'", "\"x\"", "'12'", "`n`", "pipes", "id", "12", "-3", "@@v", "@@session", ".",
        "'it\\'s'", "/*", "*/", "--", "#", "\n", "é", "\x00",
    ]),
    max_size=30,
).map(" ".join)

CATALOGUE = {
    q.ERR_SYNTAX, q.ERR_TOO_SHORT, q.ERR_TOO_LONG, q.ERR_TOO_MANY_CONDITIONS,
    q.ERR_TOO_MANY_CONDITION_VALUES, q.ERR_TOO_MANY_COLUMNS, q.ERR_TOO_MANY_INSERT_NAMES,
    q.ERR_TOO_MANY_INSERT_VALUES,
}

OPTIONS = st.builds(ParseOptions, **{f.name: st.booleans() for f in fields(ParseOptions)})


def _check(result_or_error) -> None:
    assert isinstance(result_or_error, list)
    assert all(isinstance(s, q.Statement) for s in result_or_error)


@FAST
@given(st.text(max_size=200), OPTIONS)
def test_random_text_gives_statements_or_parse_error(text, options):
    try:
        _check(parse(text, options))
    except ParseError as e:
        assert (e.code, e.message) in CATALOGUE


@FAST
@given(SQLISH, OPTIONS)
def test_random_sqlish_gives_statements_or_parse_error(text, options):
    try:
        _check(parse(text, options))
    except ParseError as e:
        assert (e.code, e.message) in CATALOGUE
    try:
        _check(parse(text))
    except ParseError:
        pass


@FAST
@given(st.binary(max_size=200))
def test_random_bytes_give_statements_or_parse_error(data):
    try:
        _check(parse(data))
    except ParseError:
        pass
    try:
        q.split_cluster_prefix(data.decode("utf-8", "surrogateescape"))
    except ParseError:
        pass


@FAST
@given(st.text(max_size=200), st.booleans(), st.booleans())
def test_rewrite_keeps_length(text, full, escapes):
    out = q.rewrite_doubled_quotes(text, full=full, mysql_escapes=escapes)
    assert len(out) == len(text)
    # only quote characters are ever replaced, and only by a backslash
    assert all(a == b or (a in "'\"" and b == "\\") for a, b in zip(text, out))


@FAST
@given(st.text(alphabet="abc_'\"\\ ,()", max_size=60))
def test_faithful_lexer_tokens_cover_disjoint_spans(text):
    toks = q.tokenize(text)
    last = 0
    for t in toks:
        assert last <= t.start < t.end <= len(text)
        last = t.end
