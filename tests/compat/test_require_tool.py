"""The compat-suite rule: a missing real client skips locally and fails in CI."""

from __future__ import annotations

import pytest

from tests.compat.conftest import require_tool


def test_present_tool_passes(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require_tool("always", lambda: True)
    require_tool("value", "/usr/bin/something")


@pytest.mark.parametrize("ci", ["", "0", "false"])
def test_missing_tool_skips_outside_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="compat tool missing: frob"):
        require_tool("frob", lambda: False)


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_missing_tool_fails_in_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_tool("frob", lambda: False)


def test_crashing_probe_counts_as_missing(monkeypatch):
    monkeypatch.delenv("CI", raising=False)

    def probe():
        raise FileNotFoundError("no such binary")

    with pytest.raises(pytest.skip.Exception, match="FileNotFoundError"):
        require_tool("frob", probe)
