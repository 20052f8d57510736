"""Sharded runs (bench/distributed): helpers shared by the tests of this folder.

Ray is a test dependency (pyproject's ``test`` extra pulls ``cometbench[ray]``): locally a missing
Ray skips the Ray tests, in CI (``CI`` set) it FAILS them, as a missing tool fails the compat tests.

:func:`crash_hook` makes one shard of a run crash for real: a ``sitecustomize`` on ``PYTHONPATH``
(read by every Python process started with it: ``--executor local``'s subprocesses, Ray's workers)
replaces :meth:`bench.distributed.shard.ShardContext._begin` with one that ends the process
(``os._exit(9)``) when the shard index is named in the file ``COMETBENCH_TEST_CRASH`` points to: a
line ``1`` kills shard 1 before the start, ``2 mid`` kills shard 2 at the end of its first call
after the start -- a shard dying the way a killed pod or an out-of-memory worker does, with
nothing written after.
"""

from __future__ import annotations

import os
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.compat.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]

#: a short call for runs in real time: both open the page, join, see each other's first frame
QUICK_CALL = '''\
"""A short call for the sharded-run tests: both join room 7 and see each other."""

from bench.scenario import Scenario


async def story(s: Scenario) -> None:
    await s.together(s.doctor.open_page(), s.patient.open_page())
    await s.doctor.join("7")
    await s.patient.join("7")
    await s.wait("patient.first_remote_frame", within=15)
    await s.wait("doctor.first_remote_frame", within=15)
'''

#: the quick call for a shared deployment: it needs nothing of the in-process stack, and the room holds
#: exactly its two (a call of another shard in the same room would show up here)
SHARED_CALL = '''\
"""A short call against a deployment: both join room 7, see each other, and are its only members."""

from bench.scenario import Scenario

NEEDS = ()


async def story(s: Scenario) -> None:
    await s.together(s.doctor.open_page(), s.patient.open_page())
    await s.doctor.join("7")
    await s.patient.join("7")
    await s.wait("patient.first_remote_frame", within=15)
    await s.wait("doctor.first_remote_frame", within=15)
    members = sorted(await s.conference_members("7"))
    s.check(members == ["doctor", "patient"], f"room 7 holds the doctor and the patient only: {members}")
'''

SITECUSTOMIZE = '''\
import os

_marker = os.environ.get("COMETBENCH_TEST_CRASH")
if _marker:
    from bench.distributed import shard as _shard

    _begin = _shard.ShardContext._begin

    def _doomed():
        try:
            with open(_marker, encoding="utf-8") as f:
                lines = [line.split() for line in f.read().splitlines() if line.strip()]
        except OSError:
            return {}
        return {int(words[0]): (words[1] if len(words) > 1 else "before") for words in lines}

    def _crashing_begin(self, run):
        when = _doomed().get(self.shard.index)
        if when == "before":
            os._exit(9)
        result = _begin(self, run)
        if when == "mid":
            def crash_after_first_call(*args):
                os._exit(9)

            run.on_result = crash_after_first_call
        return result

    _shard.ShardContext._begin = _crashing_begin
'''


def require_ray():
    """The ``ray`` module, once it imports (skip locally, fail in CI)."""
    require_tool("ray (pip install 'cometbench[ray]', in the test extra)", lambda: __import__("ray"),
                 "run `make setup`")
    import ray

    return ray


@pytest.fixture
def quick_call(tmp_path: Path) -> Path:
    path = tmp_path / "quick_call.py"
    path.write_text(QUICK_CALL, encoding="utf-8")
    return path


@pytest.fixture
def shared_call(tmp_path: Path) -> Path:
    path = tmp_path / "shared_call.py"
    path.write_text(SHARED_CALL, encoding="utf-8")
    return path


def crash_hook(folder: Path, doomed: str = "") -> dict[str, str]:
    """Environment variables that arm the crash hook (see the module docstring); ``doomed`` is the
    file's first content (``"1"``, ``"2 mid"``); the file can be rewritten later."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE), encoding="utf-8")
    marker = folder / "crash-shards"
    marker.write_text(doomed, encoding="utf-8")
    path = os.pathsep.join([str(folder), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path, "COMETBENCH_TEST_CRASH": str(marker)}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """``python -m bench.cli ARGS`` in a subprocess: (status, stdout, stderr)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


@contextmanager
def shared_serve(folder: Path):
    """One ``cometbench serve`` process on free ports, recording its journal to a file in ``folder``:
    the deployment every shard of a test drives.  Yields ``(ready line, --target spec, journal
    path)``; the journal is complete once the block has ended (the process stopped): read it with
    :func:`served_calls` then."""
    from tests.integration.test_split_modes import serve

    journal = folder / "serve-journal.sqlite"
    with serve("--free-ports", "--journal-path", str(journal)) as ready:
        target = f"ws=127.0.0.1:{ready['ws']},cometql=127.0.0.1:{ready['cometql']},ca={ready['ca_cert']}"
        yield ready, target, journal


def served_calls(journal: Path) -> tuple[set[int], dict[str, set[int]]]:
    """What the shared server saw: the user ids that logged in over the comet WebSocket, and each room
    INSERTed into ``conference`` with the user ids invited to it."""
    import re
    import sqlite3

    conn = sqlite3.connect(journal)
    try:
        logins = {int(row[0]) for row in conn.execute(
            "SELECT user_id FROM entries WHERE service = 'comet' AND kind = 'connect' AND user_id > 0")}
        rooms: dict[str, set[int]] = {}
        insert = re.compile(r"INSERT INTO conference \(name, user_id, caller_id, message, profile\) "
                            r"VALUES \('([^']*)', (\d+),")
        for (sql,) in conn.execute("SELECT data FROM entries WHERE service = 'cometql' AND kind = 'query'"):
            found = insert.match(sql or "")
            if found:
                rooms.setdefault(found.group(1), set()).add(int(found.group(2)))
    finally:
        conn.close()
    return logins, rooms
