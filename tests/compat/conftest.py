"""Compat tests: real third-party clients against the emulator over OS sockets.

A compat test needs a tool that is not a Python dependency (node + the ``ws`` package, php, the
mariadb CLI, sipp, Chromium).  Locally a missing tool skips the test; in CI (env ``CI`` set) a
missing tool FAILS it, so a broken CI image can never turn the compat suite silently green::

    from tests.compat.conftest import require_tool

    def test_something():
        require_tool("php", lambda: shutil.which("php") is not None)

Every compat test talks to a whole emulator over OS sockets: the ``stack`` fixture (defined here
once) opens one on free ports of 127.0.0.1; a test module that needs users in users_auth lists them
in a module-level ``STACK_USERS = [(dev_id, user_id, hash), ...]``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

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
    except Exception as exc:  # noqa: BLE001 - a probe that crashes means the tool is not usable
        ok = False
        hint = f"{hint} ({type(exc).__name__}: {exc})".strip()
    if ok:
        return
    message = f"compat tool missing: {name}" + (f" — {hint}" if hint else "")
    if in_ci():
        pytest.fail(message + " (CI is set: compat tests must not skip)", pytrace=False)
    pytest.skip(message)


def playwright_available() -> bool:
    import playwright.sync_api  # noqa: F401  (ImportError -> missing)
    return True


def npm_version(name: str, prefix: str) -> bool:
    """Whether node_modules/<name> is installed at a version starting with ``prefix``."""
    meta = NODE_MODULES / name / "package.json"
    return meta.is_file() and json.loads(meta.read_text())["version"].startswith(prefix)


def jssip2_available() -> bool:
    """JsSIP 2.0.6 (npm alias jssip2) with its browser bundle, what cometVideoApi pages load."""
    return (NODE_MODULES / "jssip2" / "dist" / "jssip.js").is_file() and npm_version("jssip2", "2.0.6")


def require_browser_tools(*, jssip3: bool = False) -> None:
    """Debian's Chromium, Python's playwright, JsSIP 2.0.6 (and, for the browser actors' own-app
    profiles, JsSIP 3.x): what every test that drives a real Chromium needs."""
    from bench.browser.host import CHROMIUM

    require_tool("chromium (Debian package)", lambda: shutil.which(CHROMIUM) is not None, "apt-get install chromium")
    require_tool("python playwright", playwright_available, "pip install -e '.[test]'")
    require_tool("npm package jssip2 (jssip@2.0.6)", jssip2_available, "run `npm install` at the repository root")
    if jssip3:
        require_tool("npm package jssip (3.x)", lambda: npm_version("jssip", "3."),
                     "run `npm install` at the repository root")


def node_ws_available() -> bool:
    return shutil.which("node") is not None and (NODE_MODULES / "ws" / "package.json").is_file()


@pytest.fixture
async def stack(request):
    """The whole emulator on free ports (OS sockets, the real clock), with the module's ``STACK_USERS``."""
    from emulator.config import Config
    from emulator.stack import open_stack

    cfg = Config()
    cfg.free_ports()  # every service on port 0 (127.0.0.1)
    async with open_stack(cfg) as s:
        for dev_id, user_id, hash_ in getattr(request.module, "STACK_USERS", ()):
            s.hub.set_hash(dev_id, user_id, hash_)
        yield s


@pytest.fixture
def node_ws() -> str:
    """The ``node`` executable, once node and ``node_modules/ws`` are known to be there."""
    require_tool("node + npm package ws", node_ws_available, "run `npm install` at the repository root")
    return shutil.which("node")  # type: ignore[return-value]


class JsonLinesProcess:
    """A helper process (node script) driven by JSON lines: commands on stdin, events on stdout.

    ``read`` runs in a nursery and collects events (an ``{"ev": "exited"}`` event marks the end);
    ``wait_for`` waits until an event matches, failing with the events seen so far.
    """

    def __init__(self, process, name: str = "") -> None:
        import trio

        self.process = process
        self.name = name
        self.events: list[dict] = []
        self._changed = trio.Event()

    async def read(self) -> None:
        import json

        import trio

        buffer = b""
        assert self.process.stdout is not None
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    self.events.append(json.loads(line))
            self._changed.set()
            self._changed = trio.Event()
        self.events.append({"ev": "exited"})
        self._changed.set()

    async def do(self, op: str, **fields) -> None:
        import json

        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps({"op": op, **fields}) + "\n").encode())

    async def wait_for(self, predicate, what: str, timeout: float = 10.0) -> dict:
        import json

        import trio

        with trio.move_on_after(timeout):
            while True:
                for e in self.events:
                    if predicate(e):
                        return e
                if self.events and self.events[-1]["ev"] == "exited":
                    break
                await self._changed.wait()
        raise AssertionError(f"{self.name}: timed out waiting for {what}; "
                             f"events: {json.dumps(self.events, indent=1)[-6000:]}")
