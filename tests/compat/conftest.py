"""Compat tests: real third-party clients against the emulator over OS sockets.

A compat test needs a tool that is not a Python dependency (node + the ``ws`` package, php, the
mariadb CLI, sipp, Chromium).  Locally a missing tool skips the test; in CI (env ``CI`` set) a
missing tool FAILS it, so a broken CI image can never turn the compat suite silently green::

    from tests.compat.conftest import require_tool

    def test_something():
        require_tool("php", lambda: shutil.which("php") is not None)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_tool(name: str, check: Callable[[], object] | object, hint: str = "") -> None:
    """Skip (locally) or fail (in CI) the calling test unless ``check`` is truthy.

    ``check`` is a value or a zero-argument callable; an exception raised by the callable counts as
    "missing".
    """
    try:
        ok = check() if callable(check) else check
    except Exception as exc:  # a probe that crashes means the tool is not usable
        ok = False
        hint = f"{hint} ({type(exc).__name__}: {exc})".strip()
    if ok:
        return
    message = f"compat tool missing: {name}" + (f" — {hint}" if hint else "")
    if in_ci():
        pytest.fail(message + " (CI is set: compat tests must not skip)", pytrace=False)
    pytest.skip(message)


def node_ws_available() -> bool:
    return shutil.which("node") is not None and (NODE_MODULES / "ws" / "package.json").is_file()


@pytest.fixture
def node_ws() -> str:
    """The ``node`` executable, once node and ``node_modules/ws`` are known to be there."""
    require_tool("node + npm package ws", node_ws_available, "run `npm install` at the repository root")
    return shutil.which("node")  # type: ignore[return-value]
