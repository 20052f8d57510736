"""Shared fixtures: fake hub connections for core tests."""

from __future__ import annotations

import json

import pytest

from emulator.clock import ManualClock
from emulator.comet.hub import Hub
from emulator.profiles import get_profile
from emulator.state import StateStore
from emulator.wire import comet as w


class FakeConn:
    """A hub connection whose frames land in a list (texts in ``frames``, the bytes the transport
    would write in ``wire``); ``drop`` is recorded."""

    def __init__(self, hub: Hub, url: str, **extra):
        self.frames: list[str] = []
        self.wire: list[bytes | None] = []
        self.dropped = False
        self.conn = hub.connect(w.parse_url(url), deliver=self._deliver, drop=self._drop, **extra)
        self.hub = hub

    def _deliver(self, text: str, wire: bytes | None) -> None:
        self.frames.append(text)
        self.wire.append(wire)

    def _drop(self):
        self.dropped = True

    def send(self, text: str) -> None:
        self.hub.command(self.conn, text)

    def json(self) -> list[dict]:
        return [json.loads(f) for f in self.frames]

    def take(self) -> list[dict]:
        out = self.json()
        self.frames.clear()
        self.wire.clear()
        return out


@pytest.fixture
def browser_tools() -> None:
    """Every test that drives a real Chromium (tests/compat's JsSIP page, tests/browser's actors): the
    browser, playwright and both JsSIP packages, skipped locally and failing in CI when one is missing."""
    from tests.compat.conftest import require_browser_tools

    require_browser_tools(jssip3=True)


def url(user_key="undefined", user_id="undefined", dev_id=1, uuid=None, v="4.08"):
    uuid = uuid or ("u" * 32)
    return f"/ws/sesion={user_key}&myid={user_id}&devid={dev_id}&v={v}&uuid={uuid}&api=js"


@pytest.fixture(params=["cppcomet-4.09", "lenient"])
def any_profile(request):
    return get_profile(request.param)


def make_hub(profile="cppcomet-4.09", **quirks) -> Hub:
    p = get_profile(profile)
    if quirks:
        p = p.with_quirks(**quirks)
    return Hub(StateStore(":memory:"), p, clock=ManualClock())


# --- fuzz tests: profiles and input counts (tests/fuzzing.py) ---------------------------------------


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz(protocol): a hypothesis fuzz test; its examples count as "
                                       "inputs of <protocol> (COMETBENCH_FUZZ=long: the long profile)")


def pytest_collection_modifyitems(config, items):
    from tests.fuzzing import counting

    for item in items:
        marker = item.get_closest_marker("fuzz")
        hypothesis_handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if marker is None or hypothesis_handle is None:
            continue
        if not getattr(hypothesis_handle.inner_test, "_fuzz_counted", False):
            hypothesis_handle.inner_test = counting(hypothesis_handle.inner_test, marker.args[0])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import os

    from tests.fuzzing import COUNTS, PROFILE, write_counts

    if not COUNTS:
        return
    terminalreporter.write_line(f"fuzz inputs ({PROFILE} profile): "
                                + ", ".join(f"{p} {n:,}" for p, n in sorted(COUNTS.items())))
    path = os.environ.get("COMETBENCH_FUZZ_COUNTS")
    if path:
        write_counts(path)
