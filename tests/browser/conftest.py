"""Real Chromium in the scenarios (bench/browser): shared fixtures.

These tests need Debian's /usr/bin/chromium, the Python package playwright and the npm packages
jssip2 (jssip@2.0.6) and jssip (3.x); like the compat tests they are skipped locally when one is
missing and FAIL in CI (env CI set; the ``browser_tools`` fixture, tests/conftest.py).  Each test keeps the
number of browsers small (one Chromium per scenario, one context per browser actor): the machine
has two cores and is shared.

``no_chromium_left`` (autouse) checks after every test that no process of a Chromium this test
started is still running: the host reaps each browser's process group, even after a crash.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.browser import procs

pytestmark = pytest.mark.compat

@pytest.fixture(autouse=True)
def no_chromium_left():
    """No Chromium process group started during the test may have a live process afterwards."""
    before = set(procs.LAUNCHED)
    yield
    started = set(procs.LAUNCHED) - before
    left = {group: procs.live_in_group(group) for group in started}
    left = {group: [f"{p.pid} {p.comm}" for p in alive] for group, alive in left.items() if alive}
    assert not left, f"Chromium processes left behind: {left}"


async def tell_story(story: Callable[..., Any], *, browsers: tuple[str, ...], tmp_path: Path, app: Any = "demo",
                     profile: str = "cppcomet-4.09", timeout: float = 120.0, seed: int = 1, **settings: Any):
    """Tell ``story`` (an ``async def story(s)``) on a fresh stack in real time with real browsers
    playing ``browsers``; the ScenarioResult.  Artefacts go to ``tmp_path / "browser"``."""
    from bench.browser.participant import BrowserSettings
    from bench.browser.profile import AppProfile, load_profile
    from bench.scenario.loader import ScenarioSpec
    from bench.scenario.runner import tell

    spec = ScenarioSpec(story.__name__, Path(inspect.getsourcefile(story) or "story.py"), story=story,
                        doc=inspect.getdoc(story) or "", timeout=timeout)
    spec.actors = getattr(story, "actors", {})
    settings_ = BrowserSettings(actors=browsers, app=app if isinstance(app, AppProfile) else load_profile(app),
                                **settings)
    return await tell(spec, seed=seed, profile=profile, browser=settings_, artifacts_dir=tmp_path / "browser",
                      journal_path=str(tmp_path / "journal.sqlite"))


def journal_rows(path: Path, *, service: str | None = None, kind: str | None = None) -> list[dict]:
    """Entries of a run's journal (the last run in the file), data parsed when it is JSON."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        run = db.execute("SELECT run_id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()[0]
        query = "SELECT t, service, kind, direction, user_id, data FROM entries WHERE run_id = ?"
        args: list[Any] = [run]
        if service:
            query += " AND service = ?"
            args.append(service)
        if kind:
            query += " AND kind = ?"
            args.append(kind)
        rows = []
        for t, svc, knd, direction, user, data in db.execute(query + " ORDER BY seq", args):
            try:
                parsed = json.loads(data)
            except (TypeError, ValueError):
                parsed = data
            rows.append({"t": t, "service": svc, "kind": knd, "direction": direction, "user_id": user, "data": parsed})
        return rows
    finally:
        db.close()
