"""Turn recordings of the real CppComet 4.09 into the fixtures of ``fixtures/parity/``.

The recordings were made outside this repository (see ``fixtures/parity/README.md``); this script
is how their facts entered it, and how a new recording of the same kind would.  It is run by hand,
never by the tests, and reads only the files named on its command line::

    python scripts/parity_fixtures.py statements RECORDING.jsonl > fixtures/parity/cometql-4.09.jsonl
    python scripts/parity_fixtures.py cli-session OBSERVATIONS.md > fixtures/parity/mariadb-cli-4.09.json

``statements``: the recorder's JSON lines (one answer of node ``mysql`` per statement: ``kind``
rows/ok/error/closed with its client-side field names) become one object per step in the schema
below.  ``cli-session``: the fenced block of a ``=== STATEMENT;`` transcript (the mariadb CLI with
``--table -vv``) becomes one JSON document with each statement and the CLI's output lines.

Step schema of ``cometql-4.09.jsonl`` (one JSON object per line, in the order the statements ran):

``step``       1-based position in the session
``statement``  the SQL text sent
``reply``      ``"result_set"``, ``"ok"``, ``"error"`` or ``"connection_lost"``
result_set:    ``columns`` ([[name, MySQL type code], ...]; 253 = VAR_STRING), ``rows`` (lists of strings)
ok:            ``affected_rows``, ``insert_id``, ``server_status``
error:         ``code``, ``text``, ``client_drops_connection`` (the client gave the link up after it)
connection_lost: ``client_error`` (what the client library said; it reconnected for the next step)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def convert_statement(step: int, record: dict) -> dict:
    out: dict = {"step": step, "statement": record["sql"]}
    kind = record["kind"]
    if kind == "rows":
        out.update(reply="result_set", columns=[list(f) for f in record["fields"]], rows=record["rows"])
    elif kind == "ok":
        out.update(reply="ok", affected_rows=record["affectedRows"], insert_id=record["insertId"],
                   server_status=record["serverStatus"])
    elif kind == "error":
        out.update(reply="error", code=record["errno"], text=record["message"],
                   client_drops_connection=bool(record.get("fatal")))
    elif kind == "closed":
        out.update(reply="connection_lost", client_error=record["message"])
    else:
        raise ValueError(f"step {step}: unknown kind {kind!r}")
    return out


def statements(path: Path) -> str:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return "".join(json.dumps(convert_statement(i, json.loads(line)), ensure_ascii=False) + "\n"
                   for i, line in enumerate(lines, 1))


def cli_session(path: Path) -> str:
    """The first fenced block holding ``=== STATEMENT;`` headers, as {statement, output lines}."""
    text = path.read_text(encoding="utf-8")
    start = text.index("```\n=== ") + 4
    block = text[start:text.index("```", start)]
    steps = []
    for chunk in block.split("=== ")[1:]:
        head, _, body = chunk.partition("\n")
        steps.append({"statement": head[:head.index(";")], "output": body.rstrip("\n").split("\n")})
    doc = {
        "client": "mariadb CLI 10.11: -h127.0.0.1 -P3307 -u1 -pCometQLPassword --skip-ssl CometQL_v1 --table -vv",
        "server": "CppComet 4.09 without a FreeSWITCH node",
        "note": "each step is one CLI run; output is stdout then stderr, without the echoed statement "
                "and the closing Bye; the last step's table was transcribed without its row count line",
        "steps": steps,
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("statements", "cli-session"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, path = argv[0], Path(argv[1])
    sys.stdout.write(statements(path) if kind == "statements" else cli_session(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
