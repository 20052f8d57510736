"""Fuzz-test settings and input counts: a fast profile for CI, a long one for ``make fuzz``.

``COMETBENCH_FUZZ`` selects the profile: unset (or ``ci``) runs every hypothesis test with the
``max_examples`` written in it, as CI always has; ``long`` multiplies them by
``COMETBENCH_FUZZ_SCALE`` (default 100), which is what ``make fuzz`` runs (about an hour with the
mutation campaign and the live-socket fuzzer; see ``tests/fuzz/run.py``).

Fuzz tests carry ``@pytest.mark.fuzz("<protocol>")`` (or a module-level ``pytestmark``); the root
conftest counts every example hypothesis runs under that protocol, prints the totals at the end
of a session that ran any, and writes them as JSON to ``COMETBENCH_FUZZ_COUNTS`` when set.
Protocols: ``comet-ws`` (URLs, commands, frames), ``mysql`` (packets), ``cometql`` (statements),
``sip``, ``sdp``, ``esl``, ``http`` (the directory endpoint).
"""

from __future__ import annotations

import collections
import functools
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import settings

PROFILE = os.environ.get("COMETBENCH_FUZZ", "ci") or "ci"
if PROFILE not in ("ci", "long"):
    raise ValueError(f"COMETBENCH_FUZZ={PROFILE!r}: expected 'ci' or 'long'")
SCALE = int(os.environ.get("COMETBENCH_FUZZ_SCALE", "100")) if PROFILE == "long" else 1
PROTOCOLS = ("comet-ws", "mysql", "cometql", "sip", "sdp", "esl", "http")

#: examples run per protocol in this process
COUNTS: collections.Counter[str] = collections.Counter()


def fuzz_settings(max_examples: int, **kwargs: Any) -> settings:
    """``settings(max_examples=...)`` for a fuzz test: as written in CI, scaled in the long profile."""
    kwargs.setdefault("deadline", None)
    return settings(max_examples=max_examples * SCALE, **kwargs)


def counting(inner: Callable, protocol: str) -> Callable:
    """Wrap a hypothesis test's inner function so each example counts as one input of ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown fuzz protocol {protocol!r}")
    if inspect.iscoroutinefunction(inner):
        @functools.wraps(inner)
        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            COUNTS[protocol] += 1
            return await inner(*args, **kwargs)
        counted_async._fuzz_counted = True  # type: ignore[attr-defined]
        return counted_async

    @functools.wraps(inner)
    def counted(*args: Any, **kwargs: Any) -> Any:
        COUNTS[protocol] += 1
        return inner(*args, **kwargs)
    counted._fuzz_counted = True  # type: ignore[attr-defined]
    return counted


def write_counts(path: str | Path) -> None:
    """Add this process's counts to the JSON file at ``path`` (created if missing)."""
    path = Path(path)
    total: collections.Counter[str] = collections.Counter()
    if path.exists():
        total.update(json.loads(path.read_text()))
    total.update(COUNTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(total.items())), indent=1) + "\n")
